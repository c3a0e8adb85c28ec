package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

func TestParseConfigFull(t *testing.T) {
	c, err := ParseConfig([]byte(`
data_dir: /var/lib/mqstreams
durability: write
sync_interval: 25ms
append_queue_bytes: 16MiB
mqtt:  { addr: ":1884", max_packet_bytes: 2MiB, receive_maximum: 100, topic_alias_maximum: 0, maximum_qos: 1, retain_available: false, wildcard_subscriptions: false, shared_subscriptions: false }
kafka: { addr: "127.0.0.1:9093", advertised_addr: "broker.example:9093", max_request_bytes: 1048576 }
http:  { addr: ":8081" }
auto_create: { enabled: false, shards: 2 }
streams:
  - name: telemetry
    filter: "plant/+/telemetry/#"
    shards: 8
    key: topic-level:2
    last_value: false
    retention: { max_age: 72h, max_bytes: 10GiB }
  - name: all
    filters: ["a/#", "b/#"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Durability != log.DurabilityWrite || c.SyncInterval != mapping.Duration(25*time.Millisecond) || c.AppendQueueBytes != 16<<20 {
		t.Errorf("durability %q, sync_interval %v", c.Durability, c.SyncInterval)
	}
	if c.DataDir != "/var/lib/mqstreams" || c.MQTT.Addr != ":1884" || c.MQTT.MaxPacketBytes != 2<<20 {
		t.Errorf("data_dir/mqtt: %+v %+v", c.DataDir, c.MQTT)
	}
	if m := c.MQTT; m.ReceiveMaximum != 100 || m.TopicAliasMaximum != 0 || m.MaximumQoS != 1 || m.RetainAvailable || m.WildcardSubscriptions || m.SharedSubscriptions {
		t.Errorf("mqtt limits: %+v", m)
	}
	if d := DefaultConfig().MQTT; d.ReceiveMaximum != 1024 || d.TopicAliasMaximum != 65535 || d.MaximumQoS != 2 || !d.RetainAvailable || !d.WildcardSubscriptions || !d.SharedSubscriptions {
		t.Errorf("default mqtt limits: %+v", d)
	}
	if c.Kafka.Addr != "127.0.0.1:9093" || c.Kafka.AdvertisedAddr != "broker.example:9093" || c.Kafka.MaxRequestBytes != 1<<20 {
		t.Errorf("kafka: %+v", c.Kafka)
	}
	if c.HTTP.Addr != ":8081" || c.AutoCreate.Shards != 2 || c.AutoCreate.Enabled {
		t.Errorf("http/auto_create: %+v %+v", c.HTTP, c.AutoCreate)
	}
	if !c.StreamsSet || len(c.Streams) != 2 {
		t.Fatalf("streams: %+v", c.Streams)
	}
	tel := c.Streams[0]
	if tel.Name != "telemetry" || tel.Shards != 8 || tel.Key != "topic-level:2" ||
		len(tel.Filters) != 1 || tel.Filters[0] != "plant/+/telemetry/#" ||
		tel.Retention.MaxAge != 72*time.Hour || tel.Retention.MaxBytes != 10<<30 {
		t.Errorf("telemetry: %+v", tel)
	}
	if all := c.Streams[1]; all.Shards != 4 || all.Key != "clientid" || len(all.Filters) != 2 {
		t.Errorf("defaults not filled for %+v", all)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "mqtt:\n", "{}"} {
		c, err := ParseConfig([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		d := DefaultConfig()
		if c.DataDir != d.DataDir || c.MQTT != d.MQTT || c.Kafka != d.Kafka || c.HTTP != d.HTTP || c.AutoCreate != d.AutoCreate ||
			c.Durability != log.DurabilityFsync || c.SyncInterval != mapping.Duration(10*time.Millisecond) {
			t.Errorf("%q: got %+v, want defaults %+v", src, c, d)
		}
		if c.StreamsSet {
			t.Errorf("%q: StreamsSet", src)
		}
	}
	c, err := ParseConfig([]byte("streams: []\n"))
	if err != nil || !c.StreamsSet || len(c.Streams) != 0 {
		t.Errorf("explicit empty streams: %+v %v", c, err)
	}
}

func TestParseConfigEMQXAliases(t *testing.T) {
	c, err := ParseConfig([]byte(`
streams:
  - name: emqx
    topic_filter: "t/#"
    key_expression: message.from
    is_lastvalue: true
    data_retention_period: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Streams[0]
	if d.Filters[0] != "t/#" || !d.LastValue || d.Retention.MaxAge != time.Hour {
		t.Errorf("aliases not applied: %+v", d)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings of the one-line message
	}{
		{"unknown top key", "foo: 1\n", []string{"config:1: foo: unknown field"}},
		{"bad durability", "durability: lazy\n", []string{"config:1: durability: unknown value \"lazy\" (known: fsync, write)"}},
		{"small append_queue_bytes", "append_queue_bytes: 1000\n", []string{"append_queue_bytes: must be at least 1MiB"}},
		{"bad sync_interval", "sync_interval: 0s\n", []string{"sync_interval: expected a positive duration"}},
		{"bad stream durability", "streams: [{name: a, filter: a, durability: off}]\n", []string{"durability"}},
		{"queued below max request", "kafka:\n  max_request_bytes: 2MiB\n  queued_max_request_bytes: 1MiB\n", []string{"kafka.queued_max_request_bytes: must be at least kafka.max_request_bytes"}},
		{"bad connect timeout", "mqtt:\n  connect_timeout_ms: 0\n", []string{"mqtt.connect_timeout_ms: expected a whole number from 1"}},
		{"unknown nested key", "mqtt:\n  addr: \":1\"\n  port: 3\n", []string{"config:3: mqtt.port: unknown field", "known: addr, connect_timeout_ms, max_connect_bytes, max_connections, max_connections_per_ip, max_packet_bytes, max_queued_bytes, max_queued_packets, maximum_qos, packet_timeout_ms, receive_maximum, retain_available, shared_subscriptions, tls, topic_alias_maximum, wildcard_subscriptions, ws_addr"}},
		{"unknown tls key", "mqtt: {tls: {crt: a}}\n", []string{"mqtt.tls.crt: unknown field"}},
		{"duplicate key", "http: {addr: \":1\"}\nhttp: {addr: \":2\"}\n", []string{"config:2: http: duplicate key (first at line 1)"}},
		{"section not a map", "mqtt: 1883\n", []string{"config:1: mqtt: expected a mapping"}},
		{"bad addr", "mqtt: {addr: localhost}\n", []string{"mqtt.addr: expected host:port"}},
		{"bad port", "kafka: {addr: \":99999\"}\n", []string{"kafka.addr: port"}},
		{"advertised without host", "kafka: {advertised_addr: \":9092\"}\n", []string{"kafka.advertised_addr"}},
		{"advertised port 0", "kafka: {advertised_addr: \"h:0\"}\n", []string{"kafka.advertised_addr"}},
		{"bad size", "mqtt: {max_packet_bytes: lots}\n", []string{"mqtt.max_packet_bytes", "lots"}},
		{"bad qos", "mqtt: {maximum_qos: 3}\n", []string{"mqtt.maximum_qos: expected a whole number from 0 to 2"}},
		{"zero receive maximum", "mqtt: {receive_maximum: 0}\n", []string{"mqtt.receive_maximum: expected a whole number from 1 to 65535"}},
		{"bad alias maximum", "mqtt: {topic_alias_maximum: 70000}\n", []string{"mqtt.topic_alias_maximum"}},
		{"bad retain", "mqtt: {retain_available: 1}\n", []string{"mqtt.retain_available: expected true or false"}},
		{"size too big", "kafka: {max_request_bytes: 4GiB}\n", []string{"kafka.max_request_bytes: must be from 1 to"}},
		{"zero size", "kafka: {max_request_bytes: 0}\n", []string{"kafka.max_request_bytes: must be from 1"}},
		{"bad bool", "auto_create: {enabled: maybe}\n", []string{"auto_create.enabled: expected true or false"}},
		{"bad shards", "auto_create: {shards: 0}\n", []string{"auto_create.shards: expected a whole number from 1 to 10000, got 0"}},
		{"empty data dir", "data_dir: \"\"\n", []string{"data_dir: must not be empty"}},
		{"data dir list", "data_dir: [a]\n", []string{"data_dir: expected a string, got a list"}},
		{"streams not a list", "streams: {name: x}\n", []string{"streams: expected a list"}},
		{"stream not a map", "streams: [x]\n", []string{"config:1: streams[0]: expected a mapping, got \"x\""}},
		{"duplicate stream", "streams:\n  - {name: telemetry, filter: \"a/#\"}\n  - {name: telemetry, filter: \"b/#\"}\n",
			[]string{`config:3: streams[1].name: duplicate stream name "telemetry" (also streams[0])`}},
		{"invalid filter", "streams:\n  - {name: s, filter: \"a/#/b\"}\n", []string{"config:2: streams[0]", "filter"}},
		{"unknown stream field", "streams:\n  - {name: s, filter: \"a\", colour: red}\n", []string{"streams[0]", "colour"}},
		{"bad duration", "streams:\n  - {name: s, filter: \"a\", retention: {max_age: forever}}\n", []string{"streams[0]", "max_age"}},
		{"bad stream name", "streams:\n  - {name: \"a b\", filter: \"a\"}\n", []string{"streams[0]", "name"}},
		{"missing filter", "streams:\n  - {name: s}\n", []string{`config:2: streams[0].filter: at least one topic filter is required (in "s")`}},
		{"user without hash", "auth: {users: [{username: u}]}\n", []string{"auth.users[0]: username and password_hash are required"}},
		{"bad hash", "auth: {users: [{username: u, password_hash: h}]}\n", []string{"auth.users[0].password_hash: not a password hash"}},
		{"acl bad op", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{stream: s, allow: [fly]}]}]}\n", []string{"auth.users[0].acl[0].allow[0]: unknown operation \"fly\""}},
		{"acl op on wrong resource", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{topic: a, allow: [read]}]}]}\n", []string{"auth.users[0].acl[0]: topic \"a\": read does not apply to a topic"}},
		{"acl two resources", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{topic: a, stream: b, allow: [read]}]}]}\n", []string{"auth.users[0].acl[0]: a rule names exactly one of topic, stream or group"}},
		{"acl bad filter", "auth: {anonymous_acl: [{topic: \"a/#/b\", allow: [publish]}]}\n", []string{"auth.anonymous_acl[0]: topic filter \"a/#/b\""}},
		{"bad memory limit", "memory_limit: lots\n", []string{"memory_limit:"}},
		{"cache too small", "storage: {cache_bytes: 64KiB}\n", []string{"storage.cache_bytes:"}},
		{"cache not a size", "storage: {cache_bytes: big}\n", []string{"storage.cache_bytes:"}},
		{"bad security protocol", "kafka: {security_protocol: tls}\n", []string{"kafka.security_protocol: unknown value \"tls\" (known: plaintext, ssl, sasl_plaintext, sasl_ssl)"}},
		{"tls without key", "http: {tls: {cert: c.pem}}\n", []string{"http.tls: cert and key are both required"}},
		{"allow_anonymous not bool", "auth: {allow_anonymous: yes please}\n", []string{"auth.allow_anonymous: expected true or false"}},
		{"yaml syntax", "mqtt: {addr: \":1\"\n", []string{"config"}},
		{"two documents", "mqtt: {}\n---\nhttp: {}\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src))
			if err == nil {
				t.Fatalf("no error for %q", tt.src)
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("message spans lines: %q", msg)
			}
			if !strings.HasPrefix(msg, "config") {
				t.Errorf("message %q does not start with config", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("data_dir: from-file\nmqtt: {addr: \":1\"}\nkafka: {addr: \":2\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(Overrides{ConfigFile: file, MQTTAddr: "127.0.0.1:0", AdvertisedAddr: "h:9"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "from-file" || c.MQTT.Addr != "127.0.0.1:0" || c.Kafka.Addr != ":2" || c.Kafka.AdvertisedAddr != "h:9" || c.HTTP.Addr != ":8080" {
		t.Errorf("got %+v", c)
	}
	for _, o := range []Overrides{
		{MQTTAddr: "nope"},
		{KafkaAddr: ":x"},
		{HTTPAddr: "1.2.3.4"},
		{AdvertisedAddr: ":9092"},
	} {
		if _, err := LoadConfig(o); err == nil || !strings.HasPrefix(err.Error(), "flag --") {
			t.Errorf("%+v: got %v, want a flag error", o, err)
		}
	}
	if _, err := LoadConfig(Overrides{ConfigFile: filepath.Join(dir, "missing.yaml")}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// testHash is the output of "mqstreams hash-password" for "pw" (bcrypt cost 4).
var testHash = func() string {
	c, err := auth.HashPassword("pw", 4)
	if err != nil {
		panic(err)
	}
	return c.String()
}()

func TestAuthConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
auth:
  allow_anonymous: false
  users:
    - username: alice
      password_hash: "` + testHash + `"
      acl:
        - { topic: "plant/#", allow: [publish, subscribe] }
        - { stream: telemetry, allow: [read, write, admin] }
        - { stream: "plant.*", allow: [read] }
        - { group: "etl-", allow: [read] }
    - username: root
      password_hash: "` + testHash + `"
      superuser: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.AllowAnonymous == nil || *c.Auth.AllowAnonymous {
		t.Fatalf("allow_anonymous: %v", c.Auth.AllowAnonymous)
	}
	users := c.Auth.UserList()
	if len(users) != 2 || !users[1].Superuser || users[1].Name != "root" {
		t.Fatalf("users: %+v", users)
	}
	want := []auth.Rule{
		{Resource: auth.ResTopic, Name: "plant/#", Ops: auth.OpPublish | auth.OpSubscribe},
		{Resource: auth.ResStream, Name: "telemetry", Ops: auth.OpRead | auth.OpWrite | auth.OpAdmin},
		{Resource: auth.ResStream, Name: "plant.", Prefix: true, Ops: auth.OpRead},
		{Resource: auth.ResGroup, Name: "etl-", Prefix: true, Ops: auth.OpRead},
	}
	if got := users[0].Rules; !reflect.DeepEqual(got, want) {
		t.Fatalf("rules:\n got %+v\nwant %+v", got, want)
	}
	if !users[0].Credentials.VerifyPassword("pw") {
		t.Fatal("password hash not decoded")
	}
}

func TestStorageCacheBytes(t *testing.T) {
	c, err := ParseConfig([]byte("storage: {cache_bytes: 256MiB}\n"))
	if err != nil || c.Storage.CacheBytes != 256<<20 {
		t.Fatalf("storage.cache_bytes: %d %v", c.Storage.CacheBytes, err)
	}
	if c := DefaultConfig(); c.Storage.CacheBytes != log.DefaultCacheBytes {
		t.Fatalf("default storage.cache_bytes %d, want %d", c.Storage.CacheBytes, log.DefaultCacheBytes)
	}
}

func TestMemoryLimit(t *testing.T) {
	c, err := ParseConfig([]byte("memory_limit: 200MiB\n"))
	if err != nil || c.MemoryLimit != 200<<20 {
		t.Fatalf("memory_limit: %d %v", c.MemoryLimit, err)
	}
	if c := DefaultConfig(); c.MemoryLimit != 0 {
		t.Fatalf("default memory_limit %d, want none", c.MemoryLimit)
	}
}

// TestConfigBadValues covers each kind of bad value at each level of the file: the
// message is one line naming the line and the key path, then the reason.
func TestConfigBadValues(t *testing.T) {
	user := "auth:\n  users:\n    - username: u\n      password_hash: \"" + testHash + "\"\n"
	stream := "streams:\n  - name: ok\n    filter: a\n  - name: s\n    filter: b/#\n"
	tests := []struct {
		name, src, want string
	}{
		// Unknown keys, at every level.
		{"unknown top", "data_dir: d\nmqqt: {}\n", "config:2: mqqt: unknown field (known: append_queue_bytes, auth, auto_create, cluster, data_dir, durability, http, kafka, memory_limit, mqtt, storage, streams, sync_interval)"},
		{"unknown mqtt", "mqtt:\n  adr: \":1\"\n", "config:2: mqtt.adr: unknown field (known: addr,"},
		{"unknown mqtt tls", "mqtt:\n  tls:\n    cert: a\n    kee: b\n", "config:4: mqtt.tls.kee: unknown field (known: cert, client_ca, key)"},
		{"unknown kafka", "kafka:\n  addr: \":1\"\n  sasl: true\n", "config:3: kafka.sasl: unknown field (known: addr, advertised_addr,"},
		{"unknown http", "http:\n  metrics: true\n", "config:2: http.metrics: unknown field (known: addr, idle_timeout_ms, metrics_auth, read_timeout_ms, tls)"},
		{"unknown storage", "storage:\n  min_free: 1\n", "config:2: storage.min_free: unknown field (known: cache_bytes, min_free_bytes)"},
		{"unknown auth", "auth:\n  anonymous: true\n", "config:2: auth.anonymous: unknown field (known: allow_anonymous, anonymous_acl, users)"},
		{"unknown user", user + "      admin: true\n", "config:5: auth.users[0].admin: unknown field (known: acl, password_hash, superuser, username) (in \"u\")"},
		{"unknown acl", user + "      acl:\n        - topic: a\n          allow: [publish]\n          deny: [subscribe]\n", "config:8: auth.users[0].acl[0].deny: unknown field (known: allow, group, stream, topic) (in \"u\")"},
		{"unknown cluster", "cluster:\n  node_id: 1\n  raft_address: \":7000\"\n", "config:3: cluster.raft_address: unknown field (known: join, node_id, peers, raft_addr)"},
		{"unknown cluster peer", "cluster:\n  node_id: 1\n  raft_addr: \":7000\"\n  peers:\n    - {id: 2, addr: \"h:7000\"}\n", "config:5: cluster.peers[0].addr: unknown field (known: id, raft_addr)"},
		{"unknown auto_create", "auto_create:\n  shard: 2\n", "config:2: auto_create.shard: unknown field (known: enabled, shards)"},
		{"unknown stream", stream + "    partitions: 3\n", "config:6: streams[1].partitions: unknown field (known: compression, data_retention_period, deliver_produced, durability, filter, filters, is_lastvalue, key, key_expression, key_fallback, last_value, limits, name, publish_topic, read_max_unacked, replication_factor, retention, shards, topic_filter) (in \"s\")"},
		{"unknown retention", stream + "    retention:\n      max_size: 1GiB\n", "config:7: streams[1].retention.max_size: unknown field (known: max_age, max_bytes, max_messages) (in \"s\")"},
		{"unknown limits", stream + "    limits:\n      max_count: 1\n", "config:7: streams[1].limits.max_count: unknown field (known: max_shard_message_bytes, max_shard_message_count) (in \"s\")"},
		{"unknown in flow style", "mqtt: {addr: \":1\", tls: {cert: a, key: b, ca: c}}\n", "config:1: mqtt.tls.ca: unknown field (known: cert, client_ca, key)"},
		// Wrong types.
		{"empty value", "mqtt:\n  max_packet_bytes:\n", "config:2: mqtt.max_packet_bytes: expected a value, got nothing"},
		{"quoted number", "kafka:\n  frame_timeout_ms: \"5\"\n", "config:2: kafka.frame_timeout_ms: expected a whole number, got \"5\""},
		{"section is a list", "kafka: [a]\n", "config:1: kafka: expected a mapping, got a list"},
		{"number is text", "mqtt:\n  receive_maximum: many\n", "config:2: mqtt.receive_maximum: expected a whole number, got \"many\""},
		{"number is fractional", "http:\n  read_timeout_ms: 1.5\n", "config:2: http.read_timeout_ms: expected a whole number, got \"1.5\""},
		{"number is a list", "kafka:\n  max_connections: [1]\n", "config:2: kafka.max_connections: expected a whole number, got a list"},
		{"bool is text", "http:\n  metrics_auth: sometimes\n", "config:2: http.metrics_auth: expected true or false, got \"sometimes\""},
		{"string is a mapping", "kafka:\n  advertised_addr: {host: h}\n", "config:2: kafka.advertised_addr: expected a string, got a mapping"},
		{"list is a string", "auth:\n  users: alice\n", "config:2: auth.users: expected a list, got \"alice\""},
		{"size is a list", "mqtt:\n  max_queued_bytes: [1]\n", "config:2: mqtt.max_queued_bytes: expected a size such as 1024 or 16MiB, got a list"},
		{"shards is text", stream + "    shards: many\n", "config:6: streams[1].shards: expected a whole number, got \"many\" (in \"s\")"},
		{"last_value is text", stream + "    last_value: maybe\n", "config:6: streams[1].last_value: expected true or false, got \"maybe\" (in \"s\")"},
		// Bad sizes, durations, filters and key expressions.
		{"bad size unit", "mqtt:\n  max_packet_bytes: 2XB\n", "config:2: mqtt.max_packet_bytes: invalid byte size \"2XB\""},
		{"fractional bytes", "memory_limit: 1.5B\n", "config:1: memory_limit: byte size \"1.5B\" is not a whole number of bytes"},
		{"size too large", "mqtt:\n  max_packet_bytes: 1GiB\n", "config:2: mqtt.max_packet_bytes: must be from 1 to 268435460 bytes, got 1073741824"},
		{"bad duration", "sync_interval: soon\n", "config:1: sync_interval: invalid duration \"soon\""},
		{"duration without unit", "sync_interval: 10\n", "config:1: sync_interval: invalid duration \"10\""},
		{"bad retention age", stream + "    retention: {max_age: 3 days}\n", "config:6: streams[1].retention.max_age: invalid duration \"3 days\""},
		{"bad filter", stream + "    filters: [a, \"a/#/b\"]\n", "config:6: streams[1].filters[1]: \"a/#/b\": '#' must be the last level (in \"s\")"},
		{"bad filter level", "streams:\n  - name: s\n    filter: \"+x\"\n", "config:3: streams[0].filter: \"+x\": '+' must occupy a whole level (in \"s\")"},
		{"shared filter", "streams:\n  - name: s\n    filter: $share/g/a\n", "config:3: streams[0].filter: \"$share/g/a\": a shared subscription filter cannot feed a stream (in \"s\")"},
		{"bad key", stream + "    key: topic-level:0\n", "config:6: streams[1].key: \"topic-level:0\": topic-level needs a level number from 1 (in \"s\")"},
		{"bad key fallback", stream + "    key_fallback: json:a..b\n", "config:6: streams[1].key_fallback: \"json:a..b\": json path \"a..b\" has an empty segment (in \"s\")"},
		{"bad acl filter", "auth:\n  anonymous_acl:\n    - topic: \"a/#/b\"\n      allow: [publish]\n", "config:3: auth.anonymous_acl[0]: topic filter \"a/#/b\""},
		// Negative numbers.
		{"negative int", "mqtt:\n  max_connections: -1\n", "config:2: mqtt.max_connections: expected a whole number from 0 to 2147483647, got -1"},
		{"negative size", "mqtt:\n  max_queued_bytes: -1\n", "config:2: mqtt.max_queued_bytes: byte size \"-1\" is negative"},
		{"negative ms", "kafka:\n  session_lifetime_ms: -5\n", "config:2: kafka.session_lifetime_ms: expected a whole number from 0 to 9223372036854775807, got -5"},
		{"negative shards", stream + "    shards: -2\n", "config:6: streams[1].shards: -2 out of range 1..10000 (in \"s\")"},
		{"negative retention bytes", stream + "    retention:\n      max_bytes: -1\n", "config:7: streams[1].retention.max_bytes: must not be negative (in \"s\")"},
		{"negative retention count", stream + "    limits: {max_shard_message_count: -10}\n", "config:6: streams[1].limits.max_shard_message_count: must not be negative (in \"s\")"},
		{"negative duration", "sync_interval: -10ms\n", "config:1: sync_interval: negative duration \"-10ms\""},
		{"negative auto_create shards", "auto_create:\n  shards: -1\n", "config:2: auto_create.shards: expected a whole number from 1 to 10000, got -1"},
		{"negative node id", "cluster:\n  node_id: -1\n  raft_addr: \":7000\"\n", "config:2: cluster.node_id: expected a whole number, got \"-1\""},
		{"zero node id", "cluster:\n  node_id: 0\n  raft_addr: \":7000\"\n", "config:2: cluster.node_id: must be 1..65535, got 0"},
		{"bad raft addr", "cluster:\n  node_id: 1\n  raft_addr: nowhere\n", "config:3: cluster.raft_addr: \"nowhere\""},
		{"peer listed twice", "cluster:\n  node_id: 1\n  raft_addr: \":7000\"\n  peers:\n    - {id: 2, raft_addr: \"a:1\"}\n    - {id: 2, raft_addr: \"b:1\"}\n", "config:6: cluster.peers[1].id: node 2 listed twice"},
		{"negative transaction timeout", "kafka:\n  transaction_max_timeout_ms: -1\n", "config:2: kafka.transaction_max_timeout_ms: expected a whole number from 0 to"},
		// Rules across fields.
		{"aliases disagree", stream + "    topic_filter: c\n", "config:6: streams[1].topic_filter: disagrees with filter (in \"s\")"},
		{"duplicate user", user + "    - username: u\n      password_hash: \"" + testHash + "\"\n", "config:5: auth.users[1].username: duplicate username \"u\" (also users[0])"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.src)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("got  %s\nwant %s...", msg, tt.want)
			}
		})
	}
}

// TestConfigFileErrorNamesFile: errors from a file start with its name and line.
func TestConfigFileErrorNamesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	src := "streams:\n  - name: a\n    filter: x\n  - name: b\n    filter: y\n  - name: c\n    filter: z\n    retention:\n      max_bytes: -3\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfigFile(file)
	want := file + `:9: streams[2].retention.max_bytes: must not be negative (in "c")`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
