package log

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cockroachdb/pebble/v2"
)

// prefixRaft holds the cluster's Raft state (cluster/): log entries, hard states and
// snapshot metadata of every Raft group on this node, laid out by the cluster package
// under this prefix. It shares the database, write-ahead log and fsync with the
// streams, so a replica's applied index can be written in the same batch as the
// records it applied (an entry op, see AppendAt).
const prefixRaft = 'r'

// RaftBatch is one atomic write of Raft state; keys are given without the prefix.
type RaftBatch struct {
	l *Log
	b *pebble.Batch
}

// NewRaftBatch starts a write of Raft state; Commit or Close it.
func (l *Log) NewRaftBatch() *RaftBatch { return &RaftBatch{l: l, b: l.db.NewBatch()} }

func raftKey(k []byte) []byte { return append([]byte{prefixRaft}, k...) }

// Set stores value at key.
func (rb *RaftBatch) Set(key, value []byte) { _ = rb.b.Set(raftKey(key), value, nil) }

// Delete removes key.
func (rb *RaftBatch) Delete(key []byte) { _ = rb.b.Delete(raftKey(key), nil) }

// DeleteRange removes the keys in [lo, hi).
func (rb *RaftBatch) DeleteRange(lo, hi []byte) { _ = rb.b.DeleteRange(raftKey(lo), raftKey(hi), nil) }

// Empty reports whether nothing was written to the batch.
func (rb *RaftBatch) Empty() bool { return rb.b.Empty() }

// Commit writes the batch. With fsync it returns once the write is on disk; without,
// once it reached the operating system (it survives the process being killed, as a
// `write` durability append does).
func (rb *RaftBatch) Commit(fsync bool) error {
	defer rb.b.Close()
	var err error
	if fsync && !rb.l.opts.NoSync {
		err = rb.l.guardWrite(rb.b, pebble.Sync, false)
	} else {
		err = rb.l.guardCommit(rb.b, pebble.Sync, false)
	}
	if err != nil {
		return fmt.Errorf("raft write: %w", err)
	}
	return nil
}

// Close drops an uncommitted batch.
func (rb *RaftBatch) Close() { _ = rb.b.Close() }

// RaftGet returns the value at key, or nil if there is none.
func (l *Log) RaftGet(key []byte) ([]byte, error) {
	v, closer, err := l.db.Get(raftKey(key))
	if err == pebble.ErrNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raft get: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// RaftScan calls fn for every key in [lo, hi) in order (key without the prefix; both
// slices are valid only during the call) until fn returns an error.
func (l *Log) RaftScan(lo, hi []byte, fn func(key, value []byte) error) error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: raftKey(lo), UpperBound: raftKey(hi)})
	if err != nil {
		return fmt.Errorf("raft scan: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("raft scan: %w", err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			return err
		}
	}
	return it.Error()
}

// EncodeRecords appends recs to dst as one uncompressed Kafka v2 record batch (base
// offset 0, append time tsUS): the form the log stores, and what the cluster carries
// in its Raft entries. DecodeRecords reads it back. It runs once per cluster append,
// so dst is grown once to the batch's size and the record scratch is pooled.
func EncodeRecords(dst []byte, tsUS int64, recs []Record) []byte {
	dst = slices.Grow(dst, encodedSize(recs))
	e := encoders.Get().(*valueEncoder)
	dst = e.encodeBatch(dst, 0, tsUS, recs, nil, int32(len(recs)-1), noProducer)
	encoders.Put(e)
	return dst
}

// encoders are EncodeRecords' scratch (valueEncoder keeps no record bytes between calls).
var encoders = sync.Pool{New: func() any { return new(valueEncoder) }}

// encodedSize is an upper bound of the batch EncodeRecords makes of recs: the batch
// header, and per record its fields with the longest varints of their lengths.
func encodedSize(recs []Record) int {
	n := batchHeaderLen
	for i := range recs {
		r := &recs[i]
		n += 5 + 1 + 10 + 5 + 5 + len(r.Key) + 5 + len(r.Value) + 5
		for _, h := range r.Headers {
			n += 10 + len(h.Key) + len(h.Value)
		}
	}
	return n
}

// DecodeRecords returns the records of a batch EncodeRecords made. Their keys,
// values and header keys point into batch, which must not change afterwards.
func DecodeRecords(batch []byte) ([]Record, error) { return AppendDecodedRecords(nil, batch) }

// AppendDecodedRecords is DecodeRecords appending to dst: a replica applying an entry
// of several appends decodes them all into one slice. The records' headers share
// one allocation.
func AppendDecodedRecords(dst []Record, batch []byte) ([]Record, error) {
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(batch); err != nil {
		return dst, fmt.Errorf("decode records: %w", err)
	}
	raw, err := decompress(nil, rb.Records, codecOf(rb.Attributes))
	if err != nil {
		return dst, fmt.Errorf("decode records: %w", err)
	}
	n := int(max(rb.NumRecords, 0))
	dst = slices.Grow(dst, n)
	var hs []Header
	for i := range n {
		l, k := kbin.Varint(raw)
		if k <= 0 || int(l) < 0 || len(raw) < k+int(l) {
			return dst, fmt.Errorf("decode records: record %d: %w", i, errCorruptBatch)
		}
		body := raw[:k+int(l)]
		raw = raw[k+int(l):]
		// Unsafe: header keys point into batch as keys and values do, instead of
		// one string allocated per header of every record (batch is never changed).
		var kr kmsg.Record
		if err := kr.UnsafeReadFrom(body); err != nil {
			return dst, fmt.Errorf("decode records: record %d: %w", i, err)
		}
		rec := Record{Key: kr.Key, Value: kr.Value}
		if nh := len(kr.Headers); nh > 0 {
			if cap(hs)-len(hs) < nh {
				// Records of one publisher mostly carry as many headers each.
				hs = make([]Header, 0, nh*(n-i))
			}
			at := len(hs)
			for _, h := range kr.Headers {
				hs = append(hs, Header{Key: h.Key, Value: h.Value})
			}
			rec.Headers = hs[at:len(hs):len(hs)]
		}
		dst = append(dst, rec)
	}
	return dst, nil
}
