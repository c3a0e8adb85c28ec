package kafkawire

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// Kafka ACL bindings over the user store's rules, for DescribeAcls, CreateAcls and
// DeleteAcls (29_describe_acls.go, 30_create_acls.go, 31_delete_acls.go).
//
// A binding is principal User:<name> (User:ANONYMOUS for clients without
// credentials), host *, permission ALLOW, on a TOPIC (a stream: LITERAL name, LITERAL
// * for every stream, or PREFIXED) or a GROUP (LITERAL id, LITERAL *, or PREFIXED).
// Operations map onto the store's: READ is read, WRITE write (topics only), ALTER,
// CREATE and DELETE are admin, ALL is every operation of the resource. DESCRIBE is
// refused when granting, since in this model any operation on a stream or group lets
// it be described (grant READ instead). DENY bindings, specific hosts, other resource
// types and wildcard principals are refused per binding with a message saying so.
// Listed rules show admin as ALTER on topics and DELETE on groups, and a rule holding
// every operation as ALL; a superuser shows as ALL on the CLUSTER. MQTT topic-filter
// rules have no Kafka form and are not listed. Rules of the config file are listed
// but cannot be deleted here; rules added at run time are stored in the log.

// aclCluster is the name Kafka gives the cluster resource.
const aclCluster = "kafka-cluster"

// aclBinding is one rule of one principal, as listed.
type aclBinding struct {
	principal string
	rule      auth.Rule
	superuser bool // the principal's superuser flag, shown as ALL on the cluster
	config    bool // from the config file: not deletable at run time
}

// kafkaPrincipal is a store principal name in Kafka's form.
func kafkaPrincipal(name string) string { return "User:" + name }

// parsePrincipal reads User:<name>.
func parsePrincipal(p string) (string, error) {
	name, ok := strings.CutPrefix(p, "User:")
	switch {
	case !ok:
		return "", fmt.Errorf("principal %q: only User:<name> principals exist", p)
	case name == "*":
		return "", errors.New("principal User:*: wildcard principals are not supported; grant each user")
	case name == "":
		return "", errors.New("principal User: has no name")
	}
	return name, nil
}

// resourceOf is the Kafka resource of a rule; ok is false for MQTT topic-filter rules.
func resourceOf(b aclBinding) (typ kmsg.ACLResourceType, name string, pat kmsg.ACLResourcePatternType, ok bool) {
	if b.superuser {
		return kmsg.ACLResourceTypeCluster, aclCluster, kmsg.ACLResourcePatternTypeLiteral, true
	}
	switch b.rule.Resource {
	case auth.ResStream:
		typ = kmsg.ACLResourceTypeTopic
	case auth.ResGroup:
		typ = kmsg.ACLResourceTypeGroup
	default:
		return 0, "", 0, false
	}
	switch {
	case b.rule.Prefix && b.rule.Name == "":
		return typ, "*", kmsg.ACLResourcePatternTypeLiteral, true
	case b.rule.Prefix:
		return typ, b.rule.Name, kmsg.ACLResourcePatternTypePrefixed, true
	}
	return typ, b.rule.Name, kmsg.ACLResourcePatternTypeLiteral, true
}

// allOps is every operation of a resource kind (what ALL grants).
func allOps(r auth.Resource) auth.Op {
	if r == auth.ResGroup {
		return auth.OpRead | auth.OpAdmin
	}
	return auth.OpRead | auth.OpWrite | auth.OpAdmin
}

// aclOperations lists the Kafka operations a rule's ops show as.
func aclOperations(r auth.Resource, ops auth.Op) []kmsg.ACLOperation {
	if ops == allOps(r) {
		return []kmsg.ACLOperation{kmsg.ACLOperationAll}
	}
	var out []kmsg.ACLOperation
	if ops&auth.OpRead != 0 {
		out = append(out, kmsg.ACLOperationRead)
	}
	if ops&auth.OpWrite != 0 {
		out = append(out, kmsg.ACLOperationWrite)
	}
	if ops&auth.OpAdmin != 0 {
		if r == auth.ResGroup {
			out = append(out, kmsg.ACLOperationDelete)
		} else {
			out = append(out, kmsg.ACLOperationAlter)
		}
	}
	return out
}

// grantOps maps a Kafka operation being granted onto the store's.
func grantOps(r auth.Resource, op kmsg.ACLOperation) (auth.Op, error) {
	switch op {
	case kmsg.ACLOperationAll:
		return allOps(r), nil
	case kmsg.ACLOperationRead:
		return auth.OpRead, nil
	case kmsg.ACLOperationWrite:
		if r == auth.ResGroup {
			return 0, errors.New("WRITE does not apply to a group (grant READ to consume with it)")
		}
		return auth.OpWrite, nil
	case kmsg.ACLOperationAlter, kmsg.ACLOperationCreate, kmsg.ACLOperationDelete:
		return auth.OpAdmin, nil
	case kmsg.ACLOperationDescribe:
		return 0, errors.New("DESCRIBE is implied by any other operation on the resource; grant READ, WRITE or ALTER instead")
	}
	return 0, fmt.Errorf("operation %s is not supported (READ, WRITE, ALTER, CREATE, DELETE or ALL)", op)
}

// filterOps is the set of store operations a filter's operation selects.
func filterOps(r auth.Resource, op kmsg.ACLOperation) auth.Op {
	switch op {
	case kmsg.ACLOperationAny, kmsg.ACLOperationAll, kmsg.ACLOperationDescribe:
		return allOps(r)
	}
	o, _ := grantOps(r, op)
	return o
}

// ruleOf builds the rule a CreateAcls binding grants.
func ruleOf(c kmsg.CreateACLsRequestCreation) (principal string, rule auth.Rule, err error) {
	switch {
	case c.PermissionType == kmsg.ACLPermissionTypeDeny:
		return "", rule, errors.New("DENY bindings are not supported: access is granted by ALLOW bindings only, so delete the ALLOW binding instead")
	case c.PermissionType != kmsg.ACLPermissionTypeAllow:
		return "", rule, fmt.Errorf("permission type %s is not ALLOW", c.PermissionType)
	case c.Host != "*" && c.Host != "":
		return "", rule, fmt.Errorf("host %q: bindings for specific hosts are not supported; use *", c.Host)
	}
	if principal, err = parsePrincipal(c.Principal); err != nil {
		return "", rule, err
	}
	switch c.ResourceType {
	case kmsg.ACLResourceTypeTopic:
		rule.Resource = auth.ResStream
	case kmsg.ACLResourceTypeGroup:
		rule.Resource = auth.ResGroup
	case kmsg.ACLResourceTypeCluster:
		return "", rule, errors.New("CLUSTER bindings are not supported: make an administrator with ALL on TOPIC * (LITERAL), or a superuser in the config")
	default:
		return "", rule, fmt.Errorf("resource type %s is not supported (TOPIC or GROUP)", c.ResourceType)
	}
	switch {
	case c.ResourceName == "":
		return "", rule, errors.New("empty resource name")
	case c.ResourcePatternType == kmsg.ACLResourcePatternTypeLiteral && c.ResourceName == "*":
		rule.Prefix = true
	case c.ResourcePatternType == kmsg.ACLResourcePatternTypeLiteral:
		rule.Name = c.ResourceName
	case c.ResourcePatternType == kmsg.ACLResourcePatternTypePrefixed:
		rule.Name, rule.Prefix = c.ResourceName, true
	default:
		return "", rule, fmt.Errorf("pattern type %s is not supported (LITERAL or PREFIXED)", c.ResourcePatternType)
	}
	if rule.Ops, err = grantOps(rule.Resource, c.Operation); err != nil {
		return "", rule, err
	}
	return principal, rule, rule.Validate()
}

// aclFilter is a DescribeAcls or DeleteAcls filter.
type aclFilter struct {
	resType   kmsg.ACLResourceType
	name      *string
	pattern   kmsg.ACLResourcePatternType
	principal *string
	host      *string
	op        kmsg.ACLOperation
	perm      kmsg.ACLPermissionType
}

// valid checks the filter's enums, as Kafka answers INVALID_REQUEST for unknown ones.
func (f aclFilter) valid() error {
	switch {
	case f.resType == kmsg.ACLResourceTypeUnknown || f.resType > kmsg.ACLResourceTypeUser:
		return fmt.Errorf("unknown resource type %d", f.resType)
	case f.pattern == kmsg.ACLResourcePatternTypeUnknown || f.pattern > kmsg.ACLResourcePatternTypePrefixed:
		return fmt.Errorf("unknown pattern type %d", f.pattern)
	case f.op == kmsg.ACLOperationUnknown || f.op > kmsg.ACLOperationDescribeTokens:
		return fmt.Errorf("unknown operation %d", f.op)
	case f.perm == kmsg.ACLPermissionTypeUnknown || f.perm > kmsg.ACLPermissionTypeAllow:
		return fmt.Errorf("unknown permission type %d", f.perm)
	}
	return nil
}

// match returns the store operations of b the filter selects (0: none).
func (f aclFilter) match(b aclBinding) auth.Op {
	typ, name, pat, ok := resourceOf(b)
	if !ok {
		return 0
	}
	if f.perm != kmsg.ACLPermissionTypeAny && f.perm != kmsg.ACLPermissionTypeAllow {
		return 0
	}
	if f.host != nil && *f.host != "*" {
		return 0
	}
	if f.principal != nil && *f.principal != kafkaPrincipal(b.principal) {
		return 0
	}
	if f.resType != kmsg.ACLResourceTypeAny && f.resType != typ {
		return 0
	}
	switch f.pattern {
	case kmsg.ACLResourcePatternTypeAny:
		if f.name != nil && *f.name != name {
			return 0
		}
	case kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed:
		if pat != f.pattern || f.name != nil && *f.name != name {
			return 0
		}
	case kmsg.ACLResourcePatternTypeMatch:
		// Bindings that apply to the named resource.
		if f.name != nil {
			switch {
			case pat == kmsg.ACLResourcePatternTypeLiteral && (name == *f.name || name == "*"):
			case pat == kmsg.ACLResourcePatternTypePrefixed && strings.HasPrefix(*f.name, name):
			default:
				return 0
			}
		}
	}
	if b.superuser {
		if f.op == kmsg.ACLOperationAny || f.op == kmsg.ACLOperationAll {
			return allOps(auth.ResStream)
		}
		return 0
	}
	return filterOps(b.rule.Resource, f.op) & b.rule.Ops
}

// aclBindings lists every principal's stream and group rules: the config file's and
// those added at run time.
func (s *Server) aclBindings() []aclBinding {
	runtime := map[string][]auth.Rule{}
	for _, r := range s.auth.RunTimeRules() {
		runtime[r.Principal] = append(runtime[r.Principal], r.Rule)
	}
	var out []aclBinding
	users := map[string]bool{}
	for _, u := range s.auth.Users() {
		users[u.Name] = true
		if u.Superuser {
			out = append(out, aclBinding{principal: u.Name, superuser: true, config: u.FromConfig})
		}
		for _, r := range u.Rules {
			out = append(out, aclBinding{principal: u.Name, rule: r, config: !slices.Contains(runtime[u.Name], r)})
		}
	}
	for _, r := range s.auth.RunTimeRules() {
		if !users[r.Principal] {
			out = append(out, aclBinding{principal: r.Principal, rule: r.Rule})
		}
	}
	return out
}

// aclAdmin answers whether the connection may use the ACL APIs, and the code to refuse
// it with otherwise.
func (s *Server) aclAdmin(c *conn) (int16, string) {
	if s.auth == nil {
		return kerr.SecurityDisabled.Code, "no user store: authorization is disabled"
	}
	if !c.sec.principal.Admin() {
		return kerr.ClusterAuthorizationFailed.Code, "only an administrator manages ACLs"
	}
	return 0, ""
}
