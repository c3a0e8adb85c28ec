package compattests

import (
	"context"
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

// TestSharedWildcardNoSysTopics: a mosquitto_sub member of `$share/g/#` gets ordinary
// publishes but none of the broker's $SYS topics [MQTT-4.7.2-1]; a member of
// `$share/g2/$SYS/#` still gets them.
func TestSharedWildcardNoSysTopics(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	ctx, cancel := context.WithCancel(Deadline(t, startTimeout))
	defer cancel()
	lines := make(chan string, 1024)
	startSubTool(t, ctx, NeedTool(t, "mosquitto_sub"), srv.MQTTAddr, func(l string) { lines <- l },
		"-V", "mqttv5", "-t", "$share/g/#", "-F", "%t")
	// Subscribed once a publish of ours comes through.
	ready := false
	for i := 0; !ready; i++ {
		publishMosquitto(t, srv.MQTTAddr, "ready-pub", "ready/x", "r")
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "$") {
				t.Fatalf("$share/g/# member got %q", l)
			}
			ready = true
		case <-time.After(time.Second):
		case <-ctx.Done():
			t.Fatal("the $share/g/# member never got a publish")
		}
	}
	// mochi publishes $SYS every second to every matching client in one pass: once the
	// $SYS member has one, the wildcard member would have it queued before the next publish.
	if got := mosquittoSub(t, srv.MQTTAddr, "-V", "mqttv5", "-t", "$share/g2/$SYS/#", "-C", "2", "-F", "%t"); !strings.HasPrefix(got[1], "$SYS/") {
		t.Fatalf("$share/g2/$SYS/# member got %q", got)
	}
	publishMosquitto(t, srv.MQTTAddr, "plain-pub", "plain/x", "p")
	for {
		select {
		case l := <-lines:
			switch {
			case strings.HasPrefix(l, "$"):
				t.Fatalf("$share/g/# member got %q", l)
			case l == "plain/x":
				return
			}
		case <-ctx.Done():
			t.Fatal("the $share/g/# member never got plain/x")
		}
	}
}
