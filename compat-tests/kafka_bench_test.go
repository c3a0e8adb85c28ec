package compattests

// Kafka read benchmarks through the real server binary (go test -bench Kafka): a
// franz-go consumer replaying 1,000,000 stored records, and kcat reading 200,000 records
// from mqstreams and, for comparison, from franz-go's in-memory kfake cluster.

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	benchRecordSize = 100
	benchPartitions = 4
)

// startBenchServer starts a server with one stream "bench" on bench/# spreading
// records round robin over 4 shards, and fills it with n records of 100 bytes.
func startBenchServer(b *testing.B, n int) *Server {
	b.Helper()
	srv := StartServer(b, ServerOptions{Config: fmt.Sprintf(
		"streams:\n  - {name: bench, filter: \"bench/#\", shards: %d, key: none}\n", benchPartitions)})
	start := time.Now()
	benchFill(b, srv.MQTTAddr, n)
	fill := time.Since(start)
	b.Logf("filled %d records of %d bytes over MQTT QoS 1 in %v (%.0f records/s)", n, benchRecordSize, fill, float64(n)/fill.Seconds())
	ends, err := kadm.NewClient(benchKgo(b, srv.KafkaAddr)).ListEndOffsets(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(n) {
		b.Fatalf("stream holds %d records after every publish was acknowledged, want %d", total, n)
	}
	return srv
}

// benchFill publishes n 100-byte messages with QoS 1 from concurrent MQTT publishers,
// each keeping a window of unacknowledged publishes, and returns once all are acked
// (hence durable).
func benchFill(b *testing.B, addr string, n int) {
	b.Helper()
	const publishers, window = 16, 512
	payload := []byte(strings.Repeat("x", benchRecordSize))
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := 0; p < publishers; p++ {
		count := n / publishers
		if p < n%publishers {
			count++
		}
		opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("bench-pub-%d", p)).
			SetCleanSession(true).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second)
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("mqtt connect: %v", tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect(250)
			ring := make([]paho.Token, 0, window)
			wait := func(tok paho.Token) error {
				if !tok.WaitTimeout(60 * time.Second) {
					return fmt.Errorf("publish not acknowledged within 60s")
				}
				return tok.Error()
			}
			for i := 0; i < count; i++ {
				if len(ring) == window {
					if err := wait(ring[0]); err != nil {
						errs <- err
						return
					}
					ring = ring[1:]
				}
				ring = append(ring, c.Publish("bench/data", 1, false, payload))
			}
			for _, tok := range ring {
				if err := wait(tok); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func benchKgo(b *testing.B, addr string, opts ...kgo.Opt) *kgo.Client {
	b.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl
}

// BenchmarkKafkaReplayFranz replays 1,000,000 stored records of 100 bytes from 4
// partitions with a franz-go consumer, per iteration from the log start. The fill runs
// once, in the parent; the sub-benchmark is what b.N scales.
func BenchmarkKafkaReplayFranz(b *testing.B) {
	const n = 1_000_000
	srv := startBenchServer(b, n)
	b.Run("records=1M", func(b *testing.B) { benchFranzReplay(b, srv.KafkaAddr, n) })
}

// benchFranzReplay reads topic bench from the start until n records, b.N times.
func benchFranzReplay(b *testing.B, addr string, n int) {
	batches := &batchCounter{}
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("bench"), kgo.WithHooks(batches),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		got := 0
		for got < n {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				b.Fatalf("replay: %d of %d records: %v", got, n, err)
			}
			fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", t, p, err) })
			got += fs.NumRecords()
		}
		cancel()
		cl.Close()
	}
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(n*b.N)/elapsed, "records/s")
	b.ReportMetric(float64(n*b.N*benchRecordSize)/elapsed/1e6, "MB/s")
	b.ReportMetric(float64(n*b.N)/float64(batches.n.Load()), "records/batch")
}

// batchCounter counts the record batches a consumer decodes: stored batch size is
// what a replay's cost per record depends on most.
type batchCounter struct{ n atomic.Int64 }

func (c *batchCounter) OnFetchBatchRead(kgo.BrokerMetadata, string, int32, kgo.FetchBatchMetrics) {
	c.n.Add(1)
}

// BenchmarkKafkaRead200k times the same kcat command (and, for reference, the same
// franz-go replay) reading 200,000 records from mqstreams and from a kfake cluster
// holding the same records (same partitions, keys, values and headers).
func BenchmarkKafkaRead200k(b *testing.B) {
	const n = 200_000
	kcat := NeedTool(b, "kcat")
	srv := startBenchServer(b, n)

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fake.Close)
	benchCopy(b, srv.KafkaAddr, fake.ListenAddrs()[0], n)

	for _, target := range []struct{ name, addr string }{
		{"mqstreams", srv.KafkaAddr},
		{"kfake", fake.ListenAddrs()[0]},
	} {
		b.Run("franz/"+target.name, func(b *testing.B) { benchFranzReplay(b, target.addr, n) })
		b.Run("kcat/"+target.name, func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				cmd := exec.CommandContext(ctx, kcat, "-b", target.addr, "-C", "-t", "bench", "-o", "beginning", "-e", "-q",
					"-f", `%p %o %s\n`)
				cmd.Stdout = io.Discard
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil {
					b.Fatalf("kcat: %v\n%s", err, stderr.String())
				}
				cancel()
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(n*b.N)/elapsed, "records/s")
			b.ReportMetric(float64(n*b.N*benchRecordSize)/elapsed/1e6, "MB/s")
		})
	}
}

// benchCopy copies the n records of topic bench from one cluster to another, keeping
// partition, key, value and headers.
func benchCopy(b *testing.B, from, to string, n int) {
	b.Helper()
	src := benchKgo(b, from, kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	dst := benchKgo(b, to, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		prodErr error
		wg      sync.WaitGroup
	)
	for got := 0; got < n; {
		fs := src.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("copy: read %d of %d: %v", got, n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			wg.Add(1)
			dst.Produce(ctx, &kgo.Record{Topic: "bench", Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers},
				func(_ *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						mu.Lock()
						prodErr = err
						mu.Unlock()
					}
				})
		})
	}
	wg.Wait()
	if prodErr != nil {
		b.Fatalf("copy to kfake: %v", prodErr)
	}
}
