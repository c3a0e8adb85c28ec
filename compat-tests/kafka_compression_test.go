package compattests

// Streams stored compressed (compression: lz4|zstd): once the server has merged the
// published records into compressed batches, every client decompresses them itself and
// passes the same four checks as on an uncompressed stream.

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaCompressedStreams(t *testing.T) {
	t.Parallel()
	kcat := NeedTool(t, "kcat")
	confluent := pythonScript(t, "confluent_kafka", "confluent_client.py")
	kafkaPython := pythonScript(t, "kafka", "kafkapython_client.py")
	for codec, attr := range map[string]uint8{"lz4": 3, "zstd": 4} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			fx := startKafkaFixtureWith(t, ", compression: "+codec, "franz", "kcat", "confluent", "kafkapython")
			waitCompressed(t, fx, attr)
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

// waitCompressed waits until franz-go reads every record of the fixture's stream from
// a batch compressed with codec attr, that is until the server has merged them all.
func waitCompressed(t *testing.T, fx *kafkaFixture, attr uint8) {
	t.Helper()
	ctx := Deadline(t, 60*time.Second)
	f := franzClient{addr: fx.srv.KafkaAddr}
	for {
		plain := 0
		for _, r := range f.rawEarliest(t, ctx, kafkaTopic) {
			if r.Attrs.CompressionType() != attr {
				plain++
			}
		}
		if plain == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d records still not in compressed batches", plain)
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
