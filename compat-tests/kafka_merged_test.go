package compattests

// Streams whose batches the server merged (issue 16), stored uncompressed or compressed
// (compression: none|lz4|zstd): once the published records sit in merged batches
// (CreateTime, compressed with the stream's codec), every client decompresses them
// itself and passes the same four checks as on batches as committed.

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaMergedStreams(t *testing.T) {
	t.Parallel()
	kcat := NeedTool(t, "kcat")
	confluent := pythonScript(t, "confluent_kafka", "confluent_client.py")
	kafkaPython := pythonScript(t, "kafka", "kafkapython_client.py")
	for codec, attr := range map[string]uint8{"none": 0, "lz4": 3, "zstd": 4} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			fx := startKafkaFixtureWith(t, ", compression: "+codec, "franz", "kcat", "confluent", "kafkapython")
			waitMerged(t, fx, attr)
			requireLibrdkafkaMsgVer2(t, fx.srv.KafkaAddr)
			for name, c := range map[string]kafkaClient{
				"franz":       franzClient{addr: fx.srv.KafkaAddr},
				"kcat":        kcatClient{bin: kcat, addr: fx.srv.KafkaAddr},
				"confluent":   scriptClient{argv: confluent, addr: fx.srv.KafkaAddr},
				"kafkapython": scriptClient{argv: kafkaPython, addr: fx.srv.KafkaAddr},
			} {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					runKafkaClient(t, fx, name, c)
				})
			}
		})
	}
}

// waitMerged waits until franz-go reads every record of the fixture's stream from a
// merged batch: CreateTime (the committer writes LogAppendTime) and compressed with
// codec attr.
func waitMerged(t *testing.T, fx *kafkaFixture, attr uint8) {
	t.Helper()
	ctx := Deadline(t, 60*time.Second)
	f := franzClient{addr: fx.srv.KafkaAddr}
	for {
		plain := 0
		for _, r := range f.rawEarliest(t, ctx, kafkaTopic) {
			if r.Attrs.CompressionType() != attr || r.Attrs.TimestampType() != 0 {
				plain++
			}
		}
		if plain == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d records still not in merged batches", plain)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rawEarliest reads topic from the start to the current end, returning kgo's records.
func (f franzClient) rawEarliest(t *testing.T, ctx context.Context, topic string) []*kgo.Record {
	t.Helper()
	end := f.endOffsets(t, ctx, topic)
	from := map[int32]kgo.Offset{}
	for p := range end {
		from[p] = kgo.NewOffset().AtStart()
	}
	cl := f.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	defer cl.Close()
	next := map[int32]int64{}
	var out []*kgo.Record
	for {
		done := true
		for p, e := range end {
			if next[p] < e {
				done = false
			}
		}
		if done {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %v", topic, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			next[r.Partition] = r.Offset + 1
		})
	}
}
