package auth

import (
	"errors"
	"fmt"
	"strings"
)

// RuleSpec is a rule as operators write it (config file, HTTP API, CLI): exactly one of
// Topic (an MQTT topic filter), Stream (a name, "prefix*" or "*") or Group (a group-id
// prefix), and the operations allowed.
type RuleSpec struct {
	Topic  *string  `json:"topic,omitempty"`
	Stream *string  `json:"stream,omitempty"`
	Group  *string  `json:"group,omitempty"`
	Allow  []string `json:"allow"`
}

// Rule validates the spec and returns the rule.
func (s RuleSpec) Rule() (Rule, error) {
	named := 0
	for _, p := range []*string{s.Topic, s.Stream, s.Group} {
		if p != nil {
			named++
		}
	}
	if named != 1 {
		return Rule{}, errors.New("a rule names exactly one of topic, stream or group")
	}
	var ops Op
	for _, a := range s.Allow {
		op, err := ParseOp(a)
		if err != nil {
			return Rule{}, err
		}
		ops |= op
	}
	var r Rule
	switch {
	case s.Topic != nil:
		r = Rule{Resource: ResTopic, Name: *s.Topic, Ops: ops}
	case s.Stream != nil:
		if *s.Stream == "" {
			return Rule{}, errors.New("stream: empty name")
		}
		r = StreamRule(*s.Stream, ops)
	default:
		r = Rule{Resource: ResGroup, Name: *s.Group, Prefix: true, Ops: ops}
	}
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// Spec is the operator's form of a rule.
func (r Rule) Spec() RuleSpec {
	p := r.Pattern()
	s := RuleSpec{Allow: r.Ops.Names()}
	switch r.Resource {
	case ResTopic:
		s.Topic = &p
	case ResStream:
		s.Stream = &p
	default:
		s.Group = &p
	}
	return s
}

// ParseRuleFlag reads the command-line form KIND:PATTERN:OPS, such as
// "topic:plant/#:publish,subscribe", "stream:telemetry:read" or "group:etl-:read".
func ParseRuleFlag(v string) (Rule, error) {
	kind, rest, ok := strings.Cut(v, ":")
	i := strings.LastIndex(rest, ":")
	if !ok || i < 0 {
		return Rule{}, fmt.Errorf("acl %q: want KIND:PATTERN:OPS, e.g. topic:plant/#:publish,subscribe", v)
	}
	pattern, ops := rest[:i], rest[i+1:]
	s := RuleSpec{Allow: strings.Split(ops, ",")}
	switch kind {
	case "topic":
		s.Topic = &pattern
	case "stream":
		s.Stream = &pattern
	case "group":
		s.Group = &pattern
	default:
		return Rule{}, fmt.Errorf("acl %q: kind must be topic, stream or group", v)
	}
	r, err := s.Rule()
	if err != nil {
		return Rule{}, fmt.Errorf("acl %q: %w", v, err)
	}
	return r, nil
}
