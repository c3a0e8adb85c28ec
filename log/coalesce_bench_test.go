package log

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// mqttLike is a record as MQTT ingest stores it: a ~60-byte JSON value and the four
// mqtt.* headers.
func mqttLike(i int) Record {
	return Record{
		Value: fmt.Appendf(nil, `{"dev":"sensor-%02d","seq":%07d,"temp":21.%d,"hum":48.%d}`, i%4, i, i%10, i%7),
		Headers: []Header{{Key: "mqtt.topic", Value: fmt.Appendf(nil, "bench/sensor-%02d", i%4)}, {Key: "mqtt.qos", Value: []byte("1")},
			{Key: "mqtt.retain", Value: []byte("false")}, {Key: "mqtt.client_id", Value: fmt.Appendf(nil, "bench-pub-%d", i%4)}},
	}
}

// BenchmarkIngestCoalesce measures what coalescing costs ingest: per iteration, 64
// writers append 21,000 MQTT-shaped records one per call (synced group commits) to a
// log that coalesces and, alternately, to one that does not; both are timed in the same
// iteration so the ratio holds on a loaded machine. With coalescing on, it also reports
// whether merging kept up: the records per shard not yet in full merged batches at the
// end, which stays under one merged batch (5,000) when it does.
func BenchmarkIngestCoalesce(b *testing.B) {
	for _, codec := range []string{"none", "lz4", "zstd"} {
		b.Run("codec="+codec, func(b *testing.B) {
			const perIter, writers = 21_000, 64
			var logs [2]*Log
			var streams [2]*Stream
			for i, disabled := range []bool{false, true} {
				l, err := Open(Options{Dir: b.TempDir(), RetentionInterval: time.Hour, Coalesce: CoalesceOptions{Disabled: disabled}})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				logs[i] = l
				streams[i], _ = l.CreateStream(StreamSpec{Name: "bench", Shards: 4, Compression: codec})
			}
			recs := make([]Record, perIter)
			for i := range recs {
				recs[i] = mqttLike(i)
			}
			var took [2]time.Duration
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for i, s := range streams {
					start := time.Now()
					var wg sync.WaitGroup
					for w := 0; w < writers; w++ {
						wg.Add(1)
						go func(w int) {
							defer wg.Done()
							for j := w; j < perIter; j += writers {
								if _, err := s.Append(int32(w%4), recs[j:j+1]); err != nil {
									b.Error(err)
									return
								}
							}
						}(w)
					}
					wg.Wait()
					took[i] += time.Since(start)
				}
			}
			b.StopTimer()
			on, off := float64(perIter*b.N)/took[0].Seconds(), float64(perIter*b.N)/took[1].Seconds()
			b.ReportMetric(on, "coalescing-records/s")
			b.ReportMetric(off, "plain-records/s")
			b.ReportMetric(1-on/off, "ingest-cost")
			lag := int64(0)
			for sh := int32(0); sh < 4; sh++ {
				sst, _ := logs[0].Stream("bench").shard(sh)
				lag += sst.hwm.Load() - sst.co.mergedTo.Load()
			}
			b.ReportMetric(float64(lag)/4, "unmerged-records/shard")
		})
	}
}

// BenchmarkStoredBytes reports the bytes 200,000 MQTT-shaped records take per record
// for each codec: as batches committed by four publishers (~135 records each), as
// merged batches, and in Pebble's tables after a full compaction (Pebble compresses its
// blocks with Snappy on top).
func BenchmarkStoredBytes(b *testing.B) {
	const n = 200_000
	for _, codec := range []string{"none", "lz4", "zstd"} {
		b.Run("codec="+codec, func(b *testing.B) {
			for it := 0; it < b.N; it++ {
				l, err := Open(Options{Dir: b.TempDir(), NoSync: true, RetentionInterval: time.Hour, Coalesce: CoalesceOptions{Disabled: true}})
				if err != nil {
					b.Fatal(err)
				}
				s, _ := l.CreateStream(StreamSpec{Name: "bench", Shards: 4, Compression: codec})
				recs := make([]Record, 0, 135)
				for i := 0; i < n; {
					recs = recs[:0]
					for j := 0; j < 135 && i < n; j, i = j+1, i+1 {
						recs = append(recs, mqttLike(i))
					}
					if _, err := s.Append(int32(i/135%4), recs); err != nil {
						b.Fatal(err)
					}
				}
				batchBytes := func() int64 {
					total := int64(0)
					for sh := int32(0); sh < 4; sh++ {
						bs, err := s.Read(sh, 0, 1<<40)
						if err != nil {
							b.Fatal(err)
						}
						for _, bt := range bs {
							total += int64(len(bt.Data))
						}
					}
					return total
				}
				committed := batchBytes()
				start := time.Now()
				if err := l.Coalesce(); err != nil {
					b.Fatal(err)
				}
				mergeTook := time.Since(start)
				merged := batchBytes()
				if err := l.db.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := l.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
					b.Fatal(err)
				}
				var tables int64
				m := l.db.Metrics()
				for _, lv := range m.Levels {
					tables += lv.TablesSize
				}
				b.ReportMetric(float64(committed)/n, "committed-B/record")
				b.ReportMetric(float64(merged)/n, "merged-B/record")
				b.ReportMetric(float64(tables)/n, "pebble-B/record")
				b.ReportMetric(float64(n)/mergeTook.Seconds(), "merge-records/s")
				_ = l.Close()
			}
		})
	}
}
