package mqtt

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// dialReceiveMax connects an MQTT 5 raw client announcing Receive Maximum rm.
func dialReceiveMax(t *testing.T, addr, id string, rm uint16) *rawClient {
	t.Helper()
	c, _ := dialConnect(t, addr, packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: id, Keepalive: 60},
		Properties:      packets.Properties{ReceiveMaximum: rm},
	})
	return c
}

// puback acknowledges a QoS 1 delivery.
func (c *rawClient) puback(id uint16) {
	c.tb.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id, ProtocolVersion: c.version}
	var buf bytes.Buffer
	if err := pk.PubackEncode(&buf); err != nil {
		c.tb.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.tb.Fatal(err)
	}
}

// TestReceiveMaximumLiveAndReplay: a client with a `$stream` subscription and an
// ordinary one, announcing Receive Maximum 3, never has more than 3 QoS 1 messages
// unacknowledged, replayed and live together, and gets every one of both kinds.
func TestReceiveMaximumLiveAndReplay(t *testing.T) {
	const (
		rm     = 3
		stored = 100
		live   = 100
	)
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("s", 2, "topic", "s/#"))
	e.fill(t, testMessages(stored, "s/%d"))

	sub := dialReceiveMax(t, e.addr, "rm-sub", rm)
	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "live/#", Qos: 1}, {Filter: "$stream/s", Qos: 1}},
		Properties:  packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
	})
	// Subscribed before anything is published (the SUBACK comes before any replay).
	if ack := sub.expect(packets.Suback, 1); !bytes.Equal(ack.ReasonCodes, []byte{1, 1}) {
		t.Fatalf("SUBACK %v, want both granted at QoS 1", ack.ReasonCodes)
	}

	pub, _ := dialRaw(t, e.addr, "rm-pub", 5, true)
	var burst []byte
	for i := 0; i < live; i++ {
		burst = append(burst, pub.encode(publishPacket("live/x", 1, uint16(i+1), "live"))...)
	}
	go func() { _, _ = pub.conn.Write(burst) }() // its PUBACKs are never read: they fit the socket

	type result struct {
		pk  packets.Packet
		err error
	}
	in := make(chan result, 16)
	go func() {
		for {
			pk, err := sub.readPacket()
			in <- result{pk, err}
			if err != nil {
				return
			}
		}
	}()
	var unacked []uint16
	gotLive, gotReplay, maxUnacked := 0, 0, 0
	next := func(within time.Duration) (packets.Packet, bool) {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		select {
		case r := <-in:
			if r.err != nil {
				t.Fatalf("read: %v (live %d replay %d unacked %v; server: %s)", r.err, gotLive, gotReplay, unacked, windowState(e, "rm-sub"))
			}
			return r.pk, true
		case <-timer.C:
			return packets.Packet{}, false
		}
	}

	for gotLive < live || gotReplay < stored {
		wait := time.Minute
		if len(unacked) == rm {
			// The window is full: anything that comes now is one too many. Wait a little
			// for it before acknowledging the oldest.
			wait = 20 * time.Millisecond
		}
		pk, ok := next(wait)
		if !ok {
			if len(unacked) < rm {
				t.Fatalf("nothing for a minute: %d live and %d replayed so far (server: %s)", gotLive, gotReplay, windowState(e, "rm-sub"))
			}
			sub.puback(unacked[0])
			unacked = unacked[1:]
			continue
		}
		switch {
		case pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 1:
			t.Fatalf("unexpected packet type %d qos %d", pk.FixedHeader.Type, pk.FixedHeader.Qos)
		case len(unacked) >= rm:
			t.Fatalf("got %s #%d with %d unacknowledged: over the Receive Maximum %d", pk.TopicName, pk.PacketID, len(unacked), rm)
		case strings.HasPrefix(pk.TopicName, "live/"):
			gotLive++
		default:
			gotReplay++
		}
		unacked = append(unacked, pk.PacketID)
		maxUnacked = max(maxUnacked, len(unacked))
	}
	if maxUnacked != rm {
		t.Fatalf("at most %d unacknowledged, want the window (%d) used", maxUnacked, rm)
	}
}

// TestReceiveMaximumHeldDeliveryKeepsAcks: while a live delivery waits for window room
// (mochi's write loop held, more queued behind it), the client's own PUBLISH still gets
// its PUBACK and a PINGREQ its PINGRESP, so a client that answers deliveries only after
// its own publish is acknowledged does not deadlock.
func TestReceiveMaximumHeldDeliveryKeepsAcks(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("s", 1, "topic", "s/#"))
	sub := dialReceiveMax(t, e.addr, "held-sub", 1)
	sub.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: "live/#", Qos: 1}, {Filter: "$stream/s", Qos: 1}},
	})
	if ack := sub.expect(packets.Suback, 1); !bytes.Equal(ack.ReasonCodes, []byte{1, 1}) {
		t.Fatalf("SUBACK %v, want both granted at QoS 1", ack.ReasonCodes)
	}

	pub, _ := dialRaw(t, e.addr, "held-pub", 5, true)
	for i := 1; i <= 5; i++ {
		pub.send(publishPacket("live/x", 1, uint16(i), "live"))
	}
	first := sub.read()
	if first.FixedHeader.Type != packets.Publish || first.TopicName != "live/x" {
		t.Fatalf("got packet type %d topic %q, want the first live delivery", first.FixedHeader.Type, first.TopicName)
	}
	cl, ok := e.srv.broker.Clients.Get("held-sub")
	if !ok {
		t.Fatal("subscriber not found")
	}
	waitFor(t, "the second delivery held for window room", func() bool {
		w := e.hook.windowOf(cl)
		return w != nil && w.holding.Load()
	})

	sub.send(publishPacket("other/y", 1, 7, "mine"), packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	if ack := sub.read(); ack.FixedHeader.Type != packets.Puback || ack.PacketID != 7 {
		t.Fatalf("got packet type %d id %d, want PUBACK 7 while the delivery is held", ack.FixedHeader.Type, ack.PacketID)
	}
	if pk := sub.read(); pk.FixedHeader.Type != packets.Pingresp {
		t.Fatalf("got packet type %d, want PINGRESP while the delivery is held", pk.FixedHeader.Type)
	}

	// Each acknowledgement lets exactly the next one through.
	last := first
	for i := 2; i <= 5; i++ {
		sub.puback(last.PacketID)
		last = sub.read()
		if last.FixedHeader.Type != packets.Publish || last.TopicName != "live/x" {
			t.Fatalf("delivery %d: got packet type %d topic %q", i, last.FixedHeader.Type, last.TopicName)
		}
	}
}

// windowState describes what the server holds in flight for client id: its send
// window's packet ids and reservations, and mochi's in-flight store, so a stalled
// window names the packet that holds its last place.
func windowState(e *replayEnv, id string) string {
	cl, ok := e.srv.broker.Clients.Get(id)
	if !ok {
		return "client gone"
	}
	w := e.hook.windowOf(cl)
	if w == nil {
		return "no send window"
	}
	w.mu.Lock()
	sent := slices.Sorted(maps.Keys(w.sent))
	reserved, holding := w.reserved, w.holding.Load()
	w.mu.Unlock()
	var inflight []uint16
	for _, pk := range cl.State.Inflight.GetAll(false) {
		inflight = append(inflight, pk.PacketID)
	}
	slices.Sort(inflight)
	// Written or not: what mochi and our connection still hold back, and how many
	// writes reached the socket (compare two failures' figures, or a later snapshot).
	cl.Lock()
	buffered := bufferedBytes(cl)
	cl.Unlock()
	conn := ""
	if lc, ok := cl.Net.Conn.(*limitConn); ok {
		lc.wmu.Lock()
		conn = fmt.Sprintf("; connection corked %d, holding %d bytes, %d writes", lc.corked, len(lc.wbuf), lc.writes.Load())
		lc.wmu.Unlock()
	}
	return fmt.Sprintf("window sent %v reserved %d live held %v; mochi in flight %v, %d bytes unwritten in its buffer%s",
		sent, reserved, holding, inflight, buffered, conn)
}
