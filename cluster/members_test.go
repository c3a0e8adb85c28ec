package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// checkSame waits until the given nodes hold want records of stream/shard and checks
// they hold the same records at the same offsets.
func (c *testCluster) checkSame(stream string, shard int32, want int, ids ...uint64) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d records on nodes %v", want, ids), func() bool {
		for _, id := range ids {
			_, hwm, err := c.logs[id-1].Stream(stream).Offsets(shard)
			if err != nil || hwm < int64(want) {
				return false
			}
		}
		return true
	})
	ref := shardRecords(c.t, c.logs[ids[0]-1], stream, shard)
	for _, id := range ids {
		rs := shardRecords(c.t, c.logs[id-1], stream, shard)
		if len(rs) != want {
			c.t.Fatalf("node %d holds %d records, want %d", id, len(rs), want)
		}
		for j := range rs {
			if rs[j].Offset != int64(j) || !sameRecord(rs[j], ref[j]) {
				c.t.Fatalf("node %d differs at %d: %+v vs %+v", id, j, rs[j], ref[j])
			}
		}
	}
}

func (c *testCluster) groupOf(id uint64, stream string, shard int32) *group {
	sp, err := c.nodes[id-1].placement(stream, shard)
	if err != nil {
		return nil
	}
	return c.nodes[id-1].group(sp.Group)
}

// Moving a replica under writes: the new node catches up as a learner from a snapshot,
// becomes a voter, the old one leaves; every acknowledged record is on both replicas
// once, at the same offsets; the placement, Partition and the Raft configuration agree;
// the configuration survives a restart. Then the leader's own replica moves.
func TestMoveReplicaUnderWrites(t *testing.T) {
	c := newTestCluster(t, 4, func(_ int, o *Options) { o.LogKeep = 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "mv", Shards: 1}, 2); err != nil {
		t.Fatal(err)
	}
	reps := c.nodes[0].Streams()["mv"][0]
	var lead uint64
	waitFor(t, 30*time.Second, "a leader", func() bool {
		ps, _ := c.nodes[0].Partition("mv", 0)
		lead = ps.Leader
		return lead != 0
	})
	var outside []uint64
	for id := uint64(1); id <= 4; id++ {
		if !contains(reps, id) {
			outside = append(outside, id)
		}
	}
	follower := reps[0]
	if follower == lead {
		follower = reps[1]
	}

	// Writers through every node until stopped; acks counted.
	acked, stopWriters := startWriters([]*Node{c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3]},
		func(w, i int) (string, int32) { return "mv", 0 })
	defer stopWriters()
	waitFor(t, 30*time.Second, "writes before the move", func() bool { return acked.Load() >= 60 })

	move := func(from, to uint64) {
		t.Helper()
		start := time.Now()
		if err := c.nodes[0].MoveReplica(ctx, "mv", 0, from, to); err != nil {
			t.Fatalf("move %d→%d: %v", from, to, err)
		}
		t.Logf("moved replica %d→%d in %v (%d acked so far)", from, to, time.Since(start).Round(time.Millisecond), acked.Load())
		for _, n := range c.nodes {
			got := n.Streams()["mv"][0]
			waitFor(t, 10*time.Second, "placement everywhere", func() bool {
				got = n.Streams()["mv"][0]
				return contains(got, to) && !contains(got, from) && len(got) == 2
			})
		}
		waitFor(t, 10*time.Second, "old replica stopped", func() bool { return c.groupOf(from, "mv", 0) == nil })
		final := c.nodes[0].Streams()["mv"][0]
		waitFor(t, 10*time.Second, "a leader among the new replicas, known to all of them", func() bool {
			for _, id := range final {
				ps, _ := c.nodes[id-1].Partition("mv", 0)
				if !contains(final, ps.Leader) {
					return false
				}
			}
			return true
		})
	}
	move(follower, outside[0])
	waitFor(t, 30*time.Second, "writes after the first move", func() bool { return acked.Load() >= 150 })
	move(lead, outside[1]) // the leader's own replica: it hands over first
	waitFor(t, 30*time.Second, "writes after the second move", func() bool { return acked.Load() >= 250 })
	// Back onto a node that held a replica (its records were deleted when it moved away).
	move(outside[0], follower)
	outside[0] = follower
	waitFor(t, 30*time.Second, "writes after the move back", func() bool { return acked.Load() >= 350 })
	stopWriters()

	final := c.nodes[0].Streams()["mv"][0]
	if !contains(final, outside[0]) || !contains(final, outside[1]) {
		t.Fatalf("final replicas %v, want %v", final, outside)
	}
	// Every acknowledged append is stored once; a failed one (leader moving) at most once.
	var hwm int64
	waitFor(t, 30*time.Second, "every acknowledged record on both replicas", func() bool {
		_, a, _ := c.logs[final[0]-1].Stream("mv").Offsets(0)
		_, b, _ := c.logs[final[1]-1].Stream("mv").Offsets(0)
		hwm = a
		return a == b && a >= acked.Load()
	})
	c.checkSame("mv", 0, int(hwm), final...)
	seen := map[string]bool{}
	for _, r := range shardRecords(t, c.logs[final[0]-1], "mv", 0) {
		if seen[string(r.Value)] {
			t.Fatalf("value %s stored twice", r.Value)
		}
		seen[string(r.Value)] = true
	}
	for _, id := range final {
		g := c.groupOf(id, "mv", 0)
		var voters []uint64
		_ = c.nodes[id-1].do(func() { voters = sortedIDs(g.cs.GetVoters()) })
		if fmt.Sprint(voters) != fmt.Sprint(sortedIDs(final)) {
			t.Fatalf("node %d: raft voters %v, placement %v", id, voters, final)
		}
	}
	ps, _ := c.nodes[0].Partition("mv", 0)
	if fmt.Sprint(sortedIDs(ps.Replicas)) != fmt.Sprint(sortedIDs(final)) {
		t.Fatalf("Partition replicas %v, want %v", ps.Replicas, final)
	}

	// The configuration is on disk: both new replicas restarted in turn still form the
	// group and take writes.
	n := int(hwm)
	for _, id := range final {
		c.stop(int(id - 1))
		c.start(int(id-1), nil)
		waitFor(t, 30*time.Second, "a write after restarting a moved replica", func() bool {
			_, err := appendVia(c.nodes[0], "mv", 0, rec("after", n))
			if err == nil {
				n++
			}
			return err == nil
		})
		g := c.groupOf(id, "mv", 0)
		var voters []uint64
		_ = c.nodes[id-1].do(func() { voters = sortedIDs(g.cs.GetVoters()) })
		if fmt.Sprint(voters) != fmt.Sprint(sortedIDs(final)) {
			t.Fatalf("node %d after restart: raft voters %v, want %v", id, voters, final)
		}
	}
	c.checkSame("mv", 0, n, final...)
}

// addJoiner starts one more node configured to join the running cluster; its index.
func (c *testCluster) addJoiner() int {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	i := len(c.nodes)
	c.cfgs = append(c.cfgs, Config{NodeID: uint64(i + 1), RaftAddr: ln.Addr().String(), Peers: c.cfgs[0].Peers, Join: true})
	c.dirs = append(c.dirs, c.newDir())
	c.logs, c.nodes = append(c.logs, nil), append(c.nodes, nil)
	c.start(i, ln)
	return i
}

func (c *testCluster) catalogVoters(i int) []uint64 {
	var v []uint64
	_ = c.nodes[i].do(func() { v = sortedIDs(c.nodes[i].groups[catalogGroup].cs.GetVoters()) })
	return v
}

// A fourth node joins a running three-node cluster under writes, takes replicas, and
// an old node is removed (its replicas moved off first); the member list then comes
// from the catalog, also after restarts whose configs still name the removed node.
func TestAddNodeThenRemoveNode(t *testing.T) {
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.LogKeep = 20 })
	c.putStream("am", 2) // replication factor 3: every node has every shard
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// Through nodes 2 and 3, which stay (c.nodes grows below).
	acked, stopWriters := startWriters([]*Node{c.nodes[1], c.nodes[2]},
		func(w, i int) (string, int32) { return "am", int32(i % 2) })
	defer stopWriters()
	waitFor(t, 30*time.Second, "writes before the join", func() bool { return acked.Load() >= 50 })

	j := c.addJoiner()
	start := time.Now()
	if err := c.nodes[1].AddNode(ctx, 4, c.cfgs[j].RaftAddr); err != nil {
		t.Fatalf("add node 4: %v", err)
	}
	t.Logf("node 4 added in %v", time.Since(start).Round(time.Millisecond))
	for i := 0; i < 4; i++ {
		waitFor(t, 20*time.Second, fmt.Sprintf("node %d sees 4 members", i+1), func() bool {
			return fmt.Sprint(c.nodes[i].memberIDs()) == "[1 2 3 4]"
		})
	}
	// AddNode returns once the leader applied the promotion; the others follow.
	waitFor(t, 20*time.Second, "catalog voters 1 2 3 4 on node 2", func() bool { return fmt.Sprint(c.catalogVoters(1)) == "[1 2 3 4]" })
	waitFor(t, 20*time.Second, "node 4 has the catalog and its cluster id", func() bool {
		return c.nodes[j].KnownClusterID() != "" && c.nodes[j].KnownClusterID() == c.nodes[0].KnownClusterID() &&
			c.logs[j].Stream("am") != nil && c.nodes[j].Registered()
	})

	start = time.Now()
	if err := c.nodes[1].RemoveNode(ctx, 1); err != nil {
		t.Fatalf("remove node 1: %v", err)
	}
	t.Logf("node 1 removed in %v (%d acked so far)", time.Since(start).Round(time.Millisecond), acked.Load())
	waitFor(t, 30*time.Second, "writes after the removal", func() bool { return acked.Load() >= 300 })
	stopWriters()
	c.stop(0) // node 1 is gone for good

	for _, i := range []int{1, 2, 3} {
		waitFor(t, 20*time.Second, "3 members everywhere", func() bool { return fmt.Sprint(c.nodes[i].memberIDs()) == "[2 3 4]" })
		for s := int32(0); s < 2; s++ {
			if got := c.nodes[i].Streams()["am"][s]; fmt.Sprint(sortedIDs(got)) != "[2 3 4]" {
				t.Fatalf("node %d: shard %d replicas %v", i+1, s, got)
			}
		}
	}
	waitFor(t, 20*time.Second, "catalog voters 2 3 4", func() bool { return fmt.Sprint(c.catalogVoters(1)) == "[2 3 4]" })

	// Node 2's config still names node 1 and not node 4: after a restart it takes the
	// catalog's members. Writes go on through node 4.
	c.stop(1)
	c.start(1, nil)
	if got := c.nodes[1].memberIDs(); fmt.Sprint(got) != "[2 3 4]" {
		t.Fatalf("node 2 after restart: members %v", got)
	}
	// Node 4's config still says join: true; restarted, it is a member as before.
	c.stop(3)
	c.start(3, nil)
	if got := c.nodes[3].memberIDs(); fmt.Sprint(got) != "[2 3 4]" || c.nodes[3].KnownClusterID() != c.nodes[2].KnownClusterID() {
		t.Fatalf("node 4 after restart: members %v, cluster id %q", got, c.nodes[3].KnownClusterID())
	}
	n := 0
	for s := int32(0); s < 2; s++ {
		waitFor(t, 30*time.Second, "a write through node 4 after node 2's restart", func() bool {
			_, err := appendVia(c.nodes[3], "am", s, rec("after", n))
			if err == nil {
				n++
			}
			return err == nil
		})
	}
	total := 0
	for s := int32(0); s < 2; s++ {
		var hwm int64
		waitFor(t, 30*time.Second, "replicas agree", func() bool {
			var hs []int64
			for _, id := range []uint64{2, 3, 4} {
				_, h, _ := c.logs[id-1].Stream("am").Offsets(s)
				hs = append(hs, h)
			}
			hwm = hs[0]
			return hs[0] == hs[1] && hs[1] == hs[2]
		})
		c.checkSame("am", s, int(hwm), 2, 3, 4)
		total += int(hwm)
	}
	if int64(total) < acked.Load()+int64(n) {
		t.Fatalf("%d records stored, %d acknowledged", total, acked.Load()+int64(n))
	}
}

// Moving the only replica (the leader's) while the new replica is still pulling its
// snapshot's records: the leader hands over to it once it is a voter (no other voter
// holds the shard), but a replica installing a snapshot refuses the lead (it would wait on itself for the records and neither
// apply nor answer a write: the move stalled until its deadline, 1 in 10 runs under
// load). The transfer is aborted and retried until the install is done.
func TestMoveLeaderReplicaOntoInstallingReplica(t *testing.T) {
	var target atomic.Uint64
	var held atomic.Int32
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	c := newTestCluster(t, 3, func(i int, o *Options) {
		o.LogKeep = 20
		o.testBeforeInstall = func(uint64) {
			if target.Load() == uint64(i+1) {
				held.Add(1)
				<-hold
			}
		}
	})
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "mv", Shards: 1}, 1); err != nil {
		t.Fatal(err)
	}
	sp, _ := c.nodes[0].placement("mv", 0)
	var lead uint64
	waitFor(t, 30*time.Second, "a leader", func() bool {
		ps, _ := c.nodes[0].Partition("mv", 0)
		lead = ps.Leader
		return lead != 0
	})
	var to uint64
	for id := uint64(1); id <= 3; id++ {
		if !contains(sp.Replicas, id) && to == 0 {
			to = id
		}
	}
	n := 0
	for ; n < 50; n++ {
		if _, err := appendVia(c.nodes[0], "mv", 0, rec("k", n)); err != nil {
			t.Fatal(err)
		}
	}
	target.Store(to)
	moved := make(chan error, 1)
	go func() { moved <- c.nodes[0].MoveReplica(ctx, "mv", 0, lead, to) }()
	waitFor(t, 30*time.Second, "the new replica installing its snapshot", func() bool { return held.Load() > 0 })

	// The leader promotes the new replica and hands it the lead, which it refuses while
	// its records are still coming: the transfer is aborted, the old leader leads on.
	status := func() (leader, transferee uint64) {
		g := c.nodes[lead-1].group(sp.Group)
		_ = c.nodes[lead-1].do(func() {
			st := g.rn.Status()
			leader, transferee = st.Lead, st.LeadTransferee
		})
		return
	}
	check := func() (uint64, uint64) {
		l, tr := status()
		if l == to {
			t.Fatalf("node %d took the lead while installing its snapshot", to)
		}
		return l, tr
	}
	waitFor(t, 30*time.Second, "a leadership transfer to the new replica", func() bool {
		_, tr := check()
		return tr == to
	})
	waitFor(t, 30*time.Second, "the transfer aborted, the old leader leading", func() bool {
		l, tr := check()
		return l == lead && tr == 0
	})

	release()
	if err := <-moved; err != nil {
		t.Fatalf("move %d→%d: %v", lead, to, err)
	}
	waitFor(t, 30*time.Second, "a write after the move", func() bool {
		_, err := appendVia(c.nodes[0], "mv", 0, rec("after", n))
		if err == nil {
			n++
		}
		return err == nil
	})
	if final := c.nodes[0].Streams()["mv"][0]; fmt.Sprint(final) != fmt.Sprint([]uint64{to}) {
		t.Fatalf("replicas %v after moving %d→%d", final, lead, to)
	}
	// Every acknowledged append is stored; a failed one (leader moving) at most once.
	var hwm int64
	waitFor(t, 30*time.Second, "every acknowledged record on the new replica", func() bool {
		_, hwm, _ = c.logs[to-1].Stream("mv").Offsets(0)
		return hwm >= int64(n)
	})
	c.checkSame("mv", 0, int(hwm), to)
}

// startWriters appends through each of nodes, one writer per node, until stop is
// called (it waits for them); target names the stream and shard of write i by writer
// w. acked counts the appends acknowledged.
func startWriters(nodes []*Node, target func(w, i int) (string, int32)) (acked *atomic.Int64, stop func()) {
	acked = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	var seq atomic.Int64
	for w, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				i := int(seq.Add(1))
				stream, shard := target(w, i)
				if _, err := appendVia(n, stream, shard, rec(fmt.Sprintf("w%d", w), i)); err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	return acked, func() { once.Do(func() { close(done) }); wg.Wait() }
}
