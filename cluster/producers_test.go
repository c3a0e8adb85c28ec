package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
)

// wireCluster is kafkawire's view of a node, as cmd/mqstreams wires it.
type wireCluster struct{ n *Node }

func (w wireCluster) Self() int32                        { return int32(w.n.Self()) }
func (w wireCluster) Brokers() []kafkawire.Broker        { return nil }
func (w wireCluster) Controller() int32                  { return int32(w.n.Controller()) }
func (w wireCluster) Coordinator(_ int8, k string) int32 { return int32(w.n.Coordinator(k)) }
func (w wireCluster) Partition(stream string, shard int32) kafkawire.PartitionState {
	ps, _ := w.n.Partition(stream, shard)
	lead := int32(ps.Leader)
	if lead == 0 {
		lead = -1
	}
	return kafkawire.PartitionState{Leader: lead}
}
func (w wireCluster) LeaderTerm(stream string, shard int32) uint64 {
	return w.n.LeaderTerm(stream, shard)
}
func (w wireCluster) Settle(ctx context.Context, stream string, shard int32) (uint64, error) {
	return w.n.Settle(ctx, stream, shard)
}

// idemBatch is a Kafka v2 batch of an idempotent producer.
func idemBatch(pid int64, epoch int16, seq int32, vals ...string) []byte {
	var body []byte
	for i, v := range vals {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte("k"), Value: []byte(v)}
		enc := r.AppendTo(nil)
		body = kbin.AppendVarint(body, int32(len(enc)-1))
		body = append(body, enc[1:]...)
	}
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(len(vals) - 1),
		FirstTimestamp: now, MaxTimestamp: now, ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq,
		NumRecords: int32(len(vals)), Records: body}
	b := rb.AppendTo(nil)
	kbin.AppendInt32(b[8:8], int32(len(b)-12))
	kbin.AppendInt32(b[17:17], int32(crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli))))
	return b
}

func produceTo(ctx context.Context, cl *kgo.Client, stream string, batch []byte) (int64, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = stream
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return 0, err
	}
	p := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, err
	}
	return p.BaseOffset, nil
}

// A batch an idempotent producer sent to a leader that stored it on a quorum and died
// before answering: retried to the new leader, it gets its original offset and is
// stored once; the producer's sequence goes on from there.
func TestIdempotentRetryToNewLeaderGetsOriginalOffsets(t *testing.T) {
	var noApply atomic.Uint64 // a node that stops applying shard entries (so never answers)
	c := newTestCluster(t, 3, func(i int, o *Options) {
		id := uint64(i + 1)
		o.testSkipApply = func(uint64, uint64) bool { return noApply.Load() == id }
	})
	servers := make([]*kafkawire.Server, 3)
	clients := make([]*kgo.Client, 3)
	for i, n := range c.nodes {
		s, err := kafkawire.New(kafkawire.Options{Config: kafkawire.Config{Addr: "127.0.0.1:0"}, Log: c.logs[i],
			Logger: zerolog.Nop(), Writer: n, Cluster: wireCluster{n}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		servers[i] = s
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.Addr().String()))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		t.Cleanup(func() { cl.Close(); _ = s.Close() })
	}
	c.putStream("s", 1)
	lead := c.leaderOf("s", 0)
	li := int(lead - 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = 60000
	ir, err := clients[li].SeedBrokers()[0].Request(ctx, initReq)
	if err != nil || ir.(*kmsg.InitProducerIDResponse).ErrorCode != 0 {
		t.Fatalf("init producer id: %v %+v", err, ir)
	}
	pid, epoch := ir.(*kmsg.InitProducerIDResponse).ProducerID, ir.(*kmsg.InitProducerIDResponse).ProducerEpoch

	for _, b := range []struct {
		seq  int32
		vals []string
		want int64
	}{{0, []string{"a", "b", "c"}, 0}, {3, []string{"d", "e"}, 3}} {
		off, err := produceTo(ctx, clients[li], "s", idemBatch(pid, epoch, b.seq, b.vals...))
		if err != nil || off != b.want {
			t.Fatalf("batch at sequence %d: offset %d, %v; want %d", b.seq, off, err, b.want)
		}
	}

	// The leader stops applying: its next batch is committed by the quorum (the
	// followers store it) but never answered. Then the leader dies.
	noApply.Store(lead)
	inflight := idemBatch(pid, epoch, 5, "f", "g", "h")
	unanswered := make(chan error, 1)
	go func() {
		_, err := produceTo(ctx, clients[li], "s", inflight)
		unanswered <- err
	}()
	followers := []int{(li + 1) % 3, (li + 2) % 3}
	waitFor(t, 30*time.Second, "the in-flight batch stored on both followers", func() bool {
		for _, i := range followers {
			if _, hwm, err := c.logs[i].Stream("s").Offsets(0); err != nil || hwm != 8 {
				return false
			}
		}
		return true
	})
	clients[li].Close()
	_ = servers[li].Close()
	c.stop(li)
	if err := <-unanswered; err == nil {
		t.Fatal("the batch in flight at the leader's death was answered")
	}

	// The producer retries to whichever node leads now.
	var newLead int
	var off int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		newLead = int(c.leaderOf("s", 0) - 1)
		off, err = produceTo(ctx, clients[newLead], "s", inflight)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry to the new leader: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if off != 5 {
		t.Fatalf("retried batch answered at offset %d, want its original 5", off)
	}
	// An older batch still in the window, retried, keeps its offset too; the next
	// batch follows in sequence; a gap is refused.
	if off, err := produceTo(ctx, clients[newLead], "s", idemBatch(pid, epoch, 3, "d", "e")); err != nil || off != 3 {
		t.Fatalf("older retried batch: offset %d, %v; want 3", off, err)
	}
	if off, err := produceTo(ctx, clients[newLead], "s", idemBatch(pid, epoch, 8, "i")); err != nil || off != 8 {
		t.Fatalf("next batch: offset %d, %v; want 8", off, err)
	}
	if _, err := produceTo(ctx, clients[newLead], "s", idemBatch(pid, epoch, 20, "x")); err != kerr.OutOfOrderSequenceNumber {
		t.Fatalf("batch after a gap: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", err)
	}
	recs := c.checkReplicasIdentical("s", 0, 9)
	for i, want := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"} {
		if string(recs[i].Value) != want {
			t.Fatalf("record %d = %q, want %q (each record once, in order)", i, recs[i].Value, want)
		}
	}
}

// An append carrying replicated ops is proposed only by the leader: a follower refuses
// it at once, with an error kafkawire turns into NOT_LEADER_OR_FOLLOWER, and stores
// nothing; without such ops the follower forwards it.
func TestAppendWithReplicatedOpsNotForwarded(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 1)
	lead := c.leaderOf("s", 0)
	follower := c.nodes[lead%3]
	ops := []log.EntryOp{{Kind: "kafka.producer", Name: "x", Value: []byte("state"), WithResult: true}}
	ch := make(chan error, 1)
	follower.Append(context.Background(), log.AppendWait, "s", 0, []log.Record{rec("k", 0)}, ops, func(_ log.AppendResult, err error) { ch <- err })
	err := <-ch
	var nl interface{ NotLeader() bool }
	if !errors.As(err, &nl) || !nl.NotLeader() {
		t.Fatalf("append with replicated ops through a follower: %v, want a not-leader error", err)
	}
	if _, err := appendVia(follower, "s", 0, rec("k", 1)); err != nil {
		t.Fatalf("plain append through a follower: %v", err)
	}
	recs := c.checkReplicasIdentical("s", 0, 1)
	if string(recs[0].Value) != string(rec("k", 1).Value) {
		t.Fatalf("stored %q, want only the forwarded plain append", recs[0].Value)
	}
	// Through the leader, two appends in one entry or not: each replica stores each
	// op with its own append's offset.
	leader := c.nodes[lead-1]
	done := make(chan error, 2)
	for i, name := range []string{"a", "b"} {
		op := []log.EntryOp{{Kind: "kafka.producer", Name: name, Value: []byte(name), WithResult: true}}
		leader.Append(context.Background(), log.AppendWait, "s", 0, []log.Record{rec("k", 2+i), rec("k", 2+i)}, op, func(_ log.AppendResult, err error) { done <- err })
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	recs = c.checkReplicasIdentical("s", 0, 5)
	for i, l := range c.logs {
		es, err := l.Entries("kafka.producer")
		if err != nil || len(es) != 2 {
			t.Fatalf("node %d: replicated ops %v, %v", i+1, es, err)
		}
		for _, e := range es {
			off := int64(binary.BigEndian.Uint64(e.Value[1:]))
			if e.Value[0] != e.Name[0] || len(e.Value) != 17 || string(recs[off].Value) != string(rec("k", int(e.Name[0]-'a')+2).Value) ||
				(off > 1 && string(recs[off-1].Value) == string(recs[off].Value)) {
				t.Fatalf("node %d: op %s stored %x (offset %d)", i+1, e.Name, e.Value, off)
			}
		}
	}
}
