package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// CreateAcls: v0-3.
//
// Grants each binding as a run-time rule of the user store, stored in the log and
// applied at once to open connections (acls.go has the mapping). A binding that has
// no equivalent (DENY, a specific host, DESCRIBE, CLUSTER, ...) is INVALID_REQUEST
// with a message saying why; the others in the request are still granted.
// Administrators only (CLUSTER_AUTHORIZATION_FAILED for every binding);
// SECURITY_DISABLED without a user store. v1 adds the pattern type (v0 is LITERAL), v2
// is flexible.

func init() { register(30, 0, 3, handleCreateACLs) }

func handleCreateACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	code, msg := s.aclAdmin(c)
	for _, cr := range req.Creations {
		res := kmsg.NewCreateACLsResponseResult()
		if req.Version == 0 {
			cr.ResourcePatternType = kmsg.ACLResourcePatternTypeLiteral
		}
		switch principal, rule, err := ruleOf(cr); {
		case code != 0:
			res.ErrorCode, res.ErrorMessage = code, kmsg.StringPtr(msg)
		case err != nil:
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
		default:
			if err := s.auth.AddRules(principal, []auth.Rule{rule}); err != nil {
				c.lg.Error().Err(err).Msg("kafka CreateAcls: storing the rule failed")
				res.ErrorCode, res.ErrorMessage = kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
				break
			}
			c.lg.Info().Str("principal", principal).Str("resource", rule.Resource.String()).Str("name", rule.Pattern()).
				Str("ops", rule.Ops.String()).Msg("kafka CreateAcls: rule added")
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}
