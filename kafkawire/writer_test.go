package kafkawire

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/log"
)

// gateWriter is a log.Writer in front of the log that refuses appends while closed,
// the way a cluster writer fails when the shard has no quorum.
type gateWriter struct {
	l      *log.Log
	closed atomic.Bool
	calls  atomic.Int32
}

func (g *gateWriter) Append(ctx context.Context, mode log.Admission, stream string, shard int32, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	g.calls.Add(1)
	if g.closed.Load() {
		done(log.AppendResult{}, errors.New("gate closed"))
		return
	}
	g.l.Append(ctx, mode, stream, shard, recs, ops, done)
}

func TestProduceGoesThroughWriter(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "w", Shards: 1})
	g := &gateWriter{l: tb.l}
	g.closed.Store(true)
	tb.s.writer = g // as Options.Writer does, before any connection
	cl := tb.client(t, kgo.RecordRetries(0), kgo.DisableIdempotentWrite())
	ctx := context.Background()

	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "w", Value: []byte("refused")}).FirstErr()
	if !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("produce while the writer refuses: %v, want KAFKA_STORAGE_ERROR", err)
	}
	g.closed.Store(false)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "w", Value: []byte("stored")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, hwm, _ := st.Offsets(0); hwm != 1 {
		t.Fatalf("hwm %d, want 1 (only the record the writer let through)", hwm)
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("writer called %d times, want 2", n)
	}
}
