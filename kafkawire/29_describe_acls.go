package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeAcls: v0-3.
//
// Lists the bindings matching the filter (acls.go: the config file's rules and those
// added at run time), grouped by resource. Administrators only
// (CLUSTER_AUTHORIZATION_FAILED); SECURITY_DISABLED without a user store, as Kafka
// without an authorizer. Unknown enum values in the filter are INVALID_REQUEST. v1
// adds the pattern type (v0 is LITERAL), v2 is flexible, v3 adds the USER resource
// type (never matched).

func init() { register(29, 0, 3, handleDescribeACLs) }

func handleDescribeACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if code, msg := s.aclAdmin(c); code != 0 {
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(msg)
		return resp, nil
	}
	f := aclFilter{req.ResourceType, req.ResourceName, req.ResourcePatternType, req.Principal, req.Host, req.Operation, req.PermissionType}
	if req.Version == 0 {
		f.pattern = kmsg.ACLResourcePatternTypeLiteral
	}
	if err := f.valid(); err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
		return resp, nil
	}
	type resKey struct {
		typ  kmsg.ACLResourceType
		name string
		pat  kmsg.ACLResourcePatternType
	}
	index := map[resKey]int{}
	for _, b := range s.aclBindings() {
		ops := f.match(b)
		if ops == 0 {
			continue
		}
		typ, name, pat, _ := resourceOf(b)
		k := resKey{typ, name, pat}
		i, ok := index[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = typ, name, pat
			resp.Resources = append(resp.Resources, r)
			i = len(resp.Resources) - 1
			index[k] = i
		}
		shown := []kmsg.ACLOperation{kmsg.ACLOperationAll}
		if !b.superuser {
			shown = aclOperations(b.rule.Resource, ops)
		}
		for _, op := range shown {
			a := kmsg.NewDescribeACLsResponseResourceACL()
			a.Principal, a.Host, a.Operation, a.PermissionType = kafkaPrincipal(b.principal), "*", op, kmsg.ACLPermissionTypeAllow
			resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, a)
		}
	}
	return resp, nil
}
