package kafkawire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// batchError is a partition's refusal of a produced record batch: Kafka's error code
// and the text sent as ErrorMessage (Produce v8+) and logged.
type batchError struct {
	err *kerr.Error
	msg string
}

func (e *batchError) Error() string { return e.err.Message + ": " + e.msg }

func refuse(err *kerr.Error, format string, args ...any) *batchError {
	return &batchError{err: err, msg: fmt.Sprintf(format, args...)}
}

// producedBatch is a record batch from a Produce request, checked and decoded.
type producedBatch struct {
	producerID    int64
	producerEpoch int16
	firstSeq      int32
	transactional bool
	records       []log.Record
}

// idempotent tells whether the batch carries a producer id whose sequences the broker
// must check (Kafka: any producer id >= 0).
func (b *producedBatch) idempotent() bool { return b.producerID >= 0 }

// Record batch v2 attributes (Kafka's DefaultRecordBatch).
const (
	attrCodecMask     = 0x07
	attrTransactional = 0x10
	attrControl       = 0x20

	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLZ4    = 3
	codecZstd   = 4

	// recordBatchHeaderLen is the v2 header up to the records: base offset (8),
	// length (4), leader epoch (4), magic (1), crc (4), attributes (2), last offset
	// delta (4), first/max timestamp (8+8), producer id (8), epoch (2), first
	// sequence (4), record count (4).
	recordBatchHeaderLen = 61
	batchMagicAt         = 16
	batchCRCFrom         = 21
)

// decodeProduced checks one partition's records of a Produce request the way Kafka's
// log validator does and decodes them. Produce v3+ carries exactly one v2 batch per
// partition, v0-2 a message set (produce_legacy.go); compressed records are inflated
// to at most maxBytes.
func decodeProduced(raw []byte, version int16, maxBytes int, charge chargeFunc) (producedBatch, *batchError) {
	out := producedBatch{producerID: -1}
	if version < 3 {
		recs, berr := decodeMessageSet(raw, maxBytes, charge)
		out.records = recs
		return out, berr
	}
	if len(raw) < recordBatchHeaderLen {
		return out, refuse(kerr.CorruptMessage, "record batch of %d bytes is shorter than its %d-byte header", len(raw), recordBatchHeaderLen)
	}
	if magic := raw[batchMagicAt]; magic != 2 {
		return out, refuse(kerr.InvalidRecord, "Produce v%d takes record batches of magic 2 only, not magic %d", version, magic)
	}
	length := int64(int32(binary.BigEndian.Uint32(raw[8:12])))
	switch {
	case length+12 < recordBatchHeaderLen:
		return out, refuse(kerr.CorruptMessage, "record batch length %d is shorter than its header", length)
	case length+12 > int64(len(raw)):
		return out, refuse(kerr.CorruptMessage, "record batch length %d exceeds the %d bytes sent", length, len(raw)-12)
	case length+12 < int64(len(raw)):
		return out, refuse(kerr.InvalidRecord, "Produce v%d takes exactly one record batch per partition", version)
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(raw); err != nil {
		return out, refuse(kerr.CorruptMessage, "record batch: %v", err)
	}
	if crc := crc32.Checksum(raw[batchCRCFrom:], castagnoli); uint32(rb.CRC) != crc {
		return out, refuse(kerr.CorruptMessage, "record batch CRC-32C is %08x, computed %08x", uint32(rb.CRC), crc)
	}
	switch {
	case rb.Attributes&attrControl != 0:
		return out, refuse(kerr.InvalidRecord, "clients may not write control batches")
	case rb.Attributes&attrTransactional != 0 && rb.ProducerID < 0:
		return out, refuse(kerr.InvalidProducerIDMapping, "transactional batch without a producer id")
	case rb.NumRecords <= 0:
		return out, refuse(kerr.InvalidRecord, "record batch holds %d records", rb.NumRecords)
	case rb.LastOffsetDelta != rb.NumRecords-1:
		return out, refuse(kerr.InvalidRecord, "record batch of %d records has last offset delta %d", rb.NumRecords, rb.LastOffsetDelta)
	case rb.ProducerID >= 0 && (rb.ProducerEpoch < 0 || rb.FirstSequence < 0):
		return out, refuse(kerr.InvalidRecord, "batch of producer %d has epoch %d and first sequence %d", rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence)
	}
	codec := rb.Attributes & attrCodecMask
	if codec == codecZstd && version < 7 {
		return out, refuse(kerr.UnsupportedCompressionType, "zstd needs Produce v7, the request is v%d", version)
	}
	body, err := decompress(codec, rb.Records, maxBytes, charge)
	if err != nil {
		if errors.Is(err, errInflatedTooLarge) {
			return out, refuse(kerr.MessageTooLarge, "%v", err)
		}
		if errors.Is(err, errBudget) {
			return out, refuse(kerr.RequestTimedOut, "%v", err)
		}
		return out, refuse(kerr.CorruptMessage, "%v", err)
	}
	recs, err := decodeRecords(body, rb.NumRecords)
	if err != nil {
		return out, refuse(kerr.CorruptMessage, "%v", err)
	}
	out.producerID, out.producerEpoch, out.firstSeq, out.records = rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence, recs
	out.transactional = rb.Attributes&attrTransactional != 0
	return out, nil
}

// minRecordLen is the smallest encoded record: length, attributes, timestamp delta,
// offset delta, key length, value length and header count, one byte each.
const minRecordLen = 7

// decodeRecords decodes exactly n length-prefixed v2 records filling raw. The records
// alias raw. Timestamps and offset deltas are dropped: the log assigns both.
func decodeRecords(raw []byte, n int32) ([]log.Record, error) {
	out := make([]log.Record, 0, min(int(n), len(raw)/minRecordLen+1))
	for i := int32(0); i < n; i++ {
		l, sz := kbin.Varint(raw)
		if sz <= 0 || l < 0 || int(l) > len(raw)-sz {
			return nil, fmt.Errorf("record %d of %d: bad length", i, n)
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(raw[:sz+int(l)]); err != nil {
			return nil, fmt.Errorf("record %d of %d: %w", i, n, err)
		}
		raw = raw[sz+int(l):]
		r := log.Record{Key: kr.Key, Value: kr.Value}
		if len(kr.Headers) > 0 {
			r.Headers = make([]log.Header, len(kr.Headers))
			for j, h := range kr.Headers {
				r.Headers[j] = log.Header{Key: h.Key, Value: h.Value}
			}
		}
		out = append(out, r)
	}
	if len(raw) != 0 {
		return nil, fmt.Errorf("%d bytes follow the batch's %d records", len(raw), n)
	}
	return out, nil
}

// errInflatedTooLarge refuses a compressed batch that inflates beyond the limit, so a
// small request cannot make the broker allocate without bound.
var errInflatedTooLarge = errors.New("decompressed records exceed the limit")

// decompress inflates a batch's records section by its codec, to at most limit bytes.
// charge, when not nil, is asked for the inflated bytes as they are produced; its
// refusal stops the inflation (errBudget).
func decompress(codec int16, in []byte, limit int, charge chargeFunc) ([]byte, error) {
	switch codec {
	case codecNone:
		return in, nil
	case codecGzip:
		return inflateGzip(in, limit, charge)
	case codecSnappy:
		return inflateSnappy(in, limit, charge)
	case codecLZ4:
		return inflateLZ4(in, limit, charge)
	case codecZstd:
		return inflateZstd(in, limit, charge)
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// readLimited reads r to its end, failing once it yields more than limit bytes.
// Each growth of the output is charged first, so concurrent decompression bombs stop
// at the server's request-bytes budget rather than after inflating.
func readLimited(r io.Reader, limit int, hint int, charge chargeFunc) ([]byte, error) {
	size := min(max(hint, 512), limit+1)
	if charge != nil && !charge(size) {
		return nil, errBudget
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, fmt.Errorf("%w of %d bytes", errInflatedTooLarge, limit)
			}
			grow := min(max(cap(buf), 64<<10), limit+1-cap(buf))
			// The whole new buffer is charged: the old one stays allocated (garbage)
			// until a collection, so the charges bound what inflation allocates.
			if charge != nil && !charge(cap(buf)+grow) {
				return nil, errBudget
			}
			nb := make([]byte, len(buf), cap(buf)+grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, fmt.Errorf("%w of %d bytes", errInflatedTooLarge, limit)
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

var gzipReaders sync.Pool // *gzip.Reader

func inflateGzip(in []byte, limit int, charge chargeFunc) ([]byte, error) {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(in))
	} else {
		err = zr.Reset(bytes.NewReader(in))
	}
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	defer gzipReaders.Put(zr)
	out, err := readLimited(zr, limit, 4*len(in), charge)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return out, nil
}

var lz4Readers = sync.Pool{New: func() any { return lz4.NewReader(nil) }}

func inflateLZ4(in []byte, limit int, charge chargeFunc) ([]byte, error) {
	zr := lz4Readers.Get().(*lz4.Reader)
	defer lz4Readers.Put(zr)
	zr.Reset(bytes.NewReader(in))
	out, err := readLimited(zr, limit, 4*len(in), charge)
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	return out, nil
}

// zstdMaxWindow bounds the history a zstd frame may ask for; producers' default levels
// use a few MiB.
const zstdMaxWindow = 64 << 20

// zstdReaders hold synchronous decoders (concurrency 1 starts no goroutines, so a
// decoder dropped by the pool needs no Close).
var zstdReaders sync.Pool // *zstd.Decoder

func inflateZstd(in []byte, limit int, charge chargeFunc) ([]byte, error) {
	zr, _ := zstdReaders.Get().(*zstd.Decoder)
	var err error
	if zr == nil {
		zr, err = zstd.NewReader(bytes.NewReader(in), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
	} else {
		err = zr.Reset(bytes.NewReader(in))
	}
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	defer func() {
		_ = zr.Reset(nil) // drop the reference to the request
		zstdReaders.Put(zr)
	}()
	out, err := readLimited(zr, limit, 4*len(in), charge)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return out, nil
}

// xerialMagic opens snappy data framed by snappy-java's SnappyOutputStream, which the
// Java producer (and others copying it) send: the magic, a version and a compatible
// version (4 bytes each), then blocks of a 4-byte big-endian length and a raw snappy
// block. Other clients (librdkafka, franz-go) send one raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderLen = 16

func inflateSnappy(in []byte, limit int, charge chargeFunc) ([]byte, error) {
	if !bytes.HasPrefix(in, xerialMagic) {
		return snappyBlock(nil, in, limit, charge)
	}
	if len(in) < xerialHeaderLen {
		return nil, errors.New("snappy: xerial header cut short")
	}
	var out []byte
	for rest := in[xerialHeaderLen:]; len(rest) > 0; {
		if len(rest) < 4 {
			return nil, errors.New("snappy: xerial block length cut short")
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return nil, fmt.Errorf("snappy: xerial block of %d bytes, %d left", n, len(rest))
		}
		var err error
		if out, err = snappyBlock(out, rest[:n], limit, charge); err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	return out, nil
}

// snappyBlock appends one raw snappy block to dst, refusing before allocation when the
// block announces more than the limit allows.
func snappyBlock(dst, block []byte, limit int, charge chargeFunc) ([]byte, error) {
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > limit-len(dst) {
		return nil, fmt.Errorf("snappy: %w of %d bytes", errInflatedTooLarge, limit)
	}
	if charge != nil && !charge(n) {
		return nil, errBudget
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	got, err := snappy.Decode(dst[len(dst):len(dst)+n], block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return dst[:len(dst)+len(got)], nil
}
