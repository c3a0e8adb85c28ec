package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// testCluster is n nodes in this process on loopback, each with its own log in a temp
// dir, restartable on the same dir and address.
type testCluster struct {
	t     *testing.T
	cfgs  []Config
	dirs  []string
	logs  []*log.Log
	nodes []*Node
	opts  func(i int, o *Options)
}

func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func newTestCluster(t *testing.T, size int, opts func(i int, o *Options)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, opts: opts}
	lns := make([]net.Listener, size)
	var peers []Peer
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers = append(peers, Peer{ID: uint64(i + 1), RaftAddr: ln.Addr().String()})
	}
	for i := range lns {
		c.cfgs = append(c.cfgs, Config{NodeID: uint64(i + 1), RaftAddr: peers[i].RaftAddr, Peers: peers})
		c.dirs = append(c.dirs, c.newDir())
	}
	c.logs = make([]*log.Log, size)
	c.nodes = make([]*Node, size)
	for i := range lns {
		c.start(i, lns[i])
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

// newDir makes a node's data dir, holding the cluster's Kafka cluster id as
// cmd/mqstreams/cluster.go writes it: every node reports the founding nodes' id, and
// so one topic id per stream (kafkawire/server.go, topicID). With an id per node, a
// client that asked another node for metadata saw a stream's topic id change, took it
// for a topic deleted and recreated, and failed its produces with UNKNOWN_TOPIC_ID.
func (c *testCluster) newDir() string {
	dir := c.t.TempDir()
	id := c.cfgs[0].ClusterID()
	if err := os.WriteFile(filepath.Join(dir, "kafka-cluster-id"), []byte(id+"\n"), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return dir
}

// start opens node i's log and node (ln nil: listen on its address again).
func (c *testCluster) start(i int, ln net.Listener) {
	c.t.Helper()
	l, err := log.Open(log.Options{Dir: c.dirs[i], Logger: zerolog.Nop(), NoSync: true, RetentionInterval: time.Hour})
	if err != nil {
		c.t.Fatal(err)
	}
	if ln == nil {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ln, err = net.Listen("tcp", c.cfgs[i].RaftAddr)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // the old listener's port is being released
		}
		if err != nil {
			c.t.Fatal(err)
		}
	}
	o := Options{Log: l, Logger: testLogger(c.t).With().Int("n", i+1).Logger(), TickInterval: 20 * time.Millisecond,
		ElectionTicks: 10, Advertise: Addrs{Kafka: fmt.Sprintf("127.0.0.1:%d", 9092+i)}, listener: ln}
	if c.opts != nil {
		c.opts(i, &o)
	}
	n, err := Open(c.cfgs[i], o)
	if err != nil {
		c.t.Fatal(err)
	}
	c.logs[i], c.nodes[i] = l, n
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] != nil {
		_ = c.nodes[i].Close()
		c.nodes[i] = nil
	}
	if c.logs[i] != nil {
		_ = c.logs[i].Close()
		c.logs[i] = nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *testCluster) putStream(name string, shards int32) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var live *Node
	for _, n := range c.nodes {
		if n != nil {
			live = n
			break
		}
	}
	if err := live.PutStream(ctx, log.StreamSpec{Name: name, Shards: shards}, 3); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 30*time.Second, "stream on every node with a leader per shard", func() bool {
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			// In the log too: a node still applying the deletion of a stream of that
			// name has its log's stream gone, but not yet the catalog's, and names the
			// deleted shard's last leader (TestCatalogReplicatesIDsOffsetsMessagesAndDeletes).
			if st := c.logs[i].Stream(name); st == nil || st.Deleted() {
				return false
			}
			for s := int32(0); s < shards; s++ {
				ps, ok := n.Partition(name, s)
				if !ok || ps.Leader == 0 {
					return false
				}
			}
		}
		return true
	})
}

type appendOut struct {
	res log.AppendResult
	err error
}

func appendVia(n *Node, stream string, shard int32, recs ...log.Record) (log.AppendResult, error) {
	ch := make(chan appendOut, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n.Append(ctx, log.AppendBlock, stream, shard, recs, nil, func(r log.AppendResult, err error) { ch <- appendOut{r, err} })
	o := <-ch
	return o.res, o.err
}

func rec(key string, i int) log.Record {
	return log.Record{Key: []byte(key), Value: []byte(fmt.Sprintf("v%d", i)), Headers: []log.Header{{Key: "mqtt.topic", Value: []byte("t/" + key)}}}
}

// shardRecords reads a node's whole local shard.
func shardRecords(t *testing.T, l *log.Log, stream string, shard int32) []log.StoredRecord {
	t.Helper()
	st := l.Stream(stream)
	if st == nil {
		t.Fatalf("no stream %s", stream)
	}
	_, hwm, err := st.Offsets(shard)
	if err != nil {
		t.Fatal(err)
	}
	var out []log.StoredRecord
	for off := int64(0); off < hwm; {
		bs, err := st.Read(shard, off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			rs, err := b.Records(off)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rs...)
			if len(rs) > 0 {
				off = rs[len(rs)-1].Offset + 1
			}
		}
	}
	return out
}

func sameRecord(a, b log.StoredRecord) bool {
	if a.Offset != b.Offset || a.TimestampUS != b.TimestampUS || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// checkReplicasIdentical waits until every running node holds want records in the
// shard, then checks every replica's records (offset, time, key, value, headers) are
// the same.
func (c *testCluster) checkReplicasIdentical(stream string, shard int32, want int) []log.StoredRecord {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d records on every replica of %s/%d", want, stream, shard), func() bool {
		for _, l := range c.logs {
			if l == nil {
				continue
			}
			_, hwm, err := l.Stream(stream).Offsets(shard)
			if err != nil || hwm < int64(want) {
				return false
			}
		}
		return true
	})
	var ref []log.StoredRecord
	for i, l := range c.logs {
		if l == nil {
			continue
		}
		rs := shardRecords(c.t, l, stream, shard)
		if len(rs) != want {
			c.t.Fatalf("node %d holds %d records of %s/%d, want %d", i+1, len(rs), stream, shard, want)
		}
		for j, r := range rs {
			if r.Offset != int64(j) {
				c.t.Fatalf("node %d: record %d has offset %d (not contiguous)", i+1, j, r.Offset)
			}
		}
		if ref == nil {
			ref = rs
			continue
		}
		for j := range rs {
			if !sameRecord(rs[j], ref[j]) {
				c.t.Fatalf("node %d differs at offset %d: %+v vs %+v", i+1, j, rs[j], ref[j])
			}
		}
	}
	return ref
}

func TestReplicateThroughEveryNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]log.AppendResult{}
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 30; j++ {
				key := fmt.Sprintf("n%d-%d", i, j)
				res, err := appendVia(n, "s", int32(j%2), rec(key, j))
				if err != nil {
					t.Errorf("append %s via node %d: %v", key, i+1, err)
					return
				}
				mu.Lock()
				acked[key] = res
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for shard := int32(0); shard < 2; shard++ {
		recs := c.checkReplicasIdentical("s", shard, 45)
		for _, r := range recs {
			res, ok := acked[string(r.Key)]
			if !ok || res.BaseOffset != r.Offset {
				t.Fatalf("record %s at %d: acknowledged %+v", r.Key, r.Offset, res)
			}
			delete(acked, string(r.Key))
		}
	}
	if len(acked) != 0 {
		t.Fatalf("%d acknowledged records missing", len(acked))
	}
	// The nodes registered what they advertise, and every node sees it.
	waitFor(t, 10*time.Second, "addresses registered", func() bool {
		for _, ni := range c.nodes[0].Nodes() {
			if ni.Addrs.Kafka == "" {
				return false
			}
		}
		return true
	})
	st := c.nodes[1].Status()
	if len(st.Groups) != 3 || len(st.Nodes) != 3 {
		t.Fatalf("status: %+v", st)
	}
}

// leaderOf waits for the shard's leader as every running node sees it.
func (c *testCluster) leaderOf(stream string, shard int32) uint64 {
	c.t.Helper()
	var lead uint64
	waitFor(c.t, 30*time.Second, "an agreed leader", func() bool {
		lead = 0
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			ps, _ := n.Partition(stream, shard)
			if ps.Leader == 0 || (lead != 0 && ps.Leader != lead) {
				return false
			}
			lead = ps.Leader
		}
		return lead != 0 && c.nodes[lead-1] != nil
	})
	return lead
}

func TestLeaderKilledNewLeaderWritableRestartCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.LogKeep = 20 })
	c.putStream("s", 1)
	n := 0
	for ; n < 10; n++ {
		if _, err := appendVia(c.nodes[n%3], "s", 0, rec("k", n)); err != nil {
			t.Fatal(err)
		}
	}
	lead := c.leaderOf("s", 0)
	other := c.nodes[lead%3] // a node that is not the leader
	killed := time.Now()
	c.stop(int(lead - 1))
	// Failover: the first append through a surviving node that succeeds.
	for {
		_, err := appendVia(other, "s", 0, rec("k", n))
		if err == nil {
			n++
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("no append succeeded within 30s of the leader's death: %v", err)
		}
	}
	t.Logf("failover: an append through node %d succeeded %v after leader %d was stopped", other.Self(), time.Since(killed).Round(time.Millisecond), lead)
	// Enough appends while it is down that the others compact their Raft logs past it:
	// it catches up from a snapshot.
	for ; n < 80; n++ {
		if _, err := appendVia(other, "s", 0, rec("k", n)); err != nil {
			t.Fatal(err)
		}
	}
	c.start(int(lead-1), nil)
	c.checkReplicasIdentical("s", 0, n)
	// And it takes part again.
	if _, err := appendVia(c.nodes[lead-1], "s", 0, rec("k", n)); err != nil {
		t.Fatal(err)
	}
	c.checkReplicasIdentical("s", 0, n+1)
}

func TestAppliedExactlyOnceAfterCrash(t *testing.T) {
	var crashing atomic.Int64 // 1-based index of the node that drops applies, 0: none
	var skipped atomic.Int64
	c := newTestCluster(t, 3, func(i int, o *Options) {
		o.testSkipApply = func(group, _ uint64) bool {
			if group >= firstShardGroup && crashing.Load() == int64(i+1) {
				skipped.Add(1)
				return true
			}
			return false
		}
	})
	c.putStream("s", 1)
	for i := 0; i < 20; i++ {
		if _, err := appendVia(c.nodes[i%3], "s", 0, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.checkReplicasIdentical("s", 0, 20)
	// A follower now stops applying: its Raft log gets the entries, its log does not,
	// as if it crashed after the Raft write and before the apply.
	lead := c.leaderOf("s", 0)
	f := int(lead % 3) // index of a follower
	crashing.Store(int64(f + 1))
	for i := 20; i < 40; i++ {
		if _, err := appendVia(c.nodes[int(lead-1)], "s", 0, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "entries reaching the follower unapplied", func() bool { return skipped.Load() > 0 })
	c.stop(f)
	crashing.Store(0)
	c.start(f, nil)
	// The entries after its applied index are applied once; the ones before not again.
	c.checkReplicasIdentical("s", 0, 40)
	c.stop(f)
	c.start(f, nil)
	if _, err := appendVia(c.nodes[f], "s", 0, rec("a", 40)); err != nil {
		t.Fatal(err)
	}
	c.checkReplicasIdentical("s", 0, 41)
}

func TestNotLeaderAndUnknownStream(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 1)
	if _, err := appendVia(c.nodes[0], "nope", 0, rec("x", 0)); !errors.Is(err, log.ErrUnknownStream) {
		t.Fatalf("unknown stream: %v", err)
	}
	if _, err := appendVia(c.nodes[0], "s", 5, rec("x", 0)); !errors.Is(err, log.ErrUnknownShard) {
		t.Fatalf("unknown shard: %v", err)
	}
	lead := c.leaderOf("s", 0)
	follower := c.nodes[lead%3]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := follower.HighWatermark(ctx, "s", 0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("high watermark on a follower: %v, want not leader", err)
	}
	res, err := appendVia(follower, "s", 0, rec("x", 1))
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := c.nodes[lead-1].HighWatermark(ctx, "s", 0)
	if err != nil || hwm != res.BaseOffset+1 {
		t.Fatalf("high watermark on the leader: %d, %v; want %d", hwm, err, res.BaseOffset+1)
	}
}

func TestCatalogReplicatesIDsOffsetsMessagesAndDeletes(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("a", 1)
	c.putStream("b", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// One cluster id and the same stream ids on every node.
	var cid string
	for i, n := range c.nodes {
		id, err := n.ClusterID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cid != "" && id != cid {
			t.Fatalf("node %d reports cluster id %s, node 1 %s", i+1, id, cid)
		}
		cid = id
		for _, name := range []string{"a", "b"} {
			if got, want := c.logs[i].Stream(name).ID(), c.logs[0].Stream(name).ID(); got != want {
				t.Fatalf("node %d: stream %s has id %d, node 1 %d", i+1, name, got, want)
			}
		}
	}
	// Offsets committed through one node are stored on every node.
	if err := c.nodes[1].CommitOffsets("g1", []log.CommittedOffset{{Stream: "b", Shard: 1, Offset: 42}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "offsets on every node", func() bool {
		for _, l := range c.logs {
			offs, err := l.GroupOffsets("g1")
			if err != nil || len(offs) != 1 || offs[0].Offset != 42 {
				return false
			}
		}
		return true
	})
	// Typed messages between nodes.
	got := make(chan string, 1)
	c.nodes[2].Handle(KindMQTT, func(from uint64, msg []byte) { got <- fmt.Sprintf("%d:%s", from, msg) })
	waitFor(t, 10*time.Second, "a link from node 1 to node 3", func() bool { return c.nodes[0].Send(3, KindMQTT, []byte("hi")) == nil })
	select {
	case m := <-got:
		if m != "1:hi" {
			t.Fatalf("node 3 got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("message not delivered")
	}
	if err := c.nodes[0].Send(9, KindMQTT, nil); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("send to an unknown node: %v", err)
	}
	// A deleted stream goes from every node, with its Raft groups.
	if err := c.nodes[2].DeleteStream(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b gone everywhere", func() bool {
		for i, l := range c.logs {
			if l.Stream("b") != nil && !l.Stream("b").Deleted() {
				return false
			}
			if len(c.nodes[i].Status().Groups) != 2 { // catalog + a/0
				return false
			}
		}
		return true
	})
	if _, err := appendVia(c.nodes[0], "a", 0, rec("k", 1)); err != nil {
		t.Fatal(err)
	}
	// Created again, it starts empty with new groups and a new id.
	c.putStream("b", 1)
	if _, err := appendVia(c.nodes[1], "b", 0, rec("again", 0)); err != nil {
		t.Fatal(err)
	}
	c.checkReplicasIdentical("b", 0, 1)
}

// With fewer replicas than nodes, a node without a replica of a shard still takes
// writes for it (routed by the leaders' announcements) and names its leader.
func TestWritesThroughANodeWithoutReplica(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "rf2", Shards: 3}, 2); err != nil {
		t.Fatal(err)
	}
	reps := c.nodes[0].Streams()["rf2"]
	for s := int32(0); s < 3; s++ {
		if len(reps[s]) != 2 {
			t.Fatalf("shard %d replicas %v", s, reps[s])
		}
		var outside *Node
		for _, n := range c.nodes {
			if !contains(reps[s], n.Self()) {
				outside = n
			}
		}
		waitFor(t, 20*time.Second, "the leader known outside the replicas", func() bool {
			ps, _ := outside.Partition("rf2", s)
			return ps.Leader != 0 && contains(reps[s], ps.Leader)
		})
		if _, err := appendVia(outside, "rf2", s, rec("x", int(s))); err != nil {
			t.Fatalf("append to shard %d via node %d (no replica): %v", s, outside.Self(), err)
		}
		if outside.l.Stream("rf2") == nil {
			t.Fatal("the stream's definition is on every node")
		}
	}
}

// A replica that fails to apply an entry stops, then is reopened from its stored Raft
// state and applied index, and catches up without a restart.
func TestReplicaReopensAfterApplyFailure(t *testing.T) {
	var failing atomic.Int64 // 1-based node that fails its next shard apply
	c := newTestCluster(t, 3, func(i int, o *Options) {
		o.testFailApply = func(group, _ uint64) bool {
			return group >= firstShardGroup && failing.CompareAndSwap(int64(i+1), 0)
		}
	})
	c.putStream("s", 1)
	if _, err := appendVia(c.nodes[0], "s", 0, rec("a", 0)); err != nil {
		t.Fatal(err)
	}
	lead := c.leaderOf("s", 0)
	f := int(lead % 3)
	failing.Store(int64(f + 1))
	for i := 1; i < 20; i++ {
		if _, err := appendVia(c.nodes[lead-1], "s", 0, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.checkReplicasIdentical("s", 0, 20)
	for _, g := range c.nodes[f].Status().Groups {
		if g.Error != "" {
			t.Fatalf("group %s still reports %q", g.Group, g.Error)
		}
	}
}
