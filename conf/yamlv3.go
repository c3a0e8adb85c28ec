package conf

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yaml.v3 (go.yaml.in/yaml/v3 v3.0.6) reports decoding problems as text only: a parse
// error "yaml: line N: ...", and a *yaml.TypeError whose entries read
//
//	line N: field K not found in type T          (KnownFields)
//	line N: mapping key "K" already defined at line M
//	line N: cannot unmarshal !!tag `value` into T
//
// This file is the one place that reads them (TestYAMLv3Messages pins the forms): it
// takes the line and the key or value, finds that node in the document to name its
// key path, and words the reason from the Go type expected there.
//
// Two more v3.0.6 behaviours the package relies on: an error a type's UnmarshalYAML
// returns comes back from Decode unchanged (so *ValueError keeps its place), and a type
// using the older UnmarshalYAML(func(any) error) form decodes through the caller's
// decoder, KnownFields included (mapping.Definition; TestStrictInsideUnmarshaler).
var (
	lineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (.+) not found in type `)
	dupRe     = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	typeRe    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into ")
)

// syntaxError places a YAML parse error on its line.
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Err: errors.New(m[2])}
	}
	return &Error{File: file, Err: errors.New(msg)}
}

// locate turns what strict decoding into a value of type t returned into an *Error
// naming the key path, the line and the reason.
func locate(file string, root *yaml.Node, t reflect.Type, err error) error {
	var ve *ValueError
	if errors.As(err, &ve) {
		p, _ := find(root, func(n *yaml.Node, isKey bool, _ path) bool {
			return !isKey && n.Line == ve.Line && n.Column == ve.Column
		})
		return errorAt(file, root, p, ve.Line, ve.Err)
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return syntaxError(file, err)
	}
	m := lineRe.FindStringSubmatch(te.Errors[0])
	if m == nil {
		return &Error{File: file, Err: errors.New(te.Errors[0])}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	onLine := func(match func(n *yaml.Node, isKey bool) bool) (path, bool) {
		return find(root, func(n *yaml.Node, isKey bool, _ path) bool { return n.Line == line && match(n, isKey) })
	}
	if u := unknownRe.FindStringSubmatch(msg); u != nil {
		p, _ := onLine(func(n *yaml.Node, isKey bool) bool { return isKey && n.Value == u[1] })
		known := knownKeys(typeAt(t, p[:max(len(p)-1, 0)]))
		slices.Sort(known)
		return errorAt(file, root, p, line, fmt.Errorf("unknown field (known: %s)", strings.Join(known, ", ")))
	}
	if d := dupRe.FindStringSubmatch(msg); d != nil {
		var seen bool
		p, _ := onLine(func(n *yaml.Node, isKey bool) bool {
			if !isKey || n.Value != d[1] {
				return false
			}
			// The first key at this line may be the first definition (both on one line).
			if d[2] == m[1] && !seen {
				seen = true
				return false
			}
			return true
		})
		return errorAt(file, root, p, line, fmt.Errorf("duplicate key (first at line %s)", d[2]))
	}
	if ty := typeRe.FindStringSubmatch(msg); ty != nil {
		value := strings.TrimSuffix(ty[2], "...")
		p, found := onLine(func(n *yaml.Node, isKey bool) bool {
			if isKey || n.ShortTag() != ty[1] {
				return false
			}
			return n.Kind != yaml.ScalarNode || strings.HasPrefix(n.Value, value)
		})
		if !found {
			return errorAt(file, root, nil, line, errors.New(msg)) // not found: yaml's own words
		}
		return errorAt(file, root, p, line, fmt.Errorf("expected %s, got %s", want(typeAt(t, p)), describeAt(root, p)))
	}
	return errorAt(file, root, nil, line, errors.New(msg))
}

// describeAt describes the value node at p.
func describeAt(root *yaml.Node, p path) string {
	n := deref(root)
	for _, s := range p {
		_, v := child(n, s)
		if v == nil {
			return "something else"
		}
		n = v
	}
	return Describe(n)
}
