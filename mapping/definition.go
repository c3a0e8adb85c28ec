package mapping

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/conf"
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

	// decodeErr is a problem found while decoding (aliases that disagree, a value out
	// of range), reported by Validate.
	decodeErr error
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

// definitionDoc is a definition as the config file (YAML) and the REST API (JSON) write
// it: our field names and EMQX's, each value of a type that checks its own syntax. It is
// decoded strictly (an unknown field is an error), then turned into a Definition.
type definitionDoc struct {
	Name                *string       `yaml:"name" json:"name"`
	Filter              *Filters      `yaml:"filter" json:"filter"`
	Filters             *Filters      `yaml:"filters" json:"filters"`
	TopicFilter         *Filters      `yaml:"topic_filter" json:"topic_filter"`
	Shards              *int64        `yaml:"shards" json:"shards"`
	Key                 *KeyExpr      `yaml:"key" json:"key"`
	KeyExpression       *KeyExpr      `yaml:"key_expression" json:"key_expression"`
	KeyFallback         *KeyExpr      `yaml:"key_fallback" json:"key_fallback"`
	LastValue           *bool         `yaml:"last_value" json:"last_value"`
	IsLastValue         *bool         `yaml:"is_lastvalue" json:"is_lastvalue"`
	Retention           *retentionDoc `yaml:"retention" json:"retention"`
	DataRetentionPeriod *MaxAge       `yaml:"data_retention_period" json:"data_retention_period"`
	Limits              *limitsDoc    `yaml:"limits" json:"limits"`
	// ReadMaxUnacked is EMQX's replay window; MQTT flow control (receive maximum) plays
	// that role here, so it is checked and accepted for pasted EMQX definitions, then
	// not used.
	ReadMaxUnacked  *int64         `yaml:"read_max_unacked" json:"read_max_unacked"`
	Compression     *string        `yaml:"compression" json:"compression"`
	PublishTopic    *topicTemplate `yaml:"publish_topic" json:"publish_topic"`
	DeliverProduced *bool          `yaml:"deliver_produced" json:"deliver_produced"`
	Durability      *string        `yaml:"durability" json:"durability"`
	// ReplicationFactor: replicas per shard in a cluster (1..MaxReplicationFactor).
	ReplicationFactor *int64 `yaml:"replication_factor" json:"replication_factor"`
}

// MaxReplicationFactor bounds replication_factor.
const MaxReplicationFactor = 7

type retentionDoc struct {
	MaxAge      *MaxAge     `yaml:"max_age" json:"max_age"`
	MaxBytes    *ByteLimit  `yaml:"max_bytes" json:"max_bytes"`
	MaxMessages *CountLimit `yaml:"max_messages" json:"max_messages"`
}

type limitsDoc struct {
	MaxShardMessageCount *CountLimit `yaml:"max_shard_message_count" json:"max_shard_message_count"`
	MaxShardMessageBytes *ByteLimit  `yaml:"max_shard_message_bytes" json:"max_shard_message_bytes"`
}

// UnmarshalYAML reads a definition. It takes yaml.v3's older unmarshal-function form on
// purpose: that one decodes with the caller's decoder, so the config file's KnownFields
// applies inside definitions too (a *yaml.Node's Decode would not be strict). Checks of
// the whole definition, and defaults, are Validate's.
func (d *Definition) UnmarshalYAML(unmarshal func(any) error) error {
	var doc definitionDoc
	if err := unmarshal(&doc); err != nil {
		return err
	}
	*d = doc.definition()
	return nil
}

// UnmarshalJSON reads a definition strictly, with the same fields as YAML; errors name
// the field. Checks of the whole definition, and defaults, are Validate's.
func (d *Definition) UnmarshalJSON(b []byte) error {
	var doc definitionDoc
	if err := conf.DecodeJSON(b, &doc); err != nil {
		name := ""
		var probe struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(b, &probe) == nil {
			name = probe.Name
		}
		return &DefinitionError{Stream: name, Err: err}
	}
	*d = doc.definition()
	return nil
}

// definition turns the document into a Definition. A field given under two names (ours
// and EMQX's) must agree; when they do not, or a value is out of range, the definition
// carries the problem and Validate reports it, where the caller knows where the
// definition came from (streams[i] of the config file, a request body).
func (doc *definitionDoc) definition() Definition { return doc.over(Definition{}) }

// over lays the fields the document gives over base; the others keep base's values.
func (doc *definitionDoc) over(base Definition) Definition {
	d := base
	d.Filters = slices.Clone(base.Filters)
	if doc.Name != nil {
		d.Name = *doc.Name
	}
	var bad error
	// pick returns the first given of the aliases, or records their disagreement.
	pick := func(names []string, given []bool, same func(i, j int) bool) int {
		first := -1
		for i, g := range given {
			if !g {
				continue
			}
			if first < 0 {
				first = i
			} else if bad == nil && !same(first, i) {
				bad = conf.Fieldf(names[i], "disagrees with %s", names[first])
			}
		}
		return first
	}
	filters := []*Filters{doc.Filter, doc.Filters, doc.TopicFilter}
	if i := pick([]string{"filter", "filters", "topic_filter"}, []bool{filters[0] != nil, filters[1] != nil, filters[2] != nil},
		func(i, j int) bool { return slices.Equal(*filters[i], *filters[j]) }); i >= 0 {
		d.Filters = []string(*filters[i])
	}
	if doc.Shards != nil {
		if *doc.Shards < 1 || *doc.Shards > MaxShards {
			bad = cmp.Or(bad, conf.Fieldf("shards", "%d out of range 1..%d", *doc.Shards, MaxShards))
		} else {
			d.Shards = int32(*doc.Shards)
		}
	}
	keys := []*KeyExpr{doc.Key, doc.KeyExpression}
	if i := pick([]string{"key", "key_expression"}, []bool{keys[0] != nil, keys[1] != nil},
		func(i, j int) bool { return keys[i].String() == keys[j].String() }); i >= 0 {
		d.Key = keys[i].String()
	}
	if doc.ReadMaxUnacked != nil && *doc.ReadMaxUnacked < 0 {
		bad = cmp.Or(bad, conf.Fieldf("read_max_unacked", "must not be negative"))
	}
	if doc.KeyFallback != nil {
		d.KeyFallback = doc.KeyFallback.String()
	}
	lv := []*bool{doc.LastValue, doc.IsLastValue}
	if i := pick([]string{"last_value", "is_lastvalue"}, []bool{lv[0] != nil, lv[1] != nil},
		func(i, j int) bool { return *lv[i] == *lv[j] }); i >= 0 {
		d.LastValue = *lv[i]
	}
	var ret retentionDoc
	if doc.Retention != nil {
		ret = *doc.Retention
	}
	var lim limitsDoc
	if doc.Limits != nil {
		lim = *doc.Limits
	}
	ages := []*MaxAge{ret.MaxAge, doc.DataRetentionPeriod}
	if i := pick([]string{"retention.max_age", "data_retention_period"}, []bool{ages[0] != nil, ages[1] != nil},
		func(i, j int) bool { return *ages[i] == *ages[j] }); i >= 0 {
		d.Retention.MaxAge = time.Duration(*ages[i])
	}
	byteCaps := []*ByteLimit{ret.MaxBytes, lim.MaxShardMessageBytes}
	if i := pick([]string{"retention.max_bytes", "limits.max_shard_message_bytes"}, []bool{byteCaps[0] != nil, byteCaps[1] != nil},
		func(i, j int) bool { return *byteCaps[i] == *byteCaps[j] }); i >= 0 {
		d.Retention.MaxBytes = int64(*byteCaps[i])
	}
	counts := []*CountLimit{ret.MaxMessages, lim.MaxShardMessageCount}
	if i := pick([]string{"retention.max_messages", "limits.max_shard_message_count"}, []bool{counts[0] != nil, counts[1] != nil},
		func(i, j int) bool { return *counts[i] == *counts[j] }); i >= 0 {
		d.Retention.MaxMessages = int64(*counts[i])
	}
	if doc.Compression != nil {
		d.Compression = *doc.Compression
		if d.Compression == "" {
			bad = cmp.Or(bad, conf.Fieldf("compression", "expected none, lz4 or zstd, got \"\""))
		}
	}
	if doc.PublishTopic != nil {
		d.PublishTopic = string(*doc.PublishTopic)
	}
	if doc.DeliverProduced != nil {
		d.DeliverProduced = doc.DeliverProduced
	}
	if doc.Durability != nil {
		d.Durability = log.Durability(*doc.Durability)
		if d.Durability == log.DurabilityDefault {
			bad = cmp.Or(bad, conf.Fieldf("durability", "expected fsync or write, got \"\""))
		}
	}
	if doc.ReplicationFactor != nil {
		if rf := *doc.ReplicationFactor; rf < 1 || rf > MaxReplicationFactor {
			bad = cmp.Or(bad, conf.Fieldf("replication_factor", "%d out of range 1..%d", rf, MaxReplicationFactor))
		} else {
			d.ReplicationFactor = int32(rf)
		}
	}
	d.decodeErr = bad
	return d
}

// UpdateJSON lays the fields of a JSON object over d, as a REST update does: a field
// given (under our name or EMQX's) replaces d's value, one not given keeps it. The
// result is not validated yet.
func (d Definition) UpdateJSON(b []byte) (Definition, error) {
	var doc definitionDoc
	if err := conf.DecodeJSON(b, &doc); err != nil {
		return d, &DefinitionError{Stream: d.Name, Err: err}
	}
	return doc.over(d), nil
}

// DefinitionError is a refused stream definition: the stream's name when known, and
// the reason, a *conf.FieldError when it is about one field.
type DefinitionError struct {
	Stream string
	// Named says the stream is quoted even when its name is empty (a missing name).
	Named bool
	Err   error
}

func (e *DefinitionError) Error() string {
	var b strings.Builder
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
	if d.decodeErr != nil {
		return d.decodeErr
	}
	if err := ValidName(d.Name); err != nil {
		return conf.Field("name", err)
	}
	if d.Shards == 0 {
		d.Shards = DefaultShards
	}
	if d.Shards < 1 || d.Shards > MaxShards {
		return conf.Fieldf("shards", "%d out of range 1..%d", d.Shards, MaxShards)
	}
	if needFilter && len(d.Filters) == 0 {
		return conf.Fieldf("filter", "at least one topic filter is required")
	}
	for i, f := range d.Filters {
		if err := checkFilter(f); err != nil {
			return conf.Field("filter", err)
		}
		if slices.Contains(d.Filters[:i], f) {
			return conf.Fieldf("filter", "%q: listed twice", f)
		}
	}
	if d.Key == "" {
		d.Key = DefaultKey
	}
	k, err := compileKey(d.Key)
	if err != nil {
		return conf.Field("key", err)
	}
	if k.None() && d.LastValue {
		return conf.Fieldf("key", "a last_value stream keeps the newest record per key, so its key cannot be none")
	}
	fb, err := compileKey(d.keyFallback())
	if err != nil {
		return conf.Field("key_fallback", err)
	}
	if fb.None() && d.LastValue {
		return conf.Fieldf("key_fallback", "a last_value stream keeps the newest record per key, so its fallback cannot be none")
	}
	r := &d.Retention
	switch {
	case r.MaxAge == 0:
		r.MaxAge = DefaultMaxAge
	case r.MaxAge < 0:
		r.MaxAge = NoMaxAge
	}
	if r.MaxBytes < 0 {
		return conf.Fieldf("retention.max_bytes", "must not be negative")
	}
	if r.MaxMessages < 0 {
		return conf.Fieldf("retention.max_messages", "must not be negative")
	}
	switch d.Compression {
	case "", log.CompressionNone, log.CompressionLZ4, log.CompressionZstd:
	default:
		return conf.Fieldf("compression", "%q is not one of none, lz4, zstd", d.Compression)
	}
	if _, err := d.TopicTemplate(); err != nil {
		return conf.Field("publish_topic", err)
	}
	if _, err := log.ParseDurability(string(d.Durability)); err != nil {
		return conf.Fieldf("durability", "%q is not one of fsync, write", d.Durability)
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

// Shape tells conf which struct describes a definition's keys (for error messages).
func (Definition) Shape() any { return definitionDoc{} }
