package compattests

// Exactly once from an idempotent franz-go producer across a server crash (issue 11):
// the producer keeps producing while the server is killed with SIGKILL and restarted
// on the same ports; batches it retries after the crash are answered with their
// original offsets, and each record is stored once.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaIdempotentProducerAcrossKill(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: `streams:
  - {name: idem, filter: "idem/#", shards: 2}
`})
	ctx := Deadline(t, 3*startTimeout)
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.DefaultProduceTopic("idem"),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent: franz-go's default
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(200),
		kgo.RecordDeliveryTimeout(2*startTimeout), kgo.RetryTimeout(2*startTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	const total = 3000
	type placed struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	acked := map[string]placed{}
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	var killOnce sync.Once
	for i := 0; i < total; i++ {
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
			n := len(acked)
			mu.Unlock()
			if n == total/3 {
				killOnce.Do(func() { close(killAt) })
			}
		})
		if i == total/3+total/10 {
			// Crash while batches are in flight, then come back on the same ports.
			select {
			case <-killAt:
			case <-ctx.Done():
				t.Fatal("no acks before the kill")
			}
			srv.KillRestartSamePorts(t)
		}
	}
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
	for n < total {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := rd.PollFetches(fctx)
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", n, total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			stored[string(r.Value)] = append(stored[string(r.Value)], placed{r.Partition, r.Offset})
			n++
		})
		if fctx.Err() != nil && len(fs.Records()) == 0 {
			break // nothing more to read
		}
	}
	if n != total || len(stored) != total {
		t.Fatalf("stored %d records, %d distinct values; want %d each (duplicates: %v)", n, len(stored), total, dups(stored))
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

func dups[T any](m map[string][]T) map[string][]T {
	out := map[string][]T{}
	for k, v := range m {
		if len(v) > 1 {
			out[k] = v
		}
	}
	return out
}
