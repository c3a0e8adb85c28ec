package kafkawire

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/log"
)

// BenchmarkProduce measures a franz-go producer (idempotent, acks=all, the log
// syncing every commit) writing 100-byte records to 4 partitions, per codec.
func BenchmarkProduce(b *testing.B) {
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}} {
		b.Run(c.name, func(b *testing.B) {
			const shards, valueSize = 4, 100
			tb := startBroker(b, false)
			tb.stream(b, log.StreamSpec{Name: "bench", Shards: shards})
			prod := tb.client(b, kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(time.Millisecond),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
			val := []byte(fmt.Sprintf("%0*d", valueSize, 0))
			ctx := context.Background()
			errs := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				prod.Produce(ctx, &kgo.Record{Topic: "bench", Value: val}, func(_ *kgo.Record, err error) {
					if err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				})
			}
			if err := prod.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(float64(b.N*valueSize)/el.Seconds()/1e6, "MB/s")
		})
	}
}
