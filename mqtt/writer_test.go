package mqtt

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// gateWriter is a log.Writer in front of the log that refuses appends while closed,
// the way a cluster writer fails when the shard has no quorum.
type gateWriter struct {
	l      *log.Log
	mu     sync.Mutex
	closed bool
	calls  []string
}

var errGateClosed = errors.New("gate closed")

func (g *gateWriter) Append(ctx context.Context, mode log.Admission, stream string, shard int32, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	g.mu.Lock()
	g.calls = append(g.calls, stream)
	closed := g.closed
	g.mu.Unlock()
	if closed {
		done(log.AppendResult{}, errGateClosed)
		return
	}
	g.l.Append(ctx, mode, stream, shard, recs, ops, done)
}

func TestPublishesGoThroughWriter(t *testing.T) {
	l, cat := openStreams(t, log.Options{Dir: t.TempDir(), Logger: zerolog.Nop()},
		[]mapping.Definition{{Name: "plant", Filters: []string{"plant/#"}, Shards: 1}})
	g := &gateWriter{l: l, closed: true}
	srv, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Log: l, Writer: g, Catalog: cat, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = l.Close() })

	c, _ := dialRaw(t, srv.Addr().String(), "w1", 5, true)
	c.send(publishPacket("plant/a", 1, 1, "refused"))
	if ack := c.expect(packets.Puback, 1); ack.ReasonCode < 0x80 {
		t.Fatalf("PUBACK reason %#x while the writer refuses, want a failure", ack.ReasonCode)
	}
	g.mu.Lock()
	g.closed = false
	g.mu.Unlock()
	c.send(publishPacket("plant/a", 1, 2, "stored"))
	if ack := c.expect(packets.Puback, 2); ack.ReasonCode != 0 {
		t.Fatalf("PUBACK reason %#x, want 0", ack.ReasonCode)
	}
	recs := readAll(t, l.Stream("plant"), 0)
	if len(recs) != 1 || string(recs[0].Value) != "stored" {
		t.Fatalf("stored %d records, want only the one the writer let through", len(recs))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.calls) != 2 || g.calls[0] != "plant" {
		t.Fatalf("writer calls %v, want two to plant", g.calls)
	}
}
