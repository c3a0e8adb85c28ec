package kafkawire

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/log"
)

// BenchmarkConsumeReplay measures a franz-go consumer replaying 1,000,000 stored
// records of 100 bytes from 4 partitions, from the first offset to the last.
func BenchmarkConsumeReplay(b *testing.B) {
	const (
		total     = 1_000_000
		shards    = 4
		perAppend = 1000
		valueSize = 100
	)
	tb := startBroker(b, true)
	st := tb.stream(b, log.StreamSpec{Name: "replay", Shards: shards})
	val := make([]byte, valueSize)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	recs := make([]log.Record, perAppend)
	for i := range recs {
		recs[i] = log.Record{Value: val}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var appendErr error
	for i := 0; i < total/perAppend; i++ {
		wg.Add(1)
		st.AppendAsync(int32(i%shards), recs, func(_ log.AppendResult, err error) {
			if err != nil {
				mu.Lock()
				appendErr = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if appendErr != nil {
		b.Fatal(appendErr)
	}

	b.SetBytes(total * valueSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(tb.addr), kgo.ConsumeTopics("replay"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		n := 0
		for n < total {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				b.Fatalf("replayed %d of %d records: %v", n, total, err)
			}
			fs.EachError(func(topic string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", topic, p, err) })
			n += fs.NumRecords()
		}
		cancel()
		cl.Close()
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
