package cluster

import (
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mqstreams/mqstreams/log"
)

// TestLoopRunsWhileRaftWriteStalls: the leader's Raft write of an append is held (a
// stalled disk); its Raft loop keeps running (other work on it completes), the
// followers write the entry meanwhile (it went out before the leader's own write), and
// the append is acknowledged only once the leader's write returns, which holds what it
// applies.
func TestLoopRunsWhileRaftWriteStalls(t *testing.T) {
	var hold atomic.Int64 // the node id whose writes are held
	release := make(chan struct{})
	c := newTestCluster(t, 3, func(i int, o *Options) {
		id := int64(i + 1)
		o.testBeforeWrite = func() {
			if hold.Load() == id {
				<-release
			}
		}
	})
	c.putStream("s", 1)
	if _, err := appendVia(c.nodes[0], "s", 0, rec("k", 0)); err != nil {
		t.Fatal(err)
	}
	lead := c.leaderOf("s", 0)
	ln := c.nodes[lead-1]
	sp, err := ln.placement("s", 0)
	if err != nil {
		t.Fatal(err)
	}
	g := ln.group(sp.Group)
	before, _ := g.st.LastIndex()
	followers := []*Node{}
	for _, n := range c.nodes {
		if n.Self() != lead {
			followers = append(followers, n)
		}
	}

	hold.Store(int64(lead))
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	done := make(chan appendOut, 1)
	ln.Append(t.Context(), log.AppendBlock, "s", 0, []log.Record{rec("k", 1)}, nil, func(r log.AppendResult, err error) { done <- appendOut{r, err} })

	waitFor(t, 20*time.Second, "both followers to write the entry while the leader's write is held", func() bool {
		for _, f := range followers {
			fg := f.group(g.id)
			if last, _ := fg.st.LastIndex(); last <= before {
				return false
			}
		}
		return true
	})
	loop := make(chan struct{})
	go func() { _ = ln.do(func() {}); close(loop) }()
	select {
	case <-loop:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's Raft loop waited for its stalled write")
	}
	select {
	case o := <-done:
		t.Fatalf("append acknowledged (%v, %v) before the leader's write returned", o.res, o.err)
	default:
	}
	hold.Store(0)
	close(release)
	released = true
	select {
	case o := <-done:
		if o.err != nil || o.res.BaseOffset != 1 {
			t.Fatalf("append after the write returned: %+v, %v", o.res, o.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("append not acknowledged after the write returned")
	}
	c.checkReplicasIdentical("s", 0, 2)
}

// TestAppliedAheadOfSavedCommit: a replica's log applied entries whose commit index
// never reached its saved hard state (the persister writes the commit while the
// applier writes the records, in either order, neither fsynced). Restarted like that,
// it must not apply those entries again.
func TestAppliedAheadOfSavedCommit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 1)
	for i := 0; i < 20; i++ {
		if _, err := appendVia(c.nodes[i%3], "s", 0, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.checkReplicasIdentical("s", 0, 20)
	lead := c.leaderOf("s", 0)
	f := int(lead % 3) // index of a follower
	sp, err := c.nodes[f].placement("s", 0)
	if err != nil {
		t.Fatal(err)
	}
	c.stop(f)
	l, err := log.Open(log.Options{Dir: c.dirs[f], NoSync: true, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.RaftGet(groupKey(sp.Group, keyHardState))
	if err != nil || v == nil {
		t.Fatalf("hard state: %v", err)
	}
	hs := &pb.HardState{}
	if err := proto.Unmarshal(v, hs); err != nil {
		t.Fatal(err)
	}
	hs.Commit = new(uint64(initialIndex))
	rb := l.NewRaftBatch()
	if err := putProto(rb, groupKey(sp.Group, keyHardState), hs); err != nil {
		t.Fatal(err)
	}
	if err := rb.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c.start(f, nil)
	for i := 20; i < 40; i++ {
		if _, err := appendVia(c.nodes[i%3], "s", 0, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	recs := c.checkReplicasIdentical("s", 0, 40)
	if len(recs) != 40 {
		t.Fatalf("%d records, want 40", len(recs))
	}
	_, hwm, err := c.logs[f].Stream("s").Offsets(0)
	if err != nil || hwm != 40 {
		t.Fatalf("restarted replica holds %d records (%v), want 40", hwm, err)
	}
}
