// Package inprocess holds Go benchmarks that run the server's packages in the test
// process next to franz-go's kfake, which lives in this module (bench/) so that it
// stays out of the product's go.mod.
package inprocess

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// startServer runs a Kafka wire server over a fresh log without fsync and returns its
// address and log.
func startServer(b *testing.B) (string, *log.Log, *mapping.Catalog) {
	b.Helper()
	l, err := log.Open(log.Options{Dir: b.TempDir(), Logger: zerolog.Nop(), NoSync: true, RetentionInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	cat, err := mapping.OpenCatalog(l)
	if err != nil {
		b.Fatal(err)
	}
	s, err := kafkawire.New(kafkawire.Options{Config: kafkawire.Config{Addr: "127.0.0.1:0"}, Log: l, Catalog: cat, Logger: zerolog.Nop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = s.Close()
		_ = l.Close()
	})
	return s.Addr().String(), l, cat
}

// fillMQTTLike stores n records shaped as MQTT ingest stores them (a ~60-byte JSON
// value and the four mqtt.* headers) in 4 shards, ~135 records per commit as four
// publishers produce, then merges the batches.
func fillMQTTLike(b *testing.B, l *log.Log, cat *mapping.Catalog, name, codec string, n int) {
	b.Helper()
	d, err := mapping.DefinitionFromSpec(log.StreamSpec{Name: name, Shards: 4, Compression: codec})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cat.Create(d, false); err != nil {
		b.Fatal(err)
	}
	st := l.Stream(name)
	const perCommit = 135
	recs := make([]log.Record, 0, perCommit)
	for i := 0; i < n; {
		recs = recs[:0]
		for j := 0; j < perCommit && i < n; j, i = j+1, i+1 {
			recs = append(recs, log.Record{
				Value: fmt.Appendf(nil, `{"dev":"sensor-%02d","seq":%07d,"temp":21.%d,"hum":48.%d}`, i%4, i, i%10, i%7),
				Headers: []log.Header{{Key: "mqtt.topic", Value: fmt.Appendf(nil, "bench/sensor-%02d", i%4)}, {Key: "mqtt.qos", Value: []byte("1")},
					{Key: "mqtt.retain", Value: []byte("false")}, {Key: "mqtt.client_id", Value: fmt.Appendf(nil, "bench-pub-%d", i%4)}},
			})
		}
		if _, err := st.Append(int32(i/perCommit%4), recs); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Coalesce(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReplayVsKfake replays the same 200,000 MQTT-shaped records with franz-go
// from this server (merged batches) and from franz-go's in-memory kfake (seeded by a
// batching producer), both in this process, alternately in each iteration: the ratio
// shows what the server costs next to the client's own decoding.
func BenchmarkReplayVsKfake(b *testing.B) {
	const n = 200_000
	for _, codec := range []string{"none", "lz4"} {
		b.Run("codec="+codec, func(b *testing.B) {
			addr, l, cat := startServer(b)
			fillMQTTLike(b, l, cat, "r", codec, n)
			fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "r"))
			if err != nil {
				b.Fatal(err)
			}
			defer fake.Close()
			copyTopic(b, addr, fake.ListenAddrs()[0], "r", n)
			var took [2]time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for t, addr := range []string{addr, fake.ListenAddrs()[0]} {
					start := time.Now()
					replayN(b, addr, "r", n)
					took[t] += time.Since(start)
				}
			}
			b.ReportMetric(float64(n*b.N)/took[0].Seconds(), "mq-records/s")
			b.ReportMetric(float64(n*b.N)/took[1].Seconds(), "kfake-records/s")
			b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "time-vs-kfake")
		})
	}
}

func replayN(b *testing.B, addr, topic string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("replayed %d of %d: %v", got, n, err)
		}
		got += fs.NumRecords()
	}
}

// copyTopic copies n records of topic between clusters with a batching producer.
func copyTopic(b *testing.B, from, to, topic string, n int) {
	src, err := kgo.NewClient(kgo.SeedBrokers(from), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := kgo.NewClient(kgo.SeedBrokers(to), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for got := 0; got < n; {
		fs := src.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			dst.Produce(ctx, &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers}, nil)
		})
	}
	if err := dst.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
