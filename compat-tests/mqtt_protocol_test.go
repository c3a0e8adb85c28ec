package compattests

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStreamOffsetUnits: mosquitto_sub replaying with a millisecond time written with
// its unit gets the records from then on; the same number bare, which read as µs would
// replay everything, is refused.
func TestStreamOffsetUnits(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	publishMosquitto(t, srv.MQTTAddr, "units", "u/1", "before")
	since := time.Now().Add(-time.Minute).UnixMilli()

	got := mosquittoSub(t, srv.MQTTAddr, "-V", "mqttv5", "-t", "$stream/mqtt",
		"-D", "subscribe", "user-property", "stream-offset", strconv.FormatInt(since, 10)+"ms", "-C", "1", "-F", "%t %p")
	if len(got) != 1 || got[0] != "u/1 before" {
		t.Fatalf("stream-offset %dms: got %q", since, got)
	}
	out := mosquittoSub(t, srv.MQTTAddr, "-V", "mqttv5", "-t", "$stream/mqtt",
		"-D", "subscribe", "user-property", "stream-offset", strconv.FormatInt(since, 10), "-W", "30")
	if !strings.Contains(strings.Join(out, "\n"), "denied") {
		t.Fatalf("bare millisecond stream-offset %d accepted: %q", since, out)
	}
}

// TestKeyFallback: a stream keyed by a JSON path takes the key from the payload; a
// publish without the path gets the stream's key_fallback (here the topic), and the
// fallback shows in /metrics (mosquitto_pub in, franz-go out).
func TestKeyFallback(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: `
streams:
  - name: devices
    filter: "dev/#"
    shards: 2
    key: json:device.id
    key_fallback: topic
`})
	publishMosquitto(t, srv.MQTTAddr, "kf-1", "dev/a", `{"device":{"id":"d-17"}}`)
	publishMosquitto(t, srv.MQTTAddr, "kf-2", "dev/b", `not json`)
	keys := map[string]string{}
	for _, r := range consume(t, srv.KafkaAddr, "devices", 2) {
		keys[r.value] = r.key
	}
	if keys[`{"device":{"id":"d-17"}}`] != "d-17" || keys["not json"] != "dev/b" {
		t.Fatalf("record keys by value: %v", keys)
	}
	_, metrics := srv.HTTPGet(t, "/metrics")
	if v, ok := metricValue(t, metrics, "mqstreams_key_fallbacks_total", `stream="devices"`); !ok || v != 1 {
		t.Fatalf("mqstreams_key_fallbacks_total{stream=\"devices\"} = %v (present %v), want 1", v, ok)
	}
}
