package main

// Section 5 (part): memory and start-up time with a large amount of data stored.

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const storedStreams = `streams:
  - {name: stored, filter: "stored/#", shards: 4, key: none}
`

func (b *bench) stored() error {
	b.setPhase("stored-idle")
	dir := filepath.Join(b.tmp, "stored")
	mq, err := startMQStreamsNamed("mqstreams (stored)", b.bin, dir, storedStreams)
	if err != nil {
		return err
	}
	b.track(mq)
	defer func() { b.release(mq) }()
	time.Sleep(time.Second)
	fp := b.footprint()
	fp.RSSEmptyMB = mq.rssMB()

	b.setPhase("stored-fill")
	cl, err := kgo.NewClient(kgo.SeedBrokers(mq.kafkaAddr), kgo.DefaultProduceTopic("stored"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedBytes(64<<20), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	// 1,024 distinct random values: nothing for block compression to find.
	const valueSize = 1000
	values := make([][]byte, 1024)
	rng := rand.NewChaCha8([32]byte{1})
	for i := range values {
		values[i] = make([]byte, valueSize)
		_, _ = rng.Read(values[i])
	}
	start := time.Now()
	var produced int64
	var perr error
	nextLog := int64(1 << 30)
	for i := 0; produced < b.sc.storedBytes; i++ {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		cl.Produce(b.ctx, &kgo.Record{Value: values[i%len(values)]}, func(_ *kgo.Record, err error) {
			if err != nil && perr == nil {
				perr = err
			}
		})
		produced += valueSize
		if produced >= nextLog {
			b.logf("[stored] %.1f GB produced (%.0f MB/s)", float64(produced)/1e9, float64(produced)/1e6/time.Since(start).Seconds())
			nextLog += 1 << 30
		}
	}
	if err := cl.Flush(b.ctx); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("produce: %w", perr)
	}
	fill := time.Since(start)
	cl.Close()
	b.mu.Lock()
	for _, s := range b.res.RSS {
		if s.Broker == mq.name && s.Phase == "stored-fill" && s.MB > fp.RSSFillMaxMB {
			fp.RSSFillMaxMB = s.MB
		}
	}
	b.mu.Unlock()
	b.setPhase("stored-restart")
	b.release(mq)
	fp.StoredBytesDisk = dirBytes(dir)
	fp.StoredValueBytes = produced
	mq2, err := startMQStreamsNamed("mqstreams (stored)", b.bin, dir, storedStreams)
	if err != nil {
		return fmt.Errorf("restart with %d GB: %w", produced>>30, err)
	}
	mq = b.track(mq2)
	time.Sleep(time.Second)
	fp.StoredStartupSeconds = mq2.ready.Seconds()
	fp.RSSStoredIdleMB = mq2.rssMB()
	b.logf("[stored] %.1f GB of 1000 B values in %.0fs (%.0f MB/s, RSS max %.0f MB); %.1f GB on disk; restart to ready %.0f ms; idle RSS %.0f MB (empty: %.0f MB)",
		float64(produced)/1e9, fill.Seconds(), float64(produced)/1e6/fill.Seconds(), fp.RSSFillMaxMB,
		float64(fp.StoredBytesDisk)/1e9, fp.StoredStartupSeconds*1000, fp.RSSStoredIdleMB, fp.RSSEmptyMB)
	return nil
}
