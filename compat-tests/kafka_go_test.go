package compattests

// Go Kafka clients against a real server: franz-go (kgo + kadm), sarama and
// segmentio/kafka-go, sharing one server and running in parallel.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaGoClients(t *testing.T) {
	t.Parallel()
	fx := startKafkaFixture(t, "franz", "sarama", "kafkago")
	for name, c := range map[string]kafkaClient{
		"franz":   franzClient{addr: fx.srv.KafkaAddr},
		"sarama":  saramaClient{addr: fx.srv.KafkaAddr},
		"kafkago": kafkaGoClient{addr: fx.srv.KafkaAddr},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runKafkaClient(t, fx, name, c)
		})
	}
}

// franzClient drives github.com/twmb/franz-go: kadm for metadata and offsets, a direct
// (group-less) kgo consumer for records.
type franzClient struct{ addr string }

func (f franzClient) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(f.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (f franzClient) Metadata(t *testing.T, ctx context.Context) map[string]int {
	adm := kadm.NewClient(f.client(t))
	details, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("kadm ListTopics: %v", err)
	}
	out := map[string]int{}
	for name, d := range details {
		if d.Err != nil {
			t.Errorf("topic %s: %v", name, d.Err)
		}
		out[name] = len(d.Partitions)
	}
	return out
}

// endOffsets lists the high watermarks of topic.
func (f franzClient) endOffsets(t *testing.T, ctx context.Context, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(f.client(t))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("kadm ListEndOffsets: %v", err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Errorf("end offset %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// consume reads topic from the given offsets until every partition reaches end.
func (f franzClient) consume(t *testing.T, ctx context.Context, topic string, from map[int32]kgo.Offset, end map[int32]int64) []kafkaRecord {
	t.Helper()
	cl := f.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	next := map[int32]int64{}
	done := func() bool {
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	// Partitions starting at their end are done without a record.
	for p := range end {
		if o, ok := from[p]; ok {
			if at := o.EpochOffset().Offset; at >= 0 {
				next[p] = at
			}
		}
	}
	var out []kafkaRecord
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %v (at %v, want %v)", topic, ctx.Err(), next, end)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, franzRecord(r))
			next[r.Partition] = r.Offset + 1
		})
	}
	return out
}

func franzRecord(r *kgo.Record) kafkaRecord {
	kr := kafkaRecord{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kafkaHeader{h.Key, h.Value})
	}
	return kr
}

func (f franzClient) Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord {
	end := f.endOffsets(t, ctx, topic)
	from := map[int32]kgo.Offset{}
	for p := range end {
		from[p] = kgo.NewOffset().AtStart()
	}
	return f.consume(t, ctx, topic, from, end)
}

func (f franzClient) ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord) {
	end := f.endOffsets(t, ctx, topic)
	adm := kadm.NewClient(f.client(t))
	listed, err := adm.ListOffsetsAfterMilli(ctx, ms, topic)
	if err != nil {
		t.Fatalf("kadm ListOffsetsAfterMilli: %v", err)
	}
	offsets := map[int32]int64{}
	stamps := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Errorf("offset for time %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		offsets[o.Partition] = o.Offset
		stamps[o.Partition] = o.Timestamp
		from[o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	recs := f.consume(t, ctx, topic, from, end)
	// Pitfall 1: a found offset carries the real timestamp of its record.
	for _, r := range recs {
		if r.Offset == offsets[r.Partition] && stamps[r.Partition] != r.Timestamp {
			t.Errorf("offset for time %d on partition %d: timestamp %d, its record has %d", ms, r.Partition, stamps[r.Partition], r.Timestamp)
		}
	}
	return offsets, recs
}

// firstFetchHook reports when the first Fetch request is on the wire: the consumer has
// resolved its start offset and is waiting in a long poll.
type firstFetchHook struct {
	once  sync.Once
	ready chan struct{}
}

func (h *firstFetchHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		h.once.Do(func() { close(h.ready) })
	}
}

func (f franzClient) Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time) {
	hook := &firstFetchHook{ready: make(chan struct{})}
	cl := f.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(5*time.Second), kgo.WithHooks(hook))
	type result struct {
		r  kafkaRecord
		at time.Time
	}
	got := make(chan result, 1)
	go func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			at := time.Now()
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("fetch %s/%d: %v", topic, p, err)
				}
			})
			if recs := fs.Records(); len(recs) > 0 {
				got <- result{franzRecord(recs[0]), at}
				return
			}
		}
	}()
	select {
	case <-hook.ready:
	case <-ctx.Done():
		t.Fatal("franz-go consumer never sent a fetch")
	}
	publish()
	select {
	case res := <-got:
		return res.r, res.at
	case <-ctx.Done():
		t.Fatal("franz-go consumer did not receive the record published after it started")
	}
	return kafkaRecord{}, time.Time{}
}

// saramaClient drives github.com/IBM/sarama with its default configuration.
type saramaClient struct{ addr string }

func (s saramaClient) client(t *testing.T) sarama.Client {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.ClientID = "compat-sarama"
	cfg.Consumer.MaxWaitTime = 5 * time.Second
	cl, err := sarama.NewClient([]string{s.addr}, cfg)
	if err != nil {
		t.Fatalf("sarama client: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (s saramaClient) Metadata(t *testing.T, ctx context.Context) map[string]int {
	cl := s.client(t)
	topics, err := cl.Topics()
	if err != nil {
		t.Fatalf("sarama Topics: %v", err)
	}
	out := map[string]int{}
	for _, topic := range topics {
		ps, err := cl.Partitions(topic)
		if err != nil {
			t.Fatalf("sarama Partitions(%s): %v", topic, err)
		}
		out[topic] = len(ps)
	}
	return out
}

// consume reads each partition from its offset until it reaches its high watermark.
// All partition consumers start before any is drained: sarama fetches a broker's
// partitions together, so a consumer added later waits out the running long poll.
func (s saramaClient) consume(t *testing.T, ctx context.Context, cl sarama.Client, topic string, from func(p int32) int64) []kafkaRecord {
	t.Helper()
	ps, err := cl.Partitions(topic)
	if err != nil {
		t.Fatalf("sarama Partitions(%s): %v", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var (
		mu  sync.Mutex
		out []kafkaRecord
		wg  sync.WaitGroup
	)
	for _, p := range ps {
		end, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("sarama GetOffset(%s/%d, newest): %v", topic, p, err)
		}
		start := from(p)
		if start == -1 || start >= end {
			continue // nothing to read
		}
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			t.Fatalf("sarama ConsumePartition(%s/%d, %d): %v", topic, p, start, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.AsyncClose()
			for next := start; next < end; {
				select {
				case m := <-pc.Messages():
					mu.Lock()
					out = append(out, saramaRecord(m))
					mu.Unlock()
					next = m.Offset + 1
				case err := <-pc.Errors():
					t.Errorf("sarama consume %s/%d: %v", topic, p, err)
					return
				case <-ctx.Done():
					t.Errorf("sarama consume %s/%d: at %d of %d: %v", topic, p, next, end, ctx.Err())
					return
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func saramaRecord(m *sarama.ConsumerMessage) kafkaRecord {
	r := kafkaRecord{Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp.UnixMilli(), Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kafkaHeader{string(h.Key), h.Value})
	}
	return r
}

func (s saramaClient) Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord {
	cl := s.client(t)
	return s.consume(t, ctx, cl, topic, func(int32) int64 { return sarama.OffsetOldest })
}

func (s saramaClient) ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord) {
	cl := s.client(t)
	ps, err := cl.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]int64{}
	for _, p := range ps {
		o, err := cl.GetOffset(topic, p, ms)
		if err != nil {
			t.Fatalf("sarama GetOffset(%s/%d, %d): %v", topic, p, ms, err)
		}
		offsets[p] = o
	}
	return offsets, s.consume(t, ctx, cl, topic, func(p int32) int64 { return offsets[p] })
}

func (s saramaClient) Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time) {
	cl := s.client(t)
	consumer, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	// ConsumePartition resolves OffsetNewest before it returns.
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetNewest)
	if err != nil {
		t.Fatalf("sarama ConsumePartition(%s/0, newest): %v", topic, err)
	}
	defer pc.AsyncClose()
	publish()
	select {
	case m := <-pc.Messages():
		return saramaRecord(m), time.Now()
	case err := <-pc.Errors():
		t.Fatalf("sarama consume: %v", err)
	case <-ctx.Done():
		t.Fatal("sarama consumer did not receive the record published after it started")
	}
	return kafkaRecord{}, time.Time{}
}

// kafkaGoClient drives github.com/segmentio/kafka-go: Client for metadata and offsets,
// Reader for replays, a partition Conn for the latest-offset long poll.
type kafkaGoClient struct{ addr string }

// emptyValueIsNil: kafka-go's readNewBytes returns nil for a zero-length value, so it
// cannot tell an empty value from a null one.
func (kafkaGoClient) emptyValueIsNil() {}

func (k kafkaGoClient) client() *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(k.addr), Timeout: 30 * time.Second}
}

func (k kafkaGoClient) Metadata(t *testing.T, ctx context.Context) map[string]int {
	md, err := k.client().Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		t.Fatalf("kafka-go Metadata: %v", err)
	}
	out := map[string]int{}
	for _, topic := range md.Topics {
		if topic.Error != nil {
			t.Errorf("topic %s: %v", topic.Name, topic.Error)
		}
		out[topic.Name] = len(topic.Partitions)
	}
	return out
}

// offsets lists the given offset requests for every partition of topic.
func (k kafkaGoClient) offsets(t *testing.T, ctx context.Context, topic string, req func(p int) kafkago.OffsetRequest) []kafkago.PartitionOffsets {
	t.Helper()
	var reqs []kafkago.OffsetRequest
	for p := 0; p < kafkaPartitions; p++ {
		reqs = append(reqs, req(p))
	}
	resp, err := k.client().ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("kafka-go ListOffsets: %v", err)
	}
	out := resp.Topics[topic]
	for _, po := range out {
		if po.Error != nil {
			t.Errorf("kafka-go ListOffsets %s/%d: %v", topic, po.Partition, po.Error)
		}
	}
	if len(out) != kafkaPartitions {
		t.Fatalf("kafka-go ListOffsets %s: %d partitions answered, want %d", topic, len(out), kafkaPartitions)
	}
	return out
}

// consume reads each partition with its own Reader, all at once, from start until its
// high watermark.
func (k kafkaGoClient) consume(t *testing.T, ctx context.Context, topic string, start func(p int) int64) []kafkaRecord {
	t.Helper()
	ends := k.offsets(t, ctx, topic, kafkago.LastOffsetOf)
	var (
		mu  sync.Mutex
		out []kafkaRecord
		wg  sync.WaitGroup
	)
	for _, po := range ends {
		p, end := po.Partition, po.LastOffset
		from := start(p)
		if from == -1 || from >= end {
			continue
		}
		// A short MaxWait: Close waits for the long poll that follows the last record.
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{k.addr}, Topic: topic, Partition: p,
			MaxWait: 250 * time.Millisecond, MaxBytes: 1 << 20})
		if err := r.SetOffset(from); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for next := from; next < end; {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					t.Errorf("kafka-go read %s/%d at %d of %d: %v", topic, p, next, end, err)
					return
				}
				mu.Lock()
				out = append(out, kafkaGoRecord(m))
				mu.Unlock()
				next = m.Offset + 1
			}
		}()
	}
	wg.Wait()
	return out
}

func kafkaGoRecord(m kafkago.Message) kafkaRecord {
	r := kafkaRecord{Partition: int32(m.Partition), Offset: m.Offset, Timestamp: m.Time.UnixMilli(), Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kafkaHeader{h.Key, h.Value})
	}
	return r
}

func (k kafkaGoClient) Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord {
	firsts := k.offsets(t, ctx, topic, kafkago.FirstOffsetOf)
	start := map[int]int64{}
	for _, po := range firsts {
		start[po.Partition] = po.FirstOffset
	}
	return k.consume(t, ctx, topic, func(p int) int64 { return start[p] })
}

func (k kafkaGoClient) ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord) {
	at := time.UnixMilli(ms)
	listed := k.offsets(t, ctx, topic, func(p int) kafkago.OffsetRequest { return kafkago.TimeOffsetOf(p, at) })
	offsets := map[int32]int64{}
	for _, po := range listed {
		if len(po.Offsets) != 1 {
			t.Fatalf("kafka-go offsets for time on %s/%d: %v, want one", topic, po.Partition, po.Offsets)
		}
		for o := range po.Offsets {
			offsets[int32(po.Partition)] = o
		}
	}
	return offsets, k.consume(t, ctx, topic, func(p int) int64 { return offsets[int32(p)] })
}

func (k kafkaGoClient) Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time) {
	conn, err := kafkago.DialLeader(ctx, "tcp", k.addr, topic, 0)
	if err != nil {
		t.Fatalf("kafka-go DialLeader: %v", err)
	}
	defer conn.Close()
	// Seek to the end resolves the latest offset (ListOffsets -1) before it returns.
	if _, err := conn.Seek(0, kafkago.SeekEnd); err != nil {
		t.Fatalf("kafka-go seek end: %v", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	// ReadBatchWith blocks for the whole long poll, so the publish runs beside it.
	go publish()
	batch := conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 5 * time.Second})
	for {
		m, err := batch.ReadMessage()
		if err == nil {
			_ = batch.Close()
			return kafkaGoRecord(m), time.Now()
		}
		if ctx.Err() != nil {
			t.Fatalf("kafka-go consumer did not receive the record published after it started: %v", err)
		}
		// An empty long poll ends the batch; ask again.
		_ = batch.Close()
		batch = conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 5 * time.Second})
	}
}
