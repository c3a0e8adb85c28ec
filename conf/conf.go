// Package conf decodes configuration strictly into typed structs: YAML through yaml.v3
// with KnownFields, JSON through encoding/json, and errors that name where the bad value
// is ("config.yaml:12: streams[2].retention.max_bytes: must not be negative").
//
// A struct is described once, by its yaml and json tags; values with their own syntax
// (sizes, durations, key expressions) are types with UnmarshalYAML and UnmarshalJSON
// that report their problem through Invalid; checks of a value as a whole are a
// Validate method, called after decoding on every value that has one, children first.
package conf

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is a decoded value that checks itself as a whole (cross-field rules,
// defaults). Its error may be a *FieldError naming the field below the value.
type Validator interface {
	Validate() error
}

// FieldError is a problem with the field at Path below the value that reported it,
// e.g. "retention.max_bytes" or "users[1].password_hash".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// Field says err is about the field key (a key or a path such as "retention.max_age";
// "[2]" for a list item); a FieldError inside err is nested below key.
func Field(key string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Path: joinPath(key, fe.Path), Err: fe.Err}
	}
	return &FieldError{Path: key, Err: err}
}

// Fieldf is Field with a formatted reason.
func Fieldf(key, format string, args ...any) error {
	return &FieldError{Path: key, Err: fmt.Errorf(format, args...)}
}

// PathOf splits an error into the field path it names (empty when none) and the reason.
func PathOf(err error) (string, error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Path, fe.Err
	}
	return "", err
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

// ValueError is a scalar a type's UnmarshalYAML refused, with its place in the source.
type ValueError struct {
	Line, Column int
	Err          error
}

func (e *ValueError) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *ValueError) Unwrap() error { return e.Err }

// Invalid is what an UnmarshalYAML method returns for a value it refuses: the reason
// with the node's place, so Decode can name the key path and line.
func Invalid(n *yaml.Node, err error) error {
	return &ValueError{Line: n.Line, Column: n.Column, Err: err}
}

// Error is a refused configuration: the file (empty for "config"), the line (0 when
// not known), the key path and the reason, shown on one line.
type Error struct {
	File string
	Line int
	Path string
	// Item names the list item the path is in when it has a name (a stream's, a
	// user's), so the message says which one without counting.
	Item string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("config")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	// A reason from a library may span lines (yaml's do); the contract is one line.
	b.WriteString(strings.Join(strings.Fields(e.Err.Error()), " "))
	if e.Item != "" {
		fmt.Fprintf(&b, " (in %q)", e.Item)
	}
	return b.String()
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

// Describe words a YAML node for a message: its value quoted, or its kind.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil {
			return Describe(n.Alias)
		}
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

// Scalar returns the node's text, or an Invalid error naming what was wanted when the
// node is a mapping, a list or null.
func Scalar(n *yaml.Node, want string) (string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", Invalid(n, fmt.Errorf("expected %s, got %s", want, Describe(n)))
	}
	return n.Value, nil
}
