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
	if c.Durability != log.DurabilityWrite || c.SyncInterval != 25*time.Millisecond || c.AppendQueueBytes != 16<<20 {
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
			c.Durability != log.DurabilityFsync || c.SyncInterval != 10*time.Millisecond {
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
		{"unknown top key", "foo: 1\n", []string{"config line 1: foo: unknown field"}},
		{"bad durability", "durability: lazy\n", []string{"config line 1: durability: unknown value \"lazy\" (known: fsync, write)"}},
		{"small append_queue_bytes", "append_queue_bytes: 1000\n", []string{"append_queue_bytes: must be at least 1MiB"}},
		{"bad sync_interval", "sync_interval: 0s\n", []string{"sync_interval: expected a positive duration"}},
		{"bad stream durability", "streams: [{name: a, filter: a, durability: off}]\n", []string{"durability"}},
		{"queued below max request", "kafka:\n  max_request_bytes: 2MiB\n  queued_max_request_bytes: 1MiB\n", []string{"kafka.queued_max_request_bytes: must be at least kafka.max_request_bytes"}},
		{"bad connect timeout", "mqtt:\n  connect_timeout_ms: 0\n", []string{"mqtt.connect_timeout_ms: expected a whole number from 1"}},
		{"unknown nested key", "mqtt:\n  addr: \":1\"\n  port: 3\n", []string{"config line 3: mqtt.port: unknown field", "known: addr, connect_timeout_ms, max_connect_bytes, max_connections, max_connections_per_ip, max_packet_bytes, max_queued_bytes, max_queued_packets, maximum_qos, packet_timeout_ms, receive_maximum, retain_available, shared_subscriptions, tls, topic_alias_maximum, wildcard_subscriptions, ws_addr"}},
		{"unknown tls key", "mqtt: {tls: {crt: a}}\n", []string{"mqtt.tls.crt: unknown field"}},
		{"duplicate key", "http: {addr: \":1\"}\nhttp: {addr: \":2\"}\n", []string{"config line 2: http: duplicate key (first at line 1)"}},
		{"section not a map", "mqtt: 1883\n", []string{"config line 1: mqtt: expected a mapping"}},
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
		{"bad shards", "auto_create: {shards: 0}\n", []string{"auto_create.shards: expected a whole number of at least 1"}},
		{"empty data dir", "data_dir: \"\"\n", []string{"data_dir: must not be empty"}},
		{"data dir list", "data_dir: [a]\n", []string{"data_dir: expected a string, got a list"}},
		{"streams not a list", "streams: {name: x}\n", []string{"streams: expected a list"}},
		{"stream not a map", "streams: [x]\n", []string{"streams[0]: expected a stream definition"}},
		{"duplicate stream", "streams:\n  - {name: telemetry, filter: \"a/#\"}\n  - {name: telemetry, filter: \"b/#\"}\n",
			[]string{`config line 3: streams[1] "telemetry": duplicate stream name (also streams[0])`}},
		{"invalid filter", "streams:\n  - {name: s, filter: \"a/#/b\"}\n", []string{"config line 2: streams[0]", "filter"}},
		{"unknown stream field", "streams:\n  - {name: s, filter: \"a\", colour: red}\n", []string{"streams[0]", "colour"}},
		{"bad duration", "streams:\n  - {name: s, filter: \"a\", retention: {max_age: forever}}\n", []string{"streams[0]", "max_age"}},
		{"bad stream name", "streams:\n  - {name: \"a b\", filter: \"a\"}\n", []string{"streams[0]", "name"}},
		{"missing filter", "streams:\n  - {name: s}\n", []string{`streams[0] "s"`, "filter"}},
		{"user without hash", "auth: {users: [{username: u}]}\n", []string{"auth.users[0]: username and password_hash are required"}},
		{"bad hash", "auth: {users: [{username: u, password_hash: h}]}\n", []string{"auth.users[0].password_hash: not a password hash"}},
		{"acl bad op", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{stream: s, allow: [fly]}]}]}\n", []string{"auth.users[0].acl[0].allow[0]: unknown operation \"fly\""}},
		{"acl op on wrong resource", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{topic: a, allow: [read]}]}]}\n", []string{"auth.users[0].acl[0]: topic \"a\": read does not apply to a topic"}},
		{"acl two resources", "auth: {users: [{username: u, password_hash: \"" + testHash + "\", acl: [{topic: a, stream: b, allow: [read]}]}]}\n", []string{"auth.users[0].acl[0]: a rule names exactly one of topic, stream or group"}},
		{"acl bad filter", "auth: {anonymous_acl: [{topic: \"a/#/b\", allow: [publish]}]}\n", []string{"auth.anonymous_acl[0]: topic filter \"a/#/b\""}},
		{"bad memory limit", "memory_limit: lots\n", []string{"memory_limit:"}},
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
	if len(c.Auth.Users) != 2 || !c.Auth.Users[1].Superuser {
		t.Fatalf("users: %+v", c.Auth.Users)
	}
	want := []auth.Rule{
		{Resource: auth.ResTopic, Name: "plant/#", Ops: auth.OpPublish | auth.OpSubscribe},
		{Resource: auth.ResStream, Name: "telemetry", Ops: auth.OpRead | auth.OpWrite | auth.OpAdmin},
		{Resource: auth.ResStream, Name: "plant.", Prefix: true, Ops: auth.OpRead},
		{Resource: auth.ResGroup, Name: "etl-", Prefix: true, Ops: auth.OpRead},
	}
	if got := c.Auth.Users[0].Rules; !reflect.DeepEqual(got, want) {
		t.Fatalf("rules:\n got %+v\nwant %+v", got, want)
	}
	if !c.Auth.Users[0].Credentials.VerifyPassword("pw") {
		t.Fatal("password hash not decoded")
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
