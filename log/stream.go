package log

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Retention bounds what a shard keeps; zero values mean no bound.
type Retention struct {
	MaxAge      time.Duration `json:"max_age,omitempty"`
	MaxBytes    int64         `json:"max_bytes,omitempty"`
	MaxMessages int64         `json:"max_messages,omitempty"`
}

// StreamSpec is what the log needs to know of a stream; Meta carries the rest of the
// definition (filters, key) for the layers above, stored with it and returned unchanged.
type StreamSpec struct {
	Name      string    `json:"name"`
	Shards    int32     `json:"shards"`
	Retention Retention `json:"retention"`
	LastValue bool      `json:"last_value,omitempty"`
	// Compression is the codec merged batches are stored with: "" or "none", "lz4",
	// "zstd" (coalesce.go). Kafka consumers decompress them themselves.
	Compression string `json:"compression,omitempty"`
	// Durability overrides the log's Options.Durability for this stream's appends.
	Durability Durability      `json:"durability,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`
}

// Stream is one named stream of the log.
type Stream struct {
	log *Log
	id  uint32
	// name is spec.Name, which never changes: read without the lock that guards spec.
	name string

	mu      sync.RWMutex
	spec    StreamSpec
	shards  []*shardState
	deleted bool
}

type shardState struct {
	// Owned by the committer (under Log.commitMu).
	next   int64
	lastTS int64
	cum    int64

	start atomic.Int64 // log start offset
	hwm   atomic.Int64 // high watermark: one past the last durable record
	bytes atomic.Int64 // retained batch bytes

	compactedTo atomic.Int64 // LSO at the last last-value compaction

	// open maps the producers with a transaction open on the shard to its first
	// offset (owned by the committer); bound is its smallest first offset as of the
	// published high watermark, MaxInt64 when none (txn.go).
	open  map[int64]int64
	bound atomic.Int64

	co coalesceState

	notifyMu sync.Mutex
	notify   chan struct{}
}

func newShardState() *shardState {
	sh := &shardState{notify: make(chan struct{}), open: map[int64]int64{}}
	sh.bound.Store(math.MaxInt64)
	return sh
}

// appended closes the current notification channel, waking every waiter.
func (sh *shardState) appended() {
	sh.notifyMu.Lock()
	close(sh.notify)
	sh.notify = make(chan struct{})
	sh.notifyMu.Unlock()
}

func (spec StreamSpec) validate() error {
	if spec.Name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidSpec)
	}
	if spec.Shards < 1 {
		return fmt.Errorf("%w: stream %s: shards must be at least 1", ErrInvalidSpec, spec.Name)
	}
	if spec.Retention.MaxAge < 0 || spec.Retention.MaxBytes < 0 || spec.Retention.MaxMessages < 0 {
		return fmt.Errorf("%w: stream %s: negative retention", ErrInvalidSpec, spec.Name)
	}
	if _, err := parseCodec(spec.Compression); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrInvalidSpec, spec.Name, err)
	}
	if _, err := ParseDurability(string(spec.Durability)); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrInvalidSpec, spec.Name, err)
	}
	return nil
}

// CreateStream creates a new stream; ErrStreamExists if the name is taken.
func (l *Log) CreateStream(spec StreamSpec) (*Stream, error) { return l.createStream(spec, 0) }

// EnsureStreamID is EnsureStream for a stream whose id another node chose (the
// cluster's catalog: every replica of a stream has the same id, which Kafka topic ids
// derive from). An existing stream of that name with another id is an error.
func (l *Log) EnsureStreamID(spec StreamSpec, id uint32) (*Stream, error) {
	if id == 0 {
		return nil, fmt.Errorf("create stream %s: %w: id 0", spec.Name, ErrInvalidSpec)
	}
	if s := l.Stream(spec.Name); s != nil {
		if s.id != id {
			return nil, fmt.Errorf("create stream %s with id %d: %w with id %d", spec.Name, id, ErrStreamExists, s.id)
		}
		return l.UpdateStream(spec)
	}
	if s := l.streamByID(id); s != nil {
		return nil, fmt.Errorf("create stream %s with id %d: the id is stream %s's", spec.Name, id, s.name)
	}
	return l.createStream(spec, id)
}

// createStream creates a stream with id, or the next free id when id is 0.
func (l *Log) createStream(spec StreamSpec, id uint32) (*Stream, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if l.Stream(spec.Name) != nil {
		return nil, fmt.Errorf("create stream %s: %w", spec.Name, ErrStreamExists)
	}
	next := l.nextID
	if id == 0 {
		id = l.nextID + 1
	}
	next = max(next, id)
	b := l.db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte{prefixNextID}, binary.BigEndian.AppendUint32(nil, next), nil)
	if err := putMeta(b, id, spec); err != nil {
		return nil, err
	}
	if err := l.guardWrite(b, pebble.Sync, false); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", spec.Name, err)
	}
	l.nextID = next
	s := &Stream{log: l, id: id, name: spec.Name, spec: spec}
	for i := int32(0); i < spec.Shards; i++ {
		s.shards = append(s.shards, newShardState())
	}
	l.mu.Lock()
	l.streams[spec.Name] = s
	l.mu.Unlock()
	return s, nil
}

func putMeta(b *pebble.Batch, id uint32, spec StreamSpec) error {
	v, err := json.Marshal(storedStream{ID: id, Spec: spec})
	if err != nil {
		return fmt.Errorf("encode stream %s: %w", spec.Name, err)
	}
	return b.Set(metaKey(spec.Name), v, nil)
}

// UpdateStream changes an existing stream's definition. Shards can grow, never shrink.
func (l *Log) UpdateStream(spec StreamSpec) (*Stream, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	s := l.Stream(spec.Name)
	if s == nil {
		return nil, fmt.Errorf("update stream %s: %w", spec.Name, ErrUnknownStream)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.Shards < s.spec.Shards {
		return nil, fmt.Errorf("%w: stream %s: shards cannot shrink from %d to %d", ErrInvalidSpec, spec.Name, s.spec.Shards, spec.Shards)
	}
	b := l.db.NewBatch()
	defer b.Close()
	if err := putMeta(b, s.id, spec); err != nil {
		return nil, err
	}
	if err := l.guardWrite(b, pebble.Sync, false); err != nil {
		return nil, fmt.Errorf("update stream %s: %w", spec.Name, err)
	}
	for i := s.spec.Shards; i < spec.Shards; i++ {
		s.shards = append(s.shards, newShardState())
	}
	s.spec = spec
	return s, nil
}

// EnsureStream creates the stream or updates it to spec (used for configured streams).
func (l *Log) EnsureStream(spec StreamSpec) (*Stream, error) {
	if l.Stream(spec.Name) == nil {
		return l.CreateStream(spec)
	}
	return l.UpdateStream(spec)
}

// DeleteStream removes a stream with its data and its committed group offsets in one
// write, then compacts the stream's key ranges so the disk space is given back.
func (l *Log) DeleteStream(name string) error {
	id, err := l.deleteStream(name)
	if err != nil {
		return err
	}
	// Range deletions only hide the data; compacting the ranges drops it from disk.
	for _, p := range []byte{prefixBatch, prefixTime} {
		sp := streamPrefix(p, id)
		if err := l.waitPebble(func() error { return l.db.Compact(context.Background(), sp, prefixEnd(sp), false) }); err != nil {
			l.lg.Warn().Err(err).Str("stream", name).Msg("compact deleted stream")
		}
	}
	return nil
}

// DiskUsage estimates the bytes the log's files take on disk.
func (l *Log) DiskUsage() uint64 {
	n, err := l.db.EstimateDiskUsage([]byte{0}, []byte{0xff})
	if err != nil {
		return 0
	}
	return n
}

func (l *Log) deleteStream(name string) (uint32, error) {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	s := l.Stream(name)
	if s == nil {
		return 0, fmt.Errorf("delete stream %s: %w", name, ErrUnknownStream)
	}
	b := l.db.NewBatch()
	defer b.Close()
	for _, p := range []byte{prefixBatch, prefixTime, prefixStart, prefixCoalesce, prefixOpenTxn, prefixAbortedTxn} {
		sp := streamPrefix(p, s.id)
		_ = b.DeleteRange(sp, prefixEnd(sp), nil)
	}
	_ = b.Delete(metaKey(name), nil)
	if err := l.deleteStreamOffsets(b, s.id); err != nil {
		return 0, fmt.Errorf("delete stream %s: %w", name, err)
	}
	if err := l.guardWrite(b, pebble.Sync, true); err != nil {
		return 0, fmt.Errorf("delete stream %s: %w", name, err)
	}
	s.mu.Lock()
	s.deleted = true
	shards := s.shards
	s.mu.Unlock()
	l.mu.Lock()
	delete(l.streams, name)
	l.mu.Unlock()
	for _, sh := range shards {
		sh.appended() // wake long polls so they see the deletion
	}
	return s.id, nil
}

// DeleteRecordsBefore advances the shard's log start to offset (Kafka DeleteRecords);
// -1 means the high watermark. Records below it are deleted; an offset below the
// current start changes nothing; one past the high watermark is ErrOffsetOutOfRange.
// It returns the new log start.
func (s *Stream) DeleteRecordsBefore(shard int32, offset int64) (int64, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, err
	}
	start, hwm := sh.start.Load(), sh.hwm.Load()
	if offset == -1 {
		offset = hwm
	}
	if offset < 0 || offset > hwm {
		return 0, fmt.Errorf("delete records %s/%d before %d (log %d..%d): %w", s.name, shard, offset, start, hwm, ErrOffsetOutOfRange)
	}
	if offset <= start {
		return start, nil
	}
	if err := s.truncateBefore(shard, sh, offset, nil); err != nil {
		return 0, err
	}
	return sh.start.Load(), nil
}

// Name is the stream's name (its Kafka topic).
func (s *Stream) Name() string { return s.name }

// ID is the stream's internal numeric id (unique for the life of the data dir).
func (s *Stream) ID() uint32 { return s.id }

// Spec returns the stream's current definition.
func (s *Stream) Spec() StreamSpec {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.spec
}

// Shards is the current number of shards.
func (s *Stream) Shards() int32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int32(len(s.shards))
}

// Deleted reports whether the stream has been deleted.
func (s *Stream) Deleted() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.deleted
}

func (s *Stream) shard(i int32) (*shardState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.deleted {
		return nil, fmt.Errorf("stream %s: %w", s.name, ErrUnknownStream)
	}
	if i < 0 || int(i) >= len(s.shards) {
		return nil, fmt.Errorf("stream %s shard %d: %w", s.name, i, ErrUnknownShard)
	}
	return s.shards[i], nil
}

// Offsets returns the shard's log start offset and high watermark.
func (s *Stream) Offsets(shard int32) (start, hwm int64, err error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, 0, err
	}
	// Read hwm first: start only grows toward hwm, so start <= hwm holds.
	hwm = sh.hwm.Load()
	return sh.start.Load(), hwm, nil
}

// Size returns the bytes of record batches the shard retains.
func (s *Stream) Size(shard int32) int64 {
	sh, err := s.shard(shard)
	if err != nil {
		return 0
	}
	return sh.bytes.Load()
}

// Appended returns a channel closed at the next durable append to the shard (or when
// the stream is deleted); check the offsets again after it fires.
func (s *Stream) Appended(shard int32) (<-chan struct{}, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return nil, err
	}
	sh.notifyMu.Lock()
	defer sh.notifyMu.Unlock()
	return sh.notify, nil
}

// Read returns the stored batches from the one holding offset on, up to maxBytes in
// all; the first batch is always returned whole, whatever its size. Reading at the high
// watermark returns nothing; outside [start, hwm] it is ErrOffsetOutOfRange.
func (s *Stream) Read(shard int32, offset int64, maxBytes int) ([]Batch, error) {
	var out []Batch
	err := s.scan(shard, offset, maxBytes, func(base, last int64, sv storedValue) {
		out = append(out, Batch{BaseOffset: base, LastOffset: last, TimestampUS: sv.tsUS, Data: append([]byte(nil), sv.batch...), segs: append([]byte(nil), sv.segs...)})
	})
	return out, err
}

// ReadBytesTo is ReadBytes that stops before the batch holding upper: a read_committed
// Kafka fetch passes the last stable offset. Transactions are stored one batch per
// append and marker, so no batch straddles it.
func (s *Stream) ReadBytesTo(dst []byte, shard int32, offset int64, maxBytes int, upper int64) ([]byte, error) {
	err := s.scanTo(shard, offset, maxBytes, upper, func(_, _ int64, sv storedValue) { dst = append(dst, sv.batch...) })
	return dst, err
}

// ReadBytes is Read for a Kafka fetch: it appends the same batches' bytes, back to back
// as a fetch response carries them, to dst, with one copy and no allocation per batch.
func (s *Stream) ReadBytes(dst []byte, shard int32, offset int64, maxBytes int) ([]byte, error) {
	err := s.scan(shard, offset, maxBytes, func(_, _ int64, sv storedValue) { dst = append(dst, sv.batch...) })
	return dst, err
}

// scan calls fn, in offset order, for the batches Read returns; sv is only valid during
// the call.
func (s *Stream) scan(shard int32, offset int64, maxBytes int, fn func(base, last int64, sv storedValue)) error {
	return s.scanTo(shard, offset, maxBytes, math.MaxInt64, fn)
}

// scanTo is scan that stops before the batch holding upper (a last stable offset).
func (s *Stream) scanTo(shard int32, offset int64, maxBytes int, upper int64, fn func(base, last int64, sv storedValue)) error {
	sh, err := s.shard(shard)
	if err != nil {
		return err
	}
	hwm := sh.hwm.Load()
	start := sh.start.Load()
	if offset < start || offset > hwm {
		return fmt.Errorf("read %s/%d at %d (log %d..%d): %w", s.name, shard, offset, start, hwm, ErrOffsetOutOfRange)
	}
	if offset == hwm || offset >= upper {
		return nil
	}
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(s.id, shard, min(hwm, upper))})
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", s.name, shard, err)
	}
	defer it.Close()
	if !it.SeekLT(batchKey(s.id, shard, offset+1)) {
		it.First()
	}
	total := 0
	for ; it.Valid(); it.Next() {
		sv, err := parseStored(it.Value())
		if err != nil {
			return fmt.Errorf("read %s/%d at %d: %w", s.name, shard, batchKeyOffset(it.Key()), err)
		}
		if total > 0 && total+len(sv.batch) > maxBytes {
			break
		}
		last := batchLastOffset(sv.batch)
		if last < offset {
			continue // a compacted batch that ends before offset
		}
		fn(batchKeyOffset(it.Key()), last, sv)
		total += len(sv.batch)
		if total >= maxBytes {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read %s/%d: %w", s.name, shard, err)
	}
	return nil
}

// OffsetForTime returns the first offset whose timestamp is >= tsUS and that
// timestamp; if there is none it returns the high watermark and -1.
func (s *Stream) OffsetForTime(shard int32, tsUS int64) (offset, foundTS int64, err error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, 0, err
	}
	hwm := sh.hwm.Load()
	start := sh.start.Load()
	p := shardPrefix(prefixTime, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, 0, fmt.Errorf("time lookup %s/%d: %w", s.name, shard, err)
	}
	defer it.Close()
	if tsUS < 0 {
		tsUS = 0
	}
	// There is one entry per commit (merging batches keeps them), and every record of
	// a commit carries its append time, so the first entry stamped at or after T
	// starts with the answer.
	for ok := it.SeekGE(timeKey(s.id, shard, tsUS, 0)); ok; {
		ts, base := timeKeyParts(it.Key())
		if base >= hwm {
			break
		}
		ok = it.Next()
		if base < start {
			// The commit's records run up to the next entry's; keep those retained.
			if ok {
				if _, nb := timeKeyParts(it.Key()); nb <= start {
					continue // wholly below the start
				}
			}
			if start >= hwm {
				break
			}
			base = start
		}
		return base, ts, nil
	}
	return hwm, -1, it.Error()
}

// MaxTimestamp returns the offset and time of the newest record, or (-1, -1) if empty.
func (s *Stream) MaxTimestamp(shard int32) (offset, tsUS int64, err error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, 0, err
	}
	hwm := sh.hwm.Load()
	if hwm == sh.start.Load() {
		return -1, -1, nil
	}
	p := shardPrefix(prefixTime, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		ts, base := timeKeyParts(it.Key())
		if base < hwm {
			return hwm - 1, ts, nil
		}
	}
	return -1, -1, it.Error()
}

// durability is the stream's effective durability, def unless its spec overrides it.
func (s *Stream) durability(def Durability) Durability {
	s.mu.RLock()
	d := s.spec.Durability
	s.mu.RUnlock()
	if d == DurabilityDefault {
		return def
	}
	return d
}
