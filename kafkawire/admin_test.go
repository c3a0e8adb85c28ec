package kafkawire

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func topicConfigMap(t *testing.T, adm *kadm.Client, ctx context.Context, topic string) map[string]*kadm.Config {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, rc.Err)
	}
	out := map[string]*kadm.Config{}
	for i := range rc.Configs {
		out[rc.Configs[i].Key] = &rc.Configs[i]
	}
	return out
}

// TestAdminTopicsKadm drives every admin API with kadm: create (with configs and
// validate_only), describe, alter both ways, grow partitions, delete records, log dirs,
// delete; produce and consume around the changes.
func TestAdminTopicsKadm(t *testing.T) {
	tb := startBroker(t, true)
	cl := tb.client(t)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// validate_only creates nothing.
	vr, err := adm.ValidateCreateTopics(ctx, 3, 1, nil, "orders")
	if err != nil || vr["orders"].Err != nil {
		t.Fatalf("validate: %v %v", err, vr["orders"].Err)
	}
	if tb.cat.Stream("orders") != nil {
		t.Fatal("validate_only created the topic")
	}

	cr, err := adm.CreateTopic(ctx, 3, -1, map[string]*string{
		"retention.ms":      kadm.StringPtr("3600000"),
		"mqtt.topic.filter": kadm.StringPtr("shop/+/orders"),
		"mqtt.key":          kadm.StringPtr("topic-level:2"),
	}, "orders")
	if err != nil || cr.NumPartitions != 3 {
		t.Fatalf("create: %+v %v", cr, err)
	}
	// A Kafka Connect style internal topic: compacted, no MQTT filter.
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "connect-offsets"); err != nil {
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
		configs map[string]*string
		topic   string
		want    error
	}{
		{"exists", 1, 1, nil, "orders", kerr.TopicAlreadyExists},
		{"bad name", 1, 1, nil, "bad name!", kerr.InvalidTopicException},
		{"dot dot", 1, 1, nil, "..", kerr.InvalidTopicException},
		{"long name", 1, 1, nil, strings.Repeat("a", 250), kerr.InvalidTopicException},
		{"replication 3", 1, 3, nil, "r3", kerr.InvalidReplicationFactor},
		{"zero partitions", 0, 1, nil, "p0", kerr.InvalidPartitions},
		{"unknown config", 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1")}, "cfg1", kerr.InvalidConfig},
		{"bad filter", 1, 1, map[string]*string{"mqtt.topic.filter": kadm.StringPtr("a/#/b")}, "cfg2", kerr.InvalidConfig},
		{"bad retention", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, "cfg3", kerr.InvalidConfig},
		{"gzip storage", 1, 1, map[string]*string{"compression.type": kadm.StringPtr("gzip")}, "cfg4", kerr.InvalidConfig},
	}
	for _, b := range bad {
		_, err := adm.CreateTopic(ctx, b.parts, b.rf, b.configs, b.topic)
		if !errors.Is(err, b.want) {
			t.Errorf("%s: %v, want %v", b.name, err, b.want)
		}
	}

	cfg := topicConfigMap(t, adm, ctx, "orders")
	if v := cfg["retention.ms"]; v.MaybeValue() != "3600000" || v.Source != kmsg.ConfigSourceDynamicTopicConfig || len(v.Synonyms) != 2 {
		t.Fatalf("retention.ms: %+v", v)
	}
	if v := cfg["mqtt.topic.filter"]; v.MaybeValue() != "shop/+/orders" {
		t.Fatalf("filter: %+v", v)
	}
	if v := cfg["retention.bytes"]; v.MaybeValue() != "-1" || v.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("retention.bytes: %+v", v)
	}

	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"compression.type": kadm.StringPtr("zstd")}, "zstd-t"); err != nil {
		t.Fatal(err)
	}
	if d, _ := tb.cat.Definition("zstd-t"); d.Compression != "zstd" || topicConfigMap(t, adm, ctx, "zstd-t")["compression.type"].MaybeValue() != "zstd" {
		t.Fatalf("compression.type: %+v", d)
	}

	// Incremental: set one, the rest stays; append a filter.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("1048576")},
		{Op: kadm.AppendConfig, Name: "mqtt.topic.filter", Value: kadm.StringPtr("shop/+/returns")},
	}, "orders")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("incremental alter: %v %+v", err, ar)
	}
	cfg = topicConfigMap(t, adm, ctx, "orders")
	if cfg["retention.bytes"].MaybeValue() != "1048576" || cfg["retention.ms"].MaybeValue() != "3600000" || cfg["mqtt.topic.filter"].MaybeValue() != "shop/+/orders,shop/+/returns" {
		t.Fatalf("after incremental: %v %v %v", cfg["retention.bytes"].MaybeValue(), cfg["retention.ms"].MaybeValue(), cfg["mqtt.topic.filter"].MaybeValue())
	}
	// A refused change changes nothing.
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("5")},
		{Op: kadm.SetConfig, Name: "mqtt.key", Value: kadm.StringPtr("nonsense(")},
	}, "orders")
	if err != nil || !errors.Is(ar[0].Err, kerr.InvalidConfig) {
		t.Fatalf("bad alter: %v %+v", err, ar)
	}
	if topicConfigMap(t, adm, ctx, "orders")["retention.bytes"].MaybeValue() != "1048576" {
		t.Fatal("refused alter half-applied")
	}
	// AlterConfigs (whole state): retention not named returns to its default, the mapping stays.
	ar, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("-1")}}, "orders")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter state: %v %+v", err, ar)
	}
	cfg = topicConfigMap(t, adm, ctx, "orders")
	if cfg["retention.ms"].MaybeValue() != "-1" || cfg["retention.bytes"].MaybeValue() != "-1" || cfg["mqtt.key"].MaybeValue() != "topic-level:2" {
		t.Fatalf("after alter state: %v %v %v", cfg["retention.ms"].MaybeValue(), cfg["retention.bytes"].MaybeValue(), cfg["mqtt.key"].MaybeValue())
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
	if r, err := adm.UpdatePartitions(ctx, 2, "orders"); err != nil || !errors.Is(r["orders"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrinking partitions: %v %+v", err, r)
	}
	pr, err := adm.UpdatePartitions(ctx, 5, "orders")
	if err != nil || pr["orders"].Err != nil {
		t.Fatalf("grow: %v %+v", err, pr)
	}
	ends, err := adm.ListEndOffsets(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 5; p++ {
		o, _ := ends.Lookup("orders", p)
		want := int64(5)
		if p >= 3 {
			want = 0
		}
		if o.Offset != want {
			t.Fatalf("partition %d end %d, want %d", p, o.Offset, want)
		}
	}
	pcl = tb.client(t, kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner())) // fresh metadata
	if err := pcl.ProduceSync(ctx, &kgo.Record{Partition: 4, Value: []byte("new")}).FirstErr(); err != nil {
		t.Fatalf("produce to a new partition: %v", err)
	}

	// DeleteRecords moves the start; the log dir shows sizes.
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 3})
	os.Add(kadm.Offset{Topic: "orders", Partition: 2, At: 99})
	dr, err := adm.DeleteRecords(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("orders", 1); r.Err != nil || r.LowWatermark != 3 {
		t.Fatalf("delete records p1: %+v", r)
	}
	if r, _ := dr.Lookup("orders", 2); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete records past the end: %+v", r)
	}
	starts, _ := adm.ListStartOffsets(ctx, "orders")
	if o, _ := starts.Lookup("orders", 1); o.Offset != 3 {
		t.Fatalf("start after delete records: %d", o.Offset)
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var p0 int64 = -1
	dirs.Each(func(d kadm.DescribedLogDir) {
		if ps, ok := d.Topics["orders"]; ok {
			p0 = ps[0].Size
		}
	})
	if p0 <= 0 {
		t.Fatalf("log dir size of orders/0: %d", p0)
	}

	// Delete: a reader then gets UNKNOWN_TOPIC_OR_PARTITION, never a hang.
	ccl := tb.client(t, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := pollN(t, ccl, 1, 30*time.Second); len(got) == 0 {
		t.Fatal("no records before delete")
	}
	dt, err := adm.DeleteTopics(ctx, "orders")
	if err != nil || dt["orders"].Err != nil {
		t.Fatalf("delete: %v %+v", err, dt)
	}
	if dt, _ := adm.DeleteTopics(ctx, "orders"); !errors.Is(dt["orders"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete again: %+v", dt["orders"])
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
