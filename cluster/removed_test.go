package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/mqstreams/mqstreams/log"
)

// A node a replica moves away from deletes that shard's records, its Raft state and
// its applied index once the move is complete; the new replica holds every record.
func TestMovedAwayReplicaDataDeleted(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "mv", Shards: 1}, 2); err != nil {
		t.Fatal(err)
	}
	reps := c.nodes[0].Streams()["mv"][0]
	lead := c.leaderOf("mv", 0)
	for i := 0; i < 50; i++ {
		if _, err := appendVia(c.nodes[i%4], "mv", 0, rec(fmt.Sprintf("k%d", i%5), i)); err != nil {
			t.Fatal(err)
		}
	}
	c.checkSame("mv", 0, 50, reps...)
	sp, _ := c.nodes[0].placement("mv", 0)
	// Move the follower's replica, then the leader's: both old nodes lose the data.
	from := reps[0]
	if from == lead {
		from = reps[1]
	}
	var others []uint64
	for id := uint64(1); id <= 4; id++ {
		if !contains(reps, id) {
			others = append(others, id)
		}
	}
	for k, mv := range [][2]uint64{{from, others[0]}, {lead, others[1]}} {
		st := c.logs[mv[0]-1].Stream("mv")
		if n, err := st.ShardKeys(0); err != nil || n == 0 {
			t.Fatalf("node %d before the move: %d keys, %v", mv[0], n, err)
		}
		if err := c.nodes[0].MoveReplica(ctx, "mv", 0, mv[0], mv[1]); err != nil {
			t.Fatalf("move %d→%d: %v", mv[0], mv[1], err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("node %d's records and applied index of the moved replica deleted", mv[0]), func() bool {
			n, err := st.ShardKeys(0)
			start, hwm, _ := st.Offsets(0)
			v, aerr := c.nodes[mv[0]-1].appliedEntry(sp.Group)
			return err == nil && n == 0 && start == 0 && hwm == 0 && aerr == nil && v == nil
		})
		if c.groupOf(mv[0], "mv", 0) != nil {
			t.Fatalf("node %d still runs the replica", mv[0])
		}
		if k == 0 {
			c.checkSame("mv", 0, 50, lead, mv[1])
		}
	}
	c.checkSame("mv", 0, 50, others...)
	// A restart of an old node does not bring anything back.
	c.stop(int(from - 1))
	c.start(int(from-1), nil)
	if n, _ := c.logs[from-1].Stream("mv").ShardKeys(0); n != 0 {
		t.Fatalf("node %d after restart: %d keys", from, n)
	}
}

// A removed node is told: it stops its groups, reports "removed", refuses writes and
// DeleteRecords with ErrRemoved, and stays removed across a restart. A node removed
// while it was down learns it when it comes back and calls the others.
func TestRemovedNodeIsTold(t *testing.T) {
	// RemoveNode does not call the removed node here: the one up learns it from the
	// catalog conf change, the one down from the node it calls when it comes back.
	c := newTestCluster(t, 4, func(_ int, o *Options) { o.tellRemovedFor = -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "rm", Shards: 1}, 2); err != nil {
		t.Fatal(err)
	}
	c.leaderOf("rm", 0)
	for i := 0; i < 20; i++ {
		if _, err := appendVia(c.nodes[i%4], "rm", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	// First a node holding a replica, removed while running.
	gone := c.nodes[0].Streams()["rm"][0][0]
	asker := c.nodes[gone%4] // another node
	if err := asker.RemoveNode(ctx, gone); err != nil {
		t.Fatalf("remove node %d: %v", gone, err)
	}
	g := c.nodes[gone-1]
	waitFor(t, 20*time.Second, fmt.Sprintf("node %d knows it was removed", gone), g.Removed)
	// Removed turns true before the node has stopped its groups (markRemoved).
	waitFor(t, 20*time.Second, fmt.Sprintf("node %d's status: removed, no groups", gone), func() bool {
		st := g.Status()
		return st.State == "removed" && len(st.Groups) == 0
	})
	if _, err := appendVia(g, "rm", 0, rec("k", 99)); !errors.Is(err, ErrRemoved) {
		t.Fatalf("write to the removed node: %v", err)
	}
	var nl interface{ NotLeader() bool }
	if _, err := appendVia(g, "rm", 0, rec("k", 99)); !errors.As(err, &nl) {
		t.Fatalf("the removed node's error is not answered as not-the-leader: %v", err)
	}
	if _, err := g.DeleteRecords(ctx, "rm", 0, 1); !errors.Is(err, ErrRemoved) {
		t.Fatalf("delete records on the removed node: %v", err)
	}
	waitFor(t, 20*time.Second, "the removed node's records deleted", func() bool {
		n, err := c.logs[gone-1].Stream("rm").ShardKeys(0)
		return err == nil && n == 0
	})
	c.stop(int(gone - 1))
	c.start(int(gone-1), nil)
	if g := c.nodes[gone-1]; !g.Removed() || len(g.Status().Groups) != 0 {
		t.Fatalf("after restart: removed %v, status %+v", g.Removed(), g.Status())
	}
	c.stop(int(gone - 1))

	// Then a node without a replica, removed while it is down.
	var down uint64
	reps := asker.Streams()["rm"][0]
	for id := uint64(1); id <= 4; id++ {
		if id != gone && !contains(reps, id) {
			down = id
		}
	}
	if down == 0 {
		t.Fatalf("no node without a replica (replicas %v, removed %d)", reps, gone)
	}
	c.stop(int(down - 1))
	if err := asker.RemoveNode(ctx, down); err != nil {
		t.Fatalf("remove node %d while down: %v", down, err)
	}
	c.start(int(down-1), nil)
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d, back, knows it was removed", down), c.nodes[down-1].Removed)
	if _, err := appendVia(c.nodes[down-1], "rm", 0, rec("k", 100)); !errors.Is(err, ErrRemoved) {
		t.Fatalf("write to node %d: %v", down, err)
	}
	// The two left serve writes.
	for _, n := range c.nodes {
		if n != nil && !n.Removed() {
			if _, err := appendVia(n, "rm", 0, rec("k", 101)); err != nil {
				t.Fatalf("write to member %d: %v", n.Self(), err)
			}
		}
	}
}

// A replica still pulling its snapshot's records must not stay leader: it cannot pull
// from itself. A leader moving away hands over to a voter that held the shard, and a
// replica elected mid-pull hands leadership on.
func TestNoLeaderWhilePullingSnapshot(t *testing.T) {
	var hold sync.Map // node id → chan struct{}: that node's pulls wait until it is closed
	c := newTestCluster(t, 4, func(i int, o *Options) {
		id := uint64(i + 1)
		o.testSnapshotPull = func(uint64) {
			if ch, ok := hold.Load(id); ok {
				<-ch.(chan struct{})
			}
		}
	})
	t.Cleanup(func() { // a failed run leaves gates shut: open them so the nodes can close
		hold.Range(func(_, ch any) bool { close(ch.(chan struct{})); return true })
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "pl", Shards: 1}, 2); err != nil {
		t.Fatal(err)
	}
	reps := c.nodes[0].Streams()["pl"][0]
	lead := c.leaderOf("pl", 0)
	for i := 0; i < 40; i++ {
		if _, err := appendVia(c.nodes[i%4], "pl", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	var outside []uint64
	for id := uint64(1); id <= 4; id++ {
		if !contains(reps, id) {
			outside = append(outside, id)
		}
	}
	// 1. The leader's replica moves while the new node cannot pull yet.
	gate := make(chan struct{})
	hold.Store(outside[0], gate)
	if err := c.nodes[0].MoveReplica(ctx, "pl", 0, lead, outside[0]); err != nil {
		t.Fatalf("move %d→%d: %v", lead, outside[0], err)
	}
	other := reps[0]
	if other == lead {
		other = reps[1]
	}
	if got := c.leaderOf("pl", 0); got != other {
		t.Fatalf("leader after the move: %d, want %d (the voter that held the shard)", got, other)
	}
	if _, err := appendVia(c.nodes[0], "pl", 0, rec("k", 40)); err != nil {
		t.Fatalf("write after the move: %v", err)
	}
	hold.Delete(outside[0])
	close(gate)
	c.checkSame("pl", 0, 41, other, outside[0])

	// 2. A replica elected while it pulls hands leadership on.
	gate = make(chan struct{})
	hold.Store(outside[1], gate)
	if err := c.nodes[0].MoveReplica(ctx, "pl", 0, outside[0], outside[1]); err != nil {
		t.Fatalf("move %d→%d: %v", outside[0], outside[1], err)
	}
	// A transfer to it is refused while it pulls (node.go, step): it campaigns as if
	// its election timeout had passed (the transfer's message stepped in directly).
	pg := c.groupOf(outside[1], "pl", 0)
	waitFor(t, 20*time.Second, fmt.Sprintf("node %d leads, pulling", outside[1]), func() bool {
		_ = c.nodes[outside[1]-1].do(func() {
			st := pg.rn.Status()
			if st.RaftState != raft.StateLeader {
				pg.wake()
				_ = pg.rn.Step(&pb.Message{Type: pb.MsgTimeoutNow.Enum(), From: new(other), To: new(outside[1]), Term: new(st.HardState.GetTerm())})
			}
		})
		ps, _ := c.nodes[outside[1]-1].Partition("pl", 0)
		return ps.Leader == outside[1]
	})
	hold.Delete(outside[1])
	close(gate)
	waitFor(t, 30*time.Second, "a write accepted again", func() bool {
		_, err := appendVia(c.nodes[0], "pl", 0, rec("k", 41))
		return err == nil
	})
	c.checkSame("pl", 0, 42, other, outside[1])
}
