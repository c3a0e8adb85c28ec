package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// putStreamRF creates a stream with replication factor rf and waits until every node
// knows a leader for each shard.
func (c *testCluster) putStreamRF(name string, shards int32, rf int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: name, Shards: shards}, rf); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 30*time.Second, "a leader for every shard on every node", func() bool {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			for s := int32(0); s < shards; s++ {
				if ps, ok := n.Partition(name, s); !ok || ps.Leader == 0 {
					return false
				}
			}
		}
		return true
	})
}

// outsider is a node (0-based index) holding no replica of the shard.
func (c *testCluster) outsider(stream string, shard int32) int {
	c.t.Helper()
	reps := c.nodes[0].Streams()[stream][shard]
	for i := range c.nodes {
		if c.nodes[i] != nil && !contains(reps, uint64(i+1)) {
			return i
		}
	}
	c.t.Fatalf("every node holds a replica of %s/%d (%v)", stream, shard, reps)
	return -1
}

// readAll reads a shard through n's ShardReader from start until it has want records.
func readAll(t *testing.T, n *Node, req log.ReadRequest, want int) (first int64, recs []log.StoredRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req.MaxBytes = 300 // a few records per read: the read goes on across answers
	req.Wait = time.Second
	first = -1
	for len(recs) < want {
		res, err := n.ReadShard(ctx, req)
		if err != nil {
			t.Fatalf("read %+v: %v (after %d records)", req, err, len(recs))
		}
		if first < 0 {
			first = res.Offset
		}
		next := res.Offset
		for _, b := range res.Batches {
			rs, err := b.Records(next)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rs...)
			next = b.LastOffset + 1
		}
		req.From, req.Offset = log.FromOffset, next
	}
	return first, recs
}

func checkRecords(t *testing.T, got []log.StoredRecord, from int64, key string, firstValue int) {
	t.Helper()
	for i, r := range got {
		if r.Offset != from+int64(i) || string(r.Key) != key || string(r.Value) != fmt.Sprintf("v%d", firstValue+i) {
			t.Fatalf("record %d: offset %d key %q value %q, want offset %d key %q value v%d", i, r.Offset, r.Key, r.Value, from+int64(i), key, firstValue+i)
		}
	}
}

// TestReadShardRemote: with replication factor 1 of 3 nodes, a node holding no replica
// of a shard reads it from the replica: from the start, from a time, live (a long poll
// answered by an append), and the stream's bounds; unknown streams and a stream id of
// a deleted stream are errors.
func TestReadShardRemote(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStreamRF("r1", 3, 1)
	const shard = 1
	out := c.outsider("r1", shard)
	reader := c.nodes[out]
	writer := c.nodes[(out+1)%3]
	if g := reader.group(c.nodes[0].cat.Streams["r1"].Shards[shard].Group); g != nil {
		t.Fatalf("node %d has a replica of r1/%d", out+1, shard)
	}

	// Two appends at different times: the second's time finds its first offset.
	for i := 0; i < 20; i++ {
		if _, err := appendVia(writer, "r1", shard, rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	var second log.AppendResult
	for i := 20; i < 40; i++ {
		res, err := appendVia(writer, "r1", shard, rec("a", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			second = res
		}
	}
	if local := reader.l.Stream("r1"); local == nil {
		t.Fatal("no local stream definition")
	} else if _, hwm, _ := local.Offsets(shard); hwm != 0 {
		t.Fatalf("the node without a replica has %d records locally", hwm)
	}

	first, recs := readAll(t, reader, log.ReadRequest{Stream: "r1", Shard: shard, From: log.FromEarliest}, 40)
	if first != 0 || len(recs) != 40 {
		t.Fatalf("from the start: first %d, %d records, want 0 and 40", first, len(recs))
	}
	checkRecords(t, recs, 0, "a", 0)

	first, recs = readAll(t, reader, log.ReadRequest{Stream: "r1", Shard: shard, From: log.FromTime, TimeUS: second.TimestampUS}, 20)
	if first != second.BaseOffset || len(recs) != 20 {
		t.Fatalf("from time %d: first %d, %d records, want %d and 20", second.TimestampUS, first, len(recs), second.BaseOffset)
	}
	checkRecords(t, recs, 20, "a", 20)
	if recs[0].TimestampUS != second.TimestampUS {
		t.Fatalf("record 20 at %d µs, appended at %d", recs[0].TimestampUS, second.TimestampUS)
	}

	res, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", Shard: shard, From: log.FromLatest})
	if err != nil || res.Offset != 40 || res.HighWatermark != 40 || res.LogStart != 0 {
		t.Fatalf("latest: %+v %v, want offset 40, bounds 0..40", res, err)
	}

	// A read at the end waits there (a long poll, not an empty answer at once).
	start := time.Now()
	res, err = reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", Shard: shard, Offset: 40, MaxBytes: 1 << 20, Wait: 300 * time.Millisecond})
	if err != nil || len(res.Batches) != 0 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("read at the end: %+v %v after %v, want nothing after 300ms", res, err, time.Since(start))
	}

	// Live: a read at the end waits for the next append.
	type readOut struct {
		res     log.ReadResult
		err     error
		elapsed time.Duration
	}
	ch := make(chan readOut, 1)
	served := c.nodes[0].readsServed.Load() + c.nodes[1].readsServed.Load() + c.nodes[2].readsServed.Load()
	go func() {
		start := time.Now()
		res, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", Shard: shard, Offset: 40, MaxBytes: 1 << 20, Wait: 60 * time.Second})
		ch <- readOut{res, err, time.Since(start)}
	}()
	// The read reaches the replica (which waits at the end) before the append, as a
	// live tail's does; had the append come first, the read would return it at once.
	waitFor(t, 10*time.Second, "the long poll at the replica", func() bool {
		return c.nodes[0].readsServed.Load()+c.nodes[1].readsServed.Load()+c.nodes[2].readsServed.Load() > served
	})
	if _, err := appendVia(writer, "r1", shard, rec("a", 40)); err != nil {
		t.Fatal(err)
	}
	var live readOut
	select {
	case live = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the live read did not return after an append")
	}
	if live.err != nil || len(live.res.Batches) == 0 {
		t.Fatalf("live read: %+v %v", live.res, live.err)
	}
	rs, err := live.res.Batches[0].Records(40)
	if err != nil || len(rs) != 1 || string(rs[0].Value) != "v40" {
		t.Fatalf("live read records %+v %v", rs, err)
	}
	t.Logf("live read returned after %v", live.elapsed)

	// Unknown stream, unknown shard, another stream's id.
	if _, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "nope", Shard: 0, MaxBytes: 100}); !errors.Is(err, log.ErrUnknownStream) {
		t.Fatalf("unknown stream: %v", err)
	}
	if _, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", Shard: 7, MaxBytes: 100}); !errors.Is(err, log.ErrUnknownShard) {
		t.Fatalf("unknown shard: %v", err)
	}
	id := c.nodes[0].cat.Streams["r1"].ID
	if _, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", StreamID: id + 1000, Shard: shard, MaxBytes: 100}); !errors.Is(err, log.ErrUnknownStream) {
		t.Fatalf("another stream id: %v", err)
	}

	// A stream deleted and created again under its name is another stream: a reader
	// of the old one (its id) is told it is gone, while waiting at its end too.
	gone := make(chan error, 1)
	go func() {
		_, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", StreamID: id, Shard: shard, Offset: 41, MaxBytes: 100, Wait: time.Minute})
		gone <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[0].DeleteStream(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	c.putStreamRF("r1", 3, 1)
	select {
	case err := <-gone:
		if !errors.Is(err, log.ErrUnknownStream) {
			t.Fatalf("read of the deleted stream: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a read of a deleted stream still waits")
	}
	waitFor(t, 10*time.Second, "the new stream on the reader", func() bool {
		nid, _, err := reader.shardOf("r1", shard)
		return err == nil && nid != id
	})
	if _, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", StreamID: id, Shard: shard, MaxBytes: 100}); !errors.Is(err, log.ErrUnknownStream) {
		t.Fatalf("the old stream's id after it was created again: %v", err)
	}
	if res, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "r1", Shard: shard, From: log.FromEarliest, MaxBytes: 100}); err != nil || res.HighWatermark != 0 {
		t.Fatalf("the new stream: %+v %v", res, err)
	}
}

// TestReadShardFailover: with replication factor 2, the node without a replica goes on
// reading while the shard's leader is down (from the follower, committed records
// only), and after it comes back, new records too.
func TestReadShardFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStreamRF("r2", 1, 2)
	out := c.outsider("r2", 0)
	reader := c.nodes[out]
	for i := 0; i < 30; i++ {
		if _, err := appendVia(reader, "r2", 0, rec("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	ps, _ := reader.Partition("r2", 0)
	lead := int(ps.Leader) - 1
	_, recs := readAll(t, reader, log.ReadRequest{Stream: "r2", Shard: 0, From: log.FromEarliest}, 30)
	checkRecords(t, recs, 0, "b", 0)

	c.stop(lead)
	// The follower alone has no quorum: no leader, no writes, but its committed
	// records are read.
	first, recs := readAll(t, reader, log.ReadRequest{Stream: "r2", Shard: 0, From: log.FromOffset, Offset: 10}, 20)
	if first != 10 {
		t.Fatalf("first %d", first)
	}
	checkRecords(t, recs, 10, "b", 10)

	c.start(lead, nil)
	for i := 30; i < 40; i++ {
		if _, err := appendVia(reader, "r2", 0, rec("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, recs = readAll(t, reader, log.ReadRequest{Stream: "r2", Shard: 0, From: log.FromOffset, Offset: 30}, 10)
	checkRecords(t, recs, 30, "b", 30)
}

// TestReadShardAfterMove: a node a shard's only replica moved away from reads the
// shard's new records from the new replica, not its own stale copy.
func TestReadShardAfterMove(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStreamRF("mv1", 1, 1)
	holder := int(c.nodes[0].Streams()["mv1"][0][0]) - 1
	target := (holder + 1) % 3
	for i := 0; i < 10; i++ {
		if _, err := appendVia(c.nodes[holder], "mv1", 0, rec("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.nodes[holder].MoveReplica(ctx, "mv1", 0, uint64(holder+1), uint64(target+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the old holder without the replica", func() bool {
		sp, err := c.nodes[holder].placement("mv1", 0)
		return err == nil && !contains(sp.Replicas, uint64(holder+1)) && c.nodes[holder].group(sp.Group) == nil
	})
	for i := 10; i < 20; i++ {
		if _, err := appendVia(c.nodes[holder], "mv1", 0, rec("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, recs := readAll(t, c.nodes[holder], log.ReadRequest{Stream: "mv1", Shard: 0, From: log.FromEarliest}, 20)
	checkRecords(t, recs, 0, "m", 0)
}

// TestReadShardUnavailable: with the only replica down the read says so
// (log.ErrUnavailable, after trying for readRetryFor), and works again once it is back.
func TestReadShardUnavailable(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStreamRF("u1", 1, 1)
	holder := int(c.nodes[0].Streams()["u1"][0][0]) - 1
	reader := c.nodes[(holder+1)%3]
	if _, err := appendVia(c.nodes[holder], "u1", 0, rec("u", 0)); err != nil {
		t.Fatal(err)
	}
	c.stop(holder)
	start := time.Now()
	_, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "u1", Shard: 0, From: log.FromEarliest, MaxBytes: 100})
	if !errors.Is(err, log.ErrUnavailable) {
		t.Fatalf("read with the only replica down: %v", err)
	}
	t.Logf("unavailable after %v: %v", time.Since(start).Round(time.Millisecond), err)
	c.start(holder, nil)
	// The restarted holder answers once its link is redialled and its group runs: on a
	// loaded machine that can take longer than one read's retries (5 s); a replay
	// reader retries an unavailable shard, and so does this test, within a deadline.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := reader.ReadShard(context.Background(), log.ReadRequest{Stream: "u1", Shard: 0, From: log.FromEarliest, MaxBytes: 100})
		if err == nil {
			break
		}
		if !errors.Is(err, log.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("read after the replica restarted: %v", err)
		}
	}
	_, recs := readAll(t, reader, log.ReadRequest{Stream: "u1", Shard: 0, From: log.FromEarliest}, 1)
	checkRecords(t, recs, 0, "u", 0)
}
