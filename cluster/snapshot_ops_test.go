package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
)

// A replica moved to a new node catches up from a snapshot, so it never applies the
// entries that carried an idempotent producer's state: the snapshot brings that state
// with the records. Led by the new node, a retry of the last batch gets its original
// offset and is stored once; the sequence goes on from there.
func TestMovedReplicaLeadsWithProducerState(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	clients := make([]*kgo.Client, 4)
	for i, n := range c.nodes {
		s, err := kafkawire.New(kafkawire.Options{Config: kafkawire.Config{Addr: "127.0.0.1:0"}, Log: c.logs[i],
			Logger: zerolog.Nop(), Writer: n, Cluster: wireCluster{n}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.Addr().String()))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		t.Cleanup(func() { cl.Close(); _ = s.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.nodes[0].PutStream(ctx, log.StreamSpec{Name: "s", Shards: 1}, 2); err != nil {
		t.Fatal(err)
	}
	reps := c.nodes[0].Streams()["s"][0]
	lead := c.leaderOf("s", 0)
	var to uint64
	for id := uint64(1); id <= 4 && to == 0; id++ {
		if !contains(reps, id) {
			to = id
		}
	}

	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionTimeoutMillis = 60000
	ir, err := clients[lead-1].SeedBrokers()[0].Request(ctx, initReq)
	if err != nil || ir.(*kmsg.InitProducerIDResponse).ErrorCode != 0 {
		t.Fatalf("init producer id: %v %+v", err, ir)
	}
	pid, epoch := ir.(*kmsg.InitProducerIDResponse).ProducerID, ir.(*kmsg.InitProducerIDResponse).ProducerEpoch
	last := idemBatch(pid, epoch, 3, "d", "e")
	for _, b := range []struct {
		batch []byte
		want  int64
	}{{idemBatch(pid, epoch, 0, "a", "b", "c"), 0}, {last, 3}} {
		if off, err := produceTo(ctx, clients[lead-1], "s", b.batch); err != nil || off != b.want {
			t.Fatalf("batch: offset %d, %v; want %d", off, err, b.want)
		}
	}

	// The leader's replica moves to the new node, which then leads.
	if err := c.nodes[0].MoveReplica(ctx, "s", 0, lead, to); err != nil {
		t.Fatalf("move %d→%d: %v", lead, to, err)
	}
	gid := c.groupOf(to, "s", 0).id
	waitFor(t, 30*time.Second, "the moved replica leading", func() bool {
		ps, _ := c.nodes[to-1].Partition("s", 0)
		if ps.Leader == to {
			return true
		}
		if ps.Leader != 0 && ps.Leader != lead {
			n := c.nodes[ps.Leader-1]
			_ = n.do(func() {
				if g := n.groups[gid]; g != nil {
					g.wake()
					g.rn.TransferLeader(to)
				}
			})
		}
		return false
	})

	var off int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		if off, err = produceTo(ctx, clients[to-1], "s", last); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry to the moved replica: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if off != 3 {
		t.Fatalf("retried batch answered at offset %d, want its original 3", off)
	}
	if off, err := produceTo(ctx, clients[to-1], "s", idemBatch(pid, epoch, 5, "f")); err != nil || off != 5 {
		t.Fatalf("next batch: offset %d, %v; want 5", off, err)
	}
	final := c.nodes[0].Streams()["s"][0]
	c.checkSame("s", 0, 6, final...)
	recs := shardRecords(t, c.logs[to-1], "s", 0)
	for i, want := range []string{"a", "b", "c", "d", "e", "f"} {
		if string(recs[i].Value) != want {
			t.Fatalf("record %d = %q, want %q (each record once, in order)", i, recs[i].Value, want)
		}
	}
}
