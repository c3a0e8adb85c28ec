package mqtt

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// memNet is an in-memory node transport for the route tests: one ordered queue per
// node pair, delivered by a goroutine, which a test can cut (messages are then lost,
// as on a broken link).
type memNet struct {
	mu    sync.Mutex
	srv   map[uint64]*Server
	logs  map[uint64]*log.Log
	cut   map[[2]uint64]bool
	lose  map[[2]uint64]bool // sent, then lost (a link that died unnoticed)
	queue map[[2]uint64]chan []byte
	wg    sync.WaitGroup
	done  chan struct{}

	// refused counts the messages a cut link refused, by link and message kind: a
	// test waits on it for a message to be lost, not on the time it takes to be sent.
	refused map[[2]uint64]map[byte]int
}

func newMemNet() *memNet {
	return &memNet{srv: map[uint64]*Server{}, logs: map[uint64]*log.Log{}, cut: map[[2]uint64]bool{}, lose: map[[2]uint64]bool{}, refused: map[[2]uint64]map[byte]int{}, queue: map[[2]uint64]chan []byte{}, done: make(chan struct{})}
}

func (m *memNet) close() {
	close(m.done)
	m.wg.Wait()
}

func (m *memNet) setLose(from, to uint64, lose bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lose[[2]uint64{from, to}] = lose
}

func (m *memNet) setCut(from, to uint64, cut bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut[[2]uint64{from, to}] = cut
}

// refusedOf is how many messages of kind the cut link from → to refused so far.
func (m *memNet) refusedOf(from, to uint64, kind byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused[[2]uint64{from, to}][kind]
}

type memPeers struct {
	net  *memNet
	self uint64
	all  []uint64
}

func (p memPeers) Self() uint64 { return p.self }
func (p memPeers) Nodes() []uint64 {
	var out []uint64
	for _, n := range p.all {
		if n != p.self {
			out = append(out, n)
		}
	}
	return out
}

func (p memPeers) Send(to uint64, msg []byte) error {
	m := p.net
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]uint64{p.self, to}
	if m.cut[key] {
		if m.refused[key] == nil {
			m.refused[key] = map[byte]int{}
		}
		m.refused[key][msg[0]]++
		return errors.New("link cut")
	}
	if m.lose[key] {
		return nil
	}
	q := m.queue[key]
	if q == nil {
		q = make(chan []byte, 4096)
		m.queue[key] = q
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for {
				select {
				case b := <-q:
					m.mu.Lock()
					dst := m.srv[to]
					m.mu.Unlock()
					if dst != nil {
						dst.HandlePeerMessage(p.self, b)
					}
				case <-m.done:
					return
				}
			}
		}()
	}
	select {
	case q <- append([]byte(nil), msg...):
		return nil
	default:
		return errors.New("queue full")
	}
}

// startRouteCluster starts n brokers (nodes 1..n) joined by a memNet; each has its own
// log with one stream taking every topic under s/.
func startRouteCluster(t *testing.T, n int) (*memNet, []*Server) {
	t.Helper()
	return startRouteClusterWith(t, n, nil)
}

// startRouteClusterWith is startRouteCluster calling before, if set, with each node's
// server before it starts.
func startRouteClusterWith(t *testing.T, n int, before func(id uint64, srv *Server)) (*memNet, []*Server) {
	t.Helper()
	mn := newMemNet()
	var all []uint64
	for i := 1; i <= n; i++ {
		all = append(all, uint64(i))
	}
	var srvs []*Server
	for _, id := range all {
		def := mapping.Definition{Name: "s", Filters: []string{"s/#"}, Shards: 1}
		l, cat := openStreams(t, log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), NoSync: true}, []mapping.Definition{def})
		// One resend brings up to resendBatch forwards at once, more than the default
		// 1000 packets a subscriber may have waiting (slowclient.go): on a loaded core
		// the subscriber's write loop lags such a burst, and it was cut off as a slow
		// consumer (TestRoutesReliableForwards), which is not what these tests test.
		cfg := Config{Addr: "127.0.0.1:0", MaxQueuedPackets: 4 * resendBatch}
		srv, err := New(Options{Config: cfg, Log: l, Catalog: cat, Logger: zerolog.Nop(),
			Peers: memPeers{net: mn, self: id, all: all}})
		if err != nil {
			t.Fatal(err)
		}
		if before != nil {
			before(id, srv)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		mn.mu.Lock()
		mn.srv[id] = srv
		mn.logs[id] = l
		mn.mu.Unlock()
		srvs = append(srvs, srv)
		t.Cleanup(func() {
			_ = srv.Close()
			_ = l.Close()
		})
	}
	t.Cleanup(mn.close)
	return mn, srvs
}

// remoteFilters is what node `at` knows of node `of`'s filters.
func remoteFilters(s *Server, of uint64) map[string]bool {
	s.routes.mu.Lock()
	defer s.routes.mu.Unlock()
	out := map[string]bool{}
	if rn := s.routes.remote[of]; rn != nil {
		for f := range rn.filters {
			out[f] = true
		}
	}
	return out
}

func routeWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func routeSubscribe(c *rawClient, id uint16, filters ...string) {
	c.tb.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	c.send(pk)
	c.expect(packets.Suback, id)
}

// readPublish reads packets up to the next PUBLISH (acking nothing: QoS 0 in these tests).
func readPublish(c *rawClient) packets.Packet {
	c.tb.Helper()
	for {
		pk := c.read()
		if pk.FixedHeader.Type == packets.Publish {
			return pk
		}
	}
}

// noPublish checks that nothing arrives on c for a while (a message that should not be
// delivered; the wait is a bound on the negative, not a timing assumption).
func noPublish(t *testing.T, c *rawClient) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b, err := c.r.ReadByte()
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("expected no packet, got byte %#x err %v", b, err)
	}
}

func TestRoutesPublishReachesSubscribersOnOtherNodes(t *testing.T) {
	mn, srvs := startRouteCluster(t, 3)
	sub2, _ := dialRaw(t, srvs[1].Addr().String(), "sub2", 5, true)
	routeSubscribe(sub2, 1, "a/+/c")
	sub3, _ := dialRaw(t, srvs[2].Addr().String(), "sub3", 4, true)
	routeSubscribe(sub3, 1, "s/#")
	routeWait(t, "node 1 to learn node 2's and 3's filters", func() bool {
		return remoteFilters(srvs[0], 2)["a/+/c"] && remoteFilters(srvs[0], 3)["s/#"]
	})

	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	p := publishPacket("a/b/c", 1, 7, "hello")
	p.Properties.ContentType = "text/plain"
	p.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	pub.send(p)
	pub.expect(packets.Puback, 7)
	got := readPublish(sub2)
	if got.TopicName != "a/b/c" || string(got.Payload) != "hello" || got.Properties.ContentType != "text/plain" ||
		len(got.Properties.User) != 1 || got.Properties.User[0].Val != "v" {
		t.Fatalf("node 2 subscriber got %+v", got)
	}
	noPublish(t, sub3)

	// A stream publish is stored once (by node 1, whose log it went to) and delivered
	// on node 3, QoS 1 both ends.
	pub.send(publishPacket("s/x", 1, 8, "stored"))
	pub.expect(packets.Puback, 8)
	got = readPublish(sub3)
	if got.TopicName != "s/x" || string(got.Payload) != "stored" || got.FixedHeader.Qos != 1 {
		t.Fatalf("node 3 subscriber got %+v", got)
	}
	for i := range srvs {
		_, hwm, err := mn.logs[uint64(i+1)].Stream("s").Offsets(0)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(map[bool]int{true: 1}[i == 0]); hwm != want {
			t.Fatalf("node %d stored %d records, want %d", i+1, hwm, want)
		}
	}

	// Unsubscribing (here: disconnecting a clean session) removes the route.
	sub2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	routeWait(t, "node 1 to drop node 2's filter", func() bool { return !remoteFilters(srvs[0], 2)["a/+/c"] })
}

// TestRoutesResyncAfterLoss: deltas lost on a cut link are repaired by the digest
// once the link is back.
func TestRoutesResyncAfterLoss(t *testing.T) {
	mn, srvs := startRouteCluster(t, 2)
	mn.setCut(2, 1, true)
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "x/1")
	routeSubscribe(sub, 2, "x/2")
	routeWait(t, "node 2 to announce both filters (lost on the cut link)", func() bool {
		srvs[1].routes.mu.Lock()
		defer srvs[1].routes.mu.Unlock()
		_, a := srvs[1].routes.local["x/1"]
		_, b := srvs[1].routes.local["x/2"]
		// and every delta announced so far sent (and refused): one sent after the
		// link is back would arrive, and nothing would be left to resync
		return a && b && uint64(mn.refusedOf(2, 1, routeDelta)) == srvs[1].routes.seq
	})
	if f := remoteFilters(srvs[0], 2); f["x/1"] || f["x/2"] {
		t.Fatalf("node 1 learnt %v through a cut link", f)
	}
	mn.setCut(2, 1, false)
	routeWait(t, "node 1 to resync node 2's filters", func() bool {
		f := remoteFilters(srvs[0], 2)
		return f["x/1"] && f["x/2"]
	})
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	pub.send(publishPacket("x/2", 0, 0, "after"))
	if got := readPublish(sub); string(got.Payload) != "after" {
		t.Fatalf("got %+v", got)
	}
}

// TestRoutesRetainedReachesEveryNode: a retained publish is kept by every node, so a
// later subscriber anywhere gets it.
func TestRoutesRetainedReachesEveryNode(t *testing.T) {
	_, srvs := startRouteCluster(t, 3)
	pub, _ := dialRaw(t, srvs[0].Addr().String(), "pub", 5, true)
	p := publishPacket("r/1", 1, 3, "kept")
	p.FixedHeader.Retain = true
	pub.send(p)
	pub.expect(packets.Puback, 3)
	routeWait(t, "node 3 to hold the retained message", func() bool {
		_, ok := srvs[2].broker.Topics.Retained.Get("r/1")
		return ok
	})
	sub, _ := dialRaw(t, srvs[2].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "r/#")
	if got := readPublish(sub); string(got.Payload) != "kept" || !got.FixedHeader.Retain {
		t.Fatalf("got %+v", got)
	}
}

// TestRoutesProducedRecordsReachOtherNodes: a record produced over Kafka on one node is
// delivered to MQTT subscribers on another.
func TestRoutesProducedRecordsReachOtherNodes(t *testing.T) {
	_, srvs := startRouteCluster(t, 2)
	sub, _ := dialRaw(t, srvs[1].Addr().String(), "sub", 5, true)
	routeSubscribe(sub, 1, "s/k")
	routeWait(t, "node 1 to learn node 2's filter", func() bool { return remoteFilters(srvs[0], 2)["s/k"] })
	srvs[0].DeliverProduced(mapping.Produced{Stream: "s", Records: []log.Record{{
		Value: []byte("from kafka"), Headers: []log.Header{{Key: mapping.HeaderTopic, Value: []byte("s/k")}},
	}}})
	if got := readPublish(sub); got.TopicName != "s/k" || string(got.Payload) != "from kafka" {
		t.Fatalf("got %+v", got)
	}
}

// BenchmarkRouteLocalFilters is the recomputation of this node's filters that a
// subscription change triggers (at most every 10× its own duration): 10,000 clients
// with 2 filters each.
func BenchmarkRouteLocalFilters(b *testing.B) {
	broker := mochi.New(&mochi.Options{InlineClient: true})
	for i := range 10000 {
		cl := broker.NewClient(nil, "bench", fmt.Sprintf("c%d", i), false)
		cl.State.Subscriptions.Add(fmt.Sprintf("dev/%d/cmd", i), packets.Subscription{Filter: fmt.Sprintf("dev/%d/cmd", i)})
		cl.State.Subscriptions.Add("fleet/#", packets.Subscription{Filter: "fleet/#"})
		broker.Clients.Add(cl)
	}
	r := newRoutes(broker, memPeers{net: newMemNet(), self: 1, all: []uint64{1}}, zerolog.Nop())
	b.ResetTimer()
	for range b.N {
		if n := len(r.localFilters()); n != 10001 {
			b.Fatalf("%d filters", n)
		}
	}
}
