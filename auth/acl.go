package auth

import (
	"fmt"
	"sort"
	"strings"
)

// Op is a set of operations a rule grants.
type Op uint8

// The operations of the ACL model.
const (
	// OpPublish sends MQTT PUBLISH to topics matching a topic filter.
	OpPublish Op = 1 << iota
	// OpSubscribe subscribes to filters covered by a topic filter.
	OpSubscribe
	// OpRead reads a stream (Kafka Fetch, ListOffsets, MQTT $stream replay) or uses a
	// consumer group (join, commit, fetch offsets, describe).
	OpRead
	// OpWrite produces into a stream over Kafka.
	OpWrite
	// OpAdmin creates, alters and deletes streams, and deletes groups.
	OpAdmin
)

var opNames = []struct {
	op   Op
	name string
}{{OpPublish, "publish"}, {OpSubscribe, "subscribe"}, {OpRead, "read"}, {OpWrite, "write"}, {OpAdmin, "admin"}}

// String lists the operations by name, comma-separated.
func (o Op) String() string {
	var names []string
	for _, n := range opNames {
		if o&n.op != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// Names lists the operations by name.
func (o Op) Names() []string {
	if o == 0 {
		return []string{}
	}
	return strings.Split(o.String(), ",")
}

// ParseOp reads one operation name.
func ParseOp(s string) (Op, error) {
	for _, n := range opNames {
		if n.name == s {
			return n.op, nil
		}
	}
	return 0, fmt.Errorf("unknown operation %q (known: publish, subscribe, read, write, admin)", s)
}

// Resource is what a rule is about.
type Resource uint8

// The resource kinds of a rule.
const (
	// ResTopic rules name an MQTT topic filter; ops publish and subscribe.
	ResTopic Resource = iota + 1
	// ResStream rules name a stream (or a prefix ending in *, or * for all); ops read,
	// write and admin.
	ResStream
	// ResGroup rules name a consumer-group id prefix; ops read and admin.
	ResGroup
)

func (r Resource) String() string {
	switch r {
	case ResTopic:
		return "topic"
	case ResStream:
		return "stream"
	case ResGroup:
		return "group"
	}
	return "unknown"
}

// allowedOps are the operations that make sense on each resource kind.
var allowedOps = map[Resource]Op{
	ResTopic:  OpPublish | OpSubscribe,
	ResStream: OpRead | OpWrite | OpAdmin,
	ResGroup:  OpRead | OpAdmin,
}

// Rule grants operations on one resource pattern.
type Rule struct {
	Resource Resource `json:"resource"`
	// Name is the topic filter, the stream name or the group id (or prefix).
	Name string `json:"name"`
	// Prefix makes Name match every stream or group starting with it (topic filters
	// have their own wildcards).
	Prefix bool `json:"prefix,omitempty"`
	Ops    Op   `json:"ops"`
}

// Validate checks a rule's pattern and operations.
func (r Rule) Validate() error {
	allowed, ok := allowedOps[r.Resource]
	if !ok {
		return fmt.Errorf("unknown resource kind %d", r.Resource)
	}
	if r.Ops == 0 {
		return fmt.Errorf("%s %q: no operation allowed", r.Resource, r.Name)
	}
	if extra := r.Ops &^ allowed; extra != 0 {
		return fmt.Errorf("%s %q: %s does not apply to a %s (allowed: %s)", r.Resource, r.Name, extra, r.Resource, allowed)
	}
	switch r.Resource {
	case ResTopic:
		if r.Prefix {
			return fmt.Errorf("topic %q: topic filters use + and #, not prefixes", r.Name)
		}
		return validFilter(r.Name)
	case ResStream:
		if r.Name == "" && !r.Prefix {
			return fmt.Errorf("stream: empty name")
		}
	}
	return nil
}

// StreamRule builds a stream rule from the config form: "*" for every stream, "name*"
// for a prefix, else one stream.
func StreamRule(pattern string, ops Op) Rule {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return Rule{Resource: ResStream, Name: p, Prefix: true, Ops: ops}
	}
	return Rule{Resource: ResStream, Name: pattern, Ops: ops}
}

// Pattern is the rule's name in the config form (a prefix ends in *).
func (r Rule) Pattern() string {
	if r.Prefix && r.Resource == ResStream {
		return r.Name + "*"
	}
	return r.Name
}

// validFilter checks an MQTT topic filter: # only last, + and # alone in their level.
func validFilter(f string) error {
	if f == "" {
		return fmt.Errorf("topic filter is empty")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return fmt.Errorf("topic filter %q: a wildcard must fill its level", f)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		}
	}
	return nil
}

// acl is one principal's rules compiled for fast checks: topic filters in a trie per
// operation, streams and groups by exact name and by prefix.
type acl struct {
	publish, subscribe *filterNode
	streams            map[string]Op
	streamPrefixes     []prefixOps
	groups             map[string]Op
	groupPrefixes      []prefixOps
}

type prefixOps struct {
	prefix string
	ops    Op
}

func compile(rules []Rule) *acl {
	a := &acl{publish: &filterNode{}, subscribe: &filterNode{}, streams: map[string]Op{}, groups: map[string]Op{}}
	for _, r := range rules {
		switch r.Resource {
		case ResTopic:
			if r.Ops&OpPublish != 0 {
				a.publish.insert(r.Name)
			}
			if r.Ops&OpSubscribe != 0 {
				a.subscribe.insert(r.Name)
			}
		case ResStream:
			if r.Prefix {
				a.streamPrefixes = append(a.streamPrefixes, prefixOps{r.Name, r.Ops})
			} else {
				a.streams[r.Name] |= r.Ops
			}
		case ResGroup:
			if r.Prefix {
				a.groupPrefixes = append(a.groupPrefixes, prefixOps{r.Name, r.Ops})
			} else {
				a.groups[r.Name] |= r.Ops
			}
		}
	}
	// Longest prefixes first is not needed for a union of grants, but sorting keeps
	// the order stable for listing.
	sort.Slice(a.streamPrefixes, func(i, j int) bool { return a.streamPrefixes[i].prefix < a.streamPrefixes[j].prefix })
	sort.Slice(a.groupPrefixes, func(i, j int) bool { return a.groupPrefixes[i].prefix < a.groupPrefixes[j].prefix })
	return a
}

func lookup(name string, exact map[string]Op, prefixes []prefixOps, op Op) bool {
	if exact[name]&op == op {
		return true
	}
	var got Op
	for _, p := range prefixes {
		if strings.HasPrefix(name, p.prefix) {
			got |= p.ops
		}
	}
	got |= exact[name]
	return got&op == op
}

func (a *acl) stream(name string, op Op) bool {
	return lookup(name, a.streams, a.streamPrefixes, op)
}

func (a *acl) group(name string, op Op) bool {
	return lookup(name, a.groups, a.groupPrefixes, op)
}

// filterNode is a trie of granted topic filters, one level per node.
type filterNode struct {
	children map[string]*filterNode
	// hash and plus are children["#"] and children["+"], kept apart so a check does
	// not hash a wildcard at every level.
	hash, plus *filterNode
	end        bool // a granted filter ends here
}

func (n *filterNode) insert(filter string) {
	for _, l := range strings.Split(filter, "/") {
		if n.children == nil {
			n.children = map[string]*filterNode{}
		}
		c := n.children[l]
		if c == nil {
			c = &filterNode{}
			n.children[l] = c
			switch l {
			case "#":
				n.hash = c
			case "+":
				n.plus = c
			}
		}
		n = c
	}
	n.end = true
}

// covers tells whether some granted filter matches every topic the filter (or topic
// name) f matches. A granted filter starting with a wildcard does not reach topics
// starting with $ (MQTT 4.7.2), so "#" never grants $SYS or $stream. It runs on every
// publish and delivery, so it walks f in place instead of splitting it.
func (n *filterNode) covers(f string) bool {
	return n.walk(f, false, strings.HasPrefix(f, "$"))
}

// walk matches the levels of rest against the trie below n; done means no level is
// left (rest "" with done false is one empty level). dollar is set for the first level
// of a $ topic, which wildcards do not match.
func (n *filterNode) walk(rest string, done, dollar bool) bool {
	if n.children == nil {
		return n.end && done
	}
	if h := n.hash; h != nil && h.end && !dollar {
		return true // # covers this level and everything below, even the parent itself
	}
	if done {
		return n.end
	}
	l, next, last := rest, "", true
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		l, next, last = rest[:i], rest[i+1:], false
	}
	switch l {
	case "#":
		return false // only a granted # covers a requested #
	case "+":
		return n.plus != nil && !dollar && n.plus.walk(next, last, false)
	}
	if c := n.children[l]; c != nil && c.walk(next, last, false) {
		return true
	}
	return n.plus != nil && !dollar && n.plus.walk(next, last, false)
}
