package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Header is one record header: a name and a value, kept in order, duplicates allowed.
type Header struct {
	Key   string
	Value []byte
}

// Record is one message to append: the log assigns its offset and timestamp. A nil
// Value is a Kafka null value, distinct from an empty one.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []Header
}

// StoredRecord is a record read back from a batch with its position and append time.
type StoredRecord struct {
	Record
	Offset      int64
	TimestampUS int64
}

// Batch is one stored Kafka v2 record batch; Data is served to Kafka fetches as is.
type Batch struct {
	BaseOffset  int64
	LastOffset  int64
	TimestampUS int64
	Data        []byte

	// segs is a merged batch's append-time table (coalesce.go), nil for a batch as
	// committed; it gives each record back its own append time in µs.
	segs []byte
}

// valueHeaderLen is the prefix of every stored batch value: append time in µs (Kafka
// batches only hold ms) and the shard's cumulative byte count before the batch, which
// lets byte retention find its cut point by seeking instead of scanning.
const valueHeaderLen = 16

const (
	batchHeaderLen    = 61
	attrLogAppendTime = 0x08
	crcStart          = 21
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// errCorruptBatch reports stored bytes that do not parse as a batch we wrote.
var errCorruptBatch = errors.New("corrupt stored batch")

// encodeValue builds the stored value for recs: the value header followed by one
// uncompressed Kafka v2 batch with LogAppendTime, every record sharing the batch time.
func encodeValue(dst []byte, base, tsUS, cumBytes int64, recs []Record) []byte {
	return encodeValueDeltas(dst, base, tsUS, cumBytes, recs, nil, int32(len(recs)-1))
}

// encodeValueDeltas is encodeValue with explicit offset deltas (nil means 0, 1, 2, ...)
// and last offset delta, as a compacted batch keeps its original offsets.
func encodeValueDeltas(dst []byte, base, tsUS, cumBytes int64, recs []Record, deltas []int32, lastDelta int32) []byte {
	return encodeValueProducer(dst, base, tsUS, cumBytes, recs, deltas, lastDelta, noProducer)
}

// encodeValueProducer is encodeValueDeltas for a batch that carries a producer: a
// transactional append or a marker (txn.go).
func encodeValueProducer(dst []byte, base, tsUS, cumBytes int64, recs []Record, deltas []int32, lastDelta int32, prod batchProducer) []byte {
	var e valueEncoder
	return e.encode(dst, base, tsUS, cumBytes, recs, deltas, lastDelta, prod)
}

// valueEncoder is encodeValueProducer with scratch space kept across calls, for a
// goroutine that encodes every commit (the committer): one record's encoding and its
// headers are reused instead of allocated per record.
type valueEncoder struct {
	rec  []byte
	hdrs []kmsg.Header
}

func (e *valueEncoder) encode(dst []byte, base, tsUS, cumBytes int64, recs []Record, deltas []int32, lastDelta int32, prod batchProducer) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(tsUS))
	dst = binary.BigEndian.AppendUint64(dst, uint64(cumBytes))
	return e.encodeBatch(dst, base, tsUS, recs, deltas, lastDelta, prod)
}

// encodeBatch appends the Kafka v2 batch of encode alone (no value header).
func (e *valueEncoder) encodeBatch(dst []byte, base, tsUS int64, recs []Record, deltas []int32, lastDelta int32, prod batchProducer) []byte {
	start := len(dst)
	ms := tsUS / 1000
	rb := kmsg.RecordBatch{
		FirstOffset:          base,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrLogAppendTime | prod.attrs,
		LastOffsetDelta:      lastDelta,
		FirstTimestamp:       ms,
		MaxTimestamp:         ms,
		ProducerID:           prod.id,
		ProducerEpoch:        prod.epoch,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
	}
	dst = rb.AppendTo(dst)
	scratch := e.rec
	for i := range recs {
		delta := int32(i)
		if deltas != nil {
			delta = deltas[i]
		}
		// A nil Value is stored as a Kafka null (a tombstone from a Kafka producer);
		// mapping.ToRecord gives an empty MQTT payload an empty, non-nil value.
		kr := kmsg.Record{OffsetDelta: delta, Key: recs[i].Key, Value: recs[i].Value}
		if len(recs[i].Headers) > 0 {
			hs := e.hdrs[:0]
			for _, h := range recs[i].Headers {
				hs = append(hs, kmsg.Header{Key: h.Key, Value: h.Value})
			}
			kr.Headers, e.hdrs = hs, hs
		}
		// AppendTo writes Length as given; encode with length 0 (one varint byte)
		// to learn the body size, then prefix the real length.
		scratch = kr.AppendTo(scratch[:0])
		dst = kbin.AppendVarint(dst, int32(len(scratch)-1))
		dst = append(dst, scratch[1:]...)
	}
	clear(e.hdrs[:cap(e.hdrs)]) // no record's bytes kept alive by the scratch
	e.rec = scratch
	b := dst[start:]
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32.Checksum(b[crcStart:], castagnoli))
	return dst
}

// decodeValue splits a stored value into its header fields and batch bytes. A merged
// batch's value carries a trailer after the batch (see coalesce.go), which batch
// excludes: the batch's own length field says where it ends.
func decodeValue(v []byte) (tsUS, cumBytes int64, batch []byte, err error) {
	if len(v) < valueHeaderLen+batchHeaderLen {
		return 0, 0, nil, errCorruptBatch
	}
	n := 12 + int(binary.BigEndian.Uint32(v[valueHeaderLen+8:valueHeaderLen+12]))
	if n < batchHeaderLen || valueHeaderLen+n > len(v) {
		return 0, 0, nil, errCorruptBatch
	}
	return int64(binary.BigEndian.Uint64(v[0:8])), int64(binary.BigEndian.Uint64(v[8:16])), v[valueHeaderLen : valueHeaderLen+n], nil
}

// recordOffsetDelta reads a record body's offset delta (after its attributes and
// timestamp delta); -1 if the body is cut short.
func recordOffsetDelta(body []byte) int64 {
	if len(body) < 1 {
		return -1
	}
	_, n1 := kbin.Varlong(body[1:])
	if n1 <= 0 {
		return -1
	}
	od, n2 := kbin.Varint(body[1+n1:])
	if n2 <= 0 {
		return -1
	}
	return int64(od)
}

// batchLastOffset reads base offset + last offset delta from raw batch bytes.
func batchLastOffset(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b[0:8])) + int64(int32(binary.BigEndian.Uint32(b[23:27])))
}

// Records decodes the batch into records, skipping those before from. It reads the
// batches the committer writes (LogAppendTime, one time for all) and merged ones
// (CreateTime with per-record deltas, possibly compressed).
func (b Batch) Records(from int64) ([]StoredRecord, error) {
	r, err := b.Reader(from)
	if err != nil {
		return nil, err
	}
	return r.Next(make([]StoredRecord, 0, r.left), int(r.left))
}

// RecordReader decodes a batch's records in offset order, a few at a time: a reader
// that can only send a few (a replay waiting for its client's window) does not decode
// a merged batch's thousands of records each time it reads it.
type RecordReader struct {
	b       Batch
	raw     []byte // the records not read yet, decompressed
	left    int32
	i       int32
	from    int64
	appendT bool // LogAppendTime: every record has the batch's time
	firstTS int64
	segs    segTable
}

// Reader returns a reader of the batch's records from offset from on; a compressed
// batch is decompressed once, here.
func (b Batch) Reader(from int64) (*RecordReader, error) {
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b.Data); err != nil {
		return nil, fmt.Errorf("decode batch at %d: %w", b.BaseOffset, err)
	}
	raw, err := decompress(nil, rb.Records, codecOf(rb.Attributes))
	if err != nil {
		return nil, fmt.Errorf("decode batch at %d: %w", b.BaseOffset, err)
	}
	return &RecordReader{b: b, raw: raw, left: max(rb.NumRecords, 0), from: from, appendT: rb.Attributes&attrLogAppendTime != 0,
		firstTS: rb.FirstTimestamp, segs: segTable(b.segs)}, nil
}

// Done reports whether every record has been read.
func (r *RecordReader) Done() bool { return r.i >= r.left }

// Next appends up to limit more records (those before from skipped) to dst.
func (r *RecordReader) Next(dst []StoredRecord, limit int) ([]StoredRecord, error) {
	b := r.b
	for n := 0; n < limit && r.i < r.left; r.i++ {
		raw := r.raw
		l, k := kbin.Varint(raw)
		if k <= 0 || int(l) < 0 || len(raw) < k+int(l) {
			return dst, fmt.Errorf("decode batch at %d record %d: %w", b.BaseOffset, r.i, errCorruptBatch)
		}
		r.raw = raw[k+int(l):]
		if r.from > b.BaseOffset && recordOffsetDelta(raw[k:k+int(l)]) < r.from-b.BaseOffset {
			continue // before from (a merged batch read from its middle): not decoded
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(raw[:k+int(l)]); err != nil {
			return dst, fmt.Errorf("decode batch at %d record %d: %w", b.BaseOffset, r.i, err)
		}
		off := b.BaseOffset + int64(kr.OffsetDelta)
		if off < r.from {
			continue
		}
		ts := b.TimestampUS
		switch {
		case r.appendT:
		case r.segs.n() > 0:
			ts = r.segs.timeOf(kr.OffsetDelta)
		default:
			ts = (r.firstTS + kr.TimestampDelta64) * 1000
		}
		rec := StoredRecord{Offset: off, TimestampUS: ts}
		rec.Key, rec.Value = kr.Key, kr.Value
		if len(kr.Headers) > 0 {
			rec.Headers = make([]Header, len(kr.Headers))
			for j, h := range kr.Headers {
				rec.Headers[j] = Header{Key: h.Key, Value: h.Value}
			}
		}
		dst = append(dst, rec)
		n++
	}
	return dst, nil
}
