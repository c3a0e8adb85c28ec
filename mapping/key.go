package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

type keyKind uint8

const (
	keyLiteral keyKind = iota
	keyTopic
	keyClientID
	keyUsername
	keyTopicLevel
	keyUserProperty
	keyJSON
	keyConcat
	keyNone
)

// KeyExpr is a compiled key expression; the zero value yields nothing for every message.
type KeyExpr struct {
	src   string
	kind  keyKind
	str   string    // literal text or user property name
	level int       // topic-level:N, 1-based
	path  []string  // json:PATH segments
	parts []KeyExpr // concat arguments
}

// DefaultKey is the key expression of a stream that names none.
const DefaultKey = "clientid"

// DefaultKeyFallback is the key used when a stream's key expression yields nothing.
const DefaultKeyFallback = "clientid"

// emqxUserProperty prefixes EMQX's variform path to an MQTT 5 user property.
const emqxUserProperty = "message.headers.properties.User-Property."

// ParseKey compiles a key expression: topic, clientid, username, topic-level:N,
// user-property:NAME, json:PATH, none, or the EMQX forms message.from, message.topic,
// message.headers.username, message.headers.properties.User-Property.NAME and
// concat(a, 'lit', b, ...).
func ParseKey(expr string) (KeyExpr, error) {
	k, err := compileKey(expr)
	if err != nil {
		return KeyExpr{}, fmt.Errorf("key %w", err)
	}
	return k, nil
}

// compileKey is ParseKey with the expression, not the field, leading the error.
func compileKey(expr string) (KeyExpr, error) {
	k, err := parseKey(strings.TrimSpace(expr), true)
	if err != nil {
		return KeyExpr{}, fmt.Errorf("%q: %w", expr, err)
	}
	return k, nil
}

func parseKey(s string, top bool) (KeyExpr, error) {
	k := KeyExpr{src: s}
	switch s {
	case "":
		return k, errors.New("empty key expression")
	case "topic", "message.topic":
		k.kind = keyTopic
		return k, nil
	case "clientid", "client_id", "message.from":
		k.kind = keyClientID
		return k, nil
	case "username", "message.headers.username":
		k.kind = keyUsername
		return k, nil
	case "none":
		if !top {
			return k, errors.New("none cannot be part of concat")
		}
		k.kind = keyNone
		return k, nil
	}
	switch {
	case strings.HasPrefix(s, "topic-level:"):
		n, err := strconv.Atoi(s[len("topic-level:"):])
		if err != nil || n < 1 {
			return k, errors.New("topic-level needs a level number from 1")
		}
		k.kind, k.level = keyTopicLevel, n
	case strings.HasPrefix(s, "user-property:"), strings.HasPrefix(s, emqxUserProperty):
		_, name, _ := strings.Cut(s, ":")
		if strings.HasPrefix(s, emqxUserProperty) {
			name = s[len(emqxUserProperty):]
		}
		if name == "" {
			return k, errors.New("user property name is empty")
		}
		k.kind, k.str = keyUserProperty, name
	case strings.HasPrefix(s, "json:"):
		path := s[len("json:"):]
		segs := strings.Split(path, ".")
		for _, seg := range segs {
			if seg == "" {
				return k, fmt.Errorf("json path %q has an empty segment", path)
			}
		}
		k.kind, k.path = keyJSON, segs
	case strings.HasPrefix(s, "concat(") && strings.HasSuffix(s, ")"):
		args, err := splitArgs(s[len("concat(") : len(s)-1])
		if err != nil {
			return k, err
		}
		if len(args) == 0 {
			return k, errors.New("concat needs arguments")
		}
		for _, a := range args {
			var p KeyExpr
			if lit, ok, err := unquote(a); err != nil {
				return k, err
			} else if ok {
				p = KeyExpr{src: a, kind: keyLiteral, str: lit}
			} else if p, err = parseKey(a, false); err != nil {
				return k, err
			}
			k.parts = append(k.parts, p)
		}
		k.kind = keyConcat
	default:
		return k, errors.New("unknown key expression (want topic, clientid, username, topic-level:N, user-property:NAME, json:PATH, none, message.from, message.topic, concat(...))")
	}
	return k, nil
}

// splitArgs splits concat's argument list at top-level commas, keeping quoted strings
// and nested parentheses whole.
func splitArgs(s string) ([]string, error) {
	var args []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, errors.New("unbalanced parentheses in concat")
			}
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated string in concat")
	}
	if depth != 0 {
		return nil, errors.New("unbalanced parentheses in concat")
	}
	if last := strings.TrimSpace(s[start:]); last != "" || len(args) > 0 {
		args = append(args, last)
	}
	for _, a := range args {
		if a == "" {
			return nil, errors.New("empty argument in concat")
		}
	}
	return args, nil
}

// unquote returns the text of a quoted literal; ok is false when a is not quoted.
func unquote(a string) (string, bool, error) {
	if len(a) == 0 || (a[0] != '\'' && a[0] != '"') {
		return "", false, nil
	}
	q := a[0]
	if len(a) < 2 || a[len(a)-1] != q {
		return "", false, fmt.Errorf("bad string literal %s", a)
	}
	var b strings.Builder
	for i := 1; i < len(a)-1; i++ {
		c := a[i]
		if c == '\\' && i+1 < len(a)-1 {
			i++
			c = a[i]
		} else if c == q {
			return "", false, fmt.Errorf("bad string literal %s", a)
		}
		b.WriteByte(c)
	}
	return b.String(), true, nil
}

// String returns the expression as written.
func (k KeyExpr) String() string { return k.src }

// None reports whether the expression is `none`: no key, round robin per connection.
func (k KeyExpr) None() bool { return k.kind == keyNone }

// Eval computes the key of m; ok is false when the expression yields nothing (an empty
// value, a missing property or level, a non-JSON payload, or `none`).
func (k KeyExpr) Eval(m *Message) (key []byte, ok bool) {
	if k.kind == keyConcat {
		var b []byte
		for _, p := range k.parts {
			v, ok := p.value(m)
			// One missing part would collapse distinct keys into one; fall back instead.
			if !ok && p.kind != keyLiteral {
				return nil, false
			}
			b = append(b, v...)
		}
		return b, len(b) > 0
	}
	v, ok := k.value(m)
	if !ok || v == "" {
		return nil, false
	}
	return []byte(v), true
}

func (k KeyExpr) value(m *Message) (string, bool) {
	switch k.kind {
	case keyLiteral:
		return k.str, true
	case keyTopic:
		return m.Topic, m.Topic != ""
	case keyClientID:
		return m.ClientID, m.ClientID != ""
	case keyUsername:
		return m.Username, m.Username != ""
	case keyTopicLevel:
		start, end, ok := levelSpan(m.Topic, k.level)
		return m.Topic[start:end], ok && start != end
	case keyUserProperty:
		for _, p := range m.UserProperties {
			if p.Key == k.str {
				return p.Value, p.Value != ""
			}
		}
	case keyJSON:
		return jsonPath(m.Payload, k.path)
	case keyConcat:
		b, ok := k.Eval(m)
		return string(b), ok
	}
	return "", false
}

// levelSpan is where level n (from 1) of topic is; ok is false when it has fewer.
func levelSpan(topic string, n int) (start, end int, ok bool) {
	for i := 1; ; i++ {
		j := strings.IndexByte(topic[start:], '/')
		if i == n {
			if j < 0 {
				return start, len(topic), true
			}
			return start, start + j, true
		}
		if j < 0 {
			return 0, 0, false
		}
		start += j + 1
	}
}

// jsonPath finds a dotted path in a JSON document: object fields by name, array elements
// by index. Strings yield their text, other values their compact JSON; null yields nothing.
func jsonPath(doc []byte, path []string) (string, bool) {
	raw := json.RawMessage(doc)
	for _, seg := range path {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			return "", false
		}
		switch raw[0] {
		case '{':
			var obj map[string]json.RawMessage
			if json.Unmarshal(raw, &obj) != nil {
				return "", false
			}
			v, ok := obj[seg]
			if !ok {
				return "", false
			}
			raw = v
		case '[':
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 {
				return "", false
			}
			var arr []json.RawMessage
			if json.Unmarshal(raw, &arr) != nil || i >= len(arr) {
				return "", false
			}
			raw = arr[i]
		default:
			return "", false
		}
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, s != ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "", false
	}
	return b.String(), true
}

// Murmur2 is the Kafka Java client's murmur2 hash (seed 0x9747b28c), which its default
// partitioner uses, so MQTT and Kafka producers place the same key on the same shard.
func Murmur2(b []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Shard is the Java client's default partition for key: (murmur2(key) & 0x7fffffff) %
// shards. It returns 0 when shards is not positive.
func Shard(key []byte, shards int32) int32 {
	if shards <= 0 {
		return 0
	}
	return (Murmur2(key) & 0x7fffffff) % shards
}
