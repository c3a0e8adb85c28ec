package mqtt

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// groupCounter counts the log's durable groups (one WAL write, at most one fsync each);
// while hold is set, the syncer waits in ObserveCommit (before the group's callbacks)
// until it is closed.
type groupCounter struct {
	groups atomic.Int64
	hold   atomic.Pointer[chan struct{}]
}

func (g *groupCounter) ObserveAppend(string, int, int, time.Duration) {}
func (g *groupCounter) ObserveSync(time.Duration)                     {}
func (g *groupCounter) ObserveCommit(int, int) {
	g.groups.Add(1)
	if h := g.hold.Load(); h != nil {
		<-*h
	}
}

// publishedWrites notes, for each publish of one client the OnPublished hooks see,
// whether its PUBACK had left by then: handed to the connection (OnPacketSent) and
// not held back in a corked write.
type publishedWrites struct {
	mochi.HookBase
	client string
	lc     atomic.Pointer[limitConn]
	mu     sync.Mutex
	acked  map[uint16]bool // PUBACKs handed to the connection
	out    map[uint16]bool // by publish: its PUBACK had left when it was delivered
}

func (h *publishedWrites) ID() string { return "published-writes" }
func (h *publishedWrites) Provides(b byte) bool {
	return b == mochi.OnPublished || b == mochi.OnPacketSent
}

// seen reports whether the publish reached OnPublished, and whether its PUBACK had
// left by then.
func (h *publishedWrites) seen(id uint16) (delivered, ackOut bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ackOut, delivered = h.out[id]
	return delivered, ackOut
}

func (h *publishedWrites) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if cl.ID != h.client || pk.FixedHeader.Type != packets.Puback {
		return
	}
	h.mu.Lock()
	h.acked[pk.PacketID] = true
	h.mu.Unlock()
}

func (h *publishedWrites) OnPublished(cl *mochi.Client, pk packets.Packet) {
	lc := h.lc.Load()
	if cl.ID != h.client || lc == nil {
		return
	}
	lc.wmu.Lock()
	heldBack := lc.corked > 0 || len(lc.wbuf) > 0
	lc.wmu.Unlock()
	h.mu.Lock()
	h.out[pk.PacketID] = h.acked[pk.PacketID] && !heldBack
	h.mu.Unlock()
}

// heldBurst sends a publish whose group holds the syncer, then burst more that are
// applied meanwhile and made durable together in the next group; it returns the
// burst and the connection's write count before the syncer was let go.
func heldBurst(t *testing.T, obs *groupCounter, pub *rawClient, lc *limitConn, next func() packets.Packet, burst int, pending func() int) (plug packets.Packet, pks []packets.Packet, writes int64) {
	t.Helper()
	hold := make(chan struct{})
	obs.hold.Store(&hold)
	groups := obs.groups.Load()
	plug = next()
	pub.send(plug)
	deadline := time.Now().Add(10 * time.Second)
	for obs.groups.Load() == groups {
		if time.Now().After(deadline) {
			t.Fatal("the first publish's group never reached the syncer")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < burst; i++ {
		pks = append(pks, next())
	}
	pub.send(pks...)
	for pending() < burst+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d publishes queued", pending(), burst+1)
		}
		time.Sleep(time.Millisecond) // until the burst is queued behind the held group
	}
	writes = lc.writes.Load()
	obs.hold.Store(nil)
	close(hold)
	pub.expect(packets.Puback, plug.PacketID)
	for _, pk := range pks {
		pub.expect(packets.Puback, pk.PacketID)
	}
	return plug, pks, writes
}

// TestAcksOfOneGroupInOneWrite: the acknowledgements of a connection's publishes made
// durable in one group leave in one write, never one per append callback (a drainer
// started at the group's first callback answers the publishes acknowledged so far and
// leaves the rest of the group to further writes).
func TestAcksOfOneGroupInOneWrite(t *testing.T) {
	obs := &groupCounter{}
	e := newEnv(t, envOptions{observer: obs}, plantStream(1, "clientid"))
	pub, _ := dialRaw(t, e.addr, "pub", 4, true)
	cl, ok := e.srv.broker.Clients.Get("pub")
	if !ok {
		t.Fatal("client not registered")
	}
	lc := cl.Net.Conn.(*limitConn)
	id := uint16(0)
	next := func() packets.Packet {
		id++
		return publishPacket("plant/x", 1, id, "v")
	}
	warm := next() // the connection's own session writes are done once this is answered
	pub.send(warm)
	pub.expect(packets.Puback, warm.PacketID)
	const burst = 100 // within mochi's default Receive Maximum and our pending bound
	for round := 0; round < 10; round++ {
		groups := obs.groups.Load()
		_, _, writes := heldBurst(t, obs, pub, lc, next, burst, e.srv.ingest.pending)
		w, g := lc.writes.Load()-writes, obs.groups.Load()-groups
		if w > g {
			t.Fatalf("round %d: %d publishes made durable in %d groups answered in %d writes", round, burst+1, g, w)
		}
	}
}

// TestGroupAckedBeforeDelivery: a group's acknowledgements are written before any of
// its publishes is delivered to subscribers (the OnPublished hooks run after the
// fan-out), so the publisher's next window does not wait behind the group's fan-out.
func TestGroupAckedBeforeDelivery(t *testing.T) {
	obs := &groupCounter{}
	seen := &publishedWrites{client: "pub", acked: map[uint16]bool{}, out: map[uint16]bool{}}
	e := newEnv(t, envOptions{observer: obs, hooks: []mochi.Hook{seen}}, plantStream(1, "clientid"))
	pub, _ := dialRaw(t, e.addr, "pub", 4, true)
	cl, ok := e.srv.broker.Clients.Get("pub")
	if !ok {
		t.Fatal("client not registered")
	}
	lc := cl.Net.Conn.(*limitConn)
	seen.lc.Store(lc)
	id := uint16(0)
	next := func() packets.Packet {
		id++
		return publishPacket("plant/x", 1, id, "v")
	}
	warm := next()
	pub.send(warm)
	pub.expect(packets.Puback, warm.PacketID)
	const burst = 20
	for round := 0; round < 5; round++ {
		// Checked per publish, not against the burst's last acknowledgement write: on a
		// loaded machine the burst can be made durable in two groups, and the first
		// group is then rightly delivered before the second is acknowledged.
		_, pks, _ := heldBurst(t, obs, pub, lc, next, burst, e.srv.ingest.pending)
		deadline := time.Now().Add(10 * time.Second)
		for _, pk := range pks {
			delivered, ackOut := seen.seen(pk.PacketID)
			for !delivered {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: publish %d never reached OnPublished", round, pk.PacketID)
				}
				time.Sleep(time.Millisecond)
				delivered, ackOut = seen.seen(pk.PacketID)
			}
			if !ackOut {
				t.Fatalf("round %d: publish %d delivered before its acknowledgement left (held back in its group's write, or not yet written)", round, pk.PacketID)
			}
		}
	}
}
