package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet identifiers are independent per direction (MQTT 5 §2.2.1): these tests have a
// client publish with the id of a delivery it has not acknowledged (see endsDelivery
// and completePublish, mochi_adapter.go).

// dialSession connects an MQTT 5 raw client with a session kept an hour after the
// connection (clean false) and Receive Maximum rm.
func dialSession(t *testing.T, addr, id string, clean bool, rm uint16) *rawClient {
	t.Helper()
	c, _ := dialConnect(t, addr, packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, ClientIdentifier: id, Keepalive: 60},
		Properties:      packets.Properties{ReceiveMaximum: rm, SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true},
	})
	return c
}

// publishOwnID has c publish QoS 1 to topic with packet id id, then once more with
// another id, and reads both PUBACKs: publishes complete in order, so the first one's
// OnQosComplete hooks have run by the second PUBACK.
func publishOwnID(t *testing.T, c *rawClient, topic string, id, other uint16) {
	t.Helper()
	c.send(publishPacket(topic, 1, id, "mine"), publishPacket(topic, 1, other, "mine too"))
	c.expect(packets.Puback, id)
	c.expect(packets.Puback, other)
}

// TestOwnPublishKeepsReplayedDeliveryUnacked: a `$stream` subscriber with Receive
// Maximum 1 holds a replayed message unacknowledged and publishes QoS 1 with the same
// packet id. Its PUBACK does not free the window, nor move the persistent session's
// position past the message: after a reconnection it comes again. The publish goes to
// a topic a stream holds (completePublish) or not (mochi's own path).
func TestOwnPublishKeepsReplayedDeliveryUnacked(t *testing.T) {
	for _, topic := range []string{"in/x", "other/x"} {
		t.Run(topic, func(t *testing.T) { testOwnPublishKeepsReplayedDeliveryUnacked(t, topic) })
	}
}

func testOwnPublishKeepsReplayedDeliveryUnacked(t *testing.T, topic string) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true},
		streamDef("s", 1, "topic", "s/#"), streamDef("in", 1, "topic", "in/#"))
	e.fill(t, testMessages(3, "s/%d"))

	c := dialSession(t, e.addr, "pktid-sub", false, 1)
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "$stream/s", Qos: 1}},
		Properties:  packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
	})
	c.expect(packets.Suback, 1)
	first := c.read()
	if first.FixedHeader.Type != packets.Publish || first.FixedHeader.Qos != 1 {
		t.Fatalf("got packet type %d qos %d, want a replayed QoS 1 PUBLISH", first.FixedHeader.Type, first.FixedHeader.Qos)
	}
	n := first.PacketID
	publishOwnID(t, c, topic, n, n+1000)

	cl, ok := e.srv.broker.Clients.Get("pktid-sub")
	if !ok {
		t.Fatal("subscriber not found")
	}
	w := e.hook.windowOf(cl)
	w.mu.Lock()
	_, held := w.sent[n]
	w.mu.Unlock()
	if !held {
		t.Fatalf("the client's PUBACK of its own publish %d freed the window place of delivery %d (server: %s)", n, n, windowState(e, "pktid-sub"))
	}
	if _, inflight, _ := e.sessionState("pktid-sub"); inflight != 1 {
		t.Fatalf("session holds %d replayed messages in flight, want 1 (server: %s)", inflight, windowState(e, "pktid-sub"))
	}

	_ = c.conn.Close()
	waitFor(t, "the session detached", func() bool {
		s := e.hook.session("pktid-sub")
		return s != nil && !s.isClient(cl)
	})
	c = dialSession(t, e.addr, "pktid-sub", false, 1)
	again := c.read()
	if again.FixedHeader.Type != packets.Publish || string(again.Payload) != string(first.Payload) {
		t.Fatalf("after reconnecting got packet type %d topic %q payload %q, want the unacknowledged %q again",
			again.FixedHeader.Type, again.TopicName, again.Payload, first.Payload)
	}
}

// TestOwnPublishKeepsQueuedDelivery: a persistent session's client holds an ordinary
// QoS 1 delivery unacknowledged and publishes QoS 1, with the same packet id, to a
// topic a stream holds (completePublish) or not (mochi's own path). The delivery stays
// in flight: it is resent on reconnection (mochi v2.7.9's processPublish, which
// completePublish followed, deleted it).
//
// At QoS 2 the PUBREC does not take the delivery's place, and the PUBREL that ends the
// flow (mochi's processPubrel) does not remove it.
func TestOwnPublishKeepsQueuedDelivery(t *testing.T) {
	for _, topic := range []string{"in/telemetry", "other/telemetry"} {
		for _, qos := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%s/qos%d", topic, qos), func(t *testing.T) { testOwnPublishKeepsQueuedDelivery(t, topic, qos) })
		}
	}
}

func testOwnPublishKeepsQueuedDelivery(t *testing.T, topic string, qos byte) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("in", 1, "topic", "in/#"))
	c := dialSession(t, e.addr, "pktid-dev", false, 0)
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "cmd/#", Qos: 1}},
	})
	c.expect(packets.Suback, 1)

	pub, _ := dialRaw(t, e.addr, "pktid-cmd", 5, true)
	pub.send(publishPacket("cmd/a", 1, 1, "first"))
	pub.expect(packets.Puback, 1)
	cmd := c.read()
	if cmd.FixedHeader.Type != packets.Publish || cmd.TopicName != "cmd/a" {
		t.Fatalf("got packet type %d topic %q, want the command", cmd.FixedHeader.Type, cmd.TopicName)
	}
	if qos == 1 {
		publishOwnID(t, c, topic, cmd.PacketID, cmd.PacketID+1000)
	} else {
		c.send(publishPacket(topic, 2, cmd.PacketID, "mine"))
		c.expect(packets.Pubrec, cmd.PacketID)
		c.send(pubrelPacket(cmd.PacketID))
		c.expect(packets.Pubcomp, cmd.PacketID)
	}
	_ = c.conn.Close()

	cl, _ := e.srv.broker.Clients.Get("pktid-dev")
	waitFor(t, "the connection closed", cl.Closed)
	pub.send(publishPacket("cmd/b", 1, 2, "second"))
	pub.expect(packets.Puback, 2)
	c = dialSession(t, e.addr, "pktid-dev", false, 0)
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	// Both come, in the order mochi keeps them (by creation second, so either first):
	// cmd/a resent (DUP set), cmd/b queued while offline (never sent: DUP as mochi
	// sets it on a first resend).
	got := map[string]bool{}
	for range 2 {
		again, err := c.readPacket()
		if err != nil {
			t.Fatalf("after reconnecting got %v, then: %v", got, err)
		}
		if again.FixedHeader.Type != packets.Publish {
			t.Fatalf("after reconnecting got packet type %d, want the commands (so far %v)", again.FixedHeader.Type, got)
		}
		if again.TopicName == "cmd/a" && !again.FixedHeader.Dup {
			t.Fatalf("cmd/a came again without DUP")
		}
		got[again.TopicName] = true
	}
	if !got["cmd/a"] || !got["cmd/b"] {
		t.Fatalf("after reconnecting got %v, want cmd/a resent and cmd/b", got)
	}
}

// TestOwnPublishKeepsStoredDelivery: as TestOwnPublishKeepsQueuedDelivery, across a
// server restart: the stored copy of the unacknowledged delivery is not removed when
// the server acknowledges the client's publish with the same packet id.
func TestOwnPublishKeepsStoredDelivery(t *testing.T) {
	for _, topic := range []string{"in/telemetry", "other/telemetry"} {
		t.Run(topic, func(t *testing.T) { testOwnPublishKeepsStoredDelivery(t, topic) })
	}
}

func testOwnPublishKeepsStoredDelivery(t *testing.T, topic string) {
	dir := t.TempDir()
	def := streamDef("in", 1, "topic", "in/#")
	srv, l := startStore(t, dir, nil, def)
	addr := srv.Addr().String()
	c := dialSession(t, addr, "pktid-dev", false, 0)
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "cmd/#", Qos: 1}},
	})
	c.expect(packets.Suback, 1)
	pub, _ := dialRaw(t, addr, "pktid-cmd", 5, true)
	// The second PUBACK follows the stored copy of the first publish's delivery.
	pub.send(publishPacket("cmd/a", 1, 1, "first"), publishPacket("sync/x", 1, 2, "sync"))
	pub.expect(packets.Puback, 1)
	pub.expect(packets.Puback, 2)
	cmd := c.read()
	if cmd.FixedHeader.Type != packets.Publish || cmd.TopicName != "cmd/a" {
		t.Fatalf("got packet type %d topic %q, want the command", cmd.FixedHeader.Type, cmd.TopicName)
	}
	publishOwnID(t, c, topic, cmd.PacketID, cmd.PacketID+1000)
	_ = c.conn.Close()
	waitFor(t, "the connection closed", func() bool {
		cl, ok := srv.broker.Clients.Get("pktid-dev")
		return ok && cl.Closed()
	})
	stopStore(t, srv, l)

	srv, l = startStore(t, dir, nil, def)
	defer stopStore(t, srv, l)
	c = dialSession(t, srv.Addr().String(), "pktid-dev", false, 0)
	again := c.read()
	if again.FixedHeader.Type != packets.Publish || again.TopicName != "cmd/a" {
		t.Fatalf("after a restart got packet type %d topic %q, want cmd/a resent", again.FixedHeader.Type, again.TopicName)
	}
}
