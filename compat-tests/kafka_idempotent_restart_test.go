package compattests

// Exactly once from an idempotent franz-go producer across a server crash (issue 11).
// The producer talks to the server through a proxy that, at one point, forwards its
// produce requests but swallows the answers: those batches are stored, but the
// producer does not know. The server is then killed with SIGKILL and restarted on the
// same ports; the producer retries the unanswered batches, which must be answered with
// their original offsets, each record stored once.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// answerDropper is a TCP proxy to a Kafka listener that can swallow the answers.
type answerDropper struct {
	ln      net.Listener
	target  atomic.Value // string: the server's Kafka address
	drop    atomic.Bool
	dropped atomic.Int64 // reads of answers swallowed
	mu      sync.Mutex
	conns   []net.Conn
}

func startAnswerDropper(t *testing.T) *answerDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &answerDropper{ln: ln}
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *answerDropper) serve(c net.Conn) {
	addr, _ := p.target.Load().(string)
	if addr == "" {
		_ = c.Close()
		return
	}
	s, err := net.Dial("tcp", addr)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(s, c)
		_ = s.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if p.drop.Load() {
				p.dropped.Add(1)
			} else if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = c.Close()
}

func (p *answerDropper) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func TestKafkaIdempotentProducerAcrossKill(t *testing.T) {
	proxy := startAnswerDropper(t)
	srv := StartServer(t, ServerOptions{
		Config: "streams:\n  - {name: idem, filter: \"idem/#\", shards: 2}\n",
		Args:   []string{"--advertised-kafka-addr", proxy.ln.Addr().String()},
	})
	proxy.target.Store(srv.KafkaAddr)

	ctx := Deadline(t, 3*startTimeout)
	cl, err := kgo.NewClient(kgo.SeedBrokers(proxy.ln.Addr().String()), kgo.DefaultProduceTopic("idem"),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent: franz-go's default
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.RecordDeliveryTimeout(2*startTimeout), kgo.RetryTimeout(2*startTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	type placed struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[string]placed{}
	var wg sync.WaitGroup
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			v := fmt.Sprintf("r-%05d", i)
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					t.Errorf("produce %s: %v", v, err)
					return
				}
				mu.Lock()
				acked[v] = placed{r.Partition, r.Offset}
				mu.Unlock()
			})
		}
	}
	const total = 1500
	produce(0, 500)
	wg.Wait()

	// Answers swallowed: batches are stored, their producer is left waiting.
	proxy.drop.Store(true)
	produce(500, 1000)
	waitUntil(t, ctx, "stored batches whose answers were swallowed", func() bool { return proxy.dropped.Load() >= 2 })
	srv.Kill(t)
	proxy.closeAll()
	proxy.drop.Store(false)
	srv.KillRestartSamePorts(t)
	proxy.target.Store(srv.KafkaAddr)
	wg.Wait()
	produce(1000, total)
	wg.Wait()
	if t.Failed() {
		return
	}

	// Read everything back: each value once, where its ack said.
	rd, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics("idem"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	stored := map[string][]placed{}
	n := 0
	for n < total+10 {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := rd.PollFetches(fctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			stored[string(r.Value)] = append(stored[string(r.Value)], placed{r.Partition, r.Offset})
			n++
			got++
		})
		if got == 0 && n >= total {
			break // a quiet poll once all are read: nothing more stored
		}
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", n, total)
		}
	}
	if n != total || len(stored) != total {
		var dup []string
		for v, at := range stored {
			if len(at) > 1 {
				dup = append(dup, fmt.Sprintf("%s at %v", v, at))
			}
		}
		t.Fatalf("stored %d records, %d distinct; want %d each; duplicates: %s", n, len(stored), total, strings.Join(dup, ", "))
	}
	for v, at := range stored {
		if at[0] != acked[v] {
			t.Fatalf("%s stored at %v, acked at %v", v, at[0], acked[v])
		}
	}
	if !strings.Contains(srv.Logs(), "idempotent producer state loaded") {
		t.Fatal("the restarted server loaded no producer state")
	}
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
