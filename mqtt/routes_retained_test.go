package mqtt

import (
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// TestRoutesRetainedResync: retained changes (a new value and a clear) lost on a cut
// link reach the other node at the next route resync, stored there without being
// delivered to its live subscribers.
func TestRoutesRetainedResync(t *testing.T) {
	mn, srvs := startRouteCluster(t, 2)
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	// id 0: QoS 0, whose forwards are not kept for a resend (a QoS 1 change lost on
	// the link would also come back live, routes_reliable.go).
	retain := func(id uint16, topic, payload string) {
		p := publishPacket(topic, min(byte(id), 1), id, payload)
		p.FixedHeader.Retain = true
		pub.send(p)
		if id > 0 {
			pub.expect(packets.Puback, id)
		}
	}
	held := func(topic string) string {
		pk, ok := srvs[1].broker.Topics.Retained.Get(topic)
		if !ok {
			return "<none>"
		}
		return string(pk.Payload)
	}
	retain(1, "r/1", "old")
	retain(2, "r/2", "gone")
	// Both live forwards fanned out on node 2, not only retained: a forward is retained
	// there, then written to the store, then delivered, so a subscriber arriving in
	// between gets it twice, retained and live (a live 0x32 at noPublish below).
	routeWait(t, "node 2 to hold and deliver both retained messages", func() bool {
		return held("r/1") == "old" && held("r/2") == "gone" && testutil.ToFloat64(srvs[1].routes.received) >= 2
	})
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "r/#")
	readPublish(sub)
	readPublish(sub)

	mn.setCut(1, 2, true)
	retain(0, "r/1", "new")
	retain(0, "r/2", "")
	// A subscription change on node 1 while cut: node 2 misses the delta and resyncs.
	other, _ := dialRaw(t, srvs[0].Addr().String(), "other", 5, true)
	routeSubscribe(other, 1, "z")
	// mochi acks a publish before it fans it out: wait until node 1 tried to forward
	// both changes, else one may still be on its way when the link is back.
	routeWait(t, "node 1 to fail to forward both retained changes", func() bool {
		return testutil.ToFloat64(srvs[0].routes.forwarded.WithLabelValues("failed")) >= 2
	})
	// The delta leaves routeDebounce after the SUBACK: wait until the cut link lost it.
	// Sent after the link is back, it would arrive in order and call for no resync
	// (the test passed only while node 2 had not yet heard node 1's first digest).
	routeWait(t, "node 1's route delta to be lost on the cut link", func() bool {
		return mn.refusedOf(1, 2, routeDelta) >= 1
	})
	if held("r/1") != "old" || held("r/2") != "gone" {
		t.Fatalf("node 2 learnt retained changes through a cut link: %q %q", held("r/1"), held("r/2"))
	}
	mn.setCut(1, 2, false)
	routeWait(t, "node 2 to take node 1's retained changes at resync", func() bool {
		return held("r/1") == "new" && held("r/2") == "<none>"
	})
	noPublish(t, sub)

	// An older stamp than the one applied does not replace the retained message.
	srvs[1].routes.retMu.Lock()
	st := srvs[1].routes.stamps["r/1"]
	srvs[1].routes.retMu.Unlock()
	msg, err := encodeForward(appendStamp(nil, routeRetainedSync, retStamp{ts: st.ts - 1, node: st.node}),
		packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "r/1", Payload: []byte("stale")})
	if err != nil {
		t.Fatal(err)
	}
	if err := srvs[1].routes.handle(1, msg); err != nil {
		t.Fatal(err)
	}
	if held("r/1") != "new" {
		t.Fatalf("an older retained change replaced a newer one: %q", held("r/1"))
	}
}

// TestRoutesRetainedResyncDuringPublish: a resync answered while a retained publish is
// between its stamp (OnPublish) and mochi's retained store still lets the change win
// on the other node. The answer held the replaced message under the change's stamp,
// and the other node then kept that message, refusing the change as not newer.
func TestRoutesRetainedResyncDuringPublish(t *testing.T) {
	var resyncNow atomic.Bool
	_, srvs := startRouteClusterWith(t, 2, func(id uint64, srv *Server) {
		if id != 1 {
			return
		}
		// Node 2's resync request, handled right after the route hook stamped the
		// publish and before the publish is retained (ack.go: complete, completeAck).
		pick := srv.ingest.complete
		srv.ingest.complete = func(cl *mochi.Client, pk packets.Packet) packets.Packet {
			pk = pick(cl, pk)
			if resyncNow.CompareAndSwap(true, false) {
				if err := srv.routes.handle(2, []byte{routeSyncReq}); err != nil {
					t.Error(err)
				}
			}
			return pk
		}
	})
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	// s/x goes to a stream: the publish is held until stored, then completed (ingest.go).
	retain := func(id uint16, payload string) {
		p := publishPacket("s/x", 1, id, payload)
		p.FixedHeader.Retain = true
		pub.send(p)
		pub.expect(packets.Puback, id)
	}
	held := func(i int) string {
		pk, ok := srvs[i].broker.Topics.Retained.Get("s/x")
		if !ok {
			return "<none>"
		}
		return string(pk.Payload)
	}
	retain(1, "old")
	routeWait(t, "node 2 to take the first change live", func() bool {
		return testutil.ToFloat64(srvs[1].routes.received) >= 1
	})
	resyncNow.Store(true)
	retain(2, "new")
	if resyncNow.Load() {
		t.Fatal("the resync request was not handled during the publish")
	}
	// The resync answer went first on the link, then the live forward.
	routeWait(t, "node 2 to take the second change live", func() bool {
		return testutil.ToFloat64(srvs[1].routes.received) >= 2
	})
	if held(0) != "new" || held(1) != "new" {
		t.Fatalf("retained s/x: %q on node 1, %q on node 2", held(0), held(1))
	}
	stamp := func(i int) retStamp {
		srvs[i].routes.retMu.Lock()
		defer srvs[i].routes.retMu.Unlock()
		return srvs[i].routes.stamps["s/x"]
	}
	if stamp(0) != stamp(1) {
		t.Fatalf("s/x stamped %v on node 1, %v on node 2", stamp(0), stamp(1))
	}
}

// TestRoutesRetainedStampsStored: the stamps of retained changes — a publish that also
// goes to a stream (stored with its append), one that does not, a clear — are stored
// and loaded again when the server restarts on the same log.
func TestRoutesRetainedStampsStored(t *testing.T) {
	mn := newMemNet()
	t.Cleanup(mn.close)
	def := mapping.Definition{Name: "s", Filters: []string{"s/#"}, Shards: 1}
	l, cat := openStreams(t, log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), NoSync: true}, []mapping.Definition{def})
	t.Cleanup(func() { _ = l.Close() })
	start := func() *Server {
		srv, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Log: l, Catalog: cat, Logger: zerolog.Nop(),
			Peers: memPeers{net: mn, self: 1, all: []uint64{1}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srvs := []*Server{start()}
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	for i, p := range []struct{ topic, payload string }{{"s/x", "streamed"}, {"r/y", "plain"}, {"r/z", "soon gone"}, {"r/z", ""}} {
		pk := publishPacket(p.topic, 1, uint16(i+1), p.payload)
		pk.FixedHeader.Retain = true
		pub.send(pk)
		pub.expect(packets.Puback, uint16(i+1))
	}
	before := map[string]retStamp{}
	srvs[0].routes.retMu.Lock()
	for _, topic := range []string{"s/x", "r/y", "r/z"} {
		before[topic] = srvs[0].routes.stamps[topic]
	}
	srvs[0].routes.retMu.Unlock()
	routeWait(t, "the stamps to be stored", func() bool {
		stored, err := srvs[0].store.storedStamps()
		if err != nil {
			t.Fatal(err)
		}
		for topic, st := range before {
			if stored[topic] != st {
				return false
			}
		}
		return true
	})
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	srv := start()
	defer srv.Close()
	for topic, st := range before {
		if st.ts == 0 || srv.routes.stamps[topic] != st {
			t.Fatalf("%s: stamp %v before the restart, %v after", topic, st, srv.routes.stamps[topic])
		}
	}
	if next := srv.routes.stampLocal("r/new"); !next.after(before["r/z"]) {
		t.Fatalf("a new stamp %v is not after the stored %v", next, before["r/z"])
	}
}

// TestRoutesRetainedRepairAfterSilence: a node cut off (no restart, no route change on
// either side) gets the retained change it missed once it hears from the other node
// again.
func TestRoutesRetainedRepairAfterSilence(t *testing.T) {
	mn, srvs := startRouteCluster(t, 2)
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	// id 0: QoS 0, whose forwards are not kept for a resend (routes_reliable.go).
	retain := func(id uint16, payload string) {
		p := publishPacket("r/1", min(byte(id), 1), id, payload)
		p.FixedHeader.Retain = true
		pub.send(p)
		if id > 0 {
			pub.expect(packets.Puback, id)
		}
	}
	held := func() string {
		pk, ok := srvs[1].broker.Topics.Retained.Get("r/1")
		if !ok {
			return "<none>"
		}
		return string(pk.Payload)
	}
	retain(1, "old")
	routeWait(t, "node 2 to hold the retained message", func() bool { return held() == "old" })
	routeWait(t, "node 2 to hear a digest from node 1", func() bool {
		srvs[1].routes.mu.Lock()
		defer srvs[1].routes.mu.Unlock()
		rn := srvs[1].routes.remote[1]
		return rn != nil && !rn.lastDigest.IsZero()
	})

	mn.setCut(1, 2, true)
	retain(0, "new")
	routeWait(t, "node 1 to fail to forward the change", func() bool {
		return testutil.ToFloat64(srvs[0].routes.forwarded.WithLabelValues("failed")) >= 1
	})
	routeWait(t, "node 2 to notice the silence", func() bool {
		srvs[1].routes.mu.Lock()
		defer srvs[1].routes.mu.Unlock()
		return time.Since(srvs[1].routes.remote[1].lastDigest) > silenceResync
	})
	if held() != "old" {
		t.Fatalf("node 2 got %q through a cut link", held())
	}
	mn.setCut(1, 2, false)
	routeWait(t, "node 2 to take the retained change it missed", func() bool { return held() == "new" })
}
