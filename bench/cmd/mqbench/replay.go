package main

// Section 2: Kafka replay of the same records from mqstreams and from kfake.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/loadgen"
)

const replayStreams = `streams:
  - {name: replay, filter: "replay/#", shards: 4, key: clientid}
`

func (b *bench) replay() error {
	b.setPhase("replay-seed")
	n := b.sc.replayRecords
	dir := filepath.Join(b.tmp, "replay")
	mq, err := startMQStreams(b.bin, dir, replayStreams)
	if err != nil {
		return err
	}
	b.track(mq)
	defer func() { b.release(mq) }()
	// Seed over MQTT, the product's real path: records carry a key and the mqtt.*
	// headers, 100-byte payloads.
	start := time.Now()
	res, err := loadgen.Run(b.ctx, loadgen.Config{
		Addr: mq.mqttAddr, QoS: 1, Publishers: 16, Messages: n, PayloadSize: 100, InFlight: 100,
		Topic: "replay/%d", ClientIDPrefix: "seed",
	})
	if err != nil {
		return fmt.Errorf("seed mqstreams: %w", err)
	}
	b.logf("[replay] seeded mqstreams with %d records over MQTT QoS 1 in %.1fs (%.0f msg/s)", res.Acked, time.Since(start).Seconds(), res.MsgPerSec())

	kf, err := startSelf("kfake")
	if err != nil {
		return err
	}
	b.track(kf)
	defer func() { b.release(kf) }()
	// Copy the very records (partition, key, headers, value) into kfake.
	start = time.Now()
	copied, err := copyRecords(b.ctx, mq.kafkaAddr, kf.kafkaAddr, n)
	if err != nil {
		return fmt.Errorf("copy to kfake: %w", err)
	}
	b.logf("[replay] copied %d records into kfake in %.1fs", copied, time.Since(start).Seconds())

	b.setPhase("replay")
	type srv struct {
		name, addr string
		p          *proc
	}
	srvs := []srv{{"mqstreams", mq.kafkaAddr, mq}, {"kfake", kf.kafkaAddr, kf}}
	for _, client := range []string{"franz-go", "kcat"} {
		runs := b.sc.replayRuns
		if client == "kcat" {
			runs = b.sc.kcatRuns
		}
		for _, s := range srvs {
			r := ReplayResult{Client: client, Broker: s.name, Runs: runs}
			var secs []float64
			var lastBytes int64
			for i := 0; i < runs; i++ {
				var recs, bytes int64
				var d time.Duration
				var err error
				if client == "franz-go" {
					// Where a replay's time goes: the client's CPU per record bounds
					// any broker's rate, and each fetch is a round trip the consumer
					// waits out (franz-go has one fetch in flight per broker).
					cli, srvCPU := selfCPUSeconds(), s.p.cpuSeconds()
					var fetches int
					recs, bytes, fetches, d, err = franzReplayFetches(b.ctx, s.addr, int64(n))
					if err == nil {
						cli, srvCPU = selfCPUSeconds()-cli, s.p.cpuSeconds()-srvCPU
						b.logf("[replay] franz-go from %-9s run %d: %9.0f records/s, %d polls, client CPU %.0f ms (%.0f records/CPU-s), broker CPU %.0f ms",
							s.name, i+1, float64(recs)/d.Seconds(), fetches, cli*1000, float64(recs)/cli, srvCPU*1000)
					}
				} else {
					recs, d, err = kcatReplay(b.ctx, s.addr, int64(n))
					bytes = recs * 100 // the payloads; kcat prints no sizes
				}
				if err != nil {
					r.Error = err.Error()
					b.errorf("replay %s from %s: %v", client, s.name, err)
					break
				}
				r.Records = recs
				secs = append(secs, d.Seconds())
				r.AllRecPerS = append(r.AllRecPerS, float64(recs)/d.Seconds())
				lastBytes = bytes
			}
			if len(secs) > 0 {
				// The median run: one slow run on a shared machine does not decide.
				sorted := append([]float64(nil), secs...)
				sort.Float64s(sorted)
				r.Seconds = sorted[len(sorted)/2]
				r.RecPerSec = float64(r.Records) / r.Seconds
				r.MBPerSec = float64(lastBytes) / r.Seconds / 1e6
			}
			b.res.Replay = append(b.res.Replay, r)
			b.logf("[replay] %-8s from %-9s %d records: %9.0f records/s %6.1f MB/s (median of %d)", client, s.name, r.Records, r.RecPerSec, r.MBPerSec, len(secs))
		}
	}

	// Footprint on disk, and start-up time with this data.
	b.setPhase("restart")
	b.release(mq)
	fp := b.footprint()
	fp.StoredRecords, fp.PayloadBytes, fp.DiskBytes = int64(n), 100, dirBytes(dir)
	fp.BytesPerRecord = float64(fp.DiskBytes) / float64(n)
	mq2, err := startMQStreams(b.bin, dir, replayStreams)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	fp.StartupSeconds, fp.StartupRecords, fp.StartupDiskBytes = mq2.ready.Seconds(), int64(n), fp.DiskBytes
	time.Sleep(time.Second)
	fp.RSSSmallIdleMB = mq2.rssMB()
	mq2.stop()
	// After the restart the WAL is replayed into tables and dropped: this is the size
	// at rest.
	fp.DiskBytes = dirBytes(dir)
	fp.BytesPerRecord = float64(fp.DiskBytes) / float64(n)
	// The generator's payload is a repeated pattern that the tables' block compression
	// all but removes: the compression section measures bytes per record instead.
	b.logf("[footprint] restart with %d records to ready %.0f ms", n, mq2.ready.Seconds()*1000)
	return nil
}

// copyRecords reads n records from src and produces them unchanged to dst.
func copyRecords(ctx context.Context, src, dst string, n int) (int, error) {
	in, err := kgo.NewClient(kgo.SeedBrokers(src), kgo.ConsumeTopics("replay"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := kgo.NewClient(kgo.SeedBrokers(dst), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	got := 0
	var perr error
	for got < n {
		fs := in.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return got, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			out.Produce(ctx, &kgo.Record{Topic: "replay", Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers},
				func(_ *kgo.Record, err error) {
					if err != nil {
						perr = err
					}
				})
		})
	}
	if err := out.Flush(ctx); err != nil {
		return got, err
	}
	return got, perr
}

// franzReplay reads every record from the start with a fresh franz-go consumer
// (default fetch settings) and returns records, key+value bytes and the time taken.
func franzReplay(ctx context.Context, addr string, n int64) (int64, int64, time.Duration, error) {
	recs, bytes, _, d, err := franzReplayFetches(ctx, addr, n)
	return recs, bytes, d, err
}

// franzReplayFetches is franzReplay that also counts the non-empty fetch responses
// (polls) the records came in.
func franzReplayFetches(ctx context.Context, addr string, n int64) (int64, int64, int, time.Duration, error) {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("replay"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var recs, bytes int64
	polls := 0
	for recs < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return recs, bytes, polls, 0, err
		}
		polls++
		fs.EachRecord(func(r *kgo.Record) {
			recs++
			bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	return recs, bytes, polls, time.Since(start), nil
}

// kcatReplay runs kcat from the beginning to the end of every partition, one output
// line per record.
func kcatReplay(ctx context.Context, addr string, n int64) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", addr, "-t", "replay", "-o", "beginning", "-e", "-q", "-f", "%o\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("kcat: %w", err)
	}
	var lines int64
	r := bufio.NewReaderSize(out, 1<<20)
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			lines++
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return lines, 0, fmt.Errorf("kcat: %w: %s", err, firstLine(stderr.String()))
	}
	d := time.Since(start)
	if lines != n {
		return lines, d, fmt.Errorf("kcat read %d records, want %d", lines, n)
	}
	return lines, d, nil
}
