package compattests

// sarama's producer at the Kafka versions (and so Produce versions and message formats)
// that older applications pin, with every codec: v0/v1 message sets, magic 1 with
// xerial-framed snappy, record batches with an idempotent producer.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestSaramaProduceVersions(t *testing.T) {
	cases := []struct {
		version sarama.KafkaVersion
		codec   sarama.CompressionCodec
	}{
		{sarama.V2_1_0_0, sarama.CompressionNone},   // Produce v7, record batches
		{sarama.V2_1_0_0, sarama.CompressionSnappy}, // xerial-framed snappy
		{sarama.V2_1_0_0, sarama.CompressionZSTD},
		{sarama.V0_10_0_0, sarama.CompressionGZIP}, // Produce v2, magic 1 message sets
		{sarama.V0_10_0_0, sarama.CompressionLZ4},
		{sarama.V0_10_0_0, sarama.CompressionSnappy},
		{sarama.V0_9_0_0, sarama.CompressionNone}, // Produce v1, magic 0
		{sarama.V0_9_0_0, sarama.CompressionGZIP},
	}
	var cfg strings.Builder
	cfg.WriteString("streams:\n")
	for i := range cases {
		fmt.Fprintf(&cfg, "  - {name: sarama%d, filter: \"sarama%d/#\", shards: 2}\n", i, i)
	}
	srv := StartServer(t, ServerOptions{Config: cfg.String()})
	for i, tc := range cases {
		topic := fmt.Sprintf("sarama%d", i)
		t.Run(tc.version.String()+"/"+tc.codec.String(), func(t *testing.T) {
			c := sarama.NewConfig()
			c.Version = tc.version
			c.Producer.Return.Successes = true
			c.Producer.RequiredAcks = sarama.WaitForAll
			c.Producer.Partitioner = sarama.NewManualPartitioner
			c.Producer.Compression = tc.codec
			headers := tc.version.IsAtLeast(sarama.V0_11_0_0)
			if headers {
				c.Producer.Idempotent = true
				c.Net.MaxOpenRequests = 1
			}
			prod, err := sarama.NewSyncProducer([]string{srv.KafkaAddr}, c)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			type at struct {
				p   int32
				off int64
			}
			want := map[at]string{}
			for i := range 10 {
				value := strings.Repeat(fmt.Sprint("sarama value ", i, " "), 5)
				msg := &sarama.ProducerMessage{
					Topic: topic, Partition: int32(i % 2),
					Key:   sarama.StringEncoder(fmt.Sprint("k", i)),
					Value: sarama.StringEncoder(value),
				}
				if headers {
					msg.Headers = []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(fmt.Sprint(i))}}
				}
				p, off, err := prod.SendMessage(msg)
				if err != nil {
					t.Fatal(err)
				}
				w := fmt.Sprintf("k%d=%s", i, value)
				if headers {
					w += fmt.Sprintf(" h=%d", i)
				}
				want[at{p, off}] = w
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx := Deadline(t, 60*time.Second)
			got := 0
			for got < len(want) {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("read back %d of %d records", got, len(want))
				}
				fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %d: %v", p, err) })
				fs.EachRecord(func(r *kgo.Record) {
					got++
					s := fmt.Sprintf("%s=%s", r.Key, r.Value)
					for _, h := range r.Headers {
						s += fmt.Sprintf(" %s=%s", h.Key, h.Value)
					}
					if w := want[at{r.Partition, r.Offset}]; w != s {
						t.Errorf("%d/%d: %s, want %s", r.Partition, r.Offset, s, w)
					}
				})
			}
		})
	}
}
