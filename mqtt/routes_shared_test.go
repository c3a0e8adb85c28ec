package mqtt

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// delivery is one publish a test client received.
type delivery struct{ client, payload string }

// collectInto reads every publish arriving on the clients (acking QoS 1) into ch, until
// their connections close.
func collectInto(ch chan<- delivery, clients map[string]*rawClient) {
	for name, c := range clients {
		go func() {
			for {
				_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
				pk, err := c.readPacket()
				if err != nil {
					return
				}
				if pk.FixedHeader.Type != packets.Publish {
					continue
				}
				if pk.FixedHeader.Qos == 1 {
					ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ProtocolVersion: c.version}
					var buf bytes.Buffer
					if ack.PubackEncode(&buf) != nil {
						return
					}
					if _, err := c.conn.Write(buf.Bytes()); err != nil {
						return
					}
				}
				ch <- delivery{name, string(pk.Payload)}
			}
		}()
	}
}

// gather takes deliveries until want returns true, then for a further bounded while
// (anything arriving then is an extra copy: the wait bounds a negative, it assumes no
// timing), and returns payload → clients that got it.
func gather(t *testing.T, ch <-chan delivery, done func(map[string][]string) bool) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	deadline := time.After(60 * time.Second)
	for !done(got) {
		select {
		case d := <-ch:
			got[d.payload] = append(got[d.payload], d.client)
		case <-deadline:
			t.Fatalf("timed out; got %v", got)
		}
	}
	extra := time.After(500 * time.Millisecond)
	for {
		select {
		case d := <-ch:
			got[d.payload] = append(got[d.payload], d.client)
		case <-extra:
			return got
		}
	}
}

// groupsKnown waits until node at knows that node of has these filters: plain (0) or
// groups with their member count.
func groupsKnown(t *testing.T, at *Server, of uint64, members map[string]uint32) {
	t.Helper()
	routeWait(t, fmt.Sprintf("node %d to learn node %d's groups %v", at.routes.peers.Self(), of, members), func() bool {
		at.routes.mu.Lock()
		defer at.routes.mu.Unlock()
		rn := at.routes.remote[of]
		if rn == nil {
			return false
		}
		for g, n := range members {
			if m, ok := rn.filters[g]; !ok || m != n {
				return false
			}
		}
		return true
	})
}

// TestRoutesSharedGroupOncePerMessage: a shared group with members on three nodes gets
// each publish once cluster-wide, whichever node it is published on; a group with no
// member on the publishing node too; plain subscribers still get every publish.
func TestRoutesSharedGroupOncePerMessage(t *testing.T) {
	_, srvs := startRouteCluster(t, 3)
	clients := map[string]*rawClient{}
	sub := func(node int, name string, filters ...string) {
		c, _ := dialRaw(t, srvs[node].Addr().String(), name, 5, true)
		routeSubscribe(c, 1, filters...)
		clients[name] = c
	}
	sub(0, "g1", "$share/g/+/x")
	sub(1, "g2", "$share/g/+/x")
	sub(2, "g3", "$share/g/+/x")
	sub(1, "h2", "$share/h/+/x")
	sub(2, "h3", "$share/h/+/x")
	sub(2, "p3", "+/x")
	sub(0, "p1", "+/+")
	for i, s := range srvs {
		for j := range srvs {
			if i == j {
				continue
			}
			want := map[string]uint32{"$share/g/+/x": 1, "$share/h/+/x": 1}
			switch j {
			case 0:
				want = map[string]uint32{"$share/g/+/x": 1, "+/+": 0}
			case 2:
				want["+/x"] = 0
			}
			groupsKnown(t, s, uint64(j+1), want)
		}
	}
	ch := make(chan delivery, 1024)
	collectInto(ch, clients)

	// Node 1's publishes go to no stream (mochi's own path), node 2's to stream s (held
	// by the ingest hook until stored, then completed).
	const perNode = 40
	var payloads []string
	for node, topic := range []string{"sh/x", "s/x"} {
		pub, _ := dialRaw(t, srvs[node].Addr().String(), fmt.Sprintf("pub%d", node), 5, true)
		for i := range perNode {
			p := fmt.Sprintf("n%d-%d", node+1, i)
			pub.send(publishPacket(topic, 1, uint16(i+1), p))
			pub.expect(packets.Puback, uint16(i+1))
			payloads = append(payloads, p)
		}
	}
	count := func(cs []string, names ...string) int {
		n := 0
		for _, c := range cs {
			for _, name := range names {
				if c == name {
					n++
				}
			}
		}
		return n
	}
	got := gather(t, ch, func(got map[string][]string) bool {
		for _, p := range payloads {
			cs := got[p]
			if count(cs, "g1", "g2", "g3") < 1 || count(cs, "h2", "h3") < 1 || count(cs, "p1") < 1 || count(cs, "p3") < 1 {
				return false
			}
		}
		return true
	})
	per := map[string]int{} // by publishing node and client
	for _, p := range payloads {
		cs := got[p]
		if count(cs, "g1", "g2", "g3") != 1 || count(cs, "h2", "h3") != 1 || count(cs, "p1") != 1 || count(cs, "p3") != 1 {
			t.Fatalf("publish %s reached %v: want one member of each group and each plain subscriber once", p, cs)
		}
		for _, c := range cs {
			per[p[:2]+" "+c]++
		}
	}
	// Random picks weighted by members, local members no likelier: each member gets
	// some of each node's 40 (a member getting none has probability below 1e-7).
	for _, node := range []string{"n1", "n2"} {
		for _, name := range []string{"g1", "g2", "g3", "h2", "h3"} {
			if per[node+" "+name] == 0 {
				t.Fatalf("member %s got none of node %s's publishes: %v", name, node, per)
			}
		}
	}
	t.Logf("deliveries by publishing node and client: %v", per)
}

// TestRoutesSharedMemberGone: a QoS 1 publish whose group was picked on a node whose
// member has left (the publishing node not told yet), or on a node that cannot be
// reached, reaches the group's other member.
func TestRoutesSharedMemberGone(t *testing.T) {
	mn, srvs := startRouteCluster(t, 3)
	const group = "$share/w/job/#"
	m2, _ := dialRaw(t, srvs[1].Addr().String(), "m2", 5, true)
	routeSubscribe(m2, 1, group)
	m3, _ := dialRaw(t, srvs[2].Addr().String(), "m3", 5, true)
	routeSubscribe(m3, 1, group)
	groupsKnown(t, srvs[0], 2, map[string]uint32{group: 1})
	groupsKnown(t, srvs[0], 3, map[string]uint32{group: 1})
	groupsKnown(t, srvs[1], 3, map[string]uint32{group: 1})

	// Node 1 never hears that m2 left.
	mn.setCut(2, 1, true)
	m2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	routeWait(t, "node 2 to drop its member", func() bool {
		srvs[1].routes.mu.Lock()
		defer srvs[1].routes.mu.Unlock()
		_, ok := srvs[1].routes.local[group]
		return !ok
	})
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	publishAll := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			p := fmt.Sprintf("%s-%d", prefix, i)
			pub.send(publishPacket("job/1", 1, uint16(i+1), p))
			pub.expect(packets.Puback, uint16(i+1))
			out = append(out, p)
		}
		return out
	}
	m2b, _ := dialRaw(t, srvs[1].Addr().String(), "m2b", 5, true) // no group: must get nothing
	ch := make(chan delivery, 1024)
	collectInto(ch, map[string]*rawClient{"m3": m3, "m2b": m2b})
	want := publishAll("gone", 30)
	got := gather(t, ch, func(got map[string][]string) bool {
		for _, p := range want {
			if len(got[p]) == 0 {
				return false
			}
		}
		return true
	})
	for _, p := range want {
		if cs := got[p]; len(cs) != 1 || cs[0] != "m3" {
			t.Fatalf("publish %s reached %v, want m3 once", p, cs)
		}
	}
	if testutil.ToFloat64(srvs[1].routes.shared.WithLabelValues("sent")) == 0 {
		t.Fatal("node 2 handed no publish on: node 1 never picked it")
	}

	// A member node that cannot be sent to: node 1 picks another.
	m2c, _ := dialRaw(t, srvs[1].Addr().String(), "m2c", 5, true)
	routeSubscribe(m2c, 1, group)
	collectInto(ch, map[string]*rawClient{"m2c": m2c})
	mn.setCut(2, 1, false)
	groupsKnown(t, srvs[0], 2, map[string]uint32{group: 1})
	mn.setCut(1, 2, true)
	want = publishAll("cut", 30)
	got = gather(t, ch, func(got map[string][]string) bool {
		for _, p := range want {
			if len(got[p]) == 0 {
				return false
			}
		}
		return true
	})
	for _, p := range want {
		if cs := got[p]; len(cs) != 1 || cs[0] != "m3" {
			t.Fatalf("publish %s reached %v, want m3 once", p, cs)
		}
	}
}

// TestRoutesWillReachesOtherNodes: a will message is forwarded like a publish.
func TestRoutesWillReachesOtherNodes(t *testing.T) {
	_, srvs := startRouteCluster(t, 2)
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "will/#")
	routeWait(t, "node 1 to learn node 2's filter", func() bool { return remoteFilters(srvs[0], 2)["will/#"] })

	conn, err := net.Dial("tcp", srvs[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{tb: t, conn: conn, r: bufio.NewReader(conn), version: 5}
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: "dying", Keepalive: 60,
			WillFlag: true, WillTopic: "will/dying", WillPayload: []byte("gone"), WillQos: 1,
		},
	})
	c.expect(packets.Connack, 0)
	_ = conn.Close() // no DISCONNECT: the will is sent
	if got := readPublish(sub); got.TopicName != "will/dying" || string(got.Payload) != "gone" {
		t.Fatalf("got %+v", got)
	}
}
