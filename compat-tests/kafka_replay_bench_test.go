package compattests

// Replay of MQTT-ingested data through the binary (issue 16): four mosquitto_pub -l
// publishers send JSON records of ~60 bytes with QoS 1, the way devices do, then a
// franz-go consumer and kcat replay the stream from the start, each run timed against
// the same client reading the same records from franz-go's in-memory kfake, seeded by a
// batching producer. Both are timed in the same iteration, alternately, so the ratio
// holds on a loaded machine even when the absolute figures do not.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkKafkaReplayMQTT: records=200k and 1M, codec none, lz4 and zstd.
func BenchmarkKafkaReplayMQTT(b *testing.B) {
	mosq := NeedTool(b, "mosquitto_pub")
	kcat := NeedTool(b, "kcat")
	for _, n := range []int{200_000, 1_000_000} {
		for _, codec := range []string{"none", "lz4", "zstd"} {
			b.Run(fmt.Sprintf("records=%dk/codec=%s", n/1000, codec), func(b *testing.B) {
				srv := StartServer(b, ServerOptions{Config: fmt.Sprintf(
					"streams:\n  - {name: bench, filter: \"bench/#\", shards: %d, key: none, compression: %s}\n", benchPartitions, codec)})
				start := time.Now()
				mosquittoFill(b, mosq, srv.MQTTAddr, n)
				fill := time.Since(start)
				ends, err := kadm.NewClient(benchKgo(b, srv.KafkaAddr)).ListEndOffsets(context.Background(), "bench")
				if err != nil {
					b.Fatal(err)
				}
				total := int64(0)
				ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
				if total != int64(n) {
					b.Fatalf("stream holds %d records after every publish was acknowledged, want %d", total, n)
				}
				// The first read right after ingest, before kfake exists: what
				// coalescing has done by then is what it gets.
				var firstBatches replayCounter
				first := franzReplayOnce(b, srv.KafkaAddr, n, &firstBatches)
				second := franzReplayOnce(b, srv.KafkaAddr, n, nil)
				b.Logf("ingest %d JSON records over MQTT (4 x mosquitto_pub -l, QoS 1): %v (%.0f records/s); first replay %v (%.0f records/s), second %v (%.0f records/s)",
					n, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), first.Round(time.Millisecond), float64(n)/first.Seconds(),
					second.Round(time.Millisecond), float64(n)/second.Seconds())
				b.Logf("first replay: %.0f records/batch; after coalescing: %s", float64(n)/float64(firstBatches.batches.Load()), storedSize(b, srv, n))

				fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, "bench"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(fake.Close)
				benchCopy(b, srv.KafkaAddr, fake.ListenAddrs()[0], n)
				targets := [2]string{srv.KafkaAddr, fake.ListenAddrs()[0]}

				b.Run("franz", func(b *testing.B) {
					var took [2]time.Duration
					var batches [2]replayCounter
					for i := 0; i < b.N; i++ {
						for t := range targets {
							took[t] += franzReplayOnce(b, targets[t], n, &batches[t])
						}
					}
					reportPair(b, n, took)
					b.ReportMetric(float64(n*b.N)/float64(batches[0].batches.Load()), "mq-records/batch")
					b.ReportMetric(float64(n*b.N)/float64(batches[1].batches.Load()), "kfake-records/batch")
					b.ReportMetric(float64(batches[0].bytes.Load())/float64(n*b.N), "mq-batch-bytes/record")
				})
				b.Run("kcat", func(b *testing.B) {
					var took [2]time.Duration
					for i := 0; i < b.N; i++ {
						for t := range targets {
							took[t] += kcatReplayOnce(b, kcat, targets[t])
						}
					}
					reportPair(b, n, took)
				})
			})
		}
	}
}

// reportPair reports both targets' speed and mqstreams' time as a fraction of kfake's.
func reportPair(b *testing.B, n int, took [2]time.Duration) {
	b.ReportMetric(float64(n*b.N)/took[0].Seconds(), "mq-records/s")
	b.ReportMetric(float64(n*b.N)/took[1].Seconds(), "kfake-records/s")
	b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "time-vs-kfake")
}

// franzReplayOnce reads topic bench from the start until n records and returns how long
// it took, client start-up included.
func franzReplayOnce(b *testing.B, addr string, n int, batches *replayCounter) time.Duration {
	b.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics("bench"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64 << 20), kgo.FetchMaxPartitionBytes(16 << 20)}
	if batches != nil {
		opts = append(opts, kgo.WithHooks(batches))
	}
	start := time.Now()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("replay: %d of %d records: %v", got, n, err)
		}
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", t, p, err) })
		got += fs.NumRecords()
	}
	return time.Since(start)
}

func kcatReplayOnce(b *testing.B, kcat, addr string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, kcat, "-b", addr, "-C", "-t", "bench", "-o", "beginning", "-e", "-q", "-f", `%p %o %s\n`)
	cmd.Stdout = io.Discard
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("kcat: %v\n%s", err, stderr.String())
	}
	return time.Since(start)
}

// mosquittoFill publishes n JSON records of ~60 bytes with QoS 1 from four concurrent
// publishers, each a mosquitto_pub -l (one message per stdin line), returning when all
// exited (every publish acknowledged). A publisher sends its share in runs of at most
// 50,000 lines: mosquitto_pub 2.0 -l stops at the first PUBACK whose packet id equals
// its last message's, so past 65,535 queued messages it exits early, losing the rest.
func mosquittoFill(b *testing.B, mosq, addr string, n int) {
	b.Helper()
	host, port := SplitAddr(b, addr)
	const publishers, run = 4, 50_000
	errs := make(chan error, publishers)
	for p := 0; p < publishers; p++ {
		go func() {
			var lines strings.Builder
			for from := p; from < n; from += publishers * run {
				lines.Reset()
				for i := from; i < n && i < from+publishers*run; i += publishers {
					fmt.Fprintf(&lines, `{"dev":"sensor-%02d","seq":%07d,"temp":21.%d,"hum":48.%d}`+"\n", p, i, i%10, i%7)
				}
				cmd := exec.Command(mosq, "-h", host, "-p", port, "-q", "1", "-i", fmt.Sprintf("bench-pub-%d", p), "-t", fmt.Sprintf("bench/sensor-%02d", p), "-l")
				cmd.Stdin = strings.NewReader(lines.String())
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("mosquitto_pub: %v\n%s", err, out)
					return
				}
			}
			errs <- nil
		}()
	}
	for p := 0; p < publishers; p++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

// replayCounter counts the record batches a consumer decodes and their bytes as
// fetched (compressed, as stored).
type replayCounter struct{ batches, bytes atomic.Int64 }

func (c *replayCounter) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	c.batches.Add(1)
	c.bytes.Add(int64(m.CompressedBytes))
}

// storedSize waits until the server has merged what it stores (a replay finds one
// batch per 4,000 records or fewer), then describes the stored batch bytes per record
// and the data directory's size (WAL included).
func storedSize(b *testing.B, srv *Server, n int) string {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	var c replayCounter
	for {
		c = replayCounter{}
		franzReplayOnce(b, srv.KafkaAddr, n, &c)
		if c.batches.Load()*4000 <= int64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var dir int64
	_ = filepath.Walk(srv.DataDir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			dir += fi.Size()
		}
		return nil
	})
	return fmt.Sprintf("%.0f records/batch, %.1f batch bytes/record, data dir %.1f bytes/record",
		float64(n)/float64(c.batches.Load()), float64(c.bytes.Load())/float64(n), float64(dir)/float64(n))
}
