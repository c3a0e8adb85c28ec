package kafkawire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// codecHook records the compression codec of every batch franz-go writes.
type codecHook struct {
	mu     sync.Mutex
	codecs map[uint8]int
}

func (h *codecHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.codecs == nil {
		h.codecs = map[uint8]int{}
	}
	h.codecs[m.CompressionType]++
}

// only waits until at least n batches were reported (the hook may run after the
// produce promise) and checks they all used the codec want.
func (h *codecHook) only(t *testing.T, n int, want uint8) {
	t.Helper()
	waitFor(t, 30*time.Second, "batches reported", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		total := 0
		for _, c := range h.codecs {
			total += c
		}
		return total >= n
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.codecs) != 1 || h.codecs[want] == 0 {
		t.Fatalf("batches written with codecs %v, want only %d", h.codecs, want)
	}
}

// consumeAll reads n records of a topic from the start.
func consumeAll(t *testing.T, tb *testBroker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := tb.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	return pollN(t, cl, n, 30*time.Second)
}

// appendTimes reads every record of topic from the log and returns its append time in µs.
func appendTimes(t *testing.T, tb *testBroker, topic string) map[recordKey]int64 {
	t.Helper()
	st := tb.l.Stream(topic)
	out := map[recordKey]int64{}
	for p := int32(0); p < st.Shards(); p++ {
		start, hwm, err := st.Offsets(p)
		if err != nil {
			t.Fatal(err)
		}
		for off := start; off < hwm; {
			bs, err := st.Read(p, off, 1<<20)
			if err != nil || len(bs) == 0 {
				t.Fatalf("read %s/%d at %d: %d batches, %v", topic, p, off, len(bs), err)
			}
			for _, b := range bs {
				recs, err := b.Records(off)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					out[recordKey{p, r.Offset}] = r.TimestampUS
				}
				off = b.LastOffset + 1
			}
		}
	}
	return out
}

// recordKey identifies a record by partition and offset.
type recordKey struct {
	p   int32
	off int64
}

func TestProduceCodecsRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		codec kgo.CompressionCodec
		id    uint8
	}{
		{"none", kgo.NoCompression(), codecNone},
		{"gzip", kgo.GzipCompression(), codecGzip},
		{"snappy", kgo.SnappyCompression(), codecSnappy},
		{"lz4", kgo.Lz4Compression(), codecLZ4},
		{"zstd", kgo.ZstdCompression(), codecZstd},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := startBroker(t, false)
			tb.stream(t, log.StreamSpec{Name: "events", Shards: 3})
			hook := &codecHook{}
			// Idempotent (franz-go's default) with acks=all.
			prod := tb.client(t, kgo.ProducerBatchCompression(tc.codec), kgo.RecordPartitioner(kgo.ManualPartitioner()),
				kgo.WithHooks(hook), kgo.ProducerLinger(0))
			var sent []*kgo.Record
			for i := range 30 {
				r := &kgo.Record{
					Topic:     "events",
					Partition: int32(i % 3),
					Key:       []byte(fmt.Sprintf("key-%d", i%4)),
					Value:     []byte(strings.Repeat(fmt.Sprintf("value %d of the %s test; ", i, tc.name), 8)),
					Headers: []kgo.RecordHeader{
						{Key: "mqtt.topic", Value: []byte(fmt.Sprintf("sensors/%d", i))},
						{Key: "dup", Value: []byte("a")}, {Key: "dup", Value: []byte("b")},
						{Key: "empty", Value: []byte{}},
					},
				}
				if i == 7 {
					r.Key = nil // null key
				}
				sent = append(sent, r)
			}
			results := prod.ProduceSync(context.Background(), sent...)
			if err := results.FirstErr(); err != nil {
				t.Fatal(err)
			}
			hook.only(t, 3, tc.id) // one batch or more per partition
			want := map[recordKey]*kgo.Record{}
			for _, r := range results {
				want[recordKey{r.Record.Partition, r.Record.Offset}] = r.Record
			}
			if len(want) != len(sent) {
				t.Fatalf("%d distinct offsets for %d records", len(want), len(sent))
			}
			got := consumeAll(t, tb, "events", len(sent))
			appended := appendTimes(t, tb, "events")
			for _, g := range got {
				w := want[recordKey{g.Partition, g.Offset}]
				if w == nil {
					t.Fatalf("consumed unexpected record %d/%d", g.Partition, g.Offset)
				}
				if !bytes.Equal(g.Key, w.Key) || (g.Key == nil) != (w.Key == nil) || !bytes.Equal(g.Value, w.Value) {
					t.Errorf("%d/%d: key %q value %q, want %q %q", g.Partition, g.Offset, g.Key, g.Value, w.Key, w.Value)
				}
				if fmt.Sprint(g.Headers) != fmt.Sprint(w.Headers) {
					t.Errorf("%d/%d: headers %v, want %v", g.Partition, g.Offset, g.Headers, w.Headers)
				}
				// The log stamps its append time; the producer's time is not kept. A batch
				// as committed says LogAppendTime (1); once the background coalescer has
				// merged an idle shard's batches (100 ms, so a slow consumer sees it) the
				// merged batch says CreateTime (0) and carries the same append times per
				// record (docs/coalescing.md). Either way the time is the log's.
				at := appended[recordKey{g.Partition, g.Offset}]
				if typ := g.Attrs.TimestampType(); typ != 1 && typ != 0 || g.Timestamp.UnixMilli() != at/1000 || g.Timestamp.Before(w.Timestamp) {
					t.Errorf("%d/%d: timestamp %v type %d, want the append time %v (after %v)", g.Partition, g.Offset, g.Timestamp, g.Attrs.TimestampType(), time.UnixMicro(at), w.Timestamp)
				}
			}
		})
	}
}

func TestProduceAcks(t *testing.T) {
	for _, acks := range []struct {
		name string
		acks kgo.Acks
	}{{"none", kgo.NoAck()}, {"leader", kgo.LeaderAck()}, {"all", kgo.AllISRAcks()}} {
		t.Run(acks.name, func(t *testing.T) {
			tb := startBroker(t, false)
			st := tb.stream(t, log.StreamSpec{Name: "acks", Shards: 1})
			opts := []kgo.Opt{kgo.RequiredAcks(acks.acks), kgo.ProducerLinger(0)}
			if acks.name != "all" {
				opts = append(opts, kgo.DisableIdempotentWrite())
			}
			prod := tb.client(t, opts...)
			const n = 20
			for i := range n {
				r := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "acks", Value: []byte(fmt.Sprint(i))})
				if err := r.FirstErr(); err != nil {
					t.Fatal(err)
				}
				if acks.name != "none" && r[0].Record.Offset != int64(i) {
					t.Fatalf("record %d at offset %d", i, r[0].Record.Offset)
				}
			}
			// With acks=0 the producer learns nothing: the records arrive in the log
			// (and the connection stays usable for the next ones).
			waitFor(t, 30*time.Second, "all records stored", func() bool {
				_, hwm, _ := st.Offsets(0)
				return hwm == n
			})
			got := consumeAll(t, tb, "acks", n)
			for i, r := range got {
				if string(r.Value) != fmt.Sprint(i) || r.Offset != int64(i) {
					t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
				}
			}
		})
	}
}

// rawBatch encodes a v2 record batch as a producer does, compressing with codec.
func rawBatch(t testing.TB, codec int16, pid int64, epoch int16, seq int32, recs ...kmsg.Record) []byte {
	t.Helper()
	var body []byte
	for i, r := range recs {
		r.OffsetDelta = int32(i)
		r.Length = 0
		enc := r.AppendTo(nil)
		body = kbin.AppendVarint(body, int32(len(enc)-1))
		body = append(body, enc[1:]...)
	}
	switch codec {
	case codecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(body)
		_ = w.Close()
		body = buf.Bytes()
	case codecSnappy:
		body = xerial.Encode(nil, body) // the Java client's framing; raw is tested through franz-go
	case codecLZ4:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		_, _ = w.Write(body)
		_ = w.Close()
		body = buf.Bytes()
	case codecZstd:
		enc, _ := zstd.NewWriter(nil)
		body = enc.EncodeAll(body, nil)
	}
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: codec,
		LastOffsetDelta: int32(len(recs) - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq,
		NumRecords: int32(len(recs)), Records: body,
	}
	return sealBatch(rb.AppendTo(nil))
}

// sealBatch sets a batch's length and CRC-32C after its bytes were changed.
func sealBatch(b []byte) []byte {
	kbin.AppendInt32(b[8:8], int32(len(b)-12))
	kbin.AppendInt32(b[17:17], int32(crc32.Checksum(b[21:], castagnoli)))
	return b
}

func valueRecs(vals ...string) []kmsg.Record {
	out := make([]kmsg.Record, len(vals))
	for i, v := range vals {
		out[i] = kmsg.Record{Key: []byte("k"), Value: []byte(v)}
	}
	return out
}

func produceReq(v, acks int16, topic string, partition int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = v, acks
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// produceRaw sends one batch and returns its partition's answer.
func produceRaw(t *testing.T, rc *rawConn, v int16, topic string, partition int32, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	resp := rc.roundTrip(produceReq(v, -1, topic, partition, batch)).(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce answered %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

func storedValues(t *testing.T, st *log.Stream, shard int32) []string {
	t.Helper()
	batches, err := st.Read(shard, 0, 1<<20)
	if err != nil && !errors.Is(err, log.ErrOffsetOutOfRange) {
		t.Fatal(err)
	}
	var out []string
	for _, b := range batches {
		recs, err := b.Records(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
	}
	return out
}

func initProducerID(t *testing.T, rc *rawConn, v int16, lastID int64, lastEpoch int16) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version, req.ProducerID, req.ProducerEpoch = v, lastID, lastEpoch
	resp := rc.roundTrip(req).(*kmsg.InitProducerIDResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId v%d: %v", v, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

func TestProduceIdempotentSequences(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "idem", Shards: 2})
	rc := dialRaw(t, tb.addr)
	pid, epoch := initProducerID(t, rc, 4, -1, -1)
	if epoch != 0 || pid < 0 {
		t.Fatalf("InitProducerId gave %d/%d", pid, epoch)
	}
	if other, _ := initProducerID(t, rc, 0, -1, -1); other == pid {
		t.Fatalf("two producers got id %d", pid)
	}

	type step struct {
		name      string
		partition int32
		epoch     int16
		seq       int32
		vals      []string
		code      int16
		base      int64
	}
	steps := []step{
		{"first batch", 0, 0, 0, []string{"a", "b"}, 0, 0},
		{"retry of the first batch", 0, 0, 0, []string{"a", "b"}, 0, 0},
		{"next batch", 0, 0, 2, []string{"c"}, 0, 2},
		{"retry of the first batch again", 0, 0, 0, []string{"a", "b"}, 0, 0},
		{"other partition has its own sequence", 1, 0, 0, []string{"x"}, 0, 0},
		{"gap in the sequence", 0, 0, 4, []string{"e"}, kerr.OutOfOrderSequenceNumber.Code, -1},
		{"overlapping sequence", 0, 0, 1, []string{"b2"}, kerr.OutOfOrderSequenceNumber.Code, -1},
		{"in sequence after refusals", 0, 0, 3, []string{"d"}, 0, 3},
		{"next in sequence", 0, 0, 4, []string{"e"}, 0, 4},
	}
	for _, s := range steps {
		b := rawBatch(t, codecNone, pid, s.epoch, s.seq, valueRecs(s.vals...)...)
		p := produceRaw(t, rc, 9, "idem", s.partition, b)
		if p.ErrorCode != s.code || p.BaseOffset != s.base {
			t.Fatalf("%s: error %v base %d, want %v base %d", s.name, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, kerr.ErrorForCode(s.code), s.base)
		}
		if s.code != 0 && (p.ErrorMessage == nil || *p.ErrorMessage == "") {
			t.Errorf("%s: v9 refusal without an error message", s.name)
		}
	}
	// Bump the epoch through InitProducerId v3 and check the new epoch's rules.
	bumpedID, bumped := initProducerID(t, rc, 3, pid, 0)
	if bumpedID != pid || bumped != 1 {
		t.Fatalf("re-init of %d/0 gave %d/%d, want the same id at epoch 1", pid, bumpedID, bumped)
	}
	for _, s := range []step{
		{"new epoch not from sequence 0", 0, 1, 5, []string{"f"}, kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch from sequence 0", 0, 1, 0, []string{"f"}, 0, 5},
		{"new epoch retry", 0, 1, 0, []string{"f"}, 0, 5},
		{"old epoch after the new one wrote", 0, 0, 5, []string{"g"}, kerr.InvalidProducerEpoch.Code, -1},
	} {
		p := produceRaw(t, rc, 9, "idem", s.partition, rawBatch(t, codecNone, pid, s.epoch, s.seq, valueRecs(s.vals...)...))
		if p.ErrorCode != s.code || p.BaseOffset != s.base {
			t.Fatalf("%s: error %v base %d, want %v base %d", s.name, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, kerr.ErrorForCode(s.code), s.base)
		}
	}
	if got, want := strings.Join(storedValues(t, st, 0), ","), "a,b,c,d,e,f"; got != want {
		t.Fatalf("stored %s, want %s (each batch once)", got, want)
	}
	if got := strings.Join(storedValues(t, st, 1), ","); got != "x" {
		t.Fatalf("partition 1 stored %s", got)
	}

	// An id this run never gave out is not bumped: the producer gets a new one.
	if id, ep := initProducerID(t, rc, 4, 12345, 3); id == 12345 || ep != 0 {
		t.Fatalf("re-init of a foreign id gave %d/%d", id, ep)
	}
	// An unknown producer is accepted at any sequence (Kafka 2.5+).
	p := produceRaw(t, rc, 9, "idem", 1, rawBatch(t, codecNone, 777, 0, 42, valueRecs("y")...))
	if p.ErrorCode != 0 || p.BaseOffset != 1 {
		t.Fatalf("unknown producer at sequence 42: %v base %d", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
}

func TestProduceSequenceWrap(t *testing.T) {
	if got := nextSequence(1<<31-2, 2); got != 0 {
		t.Fatalf("sequence after MaxInt32 is %d, want 0", got)
	}
	tb := startBroker(t, true)
	tb.stream(t, log.StreamSpec{Name: "wrap", Shards: 1})
	rc := dialRaw(t, tb.addr)
	for i, s := range []struct {
		seq  int32
		vals []string
	}{{1<<31 - 2, []string{"a", "b"}}, {0, []string{"c"}}} {
		p := produceRaw(t, rc, 9, "wrap", 0, rawBatch(t, codecNone, 5, 0, s.seq, valueRecs(s.vals...)...))
		if p.ErrorCode != 0 {
			t.Fatalf("batch %d: %v", i, kerr.ErrorForCode(p.ErrorCode))
		}
	}
}

// TestProduceRetryOnOtherConnection sends the same idempotent batch on several
// connections at once: it is stored once and every answer has its offset.
func TestProduceRetryOnOtherConnection(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "race", Shards: 1})
	appendRecs(t, st, 0, log.Record{Value: []byte("before")})
	batch := rawBatch(t, codecNone, 9, 0, 0, valueRecs("once")...)
	const conns = 6
	bases := make(chan int64, conns)
	var wg sync.WaitGroup
	for range conns {
		rc := dialRaw(t, tb.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := rc.roundTrip(produceReq(9, -1, "race", 0, batch)).(*kmsg.ProduceResponse)
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 {
				t.Errorf("produce: %v", kerr.ErrorForCode(p.ErrorCode))
			}
			bases <- p.BaseOffset
		}()
	}
	wg.Wait()
	close(bases)
	for b := range bases {
		if b != 1 {
			t.Errorf("answered base offset %d, want 1", b)
		}
	}
	if got := strings.Join(storedValues(t, st, 0), ","); got != "before,once" {
		t.Fatalf("stored %s", got)
	}
}

func TestProduceRefusals(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "strict", Shards: 2})
	tb.stream(t, log.StreamSpec{Name: "latest", Shards: 1, LastValue: true})
	good := rawBatch(t, codecNone, -1, -1, -1, valueRecs("ok")...)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-1] ^= 0xff
	attrs := func(a int16) []byte {
		b := bytes.Clone(good)
		kbin.AppendInt16(b[21:21], a)
		return sealBatch(b)
	}
	magic1 := bytes.Clone(good)
	magic1[16] = 1
	countMismatch := bytes.Clone(good)
	kbin.AppendInt32(countMismatch[57:57], 2)
	sealBatch(countMismatch)
	trailing := sealBatch(append(bytes.Clone(good), 0, 0))
	cases := []struct {
		name    string
		v, acks int16
		topic   string
		part    int32
		batch   []byte
		code    int16
	}{
		{"unknown topic", 9, -1, "nope", 0, good, kerr.UnknownTopicOrPartition.Code},
		{"partition out of range", 9, -1, "strict", 2, good, kerr.UnknownTopicOrPartition.Code},
		{"negative partition", 9, -1, "strict", -1, good, kerr.UnknownTopicOrPartition.Code},
		{"bad acks", 9, 2, "strict", 0, good, kerr.InvalidRequiredAcks.Code},
		{"corrupt CRC", 9, -1, "strict", 0, corrupt, kerr.CorruptMessage.Code},
		{"no records", 9, -1, "strict", 0, nil, kerr.CorruptMessage.Code},
		{"cut short", 9, -1, "strict", 0, good[:len(good)-3], kerr.CorruptMessage.Code},
		{"two batches", 9, -1, "strict", 0, append(bytes.Clone(good), good...), kerr.InvalidRecord.Code},
		{"magic 1", 3, -1, "strict", 0, magic1, kerr.InvalidRecord.Code},
		{"control batch", 9, -1, "strict", 0, attrs(attrControl), kerr.InvalidRecord.Code},
		{"transactional batch without a producer", 9, -1, "strict", 0, attrs(attrTransactional), kerr.InvalidProducerIDMapping.Code},
		{"unknown codec", 9, -1, "strict", 0, attrs(5), kerr.CorruptMessage.Code},
		{"record count mismatch", 9, -1, "strict", 0, countMismatch, kerr.InvalidRecord.Code},
		{"bytes after the records", 9, -1, "strict", 0, trailing, kerr.CorruptMessage.Code},
		{"garbage gzip", 9, -1, "strict", 0, attrs(codecGzip), kerr.CorruptMessage.Code},
		{"zstd before v7", 6, -1, "strict", 0, rawBatch(t, codecZstd, -1, -1, -1, valueRecs("z")...), kerr.UnsupportedCompressionType.Code},
		{"idempotent batch without a sequence", 9, -1, "strict", 0, rawBatch(t, codecNone, 3, 0, -1, valueRecs("s")...), kerr.InvalidRecord.Code},
		{"keyless record on a last-value stream", 9, -1, "latest", 0, rawBatch(t, codecNone, -1, -1, -1, kmsg.Record{Value: []byte("v")}), kerr.InvalidRecord.Code},
	}
	rc := dialRaw(t, tb.addr)
	for _, tc := range cases {
		resp := rc.roundTrip(produceReq(tc.v, tc.acks, tc.topic, tc.part, tc.batch)).(*kmsg.ProduceResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != tc.code || p.BaseOffset != -1 {
			t.Errorf("%s: %v (base %d), want %v", tc.name, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, kerr.ErrorForCode(tc.code))
		}
		if tc.v >= 8 && p.ErrorMessage == nil {
			t.Errorf("%s: no error message", tc.name)
		}
	}
	for shard := range int32(2) {
		if _, hwm, _ := st.Offsets(shard); hwm != 0 {
			t.Fatalf("refused batches stored: shard %d high watermark %d", shard, hwm)
		}
	}
	// The connection is still fine: a good batch goes in.
	if p := produceRaw(t, rc, 3, "strict", 1, good); p.ErrorCode != 0 || p.BaseOffset != 0 || p.LogStartOffset != -1 {
		t.Fatalf("good batch at v3: %v base %d log start %d (v3 has none)", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, p.LogStartOffset)
	}
	if p := produceRaw(t, rc, 5, "strict", 1, good); p.ErrorCode != 0 || p.BaseOffset != 1 || p.LogStartOffset != 0 || p.LogAppendTime <= 0 {
		t.Fatalf("good batch at v5: %+v", p)
	}
}

func TestProduceMixedPartitions(t *testing.T) {
	tb := startBroker(t, true)
	a := tb.stream(t, log.StreamSpec{Name: "a", Shards: 2})
	req := produceReq(9, -1, "a", 0, rawBatch(t, codecLZ4, -1, -1, -1, valueRecs("a0")...))
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = 1, []byte("junk")
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "missing"
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = append(req.Topics, rt)
	resp := dialRaw(t, tb.addr).roundTrip(req).(*kmsg.ProduceResponse)
	got := map[string]int16{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			got[fmt.Sprintf("%s/%d", t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	want := map[string]int16{"a/0": 0, "a/1": kerr.CorruptMessage.Code, "missing/1": kerr.UnknownTopicOrPartition.Code}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers %v, want %v", got, want)
	}
	if v := storedValues(t, a, 0); len(v) != 1 || v[0] != "a0" {
		t.Fatalf("stored %v", v)
	}
}

// TestProduceCodecsRaw covers what franz-go does not send: xerial-framed snappy (the
// Java client's) and every codec through the decoder directly.
func TestProduceCodecsRaw(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "raw", Shards: 1})
	rc := dialRaw(t, tb.addr)
	var want []string
	for _, codec := range []int16{codecNone, codecGzip, codecSnappy, codecLZ4, codecZstd} {
		vals := []string{fmt.Sprintf("codec %d one", codec), "", strings.Repeat("x", 70000)}
		recs := valueRecs(vals...)
		recs[1].Headers = []kmsg.Header{{Key: "h", Value: nil}}
		p := produceRaw(t, rc, 7, "raw", 0, rawBatch(t, codec, -1, -1, -1, recs...))
		if p.ErrorCode != 0 {
			t.Fatalf("codec %d: %v: %s", codec, kerr.ErrorForCode(p.ErrorCode), *p.ErrorMessage)
		}
		want = append(want, vals...)
	}
	if got := storedValues(t, st, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored values differ from those produced")
	}
	// Raw (unframed) snappy, as librdkafka and franz-go send it.
	raw := []byte("raw snappy block")
	if out, err := inflateSnappy(snappy.Encode(nil, raw), 1<<20, nil); err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("raw snappy: %q, %v", out, err)
	}
	// Xerial framing with several blocks.
	big := bytes.Repeat([]byte("0123456789"), 10000)
	framed := xerial.Encode(nil, big)
	if out, err := inflateSnappy(framed, 1<<20, nil); err != nil || !bytes.Equal(out, big) {
		t.Fatalf("xerial snappy: %d bytes, %v", len(out), err)
	}
	if _, err := inflateSnappy(framed[:len(framed)-5], 1<<20, nil); err == nil {
		t.Fatal("cut xerial frame accepted")
	}
}

// TestProduceDecompressionBomb: a small batch that inflates past the max request size
// is MESSAGE_TOO_LARGE, for every codec, and nothing is stored.
func TestProduceDecompressionBomb(t *testing.T) {
	for _, codec := range []int16{codecGzip, codecSnappy, codecLZ4, codecZstd} {
		recs := valueRecs(string(make([]byte, 200<<10)))
		b := rawBatch(t, codec, -1, -1, -1, recs...)
		if len(b) > 64<<10 {
			t.Fatalf("codec %d: bomb of %d bytes does not compress", codec, len(b))
		}
		_, berr := decodeProduced(b, 9, 64<<10, nil)
		if berr == nil || berr.err != kerr.MessageTooLarge {
			t.Errorf("codec %d: %v, want MESSAGE_TOO_LARGE", codec, berr)
		}
		if _, berr := decodeProduced(b, 9, 1<<20, nil); berr != nil {
			t.Errorf("codec %d under the limit: %v", codec, berr)
		}
	}
}

func TestProduceAcksZeroRaw(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "fire", Shards: 1})
	rc := dialRaw(t, tb.addr)
	rc.send(produceReq(9, 0, "fire", 0, rawBatch(t, codecNone, -1, -1, -1, valueRecs("1")...)))
	rc.send(produceReq(9, 0, "fire", 0, rawBatch(t, codecNone, -1, -1, -1, valueRecs("2")...)))
	// The next response on the connection is ApiVersions': the produces got none.
	req := apiVersionsReq(3)
	if resp := rc.recv(req, rc.send(req)).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(resp.ErrorCode))
	}
	if got := strings.Join(storedValues(t, st, 0), ","); got != "1,2" {
		t.Fatalf("stored %q", got)
	}
	// An acks=0 produce that fails closes the connection, Kafka's only way to tell.
	rc.send(produceReq(9, 0, "nope", 0, rawBatch(t, codecNone, -1, -1, -1, valueRecs("3")...)))
	rc.expectClosed()
}

func TestProduceApiVersions(t *testing.T) {
	tb := startBroker(t, true)
	resp := dialRaw(t, tb.addr).roundTrip(apiVersionsReq(3)).(*kmsg.ApiVersionsResponse)
	got := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	if got[0] != [2]int16{0, 9} || got[22] != [2]int16{0, 4} {
		t.Fatalf("Produce advertised %v, InitProducerId %v; want 0-9 and 0-4", got[0], got[22])
	}
}

// legacyMsg encodes one v0/v1 message (with its offset and size prefix).
func legacyMsg(magic, attrs int8, key, value []byte) []byte {
	body := []byte{byte(magic), byte(attrs)}
	if magic == 1 {
		body = kbin.AppendInt64(body, time.Now().UnixMilli())
	}
	for _, b := range [][]byte{key, value} {
		if b == nil {
			body = kbin.AppendInt32(body, -1)
			continue
		}
		body = kbin.AppendInt32(body, int32(len(b)))
		body = append(body, b...)
	}
	msg := kbin.AppendInt64(nil, 0)
	msg = kbin.AppendInt32(msg, int32(len(body)+4))
	msg = kbin.AppendInt32(msg, int32(crc32.ChecksumIEEE(body)))
	return append(msg, body...)
}

// legacyWrapped compresses an inner message set into one wrapper message.
func legacyWrapped(t *testing.T, magic int8, codec int16, inner []byte) []byte {
	t.Helper()
	var value []byte
	switch codec {
	case codecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(inner)
		_ = w.Close()
		value = buf.Bytes()
	case codecSnappy:
		value = snappy.Encode(nil, inner) // raw; xerial is covered by sarama in compat-tests
	case codecLZ4:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		_, _ = w.Write(inner)
		_ = w.Close()
		value = buf.Bytes()
	case codecZstd:
		enc, _ := zstd.NewWriter(nil)
		value = enc.EncodeAll(inner, nil)
	}
	return legacyMsg(magic, int8(codec), nil, value)
}

func TestProduceLegacyMessageSets(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "old", Shards: 1})
	rc := dialRaw(t, tb.addr)
	var want []string
	for v := int16(0); v <= 2; v++ {
		magic := int8(0)
		if v == 2 {
			magic = 1
		}
		plain := append(legacyMsg(magic, 0, []byte("k"), []byte(fmt.Sprintf("v%d-a", v))), legacyMsg(magic, 0, nil, nil)...)
		p := produceRaw(t, rc, v, "old", 0, plain)
		if p.ErrorCode != 0 {
			t.Fatalf("v%d plain: %v", v, kerr.ErrorForCode(p.ErrorCode))
		}
		if v == 2 && p.LogAppendTime <= 0 {
			t.Errorf("v2 answered append time %d", p.LogAppendTime)
		}
		want = append(want, fmt.Sprintf("v%d-a", v), "")
		for _, codec := range []int16{codecGzip, codecSnappy, codecLZ4} {
			vals := []string{fmt.Sprintf("v%d-c%d-1", v, codec), fmt.Sprintf("v%d-c%d-2", v, codec)}
			inner := append(legacyMsg(magic, 0, []byte("k"), []byte(vals[0])), legacyMsg(magic, 0, []byte("k"), []byte(vals[1]))...)
			if codec == codecLZ4 && magic == 0 {
				continue // magic 0 lz4 had a broken frame checksum (KAFKA-3160); no client sends it
			}
			p := produceRaw(t, rc, v, "old", 0, legacyWrapped(t, magic, codec, inner))
			if p.ErrorCode != 0 {
				t.Fatalf("v%d codec %d: %v", v, codec, kerr.ErrorForCode(p.ErrorCode))
			}
			want = append(want, vals...)
		}
	}
	if got := storedValues(t, st, 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored %q\nwant %q", got, want)
	}

	good := legacyMsg(1, 0, nil, []byte("x"))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	nested := legacyWrapped(t, 1, codecGzip, legacyWrapped(t, 1, codecGzip, good))
	for _, tc := range []struct {
		name string
		set  []byte
		code int16
	}{
		{"bad CRC", badCRC, kerr.CorruptMessage.Code},
		{"cut short", good[:len(good)-1], kerr.CorruptMessage.Code},
		{"trailing partial message", append(bytes.Clone(good), 0, 0, 0), kerr.CorruptMessage.Code},
		{"empty", []byte{}, kerr.CorruptMessage.Code},
		{"zstd wrapper", legacyWrapped(t, 1, codecZstd, good), kerr.UnsupportedCompressionType.Code},
		{"nested compression", nested, kerr.CorruptMessage.Code},
		{"magic 2 batch", rawBatch(t, codecNone, -1, -1, -1, valueRecs("m2")...), kerr.CorruptMessage.Code},
	} {
		p := produceRaw(t, rc, 2, "old", 0, tc.set)
		if p.ErrorCode != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(p.ErrorCode), kerr.ErrorForCode(tc.code))
		}
	}
	if _, hwm, _ := st.Offsets(0); hwm != int64(len(want)) {
		t.Fatalf("refused message sets stored: high watermark %d, want %d", hwm, len(want))
	}
}
