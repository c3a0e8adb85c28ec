package mapping

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseKeyErrors(t *testing.T) {
	tests := []struct{ expr, wantErr string }{
		{"", "empty"},
		{"bogus", "unknown key expression"},
		{"topic-level:0", "level number"},
		{"topic-level:x", "level number"},
		{"user-property:", "name is empty"},
		{"message.headers.properties.User-Property.", "name is empty"},
		{"json:", "empty segment"},
		{"json:a..b", "empty segment"},
		{"concat()", "needs arguments"},
		{"concat(topic,)", "empty argument"},
		{"concat('abc)", "unterminated"},
		{"concat(topic, none)", "none cannot be part of concat"},
		{"concat(topic, bogus)", "unknown key expression"},
	}
	for _, tt := range tests {
		_, err := ParseKey(tt.expr)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseKey(%q) = %v, want error containing %q", tt.expr, err, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("key %q", tt.expr)) {
			t.Errorf("ParseKey(%q) error %q does not name the expression", tt.expr, err)
		}
	}
}

func TestKeyEval(t *testing.T) {
	msg := &Message{
		Topic:    "plant/7/telemetry/temp",
		Payload:  []byte(`{"device":{"id":"d-42","n":17,"tags":["x","y"],"nil":null,"on":true},"s":""}`),
		ClientID: "dev-1",
		Username: "alice",
		UserProperties: []UserProperty{
			{"site", "berlin"}, {"site", "paris"}, {"empty", ""},
		},
	}
	anon := &Message{Topic: "a/b", Payload: []byte("not json"), ClientID: "c9"}
	tests := []struct {
		expr   string
		msg    *Message
		want   string
		wantOK bool
	}{
		{"topic", msg, "plant/7/telemetry/temp", true},
		{"clientid", msg, "dev-1", true},
		{"client_id", msg, "dev-1", true},
		{"username", msg, "alice", true},
		{"username", anon, "", false},
		{"topic-level:1", msg, "plant", true},
		{"topic-level:2", msg, "7", true},
		{"topic-level:4", msg, "temp", true},
		{"topic-level:5", msg, "", false},
		{"topic-level:2", &Message{Topic: "a//b"}, "", false},
		{"user-property:site", msg, "berlin", true},
		{"user-property:empty", msg, "", false},
		{"user-property:missing", msg, "", false},
		{"json:device.id", msg, "d-42", true},
		{"json:device.n", msg, "17", true},
		{"json:device.on", msg, "true", true},
		{"json:device.tags", msg, `["x","y"]`, true},
		{"json:device.tags.1", msg, "y", true},
		{"json:device.tags.2", msg, "", false},
		{"json:device.nil", msg, "", false},
		{"json:device.missing", msg, "", false},
		{"json:s", msg, "", false},
		{"json:device.id.x", msg, "", false},
		{"json:device", &Message{Payload: []byte(`{"device": { "a" : 1 }}`)}, `{"a":1}`, true},
		{"json:a", anon, "", false},
		{"json:a", &Message{Payload: []byte(`{"a":`)}, "", false},
		{"none", msg, "", false},
		// EMQX forms.
		{"message.from", msg, "dev-1", true},
		{"message.topic", msg, "plant/7/telemetry/temp", true},
		{"message.headers.username", msg, "alice", true},
		{"message.headers.properties.User-Property.site", msg, "berlin", true},
		{"concat(message.from, '/', message.topic)", msg, "dev-1/plant/7/telemetry/temp", true},
		{`concat("p-", topic-level:2, '-', json:device.id)`, msg, "p-7-d-42", true},
		{"concat('a,b', 'c')", msg, "a,bc", true},
		{`concat('it\'s', clientid)`, msg, "it'sdev-1", true},
		{"concat(concat(clientid, '.'), username)", msg, "dev-1.alice", true},
		// A missing variable part makes the whole key fall back, not collapse.
		{"concat('x-', username)", anon, "", false},
		{"concat(user-property:site, ':', message.headers.properties.User-Property.nope)", msg, "", false},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.expr)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tt.expr, err)
			continue
		}
		got, ok := k.Eval(tt.msg)
		if ok != tt.wantOK || string(got) != tt.want {
			t.Errorf("%q.Eval = %q, %v; want %q, %v", tt.expr, got, ok, tt.want, tt.wantOK)
		}
		if k.String() != tt.expr {
			t.Errorf("String() = %q, want %q", k.String(), tt.expr)
		}
		if k.None() != (tt.expr == "none") {
			t.Errorf("%q.None() = %v", tt.expr, k.None())
		}
	}
}

// Vectors from Kafka's UtilsTest.testMurmur2 (also franz-go's partitioner tests).
func TestMurmur2(t *testing.T) {
	tests := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
		{"", 275646681},
	}
	for _, tt := range tests {
		if got := Murmur2([]byte(tt.in)); got != tt.want {
			t.Errorf("Murmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestShardMatchesKafkaPartitioner checks that a Kafka producer using the Java
// client's default partitioning (franz-go's StickyKeyPartitioner with its Kafka
// hasher) puts every key on the shard the mapping picks.
func TestShardMatchesKafkaPartitioner(t *testing.T) {
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int32{1, 2, 3, 4, 7, 8, 16, 100, 10000} {
		for i := 0; i < 500; i++ {
			key := []byte(fmt.Sprintf("device-%d/%x", i, i*7919))
			want := int32(part.Partition(&kgo.Record{Key: key}, int(n)))
			if got := Shard(key, n); got != want {
				t.Fatalf("Shard(%q, %d) = %d, Kafka partitioner says %d", key, n, got, want)
			}
		}
	}
	if got := Shard([]byte("x"), 0); got != 0 {
		t.Errorf("Shard with 0 shards = %d, want 0", got)
	}
}

func TestShardKnownValues(t *testing.T) {
	// (murmur2 & 0x7fffffff) % n computed from the Kafka vectors above.
	tests := []struct {
		key  string
		n    int32
		want int32
	}{
		{"21", 4, int32((-973932308 & 0x7fffffff) % 4)},
		{"foobar", 10, int32((-790332482 & 0x7fffffff) % 10)},
		{"abc", 7, 479470107 % 7},
	}
	for _, tt := range tests {
		if got := Shard([]byte(tt.key), tt.n); got != tt.want {
			t.Errorf("Shard(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
}
