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
