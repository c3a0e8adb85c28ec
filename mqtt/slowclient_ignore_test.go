package mqtt

import (
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// TestSlowClientIgnoresIgnoredPublish: a publish mochi delivered to nobody (pk.Ignore:
// an unauthorized MQTT 3.1.1 publish, or a QoS 2 redelivery already fanned out) is not
// counted as queued for the topic's subscribers; counted, it would never be written,
// and the subscribers would be cut off as slow consumers after enough of them.
func TestSlowClientIgnoresIgnoredPublish(t *testing.T) {
	broker := mochi.New(nil)
	broker.Topics.Subscribe("sub", packets.Subscription{Filter: "a/#", Qos: 1})
	h := newSlowClientHook(broker, 1<<20, newMetrics(broker), zerolog.Nop())
	pub := broker.NewClient(nil, "t", "pub", false)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: make([]byte, 500)}

	ignored := pk
	ignored.Ignore = true
	h.OnPublished(pub, ignored)
	if n := h.queue("sub").counted.Load(); n != 0 {
		t.Fatalf("an ignored publish counted %d bytes queued for the subscriber", n)
	}
	h.OnPublished(pub, pk)
	if n := h.queue("sub").counted.Load(); n == 0 {
		t.Fatal("a delivered publish counted nothing for the subscriber")
	}
}
