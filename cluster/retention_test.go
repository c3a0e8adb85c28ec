package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// liveRecords reads a node's shard from its log start.
func liveRecords(t *testing.T, l *log.Log, stream string, shard int32) (start, hwm int64, out []log.StoredRecord) {
	t.Helper()
	st := l.Stream(stream)
	start, hwm, err := st.Offsets(shard)
	if err != nil {
		t.Fatal(err)
	}
	for off := start; off < hwm; {
		bs, err := st.Read(shard, off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) == 0 {
			break
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
	return start, hwm, out
}

// sameShard waits until the given nodes report log start wantStart and high watermark
// wantHWM for the shard, then checks they hold the same records.
func (c *testCluster) sameShard(stream string, shard int32, wantStart, wantHWM int64, ids ...uint64) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("log %d..%d on nodes %v", wantStart, wantHWM, ids), func() bool {
		for _, id := range ids {
			s, h, err := c.logs[id-1].Stream(stream).Offsets(shard)
			if err != nil || s != wantStart || h != wantHWM {
				return false
			}
		}
		return true
	})
	_, _, ref := liveRecords(c.t, c.logs[ids[0]-1], stream, shard)
	if int64(len(ref)) != wantHWM-wantStart || (len(ref) > 0 && ref[0].Offset != wantStart) {
		c.t.Fatalf("node %d holds %d records from %v", ids[0], len(ref), ref)
	}
	for _, id := range ids[1:] {
		_, _, rs := liveRecords(c.t, c.logs[id-1], stream, shard)
		if len(rs) != len(ref) {
			c.t.Fatalf("node %d holds %d records, node %d %d", id, len(rs), ids[0], len(ref))
		}
		for j := range rs {
			if rs[j].Offset != ref[j].Offset || !sameRecord(rs[j], ref[j]) || rs[j].TimestampUS != ref[j].TimestampUS {
				c.t.Fatalf("node %d differs at %d: %+v vs %+v", id, j, rs[j], ref[j])
			}
		}
	}
}

// Retention by message count runs on the shard leader and is replicated: every replica
// moves its log start to the same offset (the log's own retention pass is hours away
// here, so without the replicated one nothing would be trimmed).
func TestRetentionReplicated(t *testing.T) {
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.RetentionInterval = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "ret", Shards: 1, Retention: log.Retention{MaxMessages: 10}}, 3); err != nil {
		t.Fatal(err)
	}
	c.leaderOf("ret", 0)
	for i := 0; i < 30; i++ {
		if _, err := appendVia(c.nodes[i%3], "ret", 0, rec(fmt.Sprintf("k%d", i%4), i)); err != nil {
			t.Fatal(err)
		}
	}
	c.sameShard("ret", 0, 20, 30, 1, 2, 3)
	// The same after every node restarts: the log start is durable on each.
	for i := range c.nodes {
		c.stop(i)
		c.start(i, nil)
	}
	c.sameShard("ret", 0, 20, 30, 1, 2, 3)
}

// Kafka DeleteRecords sent to a node that does not lead the shard is forwarded to the
// leader, answered once committed with the low watermark, and every replica ends with
// that log start; out-of-range offsets are refused; -1 means the high watermark.
func TestDeleteRecordsViaFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("dr", 1)
	for i := 0; i < 20; i++ {
		if _, err := appendVia(c.nodes[0], "dr", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	lead := c.leaderOf("dr", 0)
	follower := lead%3 + 1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	low, err := c.nodes[follower-1].DeleteRecords(ctx, "dr", 0, 12)
	if err != nil || low != 12 {
		t.Fatalf("delete records via node %d (leader %d): low %d, %v", follower, lead, low, err)
	}
	// The leader applied it before answering.
	if s, _, _ := c.logs[lead-1].Stream("dr").Offsets(0); s != 12 {
		t.Fatalf("leader's log start %d after the answer", s)
	}
	c.sameShard("dr", 0, 12, 20, 1, 2, 3)

	if _, err := c.nodes[follower-1].DeleteRecords(ctx, "dr", 0, 21); !errors.Is(err, log.ErrOffsetOutOfRange) {
		t.Fatalf("past the high watermark: %v", err)
	}
	if low, err := c.nodes[follower-1].DeleteRecords(ctx, "dr", 0, 5); err != nil || low != 12 {
		t.Fatalf("below the log start: low %d, %v", low, err)
	}
	if _, err := c.nodes[follower-1].DeleteRecords(ctx, "nope", 0, 1); !errors.Is(err, log.ErrUnknownStream) {
		t.Fatalf("unknown stream: %v", err)
	}
	if low, err := c.nodes[lead-1].DeleteRecords(ctx, "dr", 0, -1); err != nil || low != 20 {
		t.Fatalf("-1 on the leader: low %d, %v", low, err)
	}
	c.sameShard("dr", 0, 20, 20, 1, 2, 3)
	for i := 20; i < 25; i++ {
		if _, err := appendVia(c.nodes[follower-1], "dr", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.sameShard("dr", 0, 20, 25, 1, 2, 3)
}

// A replica that was down while the log start moved past everything it holds catches
// up from a snapshot that starts at the leader's log start.
func TestSnapshotStartsAtLogStart(t *testing.T) {
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.LogKeep = 5 })
	c.putStream("sn", 1)
	for i := 0; i < 10; i++ {
		if _, err := appendVia(c.nodes[0], "sn", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	lead := c.leaderOf("sn", 0)
	down := lead%3 + 1
	c.sameShard("sn", 0, 0, 10, 1, 2, 3)
	c.stop(int(down - 1))
	up := c.nodes[lead-1]
	for i := 10; i < 60; i++ {
		if _, err := appendVia(up, "sn", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if low, err := up.DeleteRecords(ctx, "sn", 0, 40); err != nil || low != 40 {
		t.Fatalf("delete records: %d, %v", low, err)
	}
	for i := 60; i < 80; i++ { // entries enough to compact the Raft log past the truncation
		if _, err := appendVia(up, "sn", 0, rec("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	g := c.groupOf(lead, "sn", 0)
	waitFor(t, 30*time.Second, "the leader's Raft log compacted", func() bool {
		first, _ := g.st.FirstIndex()
		snap, _ := g.st.Snapshot()
		return first > 30 && snap.GetMetadata().GetIndex() > 30
	})
	c.start(int(down-1), nil)
	c.sameShard("sn", 0, 40, 80, 1, 2, 3)
	if e := c.groupOf(down, "sn", 0).failed.Load(); e != nil {
		t.Fatalf("replica failed: %v", *e)
	}
}

// A last-value stream's compaction is decided by the leader and replicated too: every
// replica keeps the same newest record per key at the same offsets.
func TestCompactionReplicated(t *testing.T) {
	c := newTestCluster(t, 3, func(_ int, o *Options) { o.RetentionInterval = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "lv", Shards: 1, LastValue: true}, 3); err != nil {
		t.Fatal(err)
	}
	c.leaderOf("lv", 0)
	for i := 0; i < 30; i++ {
		if _, err := appendVia(c.nodes[i%3], "lv", 0, rec(fmt.Sprintf("k%d", i%3), i)); err != nil {
			t.Fatal(err)
		}
	}
	var ref []log.StoredRecord
	waitFor(t, 30*time.Second, "every replica compacted to the 3 newest records", func() bool {
		for i := range c.logs {
			_, hwm, rs := liveRecords(t, c.logs[i], "lv", 0)
			if hwm != 30 || len(rs) != 3 {
				return false
			}
			if i == 0 {
				ref = rs
			}
		}
		return true
	})
	for i := range c.logs {
		_, _, rs := liveRecords(t, c.logs[i], "lv", 0)
		for j := range rs {
			if !sameRecord(rs[j], ref[j]) || rs[j].Offset != int64(27+j) {
				t.Fatalf("node %d record %d: %+v, node 1 %+v", i+1, j, rs[j], ref[j])
			}
		}
	}
}
