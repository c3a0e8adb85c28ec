package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqstreams/mqstreams/log"
)

// Definition defaults and limits (docs/mapping.md).
const (
	DefaultShards = 4
	MaxShards     = 10000
	DefaultMaxAge = 7 * day
	maxNameLen    = 249
)

// NoMaxAge as Retention.MaxAge keeps records regardless of age (Kafka retention.ms=-1).
// A zero MaxAge means "not given" and becomes DefaultMaxAge; the log sees NoMaxAge as 0.
const NoMaxAge time.Duration = -1

// Definition is one stream's definition as written in the config file (YAML) or sent
// to the admin API (JSON), EMQX field names included.
type Definition struct {
	Name    string
	Filters []string
	Shards  int32
	Key     string
	// KeyFallback is the key expression used when Key yields nothing (a JSON path missing
	// from the payload, an absent user property...); `none` gives a null key spread
	// round robin. Empty means DefaultKeyFallback, the client id.
	KeyFallback string
	Retention   log.Retention
	LastValue   bool
	// Compression is how stored batches are compressed once merged: none (also ""),
	// lz4 or zstd.
	Compression string
	// Durability overrides the server's durability for this stream: fsync, write, or ""
	// (the server's).
	Durability log.Durability
	// PublishTopic is the template of the MQTT topic a record produced over Kafka is
	// delivered to when it has no mqtt.topic header (publish_topic.go); empty means
	// DefaultPublishTopic.
	PublishTopic string
	// DeliverProduced tells whether records produced over Kafka reach live MQTT
	// subscribers; nil means true.
	DeliverProduced *bool
	// ReplicationFactor is how many nodes of a cluster keep each shard (0: the
	// cluster's default, 3 capped at the node count; a single node keeps one copy).
	ReplicationFactor int32
}

// Delivers tells whether records produced over Kafka into the stream are published to
// MQTT subscribers (deliver_produced, default true).
func (d *Definition) Delivers() bool { return d.DeliverProduced == nil || *d.DeliverProduced }

// TopicTemplate is the stream's parsed publish_topic (the default when unset).
func (d *Definition) TopicTemplate() (*TopicTemplate, error) {
	if d.PublishTopic == "" {
		return ParseTopicTemplate(DefaultPublishTopic)
	}
	return ParseTopicTemplate(d.PublishTopic)
}

// UnmarshalYAML reads a definition strictly: an unknown or mistyped field is an error
// naming it. Defaults are filled by Validate.
func (d *Definition) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if node.Kind != yaml.MappingNode {
		return &DefinitionError{Line: node.Line, Err: errors.New("want a mapping of fields")}
	}
	fields, err := yamlFields(node)
	if err != nil {
		return err
	}
	return d.fromFields(fields)
}

// yamlFields lists a mapping's fields; YAML merge keys ("<<: *defaults") contribute the
// fields the mapping does not set itself.
func yamlFields(node *yaml.Node) ([]rawField, error) {
	var fields, merged []rawField
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &DefinitionError{Line: k.Line, Err: errors.New("field names must be strings")}
		}
		if k.Tag == "!!merge" {
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, src := range srcs {
				if src.Kind == yaml.AliasNode && src.Alias != nil {
					src = src.Alias
				}
				if src.Kind != yaml.MappingNode {
					return nil, &DefinitionError{Line: k.Line, Err: errors.New("'<<' must merge a mapping")}
				}
				more, err := yamlFields(src)
				if err != nil {
					return nil, err
				}
				for _, f := range more {
					if !slices.ContainsFunc(merged, func(g rawField) bool { return g.name == f.name }) {
						merged = append(merged, f)
					}
				}
			}
			continue
		}
		var val any
		if err := v.Decode(&val); err != nil {
			return nil, &DefinitionError{Line: v.Line, Err: fmt.Errorf("%s: %w", k.Value, err)}
		}
		fields = append(fields, rawField{name: k.Value, value: val, line: k.Line})
	}
	for _, f := range merged {
		if !slices.ContainsFunc(fields, func(g rawField) bool { return g.name == f.name }) {
			fields = append(fields, f)
		}
	}
	return fields, nil
}

// UnmarshalJSON reads a definition strictly, accepting the same fields as YAML plus
// EMQX's names; an alias given together with its field must agree with it.
func (d *Definition) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil {
		return &DefinitionError{Err: err}
	} else if t != json.Delim('{') {
		return &DefinitionError{Err: errors.New("want a JSON object")}
	}
	var fields []rawField
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return &DefinitionError{Err: err}
		}
		name, _ := t.(string)
		var val any
		if err := dec.Decode(&val); err != nil {
			return &DefinitionError{Err: fmt.Errorf("%s: %w", name, err)}
		}
		fields = append(fields, rawField{name: name, value: val})
	}
	if _, err := dec.Token(); err != nil {
		return &DefinitionError{Err: err}
	}
	return d.fromFields(fields)
}

// DefinitionError is a refused stream definition: the line in the YAML source (0 for
// JSON and for checks of the whole definition), the stream's name when known, and the
// reason, which names the field. Callers that report the line and the stream their own
// way (the config file's errors) take the parts instead of parsing the message.
type DefinitionError struct {
	Line   int
	Stream string
	// Named says the stream is quoted even when its name is empty (a missing name).
	Named bool
	Err   error
}

func (e *DefinitionError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString("stream")
	if e.Stream != "" || e.Named {
		fmt.Fprintf(&b, " %q", e.Stream)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the reason.
func (e *DefinitionError) Unwrap() error { return e.Err }

type rawField struct {
	name  string
	value any
	line  int // YAML only
}

// fromFields fills d from decoded fields, reporting the first problem with the stream's
// name and the field's name (and line, from YAML).
func (d *Definition) fromFields(fields []rawField) error {
	*d = Definition{}
	for _, f := range fields {
		if f.name == "name" {
			if s, ok := f.value.(string); ok {
				d.Name = s
			}
		}
	}
	p := fieldParser{d: d, seen: map[string]string{}}
	for _, f := range fields {
		if err := p.field(f.name, f.value); err != nil {
			return &DefinitionError{Line: f.line, Stream: d.Name, Err: err}
		}
	}
	return nil
}

type fieldParser struct {
	d *Definition
	// seen maps a canonical field to the name it was first given under, so an alias
	// given too must agree, and a field given twice is an error.
	seen map[string]string
}

func (p *fieldParser) claim(canonical, as string, same func() bool) error {
	prev, ok := p.seen[canonical]
	if !ok {
		p.seen[canonical] = as
		return nil
	}
	if prev == as {
		return fmt.Errorf("field %q given twice", as)
	}
	if !same() {
		return fmt.Errorf("%q and %q disagree", prev, as)
	}
	return nil
}

func (p *fieldParser) field(name string, v any) error {
	d := p.d
	if v == nil {
		// An explicit null (JSON null, YAML "key:") leaves the default.
		if !knownTopField[name] {
			return fmt.Errorf("unknown field %q", name)
		}
		return nil
	}
	switch name {
	case "name":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "a string", v)
		}
		return p.claim("name", name, func() bool { return s == d.Name })
	case "filter", "filters", "topic_filter":
		fs, err := stringList(name, v)
		if err != nil {
			return err
		}
		if err := p.claim("filters", name, func() bool { return slices.Equal(fs, d.Filters) }); err != nil {
			return err
		}
		d.Filters = fs
	case "shards":
		n, err := integer(name, v)
		if err != nil {
			return err
		}
		if n < 1 || n > MaxShards {
			return fmt.Errorf("shards: %d out of range 1..%d", n, MaxShards)
		}
		d.Shards = int32(n)
		return p.claim("shards", name, nil)
	case "key", "key_expression":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "a string", v)
		}
		if err := p.claim("key", name, func() bool { return s == d.Key }); err != nil {
			return err
		}
		d.Key = s
	case "key_fallback":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "a string", v)
		}
		if err := p.claim("key_fallback", name, func() bool { return s == d.KeyFallback }); err != nil {
			return err
		}
		d.KeyFallback = s
	case "last_value", "is_lastvalue":
		b, ok := v.(bool)
		if !ok {
			return typeErr(name, "true or false", v)
		}
		if err := p.claim("last_value", name, func() bool { return b == d.LastValue }); err != nil {
			return err
		}
		d.LastValue = b
	case "compression":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "none, lz4 or zstd", v)
		}
		switch s {
		case log.CompressionNone, log.CompressionLZ4, log.CompressionZstd:
		default:
			return fmt.Errorf("compression: %q is not one of none, lz4, zstd", s)
		}
		d.Compression = s
		return p.claim(name, name, nil)
	case "publish_topic":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "a string", v)
		}
		if _, err := ParseTopicTemplate(s); err != nil {
			return err
		}
		d.PublishTopic = s
		return p.claim(name, name, nil)
	case "deliver_produced":
		b, ok := v.(bool)
		if !ok {
			return typeErr(name, "true or false", v)
		}
		d.DeliverProduced = &b
		return p.claim(name, name, nil)
	case "replication_factor":
		n, err := integer(name, v)
		if err != nil {
			return err
		}
		if n < 1 || n > MaxReplicationFactor {
			return fmt.Errorf("replication_factor: %d out of range 1..%d", n, MaxReplicationFactor)
		}
		d.ReplicationFactor = int32(n)
		return p.claim(name, name, nil)
	case "durability":
		s, ok := v.(string)
		if !ok {
			return typeErr(name, "fsync or write", v)
		}
		dur, err := log.ParseDurability(s)
		if err != nil || dur == log.DurabilityDefault {
			return fmt.Errorf("durability: %q is not one of fsync, write", s)
		}
		d.Durability = dur
		return p.claim(name, name, nil)
	case "data_retention_period":
		return p.maxAge(name, v)
	case "retention":
		return p.section(name, v, map[string]func(string, any) error{
			"max_age":      p.maxAge,
			"max_bytes":    p.maxBytes,
			"max_messages": p.maxMessages,
		})
	case "limits":
		return p.section(name, v, map[string]func(string, any) error{
			"max_shard_message_count": p.maxMessages,
			"max_shard_message_bytes": p.maxBytes,
		})
	case "read_max_unacked":
		// EMQX's replay window; MQTT flow control (receive maximum) plays that role here,
		// so it is checked and accepted for pasted EMQX definitions, then not used.
		if _, err := integer(name, v); err != nil {
			return err
		}
		return p.claim(name, name, nil)
	default:
		return fmt.Errorf("unknown field %q", name)
	}
	return nil
}

var knownTopField = map[string]bool{
	"name": true, "filter": true, "filters": true, "topic_filter": true, "shards": true,
	"key": true, "key_expression": true, "key_fallback": true, "last_value": true, "is_lastvalue": true,
	"data_retention_period": true, "retention": true, "limits": true, "read_max_unacked": true,
	"compression": true, "publish_topic": true, "deliver_produced": true, "durability": true,
	"replication_factor": true,
}

// MaxReplicationFactor bounds replication_factor (a cluster's shards have at most this
// many replicas).
const MaxReplicationFactor = 7

// section parses a nested object (retention, limits) field by field; a key it does not
// know is an error naming its full path.
func (p *fieldParser) section(name string, v any, fields map[string]func(string, any) error) error {
	m, err := object(name, v)
	if err != nil {
		return err
	}
	if err := p.claim(name, name, nil); err != nil {
		return err
	}
	for _, k := range sortedKeys(m) {
		sub := name + "." + k
		parse, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field %q", sub)
		}
		if err := parse(sub, m[k]); err != nil {
			return err
		}
	}
	return nil
}

func (p *fieldParser) maxAge(name string, v any) error {
	if v == nil {
		return nil
	}
	var age time.Duration
	switch x := v.(type) {
	case string:
		if isInfinity(x) {
			age = NoMaxAge
		} else {
			var err error
			if age, err = ParseDuration(x); err != nil {
				return fmt.Errorf("%s: %w (want e.g. \"72h\", \"7d\", \"infinity\")", name, err)
			}
		}
	default:
		n, err := integer(name, v)
		if err != nil || n != 0 {
			return fmt.Errorf("%s: want a duration such as \"72h\" or \"7d\", not %v", name, v)
		}
	}
	if age == 0 {
		// An explicit zero, like the byte and count caps, means no bound.
		age = NoMaxAge
	}
	if err := p.claim("max_age", name, func() bool { return age == p.d.Retention.MaxAge }); err != nil {
		return err
	}
	p.d.Retention.MaxAge = age
	return nil
}

func (p *fieldParser) maxBytes(name string, v any) error {
	n, ok, err := limit(name, v, func(s string) (int64, error) {
		n, err := ParseBytes(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return n, nil
	})
	if err != nil || !ok {
		return err
	}
	if err := p.claim("max_bytes", name, func() bool { return n == p.d.Retention.MaxBytes }); err != nil {
		return err
	}
	p.d.Retention.MaxBytes = n
	return nil
}

func (p *fieldParser) maxMessages(name string, v any) error {
	n, ok, err := limit(name, v, func(s string) (int64, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: want a number of messages or \"infinity\", not %q", name, s)
		}
		return n, nil
	})
	if err != nil || !ok {
		return err
	}
	if err := p.claim("max_messages", name, func() bool { return n == p.d.Retention.MaxMessages }); err != nil {
		return err
	}
	p.d.Retention.MaxMessages = n
	return nil
}

// limit reads a per-shard cap: an integer, a string parsed by parse, or "infinity"
// (0, no cap); never negative. ok is false when the field is null (left unset).
func limit(name string, v any, parse func(string) (int64, error)) (n int64, ok bool, err error) {
	if v == nil {
		return 0, false, nil
	}
	if s, isString := v.(string); isString {
		if !isInfinity(s) {
			if n, err = parse(s); err != nil {
				return 0, false, err
			}
		}
	} else if n, err = integer(name, v); err != nil {
		return 0, false, err
	}
	if n < 0 {
		return 0, false, fmt.Errorf("%s: must not be negative", name)
	}
	return n, true, nil
}

func isInfinity(s string) bool {
	s = strings.TrimSpace(s)
	return strings.EqualFold(s, "infinity") || strings.EqualFold(s, "unlimited")
}

func typeErr(name, want string, v any) error {
	return fmt.Errorf("%s: want %s, not %s", name, want, describe(v))
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprint(x)
	}
}

func stringList(name string, v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s[%d]: want a string, not %s", name, i, describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, typeErr(name, "a topic filter or a list of them", v)
}

func integer(name string, v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return int64(x), nil
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
	}
	return 0, typeErr(name, "a whole number", v)
}

func object(name string, v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%s: field names must be strings", name)
			}
			m[s] = e
		}
		return m, nil
	}
	return nil, typeErr(name, "a mapping", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// definitionJSON is the JSON form: our names plus EMQX's, so EMQX scripts read it too.
type definitionJSON struct {
	Name                string        `json:"name"`
	Filters             []string      `json:"filters"`
	TopicFilter         string        `json:"topic_filter,omitempty"`
	Shards              int32         `json:"shards,omitempty"`
	Key                 string        `json:"key,omitempty"`
	KeyExpression       string        `json:"key_expression,omitempty"`
	KeyFallback         string        `json:"key_fallback,omitempty"`
	Retention           retentionJSON `json:"retention"`
	DataRetentionPeriod string        `json:"data_retention_period,omitempty"`
	Limits              limitsJSON    `json:"limits"`
	LastValue           bool          `json:"last_value"`
	IsLastValue         bool          `json:"is_lastvalue"`
	Compression         string        `json:"compression,omitempty"`
	PublishTopic        string        `json:"publish_topic,omitempty"`
	DeliverProduced     *bool         `json:"deliver_produced,omitempty"`
	Durability          string        `json:"durability,omitempty"`
}

type retentionJSON struct {
	MaxAge      string `json:"max_age,omitempty"`
	MaxBytes    int64  `json:"max_bytes"`
	MaxMessages int64  `json:"max_messages"`
}

type limitsJSON struct {
	MaxShardMessageCount any `json:"max_shard_message_count"`
	MaxShardMessageBytes any `json:"max_shard_message_bytes"`
}

// MarshalJSON writes the definition with both our field names and EMQX's.
func (d Definition) MarshalJSON() ([]byte, error) {
	j := definitionJSON{
		Name:          d.Name,
		Filters:       d.Filters,
		Shards:        d.Shards,
		Key:           d.Key,
		KeyExpression: d.Key,
		KeyFallback:   d.KeyFallback,
		Retention: retentionJSON{
			MaxBytes:    d.Retention.MaxBytes,
			MaxMessages: d.Retention.MaxMessages,
		},
		Limits: limitsJSON{
			MaxShardMessageCount: limitJSON(d.Retention.MaxMessages),
			MaxShardMessageBytes: limitJSON(d.Retention.MaxBytes),
		},
		LastValue:       d.LastValue,
		IsLastValue:     d.LastValue,
		Compression:     d.Compression,
		PublishTopic:    d.PublishTopic,
		DeliverProduced: d.DeliverProduced,
		Durability:      string(d.Durability),
	}
	if j.Filters == nil {
		j.Filters = []string{}
	}
	if len(d.Filters) == 1 {
		j.TopicFilter = d.Filters[0]
	}
	switch {
	case d.Retention.MaxAge < 0:
		j.Retention.MaxAge = "infinity"
	case d.Retention.MaxAge > 0:
		j.Retention.MaxAge = FormatDuration(d.Retention.MaxAge)
	}
	j.DataRetentionPeriod = j.Retention.MaxAge
	return json.Marshal(j)
}

func limitJSON(n int64) any {
	if n == 0 {
		return "infinity"
	}
	return n
}

// Validate fills defaults (shards 4, key clientid, max age 7d) and checks every field;
// errors name the stream and the field.
func (d *Definition) Validate() error {
	if err := d.validate(true); err != nil {
		return &DefinitionError{Stream: d.Name, Named: true, Err: err}
	}
	return nil
}

// ValidateKafkaOnly is Validate for a stream that may have no topic filter: one created
// through Kafka's CreateTopics that only Kafka producers write.
func (d *Definition) ValidateKafkaOnly() error {
	if err := d.validate(false); err != nil {
		return &DefinitionError{Stream: d.Name, Named: true, Err: err}
	}
	return nil
}

func (d *Definition) validate(needFilter bool) error {
	if err := ValidName(d.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if d.Shards == 0 {
		d.Shards = DefaultShards
	}
	if d.Shards < 1 || d.Shards > MaxShards {
		return fmt.Errorf("shards: %d out of range 1..%d", d.Shards, MaxShards)
	}
	if needFilter && len(d.Filters) == 0 {
		return errors.New("filter: at least one topic filter is required")
	}
	for i, f := range d.Filters {
		if err := ValidFilter(f); err != nil {
			return fmt.Errorf("filter %q: %w", f, err)
		}
		if strings.HasPrefix(f, "$share/") || strings.HasPrefix(f, "$queue/") {
			return fmt.Errorf("filter %q: a shared subscription filter cannot feed a stream", f)
		}
		if slices.Contains(d.Filters[:i], f) {
			return fmt.Errorf("filter %q: listed twice", f)
		}
	}
	if d.Key == "" {
		d.Key = DefaultKey
	}
	k, err := ParseKey(d.Key)
	if err != nil {
		return err
	}
	if k.None() && d.LastValue {
		return errors.New("key: a last_value stream keeps the newest record per key, so its key cannot be none")
	}
	fb, err := ParseKey(d.keyFallback())
	if err != nil {
		return fmt.Errorf("key_fallback: %w", err)
	}
	if fb.None() && d.LastValue {
		return errors.New("key_fallback: a last_value stream keeps the newest record per key, so its fallback cannot be none")
	}
	r := &d.Retention
	switch {
	case r.MaxAge == 0:
		r.MaxAge = DefaultMaxAge
	case r.MaxAge < 0:
		r.MaxAge = NoMaxAge
	}
	if r.MaxBytes < 0 {
		return errors.New("retention.max_bytes: must not be negative")
	}
	if r.MaxMessages < 0 {
		return errors.New("retention.max_messages: must not be negative")
	}
	switch d.Compression {
	case "", log.CompressionNone, log.CompressionLZ4, log.CompressionZstd:
	default:
		return fmt.Errorf("compression: %q is not one of none, lz4, zstd", d.Compression)
	}
	if _, err := d.TopicTemplate(); err != nil {
		return err
	}
	if _, err := log.ParseDurability(string(d.Durability)); err != nil {
		return fmt.Errorf("durability: %q is not one of fsync, write", d.Durability)
	}
	return nil
}

// keyFallback is the fallback key expression in effect.
func (d Definition) keyFallback() string {
	if d.KeyFallback == "" {
		return DefaultKeyFallback
	}
	return d.KeyFallback
}

// ValidName reports why name cannot name a stream (and Kafka topic), or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("required")
	case len(name) > maxNameLen:
		return fmt.Errorf("longer than %d characters", maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not allowed", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q: only A-Z a-z 0-9 _ - . are allowed", name)
		}
	}
	return nil
}

// specMeta is what the log stores for the mapping alongside a stream's spec.
type specMeta struct {
	Filters         []string `json:"filters"`
	Key             string   `json:"key"`
	KeyFallback     string   `json:"key_fallback,omitempty"`
	PublishTopic    string   `json:"publish_topic,omitempty"`
	DeliverProduced *bool    `json:"deliver_produced,omitempty"`
	Replication     int32    `json:"replication_factor,omitempty"`
}

// Spec is the log's view of the definition; filters and key travel in Meta.
func (d Definition) Spec() log.StreamSpec {
	meta, _ := json.Marshal(specMeta{Filters: d.Filters, Key: d.Key, KeyFallback: d.KeyFallback, PublishTopic: d.PublishTopic, DeliverProduced: d.DeliverProduced, Replication: d.ReplicationFactor}) // cannot fail: strings and numbers only
	r := d.Retention
	if r.MaxAge < 0 {
		r.MaxAge = 0
	}
	c := d.Compression
	if c == log.CompressionNone {
		c = "" // the log's default; specs stored before compression existed say the same
	}
	return log.StreamSpec{Name: d.Name, Shards: d.Shards, Retention: r, LastValue: d.LastValue, Compression: c, Durability: d.Durability, Meta: meta}
}

// DefinitionFromSpec rebuilds a definition from a spec the log stored, validated.
func DefinitionFromSpec(s log.StreamSpec) (Definition, error) {
	var meta specMeta
	if len(s.Meta) > 0 {
		if err := json.Unmarshal(s.Meta, &meta); err != nil {
			return Definition{}, fmt.Errorf("stream %q: stored definition: %w", s.Name, err)
		}
	}
	d := Definition{
		Name:            s.Name,
		Filters:         meta.Filters,
		Shards:          s.Shards,
		Key:             meta.Key,
		KeyFallback:     meta.KeyFallback,
		Retention:       s.Retention,
		LastValue:       s.LastValue,
		Compression:     s.Compression,
		PublishTopic:    meta.PublishTopic,
		DeliverProduced: meta.DeliverProduced,
		Durability:      s.Durability,
	}
	d.ReplicationFactor = meta.Replication
	if d.Retention.MaxAge == 0 {
		// Specs hold validated definitions, whose only zero age is "no bound".
		d.Retention.MaxAge = NoMaxAge
	}
	if err := d.ValidateKafkaOnly(); err != nil {
		return Definition{}, err
	}
	return d, nil
}
