package kafkawire

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// fakePlacement is one placement shared by the nodes of a fakeCluster: the test moves
// leaders and coordinators while clients run. It stands in for the cluster package,
// which answers the same questions from its Raft groups.
type fakePlacement struct {
	mu      sync.Mutex
	brokers []Broker
	leaders map[string]int32 // "stream/shard" → node; absent: node shard%len
	coords  map[string]int32 // group → node; absent: fnv(group)%len
}

func (p *fakePlacement) leader(stream string, shard int32) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.leaders[stream+"/"+strconv.Itoa(int(shard))]; ok {
		return l
	}
	return shard % int32(len(p.brokers))
}

func (p *fakePlacement) setLeader(stream string, shard, node int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaders[stream+"/"+strconv.Itoa(int(shard))] = node
}

func (p *fakePlacement) setCoordinator(group string, node int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.coords[group] = node
}

// fakeNode is one node's view of a fakePlacement.
type fakeNode struct {
	self int32
	p    *fakePlacement
}

func (n fakeNode) Self() int32       { return n.self }
func (n fakeNode) Controller() int32 { return 0 }
func (n fakeNode) Brokers() []Broker {
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	return slices.Clone(n.p.brokers)
}
func (n fakeNode) Partition(stream string, shard int32) PartitionState {
	l := n.p.leader(stream, shard)
	all := []int32{0, 1, 2}
	return PartitionState{Leader: l, Replicas: all, ISR: all}
}
func (n fakeNode) Coordinator(_ int8, key string) int32 {
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	if c, ok := n.p.coords[key]; ok {
		return c
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(len(n.p.brokers)))
}

// fakeCluster is three real Servers, each over its own log holding the same streams,
// placed by one fakePlacement. There is no replication: a record is stored by the
// node that led its partition when it was produced, which is what these tests check.
type fakeCluster struct {
	p     *fakePlacement
	srv   []*Server
	logs  []*log.Log
	addrs []string
}

func startFakeCluster(t *testing.T, streams ...log.StreamSpec) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{p: &fakePlacement{leaders: map[string]int32{}, coords: map[string]int32{}}}
	for i := int32(0); i < 3; i++ {
		l, err := log.Open(log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), NoSync: true, RetentionInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cat, err := mapping.OpenCatalog(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range streams {
			d, err := mapping.DefinitionFromSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cat.Create(d, false); err != nil {
				t.Fatal(err)
			}
		}
		// One cluster id for all, as the nodes of a cluster share one (topic ids derive
		// from it and franz-go refuses a topic whose id changes between brokers).
		if err := os.WriteFile(filepath.Join(l.Dir(), clusterIDFile), []byte("fake-cluster\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Log: l, Catalog: cat, Logger: zerolog.Nop(), Cluster: fakeNode{self: i, p: fc.p}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = s.Close()
			_ = l.Close()
		})
		fc.srv, fc.logs = append(fc.srv, s), append(fc.logs, l)
		fc.addrs = append(fc.addrs, s.Addr().String())
		fc.p.brokers = append(fc.p.brokers, Broker{ID: i, Host: s.advHost, Port: s.advPort})
	}
	return fc
}

// kversionsWith is every version franz-go knows with one API's maximum set.
func kversionsWith(key, max int16) *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(key, max)
	return v
}

func (fc *fakeCluster) client(t *testing.T, node int, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(fc.addrs[node]), kgo.RetryTimeout(30 * time.Second),
		kgo.MetadataMinAge(10 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// request sends one request to one node (not through the client's routing).
func (fc *fakeCluster) request(t *testing.T, node int, req kmsg.Request) kmsg.Response {
	t.Helper()
	cl := fc.client(t, node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Broker(node).Request(ctx, req)
	if err != nil {
		t.Fatalf("%s to node %d: %v", kmsg.NameForKey(req.Key()), node, err)
	}
	return resp
}

// hwm is a shard's high watermark in one node's log.
func (fc *fakeCluster) hwm(t *testing.T, node int, stream string, shard int32) int64 {
	t.Helper()
	_, hwm, err := fc.logs[node].Stream(stream).Offsets(shard)
	if err != nil {
		t.Fatal(err)
	}
	return hwm
}

func TestClusterMetadataListsNodesAndPlacement(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 3})
	for node := range 3 {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 12
		resp := fc.request(t, node, req).(*kmsg.MetadataResponse)
		if len(resp.Brokers) != 3 {
			t.Fatalf("node %d lists %d brokers, want 3", node, len(resp.Brokers))
		}
		for i, b := range resp.Brokers {
			if b.NodeID != int32(i) || fmt.Sprintf("%s:%d", b.Host, b.Port) != fmt.Sprintf("%s:%d", fc.p.brokers[i].Host, fc.p.brokers[i].Port) {
				t.Fatalf("broker %d = %d %s:%d", i, b.NodeID, b.Host, b.Port)
			}
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 3 {
			t.Fatalf("topics %+v", resp.Topics)
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.Leader != p.Partition%3 || len(p.Replicas) != 3 || len(p.ISR) != 3 || p.ErrorCode != 0 {
				t.Fatalf("node %d partition %d: leader %d replicas %v isr %v err %d", node, p.Partition, p.Leader, p.Replicas, p.ISR, p.ErrorCode)
			}
		}
	}
	fc.p.setLeader("s", 1, -1)
	resp := fc.request(t, 0, kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse)
	if p := resp.Topics[0].Partitions[1]; p.ErrorCode != kerr.LeaderNotAvailable.Code {
		t.Fatalf("leaderless partition: error %d, want LEADER_NOT_AVAILABLE", p.ErrorCode)
	}

	dc := kmsg.NewPtrDescribeClusterRequest()
	dresp := fc.request(t, 2, dc).(*kmsg.DescribeClusterResponse)
	if len(dresp.Brokers) != 3 || dresp.ControllerID != 0 {
		t.Fatalf("DescribeCluster: %d brokers, controller %d", len(dresp.Brokers), dresp.ControllerID)
	}
}

func TestClusterNotLeaderOrFollower(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 3})
	// Node 0 leads partition 0 and not 1: a produce to both stores 0 and refuses 1.
	cl := fc.client(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "s", Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 4
	for _, p := range []int32{0, 1} {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "s"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
		lo.Topics = append(lo.Topics, rt)
	}
	lresp := fc.request(t, 0, lo).(*kmsg.ListOffsetsResponse)
	got := map[int32]int16{}
	for _, t := range lresp.Topics {
		for _, p := range t.Partitions {
			got[p.Partition] = p.ErrorCode
		}
	}
	if got[0] != 0 || got[1] != kerr.NotLeaderForPartition.Code {
		t.Fatalf("ListOffsets errors %v, want partition 0 ok, 1 NOT_LEADER_OR_FOLLOWER", got)
	}

	f := kmsg.NewPtrFetchRequest()
	f.Version, f.MaxWaitMillis, f.MinBytes, f.MaxBytes = 11, 5000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "s"
	for _, p := range []int32{0, 1} {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	f.Topics = append(f.Topics, ft)
	start := time.Now()
	fresp := fc.request(t, 0, f).(*kmsg.FetchResponse)
	got = map[int32]int16{}
	for _, t := range fresp.Topics {
		for _, p := range t.Partitions {
			got[p.Partition] = p.ErrorCode
		}
	}
	if got[0] != 0 || got[1] != kerr.NotLeaderForPartition.Code {
		t.Fatalf("Fetch errors %v, want partition 0 ok, 1 NOT_LEADER_OR_FOLLOWER", got)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("a fetch with a refused partition waited %v for min bytes", time.Since(start))
	}

	pr := kmsg.NewPtrProduceRequest()
	pr.Version, pr.Acks, pr.TimeoutMillis = 9, -1, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "s"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Partition = 2
	// Placement is checked before the batch is decoded: these bytes would be
	// CORRUPT_MESSAGE at the leader.
	pp.Records = []byte("not a batch")
	pt.Partitions = append(pt.Partitions, pp)
	pr.Topics = append(pr.Topics, pt)
	presp := fc.request(t, 0, pr).(*kmsg.ProduceResponse)
	if c := presp.Topics[0].Partitions[0].ErrorCode; c != kerr.NotLeaderForPartition.Code {
		t.Fatalf("produce to node 0 for partition 2 (led by 2): error %d, want NOT_LEADER_OR_FOLLOWER", c)
	}
	if n := fc.hwm(t, 0, "s", 2); n != 0 {
		t.Fatalf("node 0 stored %d records of a partition it does not lead", n)
	}
}

// TestClusterProducersAndConsumersFollowLeaders: a franz-go producer and consumer
// bootstrapped on one node reach every partition's leader, and when a leader moves
// they get NOT_LEADER_OR_FOLLOWER, refresh metadata and carry on at the new leader.
func TestClusterProducersAndConsumersFollowLeaders(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 3})
	prod := fc.client(t, 1, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	produce := func(n int, tag string) {
		t.Helper()
		var rs []*kgo.Record
		for i := range n {
			rs = append(rs, &kgo.Record{Topic: "s", Partition: int32(i % 3), Value: fmt.Appendf(nil, "%s-%d", tag, i)})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(30, "a")
	for shard := int32(0); shard < 3; shard++ {
		for node := range 3 {
			want := int64(0)
			if int32(node) == shard {
				want = 10
			}
			if got := fc.hwm(t, node, "s", shard); got != want {
				t.Fatalf("node %d holds %d records of shard %d, want %d", node, got, shard, want)
			}
		}
	}

	// Partition 0 moves from node 0 to node 2: the producer's next batch is refused
	// there, and it must follow.
	fc.p.setLeader("s", 0, 2)
	produce(30, "b")
	if got := fc.hwm(t, 2, "s", 0); got != 10 {
		t.Fatalf("new leader 2 holds %d records of shard 0, want 10", got)
	}
	if got := fc.hwm(t, 0, "s", 0); got != 10 {
		t.Fatalf("old leader 0 holds %d records of shard 0, want still 10", got)
	}

	// A consumer bootstrapped on node 0 reads partition 0 from node 2 and follows it
	// back to node 0 when it moves again.
	cons := fc.client(t, 0, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"s": {0: kgo.NewOffset().At(0)}}))
	read := func(n int) []string {
		t.Helper()
		var out []string
		for len(out) < n {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumer read %d of %d records: %v", len(out), n, ctx.Err())
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch error (retried): %v", err) })
			fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
		}
		return out
	}
	if got := read(10); got[0] != "b-0" {
		t.Fatalf("consumer at node 2 read %v", got)
	}
	fc.p.setLeader("s", 0, 0)
	produce(3, "c")
	if got := read(1); got[0] != "c-0" {
		t.Fatalf("consumer after the move back read %v", got)
	}
}

// TestClusterGroupCoordinators: FindCoordinator names each group's node; group
// requests elsewhere are NOT_COORDINATOR; a franz-go group consumer bootstrapped on
// another node joins at the coordinator and rejoins when the coordinator moves.
func TestClusterGroupCoordinators(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 3})
	fc.p.setCoordinator("g", 2)
	for _, v := range []int16{3, 4} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		req.CoordinatorKeys = []string{"g"}
		cl := fc.client(t, 0, kgo.MaxVersions(kversionsWith(10, v)))
		resp, err := cl.Broker(0).Request(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		fr := resp.(*kmsg.FindCoordinatorResponse)
		node, code := fr.NodeID, fr.ErrorCode
		if fr.Version >= 4 {
			node, code = fr.Coordinators[0].NodeID, fr.Coordinators[0].ErrorCode
		}
		if fr.Version != v || code != 0 || node != 2 {
			t.Fatalf("FindCoordinator v%d: node %d error %d, want node 2", fr.Version, node, code)
		}
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "g", "m", 1
	if c := fc.request(t, 0, hb).(*kmsg.HeartbeatResponse).ErrorCode; c != kerr.NotCoordinator.Code {
		t.Fatalf("heartbeat at node 0 for a group of node 2: error %d, want NOT_COORDINATOR", c)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{"g"}
	if gs := fc.request(t, 1, dg).(*kmsg.DescribeGroupsResponse).Groups; len(gs) != 1 || gs[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("DescribeGroups at node 1: %+v", gs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prod := fc.client(t, 0)
	for i := range 9 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "s", Partition: int32(i % 3), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cons := fc.client(t, 0, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("s"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.HeartbeatInterval(100*time.Millisecond))
	seen := 0
	for seen < 9 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group consumer read %d of 9: %v", seen, ctx.Err())
		}
		seen += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	lg := kmsg.NewPtrListGroupsRequest()
	for node := range 3 {
		gs := fc.request(t, node, lg).(*kmsg.ListGroupsResponse).Groups
		if has := len(gs) == 1 && gs[0].Group == "g"; has != (node == 2) {
			t.Fatalf("ListGroups at node %d: %+v", node, gs)
		}
	}
	// The coordinator moves to node 1: heartbeats there answer NOT_COORDINATOR, the
	// client finds node 1 and rejoins (generation 1 on the new node).
	fc.p.setCoordinator("g", 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		d := kmsg.NewPtrDescribeGroupsRequest()
		d.Groups = []string{"g"}
		gs := fc.request(t, 1, d).(*kmsg.DescribeGroupsResponse).Groups
		if len(gs) == 1 && gs[0].State == "Stable" && len(gs[0].Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group never became stable on its new coordinator: %+v", gs)
		}
		// The consumer must keep polling for its rebalance to run.
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		cons.PollFetches(pctx)
		pcancel()
	}
}

// TestClusterMetadataListsSelfBeforeRegistration: a node lists itself in Metadata even
// while the cluster does not know its address yet (it spreads it after start).
func TestClusterMetadataListsSelfBeforeRegistration(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 1})
	fc.p.mu.Lock()
	fc.p.brokers = fc.p.brokers[:1] // only node 0 registered
	fc.p.mu.Unlock()
	resp := fc.request(t, 2, kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse)
	var ids []int32
	for _, b := range resp.Brokers {
		ids = append(ids, b.NodeID)
	}
	if !slices.Equal(ids, []int32{0, 2}) {
		t.Fatalf("node 2 lists brokers %v, want [0 2]", ids)
	}
}

// TestClusterProducerIDsDiffer: nodes started together give out different producer ids
// (ids from each node's clock alone collided, and the leader then took one producer's
// batch for a retry of the other's: acknowledged, not stored); an id is re-initialised
// with a bumped epoch by the node that gave it out.
func TestClusterProducerIDsDiffer(t *testing.T) {
	fc := startFakeCluster(t, log.StreamSpec{Name: "s", Shards: 1})
	seen := map[int64]int{}
	for node := range 3 {
		for range 3 {
			req := kmsg.NewPtrInitProducerIDRequest()
			resp := fc.request(t, node, req).(*kmsg.InitProducerIDResponse)
			if resp.ErrorCode != 0 || resp.ProducerID < 0 {
				t.Fatalf("node %d: InitProducerId error %d id %d", node, resp.ErrorCode, resp.ProducerID)
			}
			if prev, dup := seen[resp.ProducerID]; dup {
				t.Fatalf("producer id %d given out by node %d and node %d", resp.ProducerID, prev, node)
			}
			seen[resp.ProducerID] = node
			if got := int(resp.ProducerID & 0xffff); got != node {
				t.Fatalf("node %d gave out id %#x, carrying node %d", node, resp.ProducerID, got)
			}
		}
	}
	req := kmsg.NewPtrInitProducerIDRequest()
	first := fc.request(t, 1, req).(*kmsg.InitProducerIDResponse)
	again := kmsg.NewPtrInitProducerIDRequest()
	again.ProducerID, again.ProducerEpoch = first.ProducerID, first.ProducerEpoch
	bumped := fc.request(t, 1, again).(*kmsg.InitProducerIDResponse)
	if bumped.ProducerID != first.ProducerID || bumped.ProducerEpoch != first.ProducerEpoch+1 {
		t.Fatalf("re-init of %d/%d at its node: %d/%d", first.ProducerID, first.ProducerEpoch, bumped.ProducerID, bumped.ProducerEpoch)
	}
}
