package cluster

import (
	"testing"
	"time"
)

// quiescedGroups counts a node's quiesced groups (on its Raft loop).
func quiescedGroups(t *testing.T, n *Node) (q, all int) {
	t.Helper()
	if err := n.do(func() {
		for _, g := range n.groups {
			all++
			if g.quiesced {
				q++
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	return q, all
}

func TestIdleGroupsQuiesceWakeAndFailOver(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("idle", 8)
	for s := int32(0); s < 8; s++ {
		if _, err := appendVia(c.nodes[int(s)%3], "idle", s, rec("k", int(s))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "every group quiesced on every node", func() bool {
		for _, n := range c.nodes {
			if q, all := quiescedGroups(t, n); q != all {
				return false
			}
		}
		return true
	})
	// Quiet: no Raft traffic at all for a while (transport heartbeats only).
	before := [3]int64{}
	for i, n := range c.nodes {
		before[i] = n.tr.sent[kindRaft].Load()
	}
	time.Sleep(500 * time.Millisecond) // a measurement window, not a wait for a condition
	for i, n := range c.nodes {
		if d := n.tr.sent[kindRaft].Load() - before[i]; d > 2 {
			t.Errorf("node %d sent %d Raft frames in 500 ms while every group was quiesced", i+1, d)
		}
	}
	// An append wakes its group and is acknowledged.
	if _, err := appendVia(c.nodes[0], "idle", 3, rec("k", 100)); err != nil {
		t.Fatal(err)
	}
	// A quiesced shard whose leader dies gets a new leader through the transport's
	// liveness, and takes writes.
	waitFor(t, 20*time.Second, "quiesced again", func() bool {
		q, all := quiescedGroups(t, c.nodes[1])
		return q == all
	})
	lead := c.leaderOf("idle", 5)
	other := c.nodes[lead%3]
	killed := time.Now()
	c.stop(int(lead - 1))
	for {
		if _, err := appendVia(other, "idle", 5, rec("k", 200)); err == nil {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatal("no new leader for a quiesced shard")
		}
	}
	t.Logf("quiesced shard writable again %v after its leader stopped", time.Since(killed).Round(time.Millisecond))
	c.start(int(lead-1), nil)
	c.checkReplicasIdentical("idle", 5, 2)
}
