package mqtt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestSubackBeforeFirstReplayed: a `$stream` subscription's SUBACK reaches the client
// before any replayed message even when mochi holds the SUBACK in its output buffer:
// the client's live deliveries wait for window room (Receive Maximum 1, the first one
// unacknowledged) with more queued behind them, so mochi buffers the SUBACK rather than
// write it, and only the replay's ordered write (mochi_adapter.go) puts it out first.
func TestSubackBeforeFirstReplayed(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("s", 2, "topic", "s/#"), streamDef("w", 1, "topic", "w/#"))
	e.fill(t, testMessages(50, "s/%d"))

	sub := dialReceiveMax(t, e.addr, "order-sub", 1)
	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "$stream/w", Qos: 1}, {Filter: "live/#", Qos: 1}},
	})
	if ack := sub.expect(packets.Suback, 1); !bytes.Equal(ack.ReasonCodes, []byte{1, 1}) {
		t.Fatalf("SUBACK %v, want both granted at QoS 1", ack.ReasonCodes)
	}
	pub, _ := dialRaw(t, e.addr, "order-pub", 5, true)
	for i := 1; i <= 5; i++ {
		pub.send(publishPacket("live/x", 1, uint16(i), "live"))
	}
	if pk := sub.read(); pk.FixedHeader.Type != packets.Publish || pk.TopicName != "live/x" {
		t.Fatalf("got packet type %d topic %q, want the first live delivery", pk.FixedHeader.Type, pk.TopicName)
	}
	cl, ok := e.srv.broker.Clients.Get("order-sub")
	if !ok {
		t.Fatal("subscriber not found")
	}
	waitFor(t, "the second delivery held for window room", func() bool {
		w := e.hook.windowOf(cl)
		return w != nil && w.holding.Load()
	})

	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    100, // mochi refuses an id its own deliveries in flight use (1 to 5 here)
		Filters:     packets.Subscriptions{{Filter: "$stream/s", Qos: 0}},
		Properties:  packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
	})
	for {
		pk := sub.read()
		if pk.FixedHeader.Type == packets.Suback && pk.PacketID == 100 {
			if !bytes.Equal(pk.ReasonCodes, []byte{0}) {
				t.Fatalf("SUBACK %v, want granted at QoS 0", pk.ReasonCodes)
			}
			break
		}
		if pk.FixedHeader.Type == packets.Publish && strings.HasPrefix(pk.TopicName, "s/") {
			t.Fatalf("replayed %s arrived before the SUBACK", pk.TopicName)
		}
		t.Fatalf("got packet type %d topic %q before the SUBACK", pk.FixedHeader.Type, pk.TopicName)
	}
	if pk := sub.read(); pk.FixedHeader.Type != packets.Publish || !strings.HasPrefix(pk.TopicName, "s/") {
		t.Fatalf("got packet type %d topic %q after the SUBACK, want a replayed message", pk.FixedHeader.Type, pk.TopicName)
	}
}
