package kafkawire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// testBroker is a real Server on 127.0.0.1:0 over a real log in a temp dir.
type testBroker struct {
	s     *Server
	l     *log.Log
	cat   *mapping.Catalog
	addr  string
	clock atomic.Int64 // µs since the epoch; 0 means the real clock
	reg   *prometheus.Registry
}

func startBroker(t testing.TB, noSync bool) *testBroker {
	t.Helper()
	return startBrokerWith(t, noSync, Config{})
}

// startBrokerWith starts a broker with cfg (its address is always 127.0.0.1:0).
func startBrokerWith(t testing.TB, noSync bool, cfg Config) *testBroker {
	t.Helper()
	tb := &testBroker{reg: prometheus.NewRegistry()}
	l, err := log.Open(log.Options{
		Dir:               t.TempDir(),
		Logger:            zerolog.Nop(),
		NoSync:            noSync,
		RetentionInterval: time.Hour, // tests apply retention themselves
		Now: func() time.Time {
			if us := tb.clock.Load(); us != 0 {
				return time.UnixMicro(us)
			}
			return time.Now()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := mapping.OpenCatalog(l)
	if err != nil {
		t.Fatal(err)
	}
	tb.cat = cat
	cfg.Addr = "127.0.0.1:0"
	s, err := New(Options{Config: cfg, Log: l, Catalog: cat, Logger: zerolog.Nop(), Registerer: tb.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		_ = l.Close()
	})
	tb.s, tb.l, tb.addr = s, l, s.Addr().String()
	return tb
}

func (tb *testBroker) stream(t testing.TB, spec log.StreamSpec) *log.Stream {
	t.Helper()
	d, err := mapping.DefinitionFromSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.s.cat.Create(d, false); err != nil {
		t.Fatal(err)
	}
	return tb.l.Stream(spec.Name)
}

func appendRecs(t testing.TB, st *log.Stream, shard int32, recs ...log.Record) log.AppendResult {
	t.Helper()
	res, err := st.Append(shard, recs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (tb *testBroker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tb.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// pollN polls until n records arrived or the deadline passes.
func pollN(t testing.TB, cl *kgo.Client, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records before the deadline", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("fetch %s/%d: %v", topic, p, err)
			}
		})
		out = append(out, fs.Records()...)
	}
	return out
}

func TestConsumeFromEarliest(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "sensors", Shards: 2})
	type sent struct {
		rec log.Record
		res log.AppendResult
	}
	want := map[string]sent{}
	for i := 0; i < 20; i++ {
		shard := int32(i % 2)
		r := log.Record{
			Key:   []byte(fmt.Sprintf("dev-%d", i)),
			Value: []byte(fmt.Sprintf(`{"t":%d}`, i)),
			Headers: []log.Header{
				{Key: "mqtt.topic", Value: []byte(fmt.Sprintf("sensors/dev-%d/t", i))},
				{Key: "mqtt.qos", Value: []byte("1")},
				{Key: "dup", Value: []byte("a")},
				{Key: "dup", Value: []byte("b")},
			},
		}
		if i == 7 {
			r.Value = []byte{} // an empty MQTT payload stays an empty value
		}
		res := appendRecs(t, st, shard, r)
		want[string(r.Key)] = sent{r, res}
	}
	cl := tb.client(t, kgo.ConsumeTopics("sensors"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := pollN(t, cl, 20, 30*time.Second)
	if len(got) != 20 {
		t.Fatalf("got %d records, want 20", len(got))
	}
	for _, r := range got {
		w, ok := want[string(r.Key)]
		if !ok {
			t.Fatalf("unexpected record key %q", r.Key)
		}
		if string(r.Value) != string(w.rec.Value) {
			t.Errorf("%s: value %q, want %q", r.Key, r.Value, w.rec.Value)
		}
		if r.Partition != int32(0) && r.Partition != 1 || r.Offset != w.res.BaseOffset {
			t.Errorf("%s: at %d/%d, want offset %d", r.Key, r.Partition, r.Offset, w.res.BaseOffset)
		}
		if len(r.Headers) != len(w.rec.Headers) {
			t.Fatalf("%s: %d headers, want %d", r.Key, len(r.Headers), len(w.rec.Headers))
		}
		for i, h := range r.Headers {
			if h.Key != w.rec.Headers[i].Key || string(h.Value) != string(w.rec.Headers[i].Value) {
				t.Errorf("%s: header %d = %s:%s, want %s:%s", r.Key, i, h.Key, h.Value, w.rec.Headers[i].Key, w.rec.Headers[i].Value)
			}
		}
		// LogAppendTime as appended; CreateTime once the background merge took the
		// batches into one (log/coalesce.go: each record keeps its own append time),
		// which it may do before this fetch (CI, load ~2).
		if typ := r.Attrs.TimestampType(); typ != 1 && typ != 0 {
			t.Errorf("%s: timestamp type %d, want 1 (LogAppendTime) or 0 (merged)", r.Key, typ)
		}
		if r.Timestamp.UnixMilli() != w.res.TimestampUS/1000 {
			t.Errorf("%s: timestamp %d, want %d", r.Key, r.Timestamp.UnixMilli(), w.res.TimestampUS/1000)
		}
	}
}

func TestConsumeFromLatestLongPoll(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "events", Shards: 1})
	appendRecs(t, st, 0, log.Record{Key: []byte("old"), Value: []byte("before")})

	// Once a Fetch has been written, the consumer has resolved "latest" and is
	// long polling: anything appended now must be delivered, and with a 60s
	// max wait only the append notification can deliver it before the deadline.
	fetching := make(chan struct{})
	var once atomic.Bool
	hook := fetchWriteHook(func() {
		if once.CompareAndSwap(false, true) {
			close(fetching)
		}
	})
	cl := tb.client(t, kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(60*time.Second), kgo.WithHooks(hook))
	got := make(chan []*kgo.Record, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			fs := cl.PollFetches(ctx)
			if recs := fs.Records(); len(recs) > 0 || ctx.Err() != nil {
				got <- recs
				return
			}
		}
	}()
	select {
	case <-fetching:
	case <-time.After(30 * time.Second):
		t.Fatal("consumer never fetched")
	}
	appendRecs(t, st, 0, log.Record{Key: []byte("new"), Value: []byte("after")})
	recs := <-got
	if len(recs) != 1 || string(recs[0].Key) != "new" || recs[0].Offset != 1 {
		t.Fatalf("got %v, want the one record appended after the consumer started", recs)
	}
}

// fetchWriteHook calls fn whenever the client writes a Fetch request.
type fetchWriteHook func()

func (h fetchWriteHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		h()
	}
}

func TestListOffsets(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "times", Shards: 2})
	const t1, t2 = int64(1_700_000_000_000_000), int64(1_700_000_100_000_000) // µs
	tb.clock.Store(t1)
	appendRecs(t, st, 0, log.Record{Value: []byte("a")}, log.Record{Value: []byte("b")}, log.Record{Value: []byte("c")})
	tb.clock.Store(t2)
	appendRecs(t, st, 0, log.Record{Value: []byte("d")}, log.Record{Value: []byte("e")})
	tb.clock.Store(0)

	cl := tb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(name string, ts int64, want map[int32][2]int64) {
		t.Helper()
		lo, err := listOffsets(t, ctx, cl, "times", ts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for p, w := range want {
			o, ok := lo[p]
			if !ok || o.err != nil {
				t.Fatalf("%s: partition %d: %+v", name, p, o)
			}
			if o.offset != w[0] || o.timestamp != w[1] {
				t.Errorf("%s: partition %d: offset %d ts %d, want offset %d ts %d", name, p, o.offset, o.timestamp, w[0], w[1])
			}
		}
	}
	check("start", atStart, map[int32][2]int64{0: {0, -1}, 1: {0, -1}})
	check("end", atEnd, map[int32][2]int64{0: {5, -1}, 1: {0, -1}})
	check("at t1", t1/1000, map[int32][2]int64{0: {0, t1 / 1000}})
	// First offset at or after the time, not the last before it (docs/mapping.md, Kafka pitfall 1).
	check("after t1", t1/1000+1, map[int32][2]int64{0: {3, t2 / 1000}})
	// Past every record: -1, -1 as Kafka answers (kadm turns that into the end offset).
	check("after all", t2/1000+1, map[int32][2]int64{0: {-1, -1}, 1: {-1, -1}})
	check("max timestamp", atMaxTimestamp, map[int32][2]int64{0: {4, t2 / 1000}, 1: {-1, -1}})
}

func TestUnknownTopic(t *testing.T) {
	tb := startBroker(t, false)
	cl := tb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "nope"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = atEnd
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.Version = 7
	// Straight to the broker: franz-go would refuse to route a topic it has no metadata for.
	lo := dialRaw(t, tb.addr).roundTrip(req).(*kmsg.ListOffsetsResponse)
	if len(lo.Topics) != 1 || len(lo.Topics[0].Partitions) != 1 || lo.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("list offsets of an unknown topic: %+v, want UNKNOWN_TOPIC_OR_PARTITION", lo.Topics)
	}
	if _, err := topicPartitions(t, ctx, cl, "nope"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("metadata of an unknown topic: %v", err)
	}
}

func TestRetentionEmptiedTopic(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "short", Shards: 2, Retention: log.Retention{MaxAge: time.Minute}})
	now := time.Now().UnixMicro()
	tb.clock.Store(now)
	for i := 0; i < 4; i++ {
		appendRecs(t, st, int32(i%2), log.Record{Value: []byte("x")})
	}
	tb.clock.Store(now + time.Hour.Microseconds())
	tb.l.ApplyRetention()

	cl := tb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := topicPartitions(t, ctx, cl, "short")
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if n != 2 {
		t.Fatalf("%d partitions listed, want 2", n)
	}
	starts, err := listOffsets(t, ctx, cl, "short", atStart)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := listOffsets(t, ctx, cl, "short", atEnd)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		s, e := starts[p], ends[p]
		if s.err != nil || e.err != nil || s.offset != 2 || e.offset != 2 {
			t.Errorf("partition %d: start %+v end %+v, want both 2", p, s, e)
		}
	}
}

func TestBatchLargerThanPartitionMaxBytes(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "big", Shards: 1})
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i)
	}
	appendRecs(t, st, 0, log.Record{Value: big}, log.Record{Value: big}, log.Record{Value: big})
	appendRecs(t, st, 0, log.Record{Value: []byte("small")})
	cl := tb.client(t, kgo.ConsumeTopics("big"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(1000), kgo.FetchMaxBytes(2000))
	got := pollN(t, cl, 4, 30*time.Second)
	for i, r := range got[:3] {
		if len(r.Value) != len(big) || r.Offset != int64(i) {
			t.Fatalf("record %d: offset %d, %d bytes", i, r.Offset, len(r.Value))
		}
	}
	if string(got[3].Value) != "small" {
		t.Fatalf("last record %q", got[3].Value)
	}
}

func TestDescribeConfigs(t *testing.T) {
	tb := startBroker(t, false)
	meta, _ := json.Marshal(map[string]any{"filters": []string{"sensors/+/temp", "sensors/+/hum"}, "key": "topic-level:2"})
	tb.stream(t, log.StreamSpec{Name: "cfg", Shards: 1, Retention: log.Retention{MaxAge: 48 * time.Hour, MaxBytes: 1 << 30}, Meta: meta})
	tb.stream(t, log.StreamSpec{Name: "lv", Shards: 1, LastValue: true})
	cl := tb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcs := describeConfigs(t, ctx, cl, kmsg.ConfigResourceTypeTopic, "cfg", "lv", "nope")
	if len(rcs) != 3 {
		t.Fatalf("described %d topics, want 3", len(rcs))
	}
	want := map[string]map[string]string{
		"cfg": {
			"retention.ms": "172800000", "retention.bytes": "1073741824", "cleanup.policy": "delete",
			"message.timestamp.type": "LogAppendTime", "mqtt.topic.filter": "sensors/+/temp,sensors/+/hum", "mqtt.key": "topic-level:2",
		},
		"lv": {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact", "mqtt.topic.filter": ""},
	}
	for name, rc := range rcs {
		if name == "nope" {
			if !errors.Is(rc.err, kerr.UnknownTopicOrPartition) {
				t.Errorf("unknown topic: %v", rc.err)
			}
			continue
		}
		if rc.err != nil {
			t.Fatalf("%s: %v", name, rc.err)
		}
		for k, v := range want[name] {
			if got := rc.value(k); got != v {
				t.Errorf("%s %s = %q, want %q", name, k, got, v)
			}
		}
	}
	bcs := describeConfigs(t, ctx, cl, kmsg.ConfigResourceTypeBroker, "0")
	if bcs["0"].err != nil || bcs["0"].value("socket.request.max.bytes") != strconv.Itoa(defaultMaxRequestBytes) {
		t.Errorf("broker configs lack socket.request.max.bytes: %+v", bcs)
	}
}

func TestMetrics(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "m", Shards: 1})
	appendRecs(t, st, 0, log.Record{Value: []byte("hello")})
	cl := tb.client(t, kgo.ConsumeTopics("m"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pollN(t, cl, 1, 30*time.Second)
	// An error code in a response, then a request that closes its connection.
	rc := dialRaw(t, tb.addr)
	rc.roundTrip(listOffsetsReq(1, "nope", -1))
	rc.write([]byte{0, 0, 0, 6, 0x7f, 0x7f, 0, 0, 0, 1}) // unknown API key 32639
	if _, err := rc.readFrame(30 * time.Second); err == nil {
		t.Fatal("unknown API answered")
	}
	fams, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, lp := range m.GetLabel() {
				name += "," + lp.GetName() + "=" + lp.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	for _, want := range []string{
		"mqstreams_kafka_requests_total,api=Fetch",
		"mqstreams_kafka_requests_total,api=Metadata",
		"mqstreams_kafka_request_duration_seconds,api=Fetch",
		"mqstreams_kafka_errors_total,api=ListOffsets,error=UNKNOWN_TOPIC_OR_PARTITION",
		"mqstreams_kafka_errors_total,api=unknown,error=connection_closed",
		"mqstreams_connections_refused_total,proto=kafka,reason=bad_request",
		"mqstreams_received_bytes_total,proto=kafka",
		"mqstreams_sent_bytes_total,proto=kafka",
	} {
		if got[want] <= 0 {
			t.Errorf("%s = %v, want > 0", want, got[want])
		}
	}
	if n := got["mqstreams_kafka_fetch_bytes_total,stream=m"]; n <= 0 {
		t.Errorf("fetch bytes for m = %v, want > 0 (%v)", n, got)
	}
	if n := got["mqstreams_connections,proto=kafka"]; n < 1 {
		t.Errorf("kafka connections = %v with a client connected (%v)", n, got)
	}
}

func TestAdvertisedAddress(t *testing.T) {
	l, err := log.Open(log.Options{Dir: t.TempDir(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct{ addr, adv, wantHost string }{
		{":0", "", "localhost"},
		{"0.0.0.0:0", "", "localhost"},
		{"127.0.0.1:0", "", "127.0.0.1"},
		{"127.0.0.1:0", "kafka.example:19092", "kafka.example"},
	} {
		s, err := New(Options{Config: Config{Addr: tc.addr, AdvertisedAddr: tc.adv}, Log: l, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(s.Addr().String())
		wantPort := port
		if tc.adv != "" {
			wantPort = "19092"
		}
		if s.advHost != tc.wantHost || strconv.Itoa(int(s.advPort)) != wantPort {
			t.Errorf("%s/%q: advertised %s:%d, want %s:%s", tc.addr, tc.adv, s.advHost, s.advPort, tc.wantHost, wantPort)
		}
		_ = s.Close()
	}
	// The cluster id belongs to the data dir.
	a, _ := New(Options{Log: l, Logger: zerolog.Nop()})
	b, _ := New(Options{Log: l, Logger: zerolog.Nop()})
	if a.clusterID == "" || a.clusterID != b.clusterID {
		t.Errorf("cluster ids %q and %q differ", a.clusterID, b.clusterID)
	}
}

// TestFetchResponseCapped checks the server-side cap on one response's record bytes: a
// client asking for 64 MiB gets at most responseMaxBytes (plus the first batch), and
// reading on from where it stopped gets the rest.
func TestFetchResponseCapped(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "capped", Shards: 1})
	val := make([]byte, 1<<20)
	for i := 0; i < 12; i++ {
		appendRecs(t, st, 0, log.Record{Value: val})
	}
	r := dialRaw(t, tb.addr)
	next, total := int64(0), 0
	for next < 12 {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.MaxBytes, req.MaxWaitMillis = 64<<20, 0
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "capped"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = next, 64<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := r.roundTrip(req).(*kmsg.FetchResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
			t.Fatalf("fetch at %d: error %d, %d bytes", next, p.ErrorCode, len(p.RecordBatches))
		}
		if len(p.RecordBatches) > responseMaxBytes+(2<<20) {
			t.Fatalf("fetch at %d: %d bytes, over the %d cap", next, len(p.RecordBatches), responseMaxBytes)
		}
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: next, Topic: "capped", Partition: 0}, &p, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil || len(fp.Records) == 0 || fp.Records[0].Offset != next {
			t.Fatalf("fetch at %d: %v, %d records", next, fp.Err, len(fp.Records))
		}
		next = fp.Records[len(fp.Records)-1].Offset + 1
		total++
	}
	if total < 2 {
		t.Fatalf("12 MiB came in %d response(s); the cap did not apply", total)
	}
}
