package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// DeleteAcls: v0-3.
//
// For each filter, removes the matching operations of run-time rules (a rule keeps its
// other operations) and lists what was removed. Matching rules of the config file are
// listed with INVALID_REQUEST and a message: they change only in the file.
// Administrators only (CLUSTER_AUTHORIZATION_FAILED per filter); SECURITY_DISABLED
// without a user store; unknown enum values INVALID_REQUEST. v1 adds the pattern type
// (v0 is LITERAL), v2 is flexible.

func init() { register(31, 0, 3, handleDeleteACLs) }

func handleDeleteACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	code, msg := s.aclAdmin(c)
	for _, rf := range req.Filters {
		res := kmsg.NewDeleteACLsResponseResult()
		f := aclFilter{rf.ResourceType, rf.ResourceName, rf.ResourcePatternType, rf.Principal, rf.Host, rf.Operation, rf.PermissionType}
		if req.Version == 0 {
			f.pattern = kmsg.ACLResourcePatternTypeLiteral
		}
		if code != 0 {
			res.ErrorCode, res.ErrorMessage = code, kmsg.StringPtr(msg)
		} else if err := f.valid(); err != nil {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
		} else {
			res.MatchingACLs = s.deleteMatching(c, f)
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

// deleteMatching removes what one filter selects and describes it.
func (s *Server) deleteMatching(c *conn, f aclFilter) []kmsg.DeleteACLsResponseResultMatchingACL {
	var out []kmsg.DeleteACLsResponseResultMatchingACL
	describe := func(b aclBinding, ops auth.Op, code int16, msg string) {
		typ, name, pat, _ := resourceOf(b)
		shown := []kmsg.ACLOperation{kmsg.ACLOperationAll}
		if !b.superuser {
			shown = aclOperations(b.rule.Resource, ops)
		}
		for _, op := range shown {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = typ, name, pat
			m.Principal, m.Host, m.Operation, m.PermissionType = kafkaPrincipal(b.principal), "*", op, kmsg.ACLPermissionTypeAllow
			m.ErrorCode = code
			if msg != "" {
				m.ErrorMessage = kmsg.StringPtr(msg)
			}
			out = append(out, m)
		}
	}
	for _, b := range s.aclBindings() {
		ops := f.match(b)
		if ops == 0 {
			continue
		}
		switch {
		case b.superuser:
			describe(b, ops, kerr.InvalidRequest.Code, "a superuser is a property of the user (config file or mqstreams users), not an ACL")
			continue
		case b.config:
			describe(b, ops, kerr.InvalidRequest.Code, "defined in the config file; change it there")
			continue
		}
		removed, err := s.auth.RemoveRules(func(p string, r auth.Rule) bool { return p == b.principal && r == b.rule })
		if err == nil && len(removed) > 0 && b.rule.Ops&^ops != 0 {
			keep := b.rule
			keep.Ops &^= ops
			err = s.auth.AddRules(b.principal, []auth.Rule{keep})
		}
		if err != nil {
			c.lg.Error().Err(err).Msg("kafka DeleteAcls: storing the change failed")
			describe(b, ops, kerr.UnknownServerError.Code, err.Error())
			continue
		}
		if len(removed) > 0 {
			c.lg.Info().Str("principal", b.principal).Str("resource", b.rule.Resource.String()).Str("name", b.rule.Pattern()).
				Str("ops", ops.String()).Msg("kafka DeleteAcls: rule removed")
			describe(b, ops, 0, "")
		}
	}
	return out
}
