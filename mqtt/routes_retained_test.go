package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRoutesRetainedResync: retained changes (a new value and a clear) lost on a cut
// link reach the other node at the next route resync, stored there without being
// delivered to its live subscribers.
func TestRoutesRetainedResync(t *testing.T) {
	mn, srvs := startRouteCluster(t, 2)
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	retain := func(id uint16, topic, payload string) {
		p := publishPacket(topic, 1, id, payload)
		p.FixedHeader.Retain = true
		pub.send(p)
		pub.expect(packets.Puback, id)
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
	routeWait(t, "node 2 to hold both retained messages", func() bool {
		return held("r/1") == "old" && held("r/2") == "gone"
	})
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "r/#")
	readPublish(sub)
	readPublish(sub)

	mn.setCut(1, 2, true)
	retain(3, "r/1", "new")
	retain(4, "r/2", "")
	// A subscription change on node 1 while cut: node 2 misses the delta and resyncs.
	other, _ := dialRaw(t, srvs[0].Addr().String(), "other", 5, true)
	routeSubscribe(other, 1, "z")
	// mochi acks a publish before it fans it out: wait until node 1 tried to forward
	// both changes, else one may still be on its way when the link is back.
	routeWait(t, "node 1 to fail to forward both retained changes", func() bool {
		return testutil.ToFloat64(srvs[0].routes.forwarded.WithLabelValues("failed")) >= 2
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
