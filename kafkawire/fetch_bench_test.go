package kafkawire

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// fillMQTTLike stores n records shaped as MQTT ingest stores them (a ~60-byte JSON
// value and the four mqtt.* headers) in 4 shards, ~135 records per commit as four
// publishers produce, then merges the batches.
func fillMQTTLike(b *testing.B, tb *testBroker, name, codec string, n int) {
	b.Helper()
	st := tb.stream(b, log.StreamSpec{Name: name, Shards: 4, Compression: codec})
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
	if err := tb.l.Coalesce(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFetchMerged is the server's fetch path alone: raw Fetch requests over all
// four partitions of 200,000 merged MQTT-like records, each response read to the end
// (the client decodes only the response frame, not the records). Allocations are per
// replay of the 200,000 records: they must not grow with the record count.
func BenchmarkFetchMerged(b *testing.B) {
	const n = 200_000
	for _, codec := range []string{"none", "lz4", "zstd"} {
		b.Run("codec="+codec, func(b *testing.B) {
			tb := startBroker(b, true)
			fillMQTTLike(b, tb, "f", codec, n)
			cl, err := kgo.NewClient(kgo.SeedBrokers(tb.addr))
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next := [4]int64{}
				for got := int64(0); got < n; {
					req := kmsg.NewPtrFetchRequest()
					req.Version, req.MaxBytes, req.ReplicaID = 12, 64<<20, -1
					t := kmsg.NewFetchRequestTopic()
					t.Topic = "f"
					for p := int32(0); p < 4; p++ {
						rp := kmsg.NewFetchRequestTopicPartition()
						rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, next[p], 16<<20
						t.Partitions = append(t.Partitions, rp)
					}
					req.Topics = append(req.Topics, t)
					resp, err := req.RequestWith(ctx, cl)
					if err != nil {
						b.Fatal(err)
					}
					for _, rp := range resp.Topics[0].Partitions {
						if rp.ErrorCode != 0 {
							b.Fatalf("partition %d: error %d", rp.Partition, rp.ErrorCode)
						}
						got += rp.HighWatermark - next[rp.Partition]
						if len(rp.RecordBatches) > 0 {
							next[rp.Partition] = lastOffsetIn(rp.RecordBatches) + 1
						}
						got -= rp.HighWatermark - next[rp.Partition]
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// lastOffsetIn is the last offset of the last whole batch in a fetch's record set.
func lastOffsetIn(rs []byte) int64 {
	last := int64(-1)
	for len(rs) >= 61 {
		size := 12 + int(int32(uint32(rs[8])<<24|uint32(rs[9])<<16|uint32(rs[10])<<8|uint32(rs[11])))
		if size > len(rs) {
			break
		}
		base := int64(0)
		for _, c := range rs[:8] {
			base = base<<8 | int64(c)
		}
		delta := int32(uint32(rs[23])<<24 | uint32(rs[24])<<16 | uint32(rs[25])<<8 | uint32(rs[26]))
		last = base + int64(delta)
		rs = rs[size:]
	}
	return last
}

// BenchmarkConsumeReplayMerged is BenchmarkConsumeReplay with MQTT-shaped records in
// merged batches: a franz-go consumer replays 200,000 of them per iteration
// (MQSTREAMS_BENCH_RECORDS sets another count).
func BenchmarkConsumeReplayMerged(b *testing.B) {
	n := 200_000
	if v := os.Getenv("MQSTREAMS_BENCH_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for _, codec := range []string{"none", "lz4", "zstd"} {
		b.Run("codec="+codec, func(b *testing.B) {
			tb := startBroker(b, true)
			fillMQTTLike(b, tb, "r", codec, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cl, err := kgo.NewClient(kgo.SeedBrokers(tb.addr), kgo.ConsumeTopics("r"),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				for got := 0; got < n; {
					fs := cl.PollFetches(ctx)
					if err := ctx.Err(); err != nil {
						b.Fatalf("replayed %d of %d: %v", got, n, err)
					}
					fs.EachError(func(topic string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", topic, p, err) })
					got += fs.NumRecords()
				}
				cancel()
				cl.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
