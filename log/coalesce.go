package log

// Batch coalescing: the committer stores one batch per shard per commit (tens to a few
// hundred records), and every consumer pays a per-batch cost. In the background, once
// they are durable, runs of consecutive small batches of a shard are rewritten as one
// large batch (CoalesceOptions: ~1 MiB or 5,000 records), compressed with the stream's
// codec. One Pebble batch sets the merged batch under the first one's key and deletes
// the others with a range tombstone, so a reader sees either the small batches or the
// merged one, never a gap or a duplicate; a crash leaves one or the other.
//
// A merged batch is a Kafka v2 batch with CreateTime timestamps: each record keeps the
// millisecond time of the commit that appended it, as a delta from the batch's first
// timestamp. Its stored value carries a trailer after the batch, which fetches do not
// send:
//
//	logical u64                      bytes the records took as committed (the batches'
//	                                 sizes summed), so byte accounting and byte
//	                                 retention do not change when batches merge
//	(offset delta u32, time µs u64)* one per merged commit: the append time in µs of
//	                                 the records from that offset on; these match the
//	                                 time index entries, which merging keeps

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CoalesceOptions tune background batch coalescing.
type CoalesceOptions struct {
	// Bytes is the target size of a merged batch before compression (default 1 MiB).
	Bytes int
	// Records is the target record count of a merged batch (default 5,000).
	Records int
	// Delay is how long a shard must go without appends before its last, still small
	// run of batches is merged too (default 100ms).
	Delay time.Duration
	// Disabled keeps batches as committed.
	Disabled bool
}

func (o *CoalesceOptions) defaults() {
	if o.Bytes <= 0 {
		o.Bytes = 1 << 20
	}
	if o.Records <= 0 {
		o.Records = 5000
	}
	if o.Delay <= 0 {
		o.Delay = 100 * time.Millisecond
	}
}

// coalesceState is a shard's coalescing progress.
type coalesceState struct {
	mergedTo   atomic.Int64 // offsets below are in full merged batches (persisted: coalesceKey)
	mergedCum  atomic.Int64 // cumulative logical bytes where the unmerged batches start
	cum        atomic.Int64 // the committer's cumulative bytes after its last commit
	lastAppend atomic.Int64 // unix ns of the shard's last commit
	tailDone   atomic.Int64 // high watermark at which the idle tail was last handled
}

// noteCommit is called by the committer after a commit to the shard; it reports
// whether a full merged batch's worth waits.
func (c *coalesceState) noteCommit(o *CoalesceOptions, next, cum int64, now time.Time) bool {
	c.cum.Store(cum)
	c.lastAppend.Store(now.UnixNano())
	return next-c.mergedTo.Load() >= int64(o.Records) || cum-c.mergedCum.Load() >= int64(o.Bytes)
}

const segLen = 12

// segTable is a merged batch's append-time table (see the top of this file).
type segTable []byte

func (t segTable) n() int { return len(t) / segLen }

func (t segTable) at(i int) (delta int32, tsUS int64) {
	e := t[i*segLen:]
	return int32(binary.BigEndian.Uint32(e)), int64(binary.BigEndian.Uint64(e[4:]))
}

// timeOf is the append time of the record at offset delta: that of the last merged
// commit starting at or before it.
func (t segTable) timeOf(delta int32) int64 {
	i := sort.Search(t.n(), func(i int) bool { d, _ := t.at(i); return d > delta })
	if i == 0 {
		i = 1
	}
	_, ts := t.at(i - 1)
	return ts
}

func appendSeg(dst []byte, delta int32, tsUS int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(delta))
	return binary.BigEndian.AppendUint64(dst, uint64(tsUS))
}

// storedValue is a stored batch value split into its parts.
type storedValue struct {
	tsUS, cum int64
	batch     []byte
	segs      segTable // nil for a batch as committed
	logical   int64    // bytes as committed (len(batch) for a batch as committed)
}

func parseStored(v []byte) (storedValue, error) {
	ts, cum, b, err := decodeValue(v)
	if err != nil {
		return storedValue{}, err
	}
	sv := storedValue{tsUS: ts, cum: cum, batch: b, logical: int64(len(b))}
	if rest := v[valueHeaderLen+len(b):]; len(rest) > 0 {
		if len(rest) < 8 || (len(rest)-8)%segLen != 0 {
			return storedValue{}, errCorruptBatch
		}
		sv.logical = int64(binary.BigEndian.Uint64(rest))
		sv.segs = segTable(rest[8:])
	}
	return sv, nil
}

func (sv storedValue) numRecords() int64 {
	return int64(int32(binary.BigEndian.Uint32(sv.batch[57:61])))
}
func (sv storedValue) codec() codec { return codecOf(int16(binary.BigEndian.Uint16(sv.batch[21:23]))) }

// merger builds one merged batch from stored batches, in offset order.
type merger struct {
	base, tsUS     int64
	firstMS, maxMS int64
	n, lastDelta   int32
	logical        int64
	recs, segs     []byte
	scratch        []byte
	val            []byte // the stored value finish builds, for callers to reuse
}

// coalesceBufs are coalesceShard's buffers, kept on the Log between merges (guarded by
// maintMu, which serialises merges): a merged batch's worth each, which a sync.Pool
// gave up at every GC cycle (several a second under load) and merging then grew again.
type coalesceBufs struct {
	m merger
	// src holds the stored values of the chunk being gathered, copied out of the
	// iterator (its values change as it moves); reused once the chunk is emitted.
	src []byte
}

// keep copies v, a stored value the iterator hands out, into src and parses the copy.
func (b *coalesceBufs) keep(v []byte) storedValue {
	start := len(b.src)
	b.src = append(b.src, v...)
	// Earlier values of the chunk stay valid when append moves src: they keep the old
	// array alive. The copy parses as the original did.
	sv, _ := parseStored(b.src[start:len(b.src):len(b.src)])
	return sv
}

func (m *merger) reset(base, tsUS int64) {
	*m = merger{base: base, tsUS: tsUS, recs: m.recs[:0], segs: m.segs[:0], scratch: m.scratch, val: m.val}
}

// grow makes room for n more bytes of records at once.
func (m *merger) grow(n int) {
	if cap(m.recs)-len(m.recs) < n {
		m.recs = append(make([]byte, 0, len(m.recs)+n), m.recs...)
	}
}

// add appends the records of the batch stored at base that keep accepts (nil: all),
// each with its offset and millisecond time; the record bodies after those two fields
// (key, value, headers) are copied as they are.
func (m *merger) add(base int64, sv storedValue, keep func(off int64) bool) error {
	b := sv.batch
	attrs := int16(binary.BigEndian.Uint16(b[21:23]))
	lastDelta := int32(binary.BigEndian.Uint32(b[23:27]))
	firstTS := int64(binary.BigEndian.Uint64(b[27:35]))
	maxTS := int64(binary.BigEndian.Uint64(b[35:43]))
	num := sv.numRecords()
	raw := b[batchHeaderLen:]
	if c := codecOf(attrs); c != codecNone {
		var err error
		if raw, err = decompress(m.scratch[:0], raw, c); err != nil {
			return err
		}
		m.scratch = raw
	}
	shift := base - m.base
	if sv.segs == nil {
		m.segs = appendSeg(m.segs, int32(shift), sv.tsUS)
	} else {
		for i := 0; i < sv.segs.n(); i++ {
			d, ts := sv.segs.at(i)
			m.segs = appendSeg(m.segs, d+int32(shift), ts)
		}
	}
	var hdr [1 + 2*10]byte
	for i := int64(0); i < num; i++ {
		l, n := kbin.Varint(raw)
		if n <= 0 || l < 1 || len(raw) < n+int(l) {
			return errCorruptBatch
		}
		body := raw[n : n+int(l)]
		raw = raw[n+int(l):]
		tsd, n1 := kbin.Varlong(body[1:])
		if n1 <= 0 {
			return errCorruptBatch
		}
		od, n2 := kbin.Varint(body[1+n1:])
		if n2 <= 0 {
			return errCorruptBatch
		}
		rest := body[1+n1+n2:]
		off := base + int64(od)
		if keep != nil && !keep(off) {
			continue
		}
		ms := firstTS + tsd
		if attrs&attrLogAppendTime != 0 {
			ms = maxTS
		}
		if m.n == 0 {
			m.firstMS, m.maxMS = ms, ms
		}
		m.maxMS = max(m.maxMS, ms)
		h := append(hdr[:0], 0)
		h = kbin.AppendVarlong(h, ms-m.firstMS)
		h = kbin.AppendVarint(h, int32(off-m.base))
		m.recs = kbin.AppendVarint(m.recs, int32(len(h)+len(rest)))
		m.recs = append(m.recs, h...)
		m.recs = append(m.recs, rest...)
		m.n++
	}
	m.lastDelta = int32(shift) + lastDelta
	m.logical += sv.logical
	return nil
}

// finish appends the merged batch's stored value to dst.
func (m *merger) finish(dst []byte, cum int64, c codec) ([]byte, error) {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.tsUS))
	dst = binary.BigEndian.AppendUint64(dst, uint64(cum))
	start := len(dst)
	rb := kmsg.RecordBatch{
		FirstOffset:          m.base,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           int16(c), // CreateTime
		LastOffsetDelta:      m.lastDelta,
		FirstTimestamp:       m.firstMS,
		MaxTimestamp:         m.maxMS,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           m.n,
	}
	dst = rb.AppendTo(dst)
	dst, err := compress(dst, m.recs, c)
	if err != nil {
		return nil, err
	}
	b := dst[start:]
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32c(b[crcStart:]))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.logical))
	return append(dst, m.segs...), nil
}

func coalesceKey(sid uint32, shard int32) []byte { return shardPrefix(prefixCoalesce, sid, shard) }

// coalesceLoop merges batches in the background: woken by the committer when a shard
// has a full merged batch's worth, and every Delay for idle shards' tails.
func (l *Log) coalesceLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.Coalesce.Delay)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.coalesceWake:
		case <-t.C:
		}
		l.coalescePass()
	}
}

func (l *Log) wakeCoalescer() {
	select {
	case l.coalesceWake <- struct{}{}:
	default:
	}
}

// mergeHoldoff: background merging waits while appends found the append queue full
// within it (Log.backlogged), i.e. while the disk is behind the appends. Merging writes
// the records of small batches a second time, and commits under a flood are small:
// with scripts/flood-rss.sh (disk writes throttled to 2 MB/s) it took ~40% of the
// disk's writes from the appends and added to every sync's wait. Between two syncs of
// a flood the queue has room for a moment (0.2-0.4 s seen), so the hold-off outlasts
// that; merging then catches up once the flood ends.
const mergeHoldoff = time.Second

// coalescePass looks at every shard once and merges where there is work.
func (l *Log) coalescePass() {
	if l.store.writeErr() != nil {
		return // merging writes: wait until the disk has room
	}
	o := &l.opts.Coalesce
	now := time.Now().UnixNano()
	for _, s := range l.Streams() {
		for i := int32(0); i < s.Shards(); i++ {
			sh, err := s.shard(i)
			if err != nil {
				break
			}
			co := &sh.co
			hwm := sh.hwm.Load()
			if hwm <= co.mergedTo.Load() {
				continue
			}
			full := hwm-co.mergedTo.Load() >= int64(o.Records) || co.cum.Load()-co.mergedCum.Load() >= int64(o.Bytes)
			idleFor := time.Duration(now - co.lastAppend.Load())
			idle := idleFor >= o.Delay && co.tailDone.Load() != hwm
			if !full && !idle {
				continue
			}
			if l.backlogged(mergeHoldoff) {
				return
			}
			if err := s.coalesceShard(i, sh, idle, idleFor); err != nil {
				l.lg.Warn().Err(err).Str("stream", s.Name()).Int32("shard", i).Msg("coalesce")
			}
		}
	}
}

// Coalesce merges every shard's durable small batches now, the tails included (tests
// and benchmarks use it to wait for coalescing).
func (l *Log) Coalesce() error {
	l.coalesceMu.Lock()
	defer l.coalesceMu.Unlock()
	for _, s := range l.Streams() {
		for i := int32(0); i < s.Shards(); i++ {
			sh, err := s.shard(i)
			if err != nil {
				break
			}
			if err := s.coalesceShard(i, sh, true, time.Hour); err != nil {
				return err
			}
		}
	}
	return nil
}

type coalesceSrc struct {
	base int64
	sv   storedValue
}

// coalesceShard merges the shard's batches from where full merged batches end: every
// full run, and, when the shard is idle, the last run too. Rewriting a merged tail
// again for a few more records would rewrite it over and over under a trickle, so it
// waits until the new records are a quarter of it, or the shard has been idle 20 Delays.
func (s *Stream) coalesceShard(shard int32, sh *shardState, idle bool, idleFor time.Duration) error {
	l := s.log
	o := &l.opts.Coalesce
	l.maintMu.Lock()
	defer l.maintMu.Unlock()
	c, err := parseCodec(s.Spec().Compression)
	if err != nil {
		return err
	}
	co := &sh.co
	start, hwm := sh.start.Load(), sh.hwm.Load()
	from := max(co.mergedTo.Load(), start)
	if from >= hwm {
		return nil
	}
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(s.id, shard, hwm)})
	if err != nil {
		return fmt.Errorf("coalesce %s/%d: %w", s.name, shard, err)
	}
	defer it.Close()
	bufs := &l.coalesceBufs
	m := &bufs.m
	var (
		chunk        []coalesceSrc
		chunkN       int64
		chunkBytes   int64
		tailCum      = int64(-1)
		tailDoneHere = idle
	)
	emit := func(full bool) error {
		if len(chunk) == 0 {
			return nil
		}
		first, last := chunk[0], chunk[len(chunk)-1]
		end := last.base + int64(int32(binary.BigEndian.Uint32(last.sv.batch[23:27]))) + 1
		rewrite := len(chunk) > 1 || first.sv.codec() != c || (c != codecNone && first.sv.segs == nil)
		if producerOf(first.sv.batch).special() {
			rewrite = false // alone in its chunk, kept as stored (below)
		}
		if !full && rewrite && first.sv.segs != nil && len(chunk) > 1 {
			newer := chunkN - first.sv.numRecords()
			if newer*4 < first.sv.numRecords() && idleFor < 20*o.Delay {
				rewrite, tailDoneHere = false, false
			}
		}
		wb := l.db.NewBatch()
		defer wb.Close()
		if rewrite {
			m.reset(first.base, first.sv.tsUS)
			m.grow(int(chunkBytes))
			for _, src := range chunk {
				if err := m.add(src.base, src.sv, nil); err != nil {
					return fmt.Errorf("coalesce %s/%d at %d: %w", s.name, shard, src.base, err)
				}
			}
			if m.val, err = m.finish(m.val[:0], first.sv.cum, c); err != nil {
				return fmt.Errorf("coalesce %s/%d at %d: %w", s.name, shard, first.base, err)
			}
			_ = wb.Set(batchKey(s.id, shard, first.base), m.val, nil)
			if len(chunk) > 1 {
				_ = wb.DeleteRange(batchKey(s.id, shard, first.base+1), batchKey(s.id, shard, last.base+1), nil)
			}
		}
		if full {
			_ = wb.Set(coalesceKey(s.id, shard), binary.BigEndian.AppendUint64(nil, uint64(end)), nil)
		}
		if !wb.Empty() {
			l.commitMu.Lock()
			if s.Deleted() {
				l.commitMu.Unlock()
				return nil
			}
			// No sync: the write is atomic either way, and the next commit's sync
			// makes it durable; losing it in a crash loses nothing.
			err := l.guardWrite(wb, pebble.NoSync, false)
			l.commitMu.Unlock()
			if err != nil {
				return fmt.Errorf("coalesce %s/%d at %d: %w", s.name, shard, first.base, err)
			}
		}
		if full {
			co.mergedTo.Store(end)
			co.mergedCum.Store(last.sv.cum + last.sv.logical)
		}
		chunk, chunkN, chunkBytes = chunk[:0], 0, 0
		bufs.src = bufs.src[:0]
		return nil
	}
	ok := it.SeekLT(batchKey(s.id, shard, from+1))
	if !ok {
		ok = it.First()
	}
	for ; ok; ok = it.Next() {
		// v stays valid until the iterator moves (emit's writes do not move it); it is
		// copied (keep) when it joins a chunk.
		v := it.Value()
		sv, err := parseStored(v)
		if err != nil {
			return fmt.Errorf("coalesce %s/%d at %d: %w", s.name, shard, batchKeyOffset(it.Key()), err)
		}
		if batchLastOffset(sv.batch) < from {
			continue
		}
		n := sv.numRecords()
		if producerOf(sv.batch).special() {
			// A transactional or control batch keeps its producer: never merged with
			// others (a merged batch has none), so it ends the run before it.
			if err := emit(true); err != nil {
				return err
			}
			chunk = append(chunk, coalesceSrc{base: batchKeyOffset(it.Key()), sv: bufs.keep(v)})
			if err := emit(true); err != nil {
				return err
			}
			continue
		}
		if len(chunk) > 0 && (chunkN+n > int64(o.Records) || chunkBytes+sv.logical > int64(o.Bytes)) {
			if err := emit(true); err != nil {
				return err
			}
			select {
			case <-l.stop:
				return nil // closing: a long backlog must not hold up Close
			default:
			}
			if l.backlogged(mergeHoldoff) {
				return nil // resumed from mergedTo by a later pass
			}
		}
		if len(chunk) == 0 {
			tailCum = sv.cum
		}
		chunk = append(chunk, coalesceSrc{base: batchKeyOffset(it.Key()), sv: bufs.keep(v)})
		chunkN += n
		chunkBytes += sv.logical
		if chunkN >= int64(o.Records) || chunkBytes >= int64(o.Bytes) {
			if err := emit(true); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("coalesce %s/%d: %w", s.name, shard, err)
	}
	if len(chunk) > 0 && tailCum >= 0 {
		co.mergedCum.Store(tailCum)
	}
	if idle {
		if err := emit(false); err != nil {
			return err
		}
		if tailDoneHere {
			co.tailDone.Store(hwm)
		}
	}
	return nil
}

// recoverCoalesce loads a shard's coalescing progress at open.
func (l *Log) recoverCoalesce(sid uint32, shard int32, sh *shardState) error {
	v, closer, err := l.db.Get(coalesceKey(sid, shard))
	if err == nil {
		sh.co.mergedTo.Store(int64(binary.BigEndian.Uint64(v)))
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return fmt.Errorf("coalesce state: %w", err)
	}
	sh.co.cum.Store(sh.cum)
	return nil
}
