package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
)

// txnWire is kafkawire's view of a node with transactions, as cmd/mqstreams wires it.
type txnWire struct {
	wireCluster
	addrs *[]string // every node's Kafka address, by node id - 1
}

func (w txnWire) Brokers() []kafkawire.Broker {
	var out []kafkawire.Broker
	for i, a := range *w.addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(port)
		out = append(out, kafkawire.Broker{ID: int32(i + 1), Host: host, Port: int32(p)})
	}
	return out
}

func (w txnWire) Coordinator(kt int8, k string) int32 {
	if kt == 1 {
		return int32(w.n.Controller())
	}
	return int32(w.n.Coordinator(k))
}
func (w txnWire) CoordinatorTerm() uint64 { return w.n.CoordinatorTerm() }
func (w txnWire) ProposeState(ctx context.Context, cmd []byte) error {
	return w.n.ProposeState(ctx, cmd)
}
func (w txnWire) SyncState(ctx context.Context) error        { return w.n.SyncState(ctx) }
func (w txnWire) StateGet(key string) []byte                 { return w.n.StateGet(key) }
func (w txnWire) StateScan(p string, f func(string, []byte)) { w.n.StateScan(p, f) }
func (w txnWire) AppendTxn(ctx context.Context, stream string, shard int32, txn log.Txn, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	w.n.AppendTxn(ctx, stream, shard, txn, recs, ops, done)
}
func (w txnWire) WriteMarker(ctx context.Context, stream string, shard int32, pid int64, epoch int16, commit bool, ce int32, done func(error)) {
	w.n.WriteMarker(ctx, stream, shard, pid, epoch, commit, ce, func(_ MarkerResult, err error) { done(err) })
}

type txnMachine struct{}

func (txnMachine) Apply(cmd []byte, st *StateView) ([]log.GroupOffsets, error) {
	return kafkawire.ApplyTxnState(cmd, st)
}

// txnCluster is a test cluster with a Kafka server on every node.
type txnTestCluster struct {
	*testCluster
	servers []*kafkawire.Server
	addrs   []string
}

func newTxnCluster(t *testing.T, opts func(i int, o *Options)) *txnTestCluster {
	c := &txnTestCluster{testCluster: newTestCluster(t, 3, opts)}
	c.servers = make([]*kafkawire.Server, 3)
	c.addrs = make([]string, 3)
	for i := range c.nodes {
		c.startServer(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.stopServer(i)
		}
	})
	return c
}

func (c *txnTestCluster) startServer(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.SetStateMachine(txnMachine{})
	addr := "127.0.0.1:0"
	if c.addrs[i] != "" {
		addr = c.addrs[i] // a restarted node keeps its address
	}
	var s *kafkawire.Server
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err = kafkawire.New(kafkawire.Options{Config: kafkawire.Config{Addr: addr}, Log: c.logs[i],
			Logger: testLogger(c.t).With().Int("kafka", i+1).Logger(), Writer: n, Cluster: txnWire{wireCluster{n}, &c.addrs}})
		if err == nil {
			if err = s.Start(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.servers[i] = s
	c.addrs[i] = s.Addr().String()
}

func (c *txnTestCluster) stopServer(i int) {
	if c.servers[i] != nil {
		_ = c.servers[i].Close()
		c.servers[i] = nil
	}
}

// kill stops node i's Kafka server, Raft node and log.
func (c *txnTestCluster) kill(i int) {
	c.stopServer(i)
	c.stop(i)
}

func (c *txnTestCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	var seeds []string
	for i, a := range c.addrs {
		if c.servers[i] != nil {
			seeds = append(seeds, a)
		}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequestTimeoutOverhead(5 * time.Second), kgo.RetryTimeout(60 * time.Second)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// produceTxn produces n records "<tag>-<i>" to shard in one transaction and ends it.
func produceTxn(ctx context.Context, t *testing.T, cl *kgo.Client, shard int32, tag string, n int, commit bool) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: "s", Partition: shard, Value: []byte(fmt.Sprintf("%s-%d", tag, i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s-%d: %v", tag, i, err)
		}
	}
	end := kgo.TryAbort
	if commit {
		end = kgo.TryCommit
	}
	if err := cl.EndTransaction(ctx, end); err != nil {
		t.Fatalf("end transaction %s (commit %v): %v", tag, commit, err)
	}
}

// readCommitted consumes shard from the start with read_committed through node i until
// it has want records, and returns their values.
func (c *txnTestCluster) readCommitted(ctx context.Context, i int, shard int32, want int) []string {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.addrs[i]), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"s": {shard: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			c.t.Fatalf("read_committed through node %d: %d of %d records: %v", i+1, len(out), want, out)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}

// checkTxnReplicas checks that every live replica of shard holds the same last stable
// offset (= its high watermark: nothing open) and the same aborted transactions.
func (c *txnTestCluster) checkTxnReplicas(shard int32, aborted int) {
	c.t.Helper()
	var first []log.AbortedTxn
	var firstLSO int64 = -1
	waitFor(c.t, 30*time.Second, "replicas with equal LSO and abort lists", func() bool {
		firstLSO, first = -1, nil
		for i, l := range c.logs {
			if l == nil {
				continue
			}
			st := l.Stream("s")
			if st == nil {
				return false
			}
			lso, err := st.LastStable(shard)
			_, hwm, _ := st.Offsets(shard)
			ab, err2 := st.AbortedTxns(shard, 0, hwm)
			if err != nil || err2 != nil || lso != hwm || len(ab) != aborted {
				return false
			}
			if firstLSO < 0 {
				firstLSO, first = lso, ab
				continue
			}
			if lso != firstLSO || fmt.Sprint(ab) != fmt.Sprint(first) {
				c.t.Logf("node %d: LSO %d aborted %v; first replica: LSO %d aborted %v", i+1, lso, ab, firstLSO, first)
				return false
			}
		}
		return firstLSO > 0
	})
}

func TestTxnCommitAbortReplicated(t *testing.T) {
	c := newTxnCluster(t, nil)
	c.putStream("s", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl := c.client(kgo.TransactionalID("t1"), kgo.TransactionTimeout(30*time.Second))
	produceTxn(ctx, t, cl, 0, "a", 5, true)
	produceTxn(ctx, t, cl, 0, "b", 5, false)
	produceTxn(ctx, t, cl, 1, "c", 3, false)
	produceTxn(ctx, t, cl, 0, "d", 5, true)
	coord := c.nodes[0].Controller()
	other := int(coord % 3) // a node that is not the coordinator
	got := c.readCommitted(ctx, other, 0, 10)
	want := []string{"a-0", "a-1", "a-2", "a-3", "a-4", "d-0", "d-1", "d-2", "d-3", "d-4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read_committed through node %d: %v, want %v", other+1, got, want)
	}
	c.checkTxnReplicas(0, 1)
	c.checkTxnReplicas(1, 1)
}

// A shard's leader dies between a transaction's records and its EndTxn: the new leader
// takes the marker, and every replica agrees on the LSO.
func TestTxnLeaderChangeBeforeEndTxn(t *testing.T) {
	c := newTxnCluster(t, nil)
	c.putStream("s", 6)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	coord := c.nodes[0].Controller()
	shard := int32(-1)
	for s := int32(0); s < 6; s++ {
		if c.leaderOf("s", s) != coord {
			shard = s
			break
		}
	}
	if shard < 0 {
		t.Skip("every shard led by the coordinator")
	}
	lead := c.leaderOf("s", shard)
	cl := c.client(kgo.TransactionalID("t2"), kgo.TransactionTimeout(60*time.Second))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "s", Partition: shard, Value: []byte(fmt.Sprintf("x-%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c.kill(int(lead - 1))
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit after the leader of shard %d died: %v", shard, err)
	}
	got := c.readCommitted(ctx, int(coord-1), shard, 5)
	if fmt.Sprint(got) != "[x-0 x-1 x-2 x-3 x-4]" {
		t.Fatalf("read_committed: %v", got)
	}
	c.checkTxnReplicas(shard, 0)
}

// The coordinator stores PrepareCommit and dies before its markers: the next
// coordinator completes the transaction (markers, offsets), and the producer's EndTxn
// retried there succeeds.
func TestTxnCoordinatorFailoverCompletesPrepared(t *testing.T) {
	var hold [3]atomic.Bool
	c := newTxnCluster(t, func(i int, o *Options) { o.testHoldMarkers = hold[i].Load })
	c.putStream("s", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl := c.client(kgo.TransactionalID("t3"), kgo.TransactionTimeout(60*time.Second))
	produceTxn(ctx, t, cl, 0, "a", 3, true)
	coord := c.nodes[0].Controller()
	hold[coord-1].Store(true)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "s", Partition: 0, Value: []byte(fmt.Sprintf("p-%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ended := make(chan error, 1)
	go func() { ended <- cl.EndTransaction(ctx, kgo.TryCommit) }()
	// Prepared: the replicated state says so on every node.
	waitFor(t, 30*time.Second, "PrepareCommit replicated", func() bool {
		for _, n := range c.nodes {
			if n == nil || !containsStr(string(n.StateGet("kafka.txn/t3")), `"prepared":"commit"`) {
				return false
			}
		}
		return true
	})
	c.kill(int(coord - 1))
	if err := <-ended; err != nil {
		t.Fatalf("EndTxn across the coordinator's death: %v", err)
	}
	live := 0
	for i, n := range c.nodes {
		if n != nil {
			live = i
			break
		}
	}
	got := c.readCommitted(ctx, live, 0, 7)
	if fmt.Sprint(got) != "[a-0 a-1 a-2 p-0 p-1 p-2 p-3]" {
		t.Fatalf("read_committed after failover: %v", got)
	}
	c.checkTxnReplicas(0, 0)
	// The producer goes on with the new coordinator.
	produceTxn(ctx, t, cl, 0, "z", 2, true)
	if got := c.readCommitted(ctx, live, 0, 9); fmt.Sprint(got[7:]) != "[z-0 z-1]" {
		t.Fatalf("after failover: %v", got)
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A replica that was down while transactions committed and aborted catches up from a
// snapshot: it gets the transactional batches and markers with their producers, so its
// last stable offset and aborted transactions are the leader's.
func TestTxnSnapshotCatchUp(t *testing.T) {
	c := newTxnCluster(t, func(_ int, o *Options) { o.LogKeep = 10 })
	c.putStream("s", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	lead, coord := c.leaderOf("s", 0), c.nodes[0].Controller()
	down := -1
	for i := range c.nodes {
		if uint64(i+1) != lead && uint64(i+1) != coord {
			down = i
		}
	}
	if down < 0 {
		t.Skip("no node that is neither leader nor coordinator")
	}
	c.kill(down)
	cl := c.client(kgo.TransactionalID("t4"), kgo.TransactionTimeout(60*time.Second))
	var want []string
	for k := 0; k < 12; k++ {
		tag := fmt.Sprintf("r%d", k)
		produceTxn(ctx, t, cl, 0, tag, 3, k%2 == 0)
		if k%2 == 0 {
			want = append(want, tag+"-0", tag+"-1", tag+"-2")
		}
	}
	c.start(down, nil)
	c.startServer(down)
	c.checkTxnReplicas(0, 6)
	if got := c.readCommitted(ctx, down, 0, len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read_committed through the caught-up node: %v, want %v", got, want)
	}
}

// Every node names the catalog leader as the coordinator of a transactional id; the
// others answer the transactional APIs NOT_COORDINATOR, so clients move.
func TestTxnCoordinatorPlacement(t *testing.T) {
	c := newTxnCluster(t, nil)
	c.putStream("s", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	coord := c.nodes[0].Controller()
	for i := range c.nodes {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.addrs[i]))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorKey, fc.CoordinatorType, fc.CoordinatorKeys = "tx", 1, []string{"tx"} // v4: the keys
		kr, err := cl.SeedBrokers()[0].Request(ctx, fc)
		fr, _ := kr.(*kmsg.FindCoordinatorResponse)
		if err != nil || len(fr.Coordinators) != 1 || fr.Coordinators[0].ErrorCode != 0 || fr.Coordinators[0].NodeID != int32(coord) {
			t.Fatalf("FindCoordinator(transaction) through node %d: %+v, %v; want node %d", i+1, fr, err, coord)
		}
		if uint64(i+1) == coord {
			continue
		}
		ip := kmsg.NewPtrInitProducerIDRequest()
		ip.TransactionalID, ip.TransactionTimeoutMillis = kmsg.StringPtr("tx"), 10000
		kr, err = cl.SeedBrokers()[0].Request(ctx, ip) // to this node, not where the client would route it
		ir, _ := kr.(*kmsg.InitProducerIDResponse)
		if err != nil || ir.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("InitProducerId on node %d (not the coordinator): %+v, %v", i+1, ir, err)
		}
	}
}

// A shard leader that wrote a marker of a producer's newer epoch (an abort that
// fenced it) refuses that producer's records of an older epoch, which would otherwise
// open a transaction behind the marker.
func TestTxnMarkerFencesOlderEpoch(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 1)
	lead := c.nodes[c.leaderOf("s", 0)-1]
	appendTxn := func(epoch int16) error {
		ch := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		lead.AppendTxn(ctx, "s", 0, log.Txn{ProducerID: 42, Epoch: epoch}, []log.Record{rec("k", int(epoch))}, nil,
			func(_ log.AppendResult, err error) { ch <- err })
		return <-ch
	}
	if err := appendTxn(4); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead.WriteMarker(ctx, "s", 0, 42, 5, false, 1, func(_ MarkerResult, err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	var pf *ProducerFencedError
	if err := appendTxn(4); !errors.As(err, &pf) {
		t.Fatalf("records of the fenced epoch after its abort marker: %v", err)
	}
	if err := appendTxn(5); err != nil {
		t.Fatalf("records of the marker's epoch: %v", err)
	}
}

// A transaction left open past its timeout is aborted by the coordinator (the epoch
// bumped, fencing its producer): every replica's LSO moves past it, with it in the
// aborted list, and read_committed never sees its records.
func TestTxnTimeoutAborts(t *testing.T) {
	c := newTxnCluster(t, nil)
	c.putStream("s", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	slow := c.client(kgo.TransactionalID("t5"), kgo.TransactionTimeout(2*time.Second))
	if err := slow.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := slow.ProduceSync(ctx, &kgo.Record{Topic: "s", Partition: 0, Value: []byte(fmt.Sprintf("late-%d", i))}).FirstErr(); err != nil {
			if i == 0 {
				t.Fatal(err)
			}
			// On a loaded machine the 2 s can pass between two produces: the
			// coordinator aborted the transaction already, which is what is tested.
			t.Logf("produce %d after the timeout: %v", i, err)
			break
		}
	}
	c.checkTxnReplicas(0, 1) // aborted by the timeout, on every replica
	if err := slow.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the timed-out transaction committed")
	}
	cl := c.client(kgo.TransactionalID("t6"), kgo.TransactionTimeout(30*time.Second))
	produceTxn(ctx, t, cl, 0, "ok", 2, true)
	if got := c.readCommitted(ctx, 0, 0, 2); fmt.Sprint(got) != "[ok-0 ok-1]" {
		t.Fatalf("read_committed: %v", got)
	}
}
