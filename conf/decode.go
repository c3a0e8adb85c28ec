package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decode reads one YAML document from data into v, a pointer to a struct holding the
// defaults: keys the document gives replace them, a key the struct does not know, a key
// given twice or a value of the wrong type is an error. Then every Validator in v is
// checked, children first. An empty document keeps the defaults (still validated).
// file names the source in messages. Errors are *Error.
func Decode(file string, data []byte, v any) error {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return validate(file, nil, v)
		}
		return syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return &Error{File: file, Line: extra.Line, Err: errors.New("more than one YAML document")}
	}
	// The node tree above only places errors; the decoding itself is yaml.v3's, strict.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(v); err != nil {
		return locate(file, &root, reflect.TypeOf(v), err)
	}
	// Two things yaml.v3 lets through without a word: 1.5 into an integer field (it
	// truncates) and an empty value for a number, string or bool (it keeps the default).
	t := reflect.TypeOf(v)
	if p, bad := find(&root, func(n *yaml.Node, isKey bool, p path) bool {
		if isKey || n.Kind != yaml.ScalarNode {
			return false
		}
		switch n.ShortTag() {
		case "!!float":
			return isInt(typeAt(t, p))
		case "!!null":
			return len(p) > 0 && isLeaf(typeAt(t, p))
		}
		return false
	}); bad {
		return errorAt(file, &root, p, 0, fmt.Errorf("expected %s, got %s", want(typeAt(t, p)), describeAt(&root, p)))
	}
	return validate(file, &root, v)
}

// segment is one step of a key path: a mapping key, or a list index when key is "".
type segment struct {
	key   string
	index int
}

type path []segment

func (p path) String() string {
	var b strings.Builder
	for _, s := range p {
		if s.key == "" {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

func (p path) with(s segment) path {
	return append(p[:len(p):len(p)], s)
}

// parsePath reads "streams[2].retention.max_bytes" back into segments.
func parsePath(s string) path {
	var p path
	for _, part := range strings.Split(s, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			p = append(p, segment{key: key})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				return p
			}
			p = append(p, segment{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return p
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return deref(n.Content[0])
	}
	return n
}

// child is the node at key (following "<<" merges as yaml.v3 does) or index.
func child(n *yaml.Node, s segment) (key, value *yaml.Node) {
	n = deref(n)
	if n == nil {
		return nil, nil
	}
	if s.key == "" {
		if n.Kind == yaml.SequenceNode && s.index < len(n.Content) {
			return nil, n.Content[s.index]
		}
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			merged = append(merged, v)
			continue
		}
		if k.Value == s.key {
			return k, v
		}
	}
	for _, m := range merged {
		m = deref(m)
		srcs := []*yaml.Node{m}
		if m != nil && m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			if k, v := child(src, s); v != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

// at follows p from root and returns the line of the deepest node found (the key's
// line for a mapping entry) and the name of the innermost named list item on the way.
func at(root *yaml.Node, p path) (line int, item string) {
	n := deref(root)
	if n != nil {
		line = n.Line
	}
	for _, s := range p {
		k, v := child(n, s)
		if v == nil {
			break
		}
		line = v.Line
		if k != nil {
			line = k.Line
		}
		if name := itemName(v); s.key == "" && name != "" {
			item = name
		}
		n = v
	}
	return line, item
}

// itemName is a list item's name or username, the fields that identify one.
func itemName(n *yaml.Node) string {
	for _, key := range []string{"name", "username"} {
		if _, v := child(n, segment{key: key}); v != nil && deref(v).Kind == yaml.ScalarNode {
			return deref(v).Value
		}
	}
	return ""
}

// find walks the tree in document order and returns the path to the first node for
// which match is true (is the key of a mapping entry; the path then ends at that key).
func find(root *yaml.Node, match func(n *yaml.Node, isKey bool, p path) bool) (path, bool) {
	var walk func(n *yaml.Node, p path, depth int) (path, bool)
	walk = func(n *yaml.Node, p path, depth int) (path, bool) {
		if n == nil || depth > 100 {
			return nil, false
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if q, ok := walk(c, p, depth+1); ok {
					return q, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Tag == "!!merge" {
					if q, ok := walk(v, p, depth+1); ok {
						return q, true
					}
					continue
				}
				q := p.with(segment{key: k.Value})
				if match(k, true, q) {
					return q, true
				}
				if r, ok := walk(v, q, depth+1); ok {
					return r, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if r, ok := walk(c, p.with(segment{index: i}), depth+1); ok {
					return r, true
				}
			}
		}
		if match(n, false, p) {
			return p, true
		}
		return nil, false
	}
	return walk(root, nil, 0)
}

// errorAt builds the Error for p, with its line and named item from the tree.
func errorAt(file string, root *yaml.Node, p path, line int, err error) *Error {
	l, item := at(root, p)
	if line == 0 {
		line = l
	}
	if strings.Contains(err.Error(), strconv.Quote(item)) {
		item = "" // the reason names it already
	}
	return &Error{File: file, Line: line, Path: p.String(), Item: item, Err: err}
}

// validate calls every Validator in v, children first, and names the first failure's
// path (from the struct's yaml tags) and line (from root; nil when there is no source).
func validate(file string, root *yaml.Node, v any) error {
	return walkValidators(reflect.ValueOf(v), nil, func(p path, err error) error {
		sub, reason := PathOf(err)
		full := p
		if sub != "" {
			full = append(p[:len(p):len(p)], parsePath(sub)...)
		}
		if root == nil {
			return &Error{File: file, Path: full.String(), Err: reason}
		}
		return errorAt(file, root, full, 0, reason)
	})
}

var validatorType = reflect.TypeFor[Validator]()

func walkValidators(v reflect.Value, p path, fail func(path, error) error) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return walkValidators(v.Elem(), p, fail)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key, ok := yamlKey(f)
			if !ok {
				continue
			}
			if err := walkValidators(v.Field(i), p.with(segment{key: key}), fail); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := walkValidators(v.Index(i), p.with(segment{index: i}), fail); err != nil {
				return err
			}
		}
	}
	if v.CanAddr() && v.Addr().Type().Implements(validatorType) {
		if err := v.Addr().Interface().(Validator).Validate(); err != nil {
			return fail(p, err)
		}
	} else if v.Kind() != reflect.Pointer && v.Type().Implements(validatorType) {
		if err := v.Interface().(Validator).Validate(); err != nil {
			return fail(p, err)
		}
	}
	return nil
}

// yamlKey is the key a struct field is decoded from, as yaml.v3 names it; ok is false
// for fields yaml.v3 skips. Only tagged fields are walked, so a type with its own
// UnmarshalYAML keeps its inside to itself.
func yamlKey(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	tag, ok := f.Tag.Lookup("yaml")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, true
}

func isInt(t reflect.Type) bool {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return !reflect.PointerTo(t).Implements(yamlUnmarshaler)
	}
	return false
}

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// isLeaf tells whether t is a plain value (not a pointer, list, mapping or struct), for
// which an empty YAML value would silently mean the default.
func isLeaf(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// Shaped is a type decoded through another struct by its own UnmarshalYAML (to accept
// aliases, say); Shape returns a value of that struct, so messages can list its keys.
type Shaped interface {
	Shape() any
}

var shapedType = reflect.TypeFor[Shaped]()

// shape is the struct type whose yaml tags describe t's keys.
func shape(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.Implements(shapedType) {
		return reflect.TypeOf(reflect.Zero(t).Interface().(Shaped).Shape())
	}
	return t
}

// typeAt is the Go type the value at p decodes into (nil when p leaves the tagged
// structs), so messages can list the known keys or say what was wanted.
func typeAt(t reflect.Type, p path) reflect.Type {
	for _, s := range p {
		if t = shape(t); t == nil {
			return nil
		}
		switch {
		case s.key == "" && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
			t = t.Elem()
		case s.key != "" && t.Kind() == reflect.Struct:
			f, ok := fieldByKey(t, s.key)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	return t
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if k, ok := yamlKey(t.Field(i)); ok && k == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// knownKeys lists the keys a struct type accepts, in declaration order.
func knownKeys(t reflect.Type) []string {
	t = shape(t)
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k, ok := yamlKey(t.Field(i)); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// want words what a Go type accepts, for "expected ..., got ..." messages.
func want(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another value"
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		return "a value" // its own syntax; it words its own errors
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return "another value"
}
