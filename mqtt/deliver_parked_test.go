package mqtt

import (
	"bytes"
	"errors"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Copies mochi parked for a client whose send quota ran out (mochi_inline.go) leave
// when an in-flight delivery is dropped as too large for the client: the oldest one
// that fits takes its slot, too-large ones are dropped and counted. This forces the
// interleaving TestDeliverProduced hits only now and then: the deliverer publishes
// faster than the client's write loop drops the too-large copies ahead.
func TestDeliverReleasesParked(t *testing.T) {
	e := newEnv(t, envOptions{maxPacketBytes: 64 << 10}, streamDef("cmds", 1, "clientid", "cmd/#"))
	small := dialV5(t, e.addr, v5Options{id: "small", clean: true, maxPacket: 512, rm: 2})
	small.subscribe(t, "", 1, "cmd/#")
	cl, ok := e.srv.broker.Clients.Get("small")
	if !ok {
		t.Fatal("client not found")
	}
	skipped := func() float64 { return testutil.ToFloat64(e.srv.deliv.skipped.WithLabelValues(skipTooLarge)) }
	before := skipped()

	// Both slots taken, as by two too-large copies the write loop has not reached yet:
	// mochi parks what follows.
	cl.State.Inflight.DecreaseSendQuota()
	cl.State.Inflight.DecreaseSendQuota()
	large := func(s string) log.Record {
		return log.Record{Value: bytes.Repeat([]byte(s), 1024), Headers: hdrs(mapping.HeaderTopic, "cmd/large", mapping.HeaderQoS, "1")}
	}
	e.produce(t, "cmds", 0, nil, large("a"), large("b"),
		log.Record{Value: []byte("small"), Headers: hdrs(mapping.HeaderTopic, "cmd/small", mapping.HeaderQoS, "1")})
	waitFor(t, "three parked copies", func() bool { return len(cl.State.Inflight.GetAll(true)) == 3 })

	// The write loop reaches a too-large copy holding a slot.
	held := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "cmd/large",
		Payload:     bytes.Repeat([]byte("z"), 1024),
		PacketID:    65000,
		Origin:      mochi.InlineClientId,
	}
	cl.State.Inflight.Set(held)
	if err := cl.WritePacket(held); !errors.Is(err, packets.ErrPacketTooLarge) {
		t.Fatalf("write of a too-large copy: %v", err)
	}

	msgs := small.waitN(t, 1)
	if len(msgs) != 1 || msgs[0].TopicName != "cmd/small" {
		t.Fatalf("got %d messages, first %q; want the parked cmd/small", len(msgs), msgs[0].TopicName)
	}
	if got := skipped() - before; got != 3 {
		t.Fatalf("too_large counted %v times, want 3 (the held copy and both parked ones)", got)
	}
	// Acknowledged, the small copy frees its slot: nothing is left in flight.
	waitFor(t, "empty inflight store", func() bool { return cl.State.Inflight.Len() == 0 })
}
