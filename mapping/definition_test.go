package mapping

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/conf"
	"github.com/mqstreams/mqstreams/log"
)

func parseYAMLDef(t *testing.T, src string) (Definition, error) {
	t.Helper()
	var d Definition
	err := conf.Decode("s.yaml", []byte(src), &d)
	return d, err
}

func parseJSONDef(t *testing.T, src string) (Definition, error) {
	t.Helper()
	var d Definition
	err := json.Unmarshal([]byte(src), &d)
	if err == nil {
		err = d.Validate()
	}
	return d, err
}

func TestDefinitionYAML(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want Definition
	}{
		{
			name: "operations example",
			src: `
name: telemetry
filter: "plant/+/telemetry/#"
shards: 8
key: topic-level:2
last_value: false
retention: { max_age: 72h, max_bytes: 10GiB }
`,
			want: Definition{Name: "telemetry", Filters: []string{"plant/+/telemetry/#"}, Shards: 8, Key: "topic-level:2",
				Retention: log.Retention{MaxAge: 72 * time.Hour, MaxBytes: 10 << 30}},
		},
		{
			name: "key fallback",
			src:  "name: j\nfilter: 'd/#'\nkey: json:device.id\nkey_fallback: topic\n",
			want: Definition{Name: "j", Filters: []string{"d/#"}, Shards: 4, Key: "json:device.id", KeyFallback: "topic", Retention: log.Retention{MaxAge: 7 * 24 * time.Hour}},
		},
		{
			name: "defaults",
			src:  "name: all\nfilter: '#'\n",
			want: Definition{Name: "all", Filters: []string{"#"}, Shards: 4, Key: "clientid", Retention: log.Retention{MaxAge: 7 * 24 * time.Hour}},
		},
		{
			name: "filters list and counts",
			src: `
name: multi
filters: [a/#, b/+/c]
retention: {max_age: 1d12h, max_bytes: 1048576, max_messages: 1000}
last_value: true
`,
			want: Definition{Name: "multi", Filters: []string{"a/#", "b/+/c"}, Shards: 4, Key: "clientid", LastValue: true,
				Retention: log.Retention{MaxAge: 36 * time.Hour, MaxBytes: 1 << 20, MaxMessages: 1000}},
		},
		{
			name: "EMQX aliases",
			src: `
name: lv
topic_filter: t/#
key_expression: message.from
is_lastvalue: true
data_retention_period: 7d
limits: {max_shard_message_count: 10000, max_shard_message_bytes: 200MB}
read_max_unacked: 1000
`,
			want: Definition{Name: "lv", Filters: []string{"t/#"}, Shards: 4, Key: "message.from", LastValue: true,
				Retention: log.Retention{MaxAge: 7 * 24 * time.Hour, MaxBytes: 200e6, MaxMessages: 10000}},
		},
		{
			name: "no age bound and infinity limits",
			src:  "name: forever\nfilter: x\nretention: {max_age: 0}\nlimits: {max_shard_message_count: infinity, max_shard_message_bytes: infinity}\n",
			want: Definition{Name: "forever", Filters: []string{"x"}, Shards: 4, Key: "clientid", Retention: log.Retention{MaxAge: NoMaxAge}},
		},
		{
			name: "compression",
			src:  "name: z\nfilter: a\ncompression: zstd\n",
			want: Definition{Name: "z", Filters: []string{"a"}, Shards: 4, Key: "clientid", Retention: log.Retention{MaxAge: 7 * 24 * time.Hour}, Compression: "zstd"},
		},
		{
			name: "durability",
			src:  "name: w\nfilter: a\ndurability: write\n",
			want: Definition{Name: "w", Filters: []string{"a"}, Shards: 4, Key: "clientid", Retention: log.Retention{MaxAge: 7 * 24 * time.Hour}, Durability: log.DurabilityWrite},
		},
		{
			name: "agreeing alias",
			src:  "name: s\nfilter: a\ntopic_filter: a\nkey: topic\nkey_expression: topic\n",
			want: Definition{Name: "s", Filters: []string{"a"}, Shards: 4, Key: "topic", Retention: log.Retention{MaxAge: 7 * 24 * time.Hour}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseYAMLDef(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDefinitionYAMLInConfigList(t *testing.T) {
	var cfg struct {
		Streams []Definition `yaml:"streams"`
	}
	src := "streams:\n  - name: a\n    filter: x/#\n  - name: b\n    filters: [y, z]\n"
	if err := conf.Decode("c.yaml", []byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Streams) != 2 || cfg.Streams[1].Filters[1] != "z" || cfg.Streams[1].Shards != DefaultShards {
		t.Fatalf("got %+v", cfg.Streams)
	}
	src = "streams:\n  - name: a\n    filter: x/#\n  - name: b\n    filtr: y\n"
	err := conf.Decode("c.yaml", []byte(src), &cfg)
	if err == nil || !strings.HasPrefix(err.Error(), `c.yaml:5: streams[1].filtr: unknown field (known: compression, data_retention_period, deliver_produced, durability, filter, filters, `) ||
		!strings.HasSuffix(err.Error(), `(in "b")`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDefinitionYAMLMerge(t *testing.T) {
	var cfg struct {
		Defaults map[string]any `yaml:"defaults"`
		Streams  []Definition   `yaml:"streams"`
	}
	src := `
defaults: &d
  shards: 2
  key: topic
  retention: {max_age: 1h}
streams:
  - <<: *d
    name: a
    filter: x
    key: username
`
	if err := conf.Decode("c.yaml", []byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	got := cfg.Streams[0]
	want := Definition{Name: "a", Filters: []string{"x"}, Shards: 2, Key: "username", Retention: log.Retention{MaxAge: time.Hour}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v want %+v", got, want)
	}
}

func TestDefinitionErrors(t *testing.T) {
	// Each bad value kind, with the line and field named.
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "name: t\nfilter: a\nfiltr: b", `s.yaml:3: filtr: unknown field (known: compression, data_retention_period,`},
		{"unknown field no name", "filtr: b", `s.yaml:1: filtr: unknown field`},
		{"unknown retention field", "name: t\nfilter: a\nretention: {max_agee: 1h}", `s.yaml:3: retention.max_agee: unknown field (known: max_age, max_bytes, max_messages)`},
		{"unknown limits field", "name: t\nfilter: a\nlimits: {count: 1}", `s.yaml:3: limits.count: unknown field (known: max_shard_message_bytes, max_shard_message_count)`},
		{"bad filter", "name: telemetry\nfilter: a/#/b", `s.yaml:2: filter: "a/#/b": '#' must be the last level`},
		{"bad filter in list", "name: t\nfilters:\n  - a\n  - +x", `s.yaml:4: filters[1]: "+x": '+' must occupy a whole level`},
		{"no filter", "name: t", `s.yaml:1: filter: at least one topic filter is required`},
		{"empty filter list", "name: t\nfilters: []", `filter: at least one`},
		{"duplicate filter", "name: t\nfilters: [a, a]", `filter: "a": listed twice`},
		{"shared filter", "name: t\nfilter: $share/g/a", `s.yaml:2: filter: "$share/g/a": a shared subscription`},
		{"filter type", "name: t\nfilter: {a: 1}", `s.yaml:2: filter: expected a topic filter or a list of them, got a mapping`},
		{"filter elem type", "name: t\nfilters: [a, [b]]", `filters[1]: expected a topic filter or a list of them, got a list`},
		{"no name", "filter: a", `s.yaml:1: name: required`},
		{"bad name", "name: a/b\nfilter: a", `s.yaml:1: name: "a/b": only A-Z`},
		{"dot name", "name: ..\nfilter: a", `name: ".." is not allowed`},
		{"long name", "name: " + strings.Repeat("n", 250) + "\nfilter: a", `longer than 249`},
		{"shards range", "name: t\nfilter: a\nshards: 10001", `s.yaml:3: shards: 10001 out of range 1..10000`},
		{"shards zero", "name: t\nfilter: a\nshards: 0", `s.yaml:3: shards: 0 out of range 1..10000`},
		{"shards negative", "name: t\nfilter: a\nshards: -1", `shards: -1 out of range`},
		{"shards type", "name: t\nfilter: a\nshards: four", `s.yaml:3: shards: expected a whole number, got "four"`},
		{"shards fraction", "name: t\nfilter: a\nshards: 1.5", `s.yaml:3: shards: expected a whole number, got "1.5"`},
		{"bad key", "name: t\nfilter: a\nkey: nope", `s.yaml:3: key: "nope": unknown key expression`},
		{"bad key fallback", "name: t\nfilter: a\nkey_fallback: topic-level:x", `s.yaml:3: key_fallback: "topic-level:x": topic-level needs`},
		{"bad concat", "name: t\nfilter: a\nkey_expression: concat(topic", `s.yaml:3: key_expression: "concat(topic": unknown key expression`},
		{"last value without key", "name: t\nfilter: a\nkey: none\nlast_value: true", `s.yaml:3: key: a last_value stream`},
		{"bad age", "name: t\nfilter: a\nretention: {max_age: soon}", `s.yaml:3: retention.max_age: invalid duration "soon"`},
		{"negative age", "name: t\nfilter: a\nretention:\n  max_age: -1h", `s.yaml:4: retention.max_age: negative duration "-1h"`},
		{"age number", "name: t\nfilter: a\nretention: {max_age: 3600}", `retention.max_age: expected a duration such as "72h"`},
		{"bad bytes", "name: t\nfilter: a\nretention: {max_bytes: 10XB}", `s.yaml:3: retention.max_bytes: invalid byte size "10XB"`},
		{"negative bytes", "name: t\nfilter: a\nretention: {max_bytes: -1}", `retention.max_bytes: must not be negative`},
		{"negative messages", "name: t\nfilter: a\nretention: {max_messages: -1}", `retention.max_messages: must not be negative`},
		{"negative limit", "name: t\nfilter: a\nlimits:\n  max_shard_message_bytes: -5", `s.yaml:4: limits.max_shard_message_bytes: must not be negative`},
		{"bad count", "name: t\nfilter: a\nlimits: {max_shard_message_count: lots}", `limits.max_shard_message_count: expected a number of messages or "infinity", got "lots"`},
		{"last_value type", "name: t\nfilter: a\nlast_value: maybe", `s.yaml:3: last_value: expected true or false, got "maybe"`},
		{"retention type", "name: t\nfilter: a\nretention: 7d", `s.yaml:3: retention: expected a mapping, got "7d"`},
		{"bad compression", "name: t\nfilter: a\ncompression: gzip", `compression: "gzip" is not one of none, lz4, zstd`},
		{"bad durability", "name: t\nfilter: a\ndurability: sometimes", `durability: "sometimes" is not one of fsync, write`},
		{"bad publish topic", "name: t\nfilter: a\npublish_topic: \"x/{nope}\"", `s.yaml:3: publish_topic: "x/{nope}": unknown placeholder`},
		{"read_max_unacked negative", "name: t\nfilter: a\nread_max_unacked: -3", `s.yaml:3: read_max_unacked: must not be negative`},
		{"read_max_unacked type", "name: t\nfilter: a\nread_max_unacked: many", `read_max_unacked: expected a whole number`},
		{"disagreeing alias", "name: t\nfilter: a\ntopic_filter: b", `s.yaml:3: topic_filter: disagrees with filter`},
		{"disagreeing key", "name: t\nfilter: a\nkey: topic\nkey_expression: message.from", `s.yaml:4: key_expression: disagrees with key`},
		{"disagreeing age", "name: t\nfilter: a\nretention: {max_age: 1h}\ndata_retention_period: 2h", `s.yaml:4: data_retention_period: disagrees with retention.max_age`},
		{"duplicate key", "name: t\nfilter: a\nshards: 2\nshards: 3", `s.yaml:4: shards: duplicate key (first at line 3)`},
		{"not a mapping", "- a\n- b", `s.yaml:1: expected a mapping, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseYAMLDef(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant containing %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestDefinitionJSON(t *testing.T) {
	// What an EMQX script POSTs.
	src := `{"name":"s1","topic_filter":"t/#","is_lastvalue":false,"key_expression":"concat(message.from, '-', message.topic)",
		"data_retention_period":"1d","limits":{"max_shard_message_count":"infinity","max_shard_message_bytes":"200MB"},"read_max_unacked":100}`
	got, err := parseJSONDef(t, src)
	if err != nil {
		t.Fatal(err)
	}
	want := Definition{Name: "s1", Filters: []string{"t/#"}, Shards: 4, Key: "concat(message.from, '-', message.topic)",
		Retention: log.Retention{MaxAge: 24 * time.Hour, MaxBytes: 200e6}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}

	errs := []struct{ src, want string }{
		{`{"name":"s","filter":"a","bogus":1}`, `stream "s": bogus: unknown field (known: compression,`},
		{`{"name":"s","filter":"a","shards":"4"}`, `stream "s": shards: expected a whole number, got "4"`},
		{`{"name":"s","filter":"a","shards":4.5}`, `shards: expected a whole number, got 4.5`},
		{`{"name":"s","filter":"a","shards":0}`, `shards: 0 out of range 1..10000`},
		{`{"name":"s","filter":"a","retention":{"max_bytes":1,"x":2}}`, `retention.x: unknown field (known: max_age, max_bytes, max_messages)`},
		{`{"name":"s","filter":"a","retention":{"max_bytes":"5XB"}}`, `retention.max_bytes: invalid byte size "5XB"`},
		{`{"name":"s","filter":"a","retention":{"max_age":"-1h"}}`, `retention.max_age: negative duration "-1h"`},
		{`{"name":"s","filter":"a","retention":{"max_age":3600}}`, `retention.max_age: expected a duration such as "72h" or "7d", got 3600`},
		{`{"name":"s","filter":"a","retention":{"max_messages":-1}}`, `retention.max_messages: must not be negative`},
		{`{"name":"s","filter":"a","retention":7}`, `retention: expected an object, got 7`},
		{`{"name":"s","filter":"a","key":"nope"}`, `key: "nope": unknown key expression`},
		{`{"name":"s","filter":"a","key":5}`, `key: expected a key expression string, got 5`},
		{`{"name":"s","filter":"a","is_lastvalue":"yes"}`, `is_lastvalue: expected true or false, got "yes"`},
		{`{"name":"s","filter":"a","name":"s"}`, `name: given twice`},
		{`{"name":"s","filters":["a/#/b"]}`, `stream "s": filters[0]: "a/#/b": '#' must be the last level`},
		{`{"name":"s","filters":["a",3]}`, `stream "s": filters[1]: expected a topic filter, got 3`},
		{`{"name":"s","topic_filter":"a","filter":"b"}`, `stream "s": topic_filter: disagrees with filter`},
		{`{"name":"s","filter":"a","limits":{"max_shard_message_bytes":-5}}`, `limits.max_shard_message_bytes: must not be negative`},
		{`{"name":"s","filter":"a","limits":{"max_shard_message_count":1.5}}`, `limits.max_shard_message_count: expected a number of messages, or "infinity", got 1.5`},
		{`["a"]`, `expected an object`},
		{`{"name":"s",`, `unexpected end of JSON input`},
	}
	for _, e := range errs {
		_, err := parseJSONDef(t, e.src)
		if err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("%s: err = %v, want containing %s", e.src, err, e.want)
		}
	}

	var d Definition
	if err := d.UnmarshalJSON([]byte(`{"name":"s",`)); err == nil || !strings.HasPrefix(err.Error(), "stream: ") {
		t.Errorf("truncated JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"name":"n","filter":"a","key":null}`), &d); err != nil || d.Key != "" {
		t.Errorf("null key: %+v, %v", d, err)
	}
}

func TestDefinitionJSONRoundTrip(t *testing.T) {
	defs := []Definition{
		{Name: "a", Filters: []string{"x/#"}},
		{Name: "b", Filters: []string{"x/#", "y/+"}, Shards: 12, Key: "json:id", LastValue: true,
			Retention: log.Retention{MaxAge: 36 * time.Hour, MaxBytes: 5 << 20, MaxMessages: 99}},
		{Name: "c", Filters: []string{"$SYS/#"}, Key: "none", Retention: log.Retention{MaxAge: NoMaxAge}},
		{Name: "d", Filters: []string{"d/#"}, Compression: "lz4"},
		{Name: "e", Filters: []string{"e/#"}, Durability: log.DurabilityWrite},
	}
	for _, d := range defs {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back Definition
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, d) {
			t.Errorf("round trip of %s\ngot  %+v\nwant %+v", b, back, d)
		}
		var emqx struct {
			TopicFilter string `json:"topic_filter"`
			Key         string `json:"key_expression"`
			IsLastValue bool   `json:"is_lastvalue"`
			Period      string `json:"data_retention_period"`
		}
		if err := json.Unmarshal(b, &emqx); err != nil {
			t.Fatal(err)
		}
		if emqx.Key != d.Key || emqx.IsLastValue != d.LastValue || emqx.Period == "" {
			t.Errorf("EMQX fields missing from %s", b)
		}
		if len(d.Filters) == 1 && emqx.TopicFilter != d.Filters[0] {
			t.Errorf("topic_filter missing from %s", b)
		}
	}
}

func TestDefinitionSpec(t *testing.T) {
	d := Definition{Name: "s", Filters: []string{"a/#", "b"}, Shards: 3, Key: "topic-level:1", LastValue: true,
		Retention: log.Retention{MaxAge: 2 * time.Hour, MaxBytes: 100}}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	s := d.Spec()
	if s.Name != "s" || s.Shards != 3 || !s.LastValue || s.Retention != d.Retention {
		t.Fatalf("spec = %+v", s)
	}
	var meta map[string]any
	if err := json.Unmarshal(s.Meta, &meta); err != nil || meta["key"] != "topic-level:1" {
		t.Fatalf("meta %s: %v", s.Meta, err)
	}
	back, err := DefinitionFromSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("got %+v want %+v", back, d)
	}

	forever := Definition{Name: "f", Filters: []string{"a"}, Retention: log.Retention{MaxAge: NoMaxAge}}
	if err := forever.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := forever.Spec().Retention.MaxAge; got != 0 {
		t.Errorf("log max age for NoMaxAge = %v, want 0", got)
	}
	back, err = DefinitionFromSpec(forever.Spec())
	if err != nil || back.Retention.MaxAge != NoMaxAge {
		t.Errorf("from spec: %+v, %v", back, err)
	}

	if _, err := DefinitionFromSpec(log.StreamSpec{Name: "x", Shards: 1, Meta: []byte(`{"filters":`)}); err == nil {
		t.Error("broken meta accepted")
	}
	// A stream without filters is one only Kafka producers write (CreateTopics).
	if d, err := DefinitionFromSpec(log.StreamSpec{Name: "x", Shards: 1}); err != nil || len(d.Filters) != 0 {
		t.Errorf("spec without filters: %+v %v", d, err)
	}
}

func TestDefinitionKeyFallbackStored(t *testing.T) {
	d := Definition{Name: "j", Filters: []string{"d/#"}, Key: "json:id", KeyFallback: "none"}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := DefinitionFromSpec(d.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyFallback != "none" {
		t.Fatalf("stored key_fallback %q, want none", got.KeyFallback)
	}
}

// TestDefinitionUpdateJSON: a REST update replaces the fields it gives, under either
// name, and keeps every other field (key_fallback, publish_topic, durability...).
func TestDefinitionUpdateJSON(t *testing.T) {
	no := false
	cur := Definition{Name: "s", Filters: []string{"a/#"}, Shards: 2, Key: "json:id", KeyFallback: "topic",
		Compression: "lz4", Durability: log.DurabilityWrite, PublishTopic: "out/{key}", DeliverProduced: &no, LastValue: true,
		Retention: log.Retention{MaxAge: time.Hour, MaxBytes: 1000, MaxMessages: 50}}
	if err := cur.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := cur.UpdateJSON([]byte(`{"shards":3,"data_retention_period":"1d","limits":{"max_shard_message_bytes":"2KB"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	want := cur
	want.Shards, want.Retention.MaxAge, want.Retention.MaxBytes = 3, 24*time.Hour, 2000
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(cur.Filters, []string{"a/#"}) {
		t.Fatal("update changed the current definition")
	}
	got, err = cur.UpdateJSON([]byte(`{"topic_filter":"b/+","is_lastvalue":false}`))
	if err != nil || got.Filters[0] != "b/+" || got.LastValue || got.Shards != 2 {
		t.Fatalf("aliases: %+v %v", got, err)
	}
	for _, bad := range []string{`{"shards":"x"}`, `{"colour":1}`, `{"retention":{"max_bytes":-1}}`} {
		if _, err := cur.UpdateJSON([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), `stream "s": `) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestKafkaConfigBadValues: Kafka topic configs go through the same value checks as the
// config file and the REST API, refused as invalid (INVALID_CONFIG) naming the config.
func TestKafkaConfigBadValues(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{KafkaTopicFilter, "a/#,b/#/c", `mqtt.topic.filter: "b/#/c": '#' must be the last level`},
		{KafkaTopicFilter, "$share/g/x", `mqtt.topic.filter: "$share/g/x": a shared subscription`},
		{KafkaKey, "concat(", `mqtt.key: "concat(": `},
		{KafkaRetentionMS, "-5", `retention.ms: expected a number of milliseconds > 0 or -1 (unbounded), got "-5"`},
		{KafkaRetentionMS, "1d", `retention.ms: expected a number of milliseconds`},
		{KafkaRetentionBytes, "-2", `retention.bytes: expected a number of bytes > 0 or -1 (unbounded), got "-2"`},
		{KafkaCleanupPolicy, "forever", `cleanup.policy: expected delete or compact, got "forever"`},
		{KafkaCompression, "gzip", `compression.type: expected uncompressed, lz4 or zstd, got "gzip"`},
		{"segment.bytes", "1", `unknown topic config "segment.bytes"`},
	} {
		d := Definition{Name: "t", Filters: []string{"x"}}
		v := tt.value
		err := d.SetKafkaConfig(tt.name, &v)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s=%s: got %v, want %s", tt.name, tt.value, err, tt.want)
		}
		if tt.name != "segment.bytes" && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s=%s: %v is not ErrInvalid", tt.name, tt.value, err)
		}
	}
	d := Definition{Name: "t"}
	for name, v := range map[string]string{KafkaTopicFilter: "a/+, b/#", KafkaKey: "topic-level:2", KafkaRetentionMS: "3600000", KafkaRetentionBytes: "-1", KafkaCleanupPolicy: "compact"} {
		if err := d.SetKafkaConfig(name, &v); err != nil {
			t.Fatalf("%s=%s: %v", name, v, err)
		}
	}
	if err := d.Validate(); err != nil || !reflect.DeepEqual(d.Filters, []string{"a/+", "b/#"}) || d.Retention.MaxAge != time.Hour || !d.LastValue {
		t.Fatalf("%+v %v", d, err)
	}
}
