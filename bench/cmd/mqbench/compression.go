package main

// Section 5 (part): bytes on disk per stored record with each stored-batch
// compression, and what it costs a Kafka replay.

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func (b *bench) compression() error {
	n := b.sc.replayRecords
	for _, codec := range []string{"none", "lz4", "zstd"} {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		b.setPhase("compression-" + codec)
		cfg := fmt.Sprintf("streams:\n  - {name: replay, filter: \"replay/#\", shards: 4, key: clientid, compression: %s}\n", codec)
		dir := filepath.Join(b.tmp, "compression-"+codec)
		mq, err := startMQStreamsNamed("mqstreams (compression-"+codec+")", b.bin, dir, cfg)
		if err != nil {
			return fmt.Errorf("compression %s: %w", codec, err)
		}
		b.track(mq)
		valueBytes, err := produceTelemetry(b, mq.kafkaAddr, n)
		if err != nil {
			b.release(mq)
			return fmt.Errorf("compression %s: %w", codec, err)
		}
		// Batches are merged (and compressed) in the background within about 100 ms
		// of going idle; the last merged tail is rewritten after 20 idle rounds.
		time.Sleep(3 * time.Second)
		r := CompressionResult{Codec: codec, Records: int64(n), ValueBytes: valueBytes}
		recs, bytes, d, err := franzReplay(b.ctx, mq.kafkaAddr, int64(n))
		if err != nil {
			r.Error = err.Error()
			b.errorf("replay with %s: %v", codec, err)
		} else {
			r.ReplayRecPerSec = float64(recs) / d.Seconds()
			r.ReplayMBPerSec = float64(bytes) / d.Seconds() / 1e6
		}
		b.release(mq)
		// A restart replays the WAL into tables and drops it, so what is left is what
		// the data takes at rest.
		mq2, err := startMQStreamsNamed("mqstreams (compression-"+codec+")", b.bin, dir, cfg)
		if err != nil {
			return fmt.Errorf("restart compression %s: %w", codec, err)
		}
		mq2.stop()
		r.DiskBytes = dirBytes(dir)
		r.BytesPerRecord = float64(r.DiskBytes) / float64(n)
		b.res.Compression = append(b.res.Compression, r)
		b.logf("[compression] %-4s %d telemetry records (%.0f B values): %.0f B/record on disk; franz-go replay %.0f records/s", codec, n, float64(valueBytes)/float64(n), r.BytesPerRecord, r.ReplayRecPerSec)
	}
	return nil
}

// produceTelemetry writes n records shaped like MQTT-ingested JSON telemetry (key =
// device, the mqtt.* headers, a JSON value with varying readings) by Kafka Produce,
// and returns the value bytes written.
func produceTelemetry(b *bench, addr string, n int) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("replay"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var total int64
	var perr error
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("d-%05d", i%5000)
		v := fmt.Appendf(nil, `{"device":"%s","t":%d,"temp":%.2f,"hum":%.1f,"bat":%d,"ok":true}`,
			dev, base+int64(i)*10, 15+rng.Float64()*10, 30+rng.Float64()*40, 20+rng.IntN(80))
		total += int64(len(v))
		cl.Produce(b.ctx, &kgo.Record{Key: []byte(dev), Value: v, Headers: []kgo.RecordHeader{
			{Key: "mqtt.topic", Value: []byte("plant/3/telemetry/" + dev)},
			{Key: "mqtt.qos", Value: []byte("1")},
			{Key: "mqtt.retain", Value: []byte("false")},
			{Key: "mqtt.client_id", Value: []byte(dev)},
		}}, func(_ *kgo.Record, err error) {
			if err != nil && perr == nil {
				perr = err
			}
		})
	}
	if err := cl.Flush(b.ctx); err != nil {
		return total, err
	}
	return total, perr
}
