package kafkawire

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAdminTopics drives every admin API (kmsg requests through franz-go; kadm itself
// runs against the binary in compat-tests): create (with configs and validate_only),
// describe, alter both ways, grow partitions, delete records, log dirs, delete; produce
// and consume around the changes.
func TestAdminTopics(t *testing.T) {
	tb := startBroker(t, true)
	cl := tb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// validate_only creates nothing.
	if _, err := createTopic(t, ctx, cl, true, 3, 1, nil, "orders"); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if tb.cat.Stream("orders") != nil {
		t.Fatal("validate_only created the topic")
	}

	cr, err := createTopic(t, ctx, cl, false, 3, -1, map[string]string{
		"retention.ms":      "3600000",
		"mqtt.topic.filter": "shop/+/orders",
		"mqtt.key":          "topic-level:2",
	}, "orders")
	if err != nil || cr.NumPartitions != 3 {
		t.Fatalf("create: %+v %v", cr, err)
	}
	// A Kafka Connect style internal topic: compacted, no MQTT filter.
	if _, err := createTopic(t, ctx, cl, false, 1, 1, map[string]string{"cleanup.policy": "compact"}, "connect-offsets"); err != nil {
		t.Fatal(err)
	}
	if d, ok := tb.cat.Definition("connect-offsets"); !ok || !d.LastValue || len(d.Filters) != 0 {
		t.Fatalf("connect-offsets: %+v", d)
	}
	// Kafka producers write it; consumers read it back.
	kcl := tb.client(t, kgo.DefaultProduceTopic("connect-offsets"))
	if err := kcl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("offset-1")}).FirstErr(); err != nil {
		t.Fatalf("produce to a Kafka-only topic: %v", err)
	}
	rcl := tb.client(t, kgo.ConsumeTopics("connect-offsets"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := pollN(t, rcl, 1, 30*time.Second); string(got[0].Value) != "offset-1" {
		t.Fatalf("read back %q", got[0].Value)
	}

	bad := []struct {
		name    string
		parts   int32
		rf      int16
		configs map[string]string
		topic   string
		want    error
	}{
		{"exists", 1, 1, nil, "orders", kerr.TopicAlreadyExists},
		{"bad name", 1, 1, nil, "bad name!", kerr.InvalidTopicException},
		{"dot dot", 1, 1, nil, "..", kerr.InvalidTopicException},
		{"long name", 1, 1, nil, strings.Repeat("a", 250), kerr.InvalidTopicException},
		{"replication 3", 1, 3, nil, "r3", kerr.InvalidReplicationFactor},
		{"zero partitions", 0, 1, nil, "p0", kerr.InvalidPartitions},
		{"unknown config", 1, 1, map[string]string{"segment.bytes": "1"}, "cfg1", kerr.InvalidConfig},
		{"bad filter", 1, 1, map[string]string{"mqtt.topic.filter": "a/#/b"}, "cfg2", kerr.InvalidConfig},
		{"bad retention", 1, 1, map[string]string{"retention.ms": "soon"}, "cfg3", kerr.InvalidConfig},
		{"gzip storage", 1, 1, map[string]string{"compression.type": "gzip"}, "cfg4", kerr.InvalidConfig},
	}
	for _, b := range bad {
		_, err := createTopic(t, ctx, cl, false, b.parts, b.rf, b.configs, b.topic)
		if !errors.Is(err, b.want) {
			t.Errorf("%s: %v, want %v", b.name, err, b.want)
		}
	}

	cfg := describeTopic(t, ctx, cl, "orders")
	if v := cfg.configs["retention.ms"]; cfg.value("retention.ms") != "3600000" || v.Source != kmsg.ConfigSourceDynamicTopicConfig || len(v.ConfigSynonyms) != 2 {
		t.Fatalf("retention.ms: %+v", v)
	}
	if v := cfg.value("mqtt.topic.filter"); v != "shop/+/orders" {
		t.Fatalf("filter: %+v", v)
	}
	if v := cfg.configs["retention.bytes"]; cfg.value("retention.bytes") != "-1" || v.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("retention.bytes: %+v", v)
	}

	if _, err := createTopic(t, ctx, cl, false, 1, 1, map[string]string{"compression.type": "zstd"}, "zstd-t"); err != nil {
		t.Fatal(err)
	}
	if d, _ := tb.cat.Definition("zstd-t"); d.Compression != "zstd" || describeTopic(t, ctx, cl, "zstd-t").value("compression.type") != "zstd" {
		t.Fatalf("compression.type: %+v", d)
	}

	// Incremental: set one, the rest stays; append a filter.
	if err := alterIncremental(t, ctx, cl, "orders",
		alterOp{kmsg.IncrementalAlterConfigOpSet, "retention.bytes", "1048576"},
		alterOp{kmsg.IncrementalAlterConfigOpAppend, "mqtt.topic.filter", "shop/+/returns"},
	); err != nil {
		t.Fatalf("incremental alter: %v", err)
	}
	cfg = describeTopic(t, ctx, cl, "orders")
	if cfg.value("retention.bytes") != "1048576" || cfg.value("retention.ms") != "3600000" || cfg.value("mqtt.topic.filter") != "shop/+/orders,shop/+/returns" {
		t.Fatalf("after incremental: %v %v %v", cfg.value("retention.bytes"), cfg.value("retention.ms"), cfg.value("mqtt.topic.filter"))
	}
	// A refused change changes nothing.
	if err := alterIncremental(t, ctx, cl, "orders",
		alterOp{kmsg.IncrementalAlterConfigOpSet, "retention.bytes", "5"},
		alterOp{kmsg.IncrementalAlterConfigOpSet, "mqtt.key", "nonsense("},
	); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("bad alter: %v", err)
	}
	if describeTopic(t, ctx, cl, "orders").value("retention.bytes") != "1048576" {
		t.Fatal("refused alter half-applied")
	}
	// AlterConfigs (whole state): retention not named returns to its default, the mapping stays.
	if err := alterState(t, ctx, cl, "orders", map[string]string{"retention.ms": "-1"}); err != nil {
		t.Fatalf("alter state: %v", err)
	}
	cfg = describeTopic(t, ctx, cl, "orders")
	if cfg.value("retention.ms") != "-1" || cfg.value("retention.bytes") != "-1" || cfg.value("mqtt.key") != "topic-level:2" {
		t.Fatalf("after alter state: %v %v %v", cfg.value("retention.ms"), cfg.value("retention.bytes"), cfg.value("mqtt.key"))
	}

	// Produce, grow, produce again: old records keep their partition.
	pcl := tb.client(t, kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 3; p++ {
		for i := 0; i < 5; i++ {
			if err := pcl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := createPartitions(t, ctx, cl, 2, "orders"); !errors.Is(err, kerr.InvalidPartitions) {
		t.Fatalf("shrinking partitions: %v", err)
	}
	if err := createPartitions(t, ctx, cl, 5, "orders"); err != nil {
		t.Fatalf("grow: %v", err)
	}
	ends, err := listOffsets(t, ctx, cl, "orders", atEnd)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 5; p++ {
		o := ends[p]
		want := int64(5)
		if p >= 3 {
			want = 0
		}
		if o.err != nil || o.offset != want {
			t.Fatalf("partition %d end %d (%v), want %d", p, o.offset, o.err, want)
		}
	}
	pcl = tb.client(t, kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner())) // fresh metadata
	if err := pcl.ProduceSync(ctx, &kgo.Record{Partition: 4, Value: []byte("new")}).FirstErr(); err != nil {
		t.Fatalf("produce to a new partition: %v", err)
	}

	// DeleteRecords moves the start; the log dir shows sizes.
	dr := deleteRecords(t, ctx, cl, "orders", map[int32]int64{1: 3, 2: 99})
	if r := dr[1]; r.err != nil || r.lowWatermark != 3 {
		t.Fatalf("delete records p1: %+v", r)
	}
	if r := dr[2]; !errors.Is(r.err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete records past the end: %+v", r)
	}
	starts, _ := listOffsets(t, ctx, cl, "orders", atStart)
	if o := starts[1]; o.offset != 3 {
		t.Fatalf("start after delete records: %d", o.offset)
	}
	p0, ok := logDirSizes(t, ctx, cl)["orders"][0]
	if !ok || p0 <= 0 {
		t.Fatalf("log dir size of orders/0: %d", p0)
	}

	// Delete: a reader then gets UNKNOWN_TOPIC_OR_PARTITION, never a hang.
	ccl := tb.client(t, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := pollN(t, ccl, 1, 30*time.Second); len(got) == 0 {
		t.Fatal("no records before delete")
	}
	if err := deleteTopics(t, ctx, cl, "orders")["orders"]; err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := deleteTopics(t, ctx, cl, "orders")["orders"]; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete again: %v", err)
	}
	f := kmsg.NewPtrFetchRequest()
	f.Version = 11
	f.MaxWaitMillis = 100
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "orders"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	fr, err := f.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := fr.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("fetch of a deleted topic: %v", kerr.ErrorForCode(code))
	}
	if tb.l.Stream("orders") != nil {
		t.Fatal("log still has the stream")
	}
}
