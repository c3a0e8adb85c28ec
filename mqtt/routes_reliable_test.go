package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRoutesReliableForwards: QoS 1 forwards lost on a link that died unnoticed, or not
// sent while it was down, reach the subscriber on the other node once the link works
// again: every message once, in publish order.
func TestRoutesReliableForwards(t *testing.T) {
	mn, srvs := startRouteCluster(t, 2)
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "rel/#")
	routeWait(t, "node 1 to learn node 2's filter", func() bool { return remoteFilters(srvs[0], 2)["rel/#"] })
	ch := make(chan delivery, 1024)
	collectInto(ch, map[string]*rawClient{"sub": sub})

	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	var want []string
	id := uint16(0)
	publish := func(prefix string, n int, qos byte) {
		for i := range n {
			p := fmt.Sprintf("%s-%d", prefix, i)
			id++
			pub.send(publishPacket("rel/x", qos, id, p))
			if qos > 0 {
				pub.expect(packets.Puback, id)
				want = append(want, p)
			}
		}
	}
	publish("before", 10, 1)
	mn.setLose(1, 2, true)
	publish("lost", resendBatch+200, 1) // more than one resend brings
	mn.setLose(1, 2, false)
	publish("after", 10, 1)
	mn.setCut(1, 2, true)
	publish("down", 10, 1)
	routeWait(t, "node 1 to fail to send while the link is down", func() bool {
		return testutil.ToFloat64(srvs[0].routes.forwarded.WithLabelValues("failed")) >= 10
	})
	mn.setCut(1, 2, false)
	publish("end", 5, 1)

	var got []string
	deadline := time.After(60 * time.Second)
	for len(got) < len(want) {
		select {
		case d := <-ch:
			got = append(got, d.payload)
		case <-deadline:
			t.Fatalf("timed out with %v", got)
		}
	}
	extra := time.After(500 * time.Millisecond) // bounds a negative: no extra copy
	for done := false; !done; {
		select {
		case d := <-ch:
			got = append(got, d.payload)
		case <-extra:
			done = true
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if n := testutil.ToFloat64(srvs[0].routes.reliable.WithLabelValues("resent")); n < resendBatch+210 {
		t.Fatalf("%v resent, want at least the lost ones", n)
	}
	routeWait(t, "node 2 to acknowledge everything", func() bool {
		ob := srvs[0].routes.outboxOf(2)
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return len(ob.msgs) == 0
	})
}
