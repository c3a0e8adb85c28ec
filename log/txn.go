package log

// Transactions in the log (docs/transactions.md): a producer's transactional appends
// are stored as batches of their own that carry its producer id and epoch and the
// transactional attribute, and its transaction on a shard ends with a control batch
// (one record: commit or abort), as Kafka stores them, so Kafka fetches serve both as
// they are. The log keeps, per shard, which producers have a transaction open and from
// which offset: the last stable offset (LSO) is the first offset of the oldest open
// transaction, or the high watermark. Readers that must not see uncommitted records
// stop at the LSO; those that must not see aborted ones skip the ranges the abort
// index lists. Both pieces of state are written in the same Pebble batch as the
// appends and markers that change them:
//
//	o <sid u32> <shard u32> <pid u64>              -> first offset u64, epoch u16 (open)
//	a <sid u32> <shard u32> <marker u64> <pid u64> -> first offset u64 (aborted)

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Txn tags an append as part of a producer's open transaction.
type Txn struct {
	ProducerID int64
	Epoch      int16
}

// Marker ends a producer's transaction on one shard: a control batch (commit or
// abort) is appended, and the shard's LSO moves past the transaction.
type Marker struct {
	Stream           *Stream
	Shard            int32
	ProducerID       int64
	Epoch            int16
	Commit           bool
	CoordinatorEpoch int32
}

// MarkerResult is where a marker landed: the transaction's first offset on the shard
// (-1 when the producer appended nothing there) and the control batch's offset.
type MarkerResult struct {
	FirstOffset int64
	Offset      int64
	Err         error
}

// GroupOffsets are a consumer group's offsets committed with a transaction.
type GroupOffsets struct {
	Group   string
	Offsets []CommittedOffset
}

// AbortedTxn is one aborted transaction of a shard: records of ProducerID from
// FirstOffset up to the abort marker at LastOffset are not committed.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64
}

const (
	prefixOpenTxn    = 'o'
	prefixAbortedTxn = 'a'

	attrTransactional = 0x10
	attrControl       = 0x20

	// maxAbortedScan bounds the aborted transactions one read collects.
	maxAbortedScan = 10000
)

// ErrTxnMarkers is returned when some markers of an EndTxn could not be written.
var ErrTxnMarkers = errors.New("transaction markers not written")

func openTxnKey(sid uint32, shard int32, pid int64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(prefixOpenTxn, sid, shard), uint64(pid))
}

func abortedTxnKey(sid uint32, shard int32, marker, pid int64) []byte {
	k := binary.BigEndian.AppendUint64(shardPrefix(prefixAbortedTxn, sid, shard), uint64(marker))
	return binary.BigEndian.AppendUint64(k, uint64(pid))
}

// batchProducer is what a stored batch's header says of its producer.
type batchProducer struct {
	id    int64
	epoch int16
	attrs int16 // attrTransactional, attrControl
}

var noProducer = batchProducer{id: -1, epoch: -1}

// producerOf reads the producer fields of raw batch bytes.
func producerOf(b []byte) batchProducer {
	return batchProducer{
		id:    int64(binary.BigEndian.Uint64(b[43:51])),
		epoch: int16(binary.BigEndian.Uint16(b[51:53])),
		attrs: int16(binary.BigEndian.Uint16(b[21:23])) & (attrTransactional | attrControl),
	}
}

// special reports a batch coalescing and compaction must keep apart: transactional
// data (its producer id decides whether it is aborted) or a control batch.
func (p batchProducer) special() bool { return p.attrs != 0 }

// controlRecord is the one record of a marker's control batch: key version 0 and type
// (0 abort, 1 commit), value version 0 and the coordinator epoch.
func controlRecord(commit bool, coordEpoch int32) Record {
	key := kmsg.ControlRecordKey{Type: kmsg.ControlRecordKeyTypeAbort}
	if commit {
		key.Type = kmsg.ControlRecordKeyTypeCommit
	}
	val := kmsg.EndTxnMarker{CoordinatorEpoch: coordEpoch}
	return Record{Key: key.AppendTo(nil), Value: val.AppendTo(nil)}
}

// Control reports whether the batch is a transaction marker.
func (b Batch) Control() bool {
	return len(b.Data) >= batchHeaderLen && producerOf(b.Data).attrs&attrControl != 0
}

// ProducerID is the producer id of a transactional or control batch, else -1.
func (b Batch) ProducerID() int64 {
	if len(b.Data) < batchHeaderLen || !producerOf(b.Data).special() {
		return -1
	}
	return producerOf(b.Data).id
}

// AppendTxnAsync is AppendAsyncAdmit for a record of producer txn's transaction: the
// records are stored as a batch of their own carrying the producer, and the shard's
// transaction of that producer opens at them if it is not open yet. They stay beyond
// the last stable offset until a marker ends the transaction.
func (s *Stream) AppendTxnAsync(ctx context.Context, mode Admission, shard int32, txn Txn, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	s.appendAsync(ctx, mode, shard, &txn, recs, ops, done)
}

// EndTxnAsync writes the markers, the groups' offsets and the entry changes ops in one
// Pebble batch and calls done with each marker's result once that is durable (or
// failed). A marker for a producer with no open transaction on its shard is written
// all the same, as Kafka does. done runs on the syncer goroutine and must not block.
func (l *Log) EndTxnAsync(markers []Marker, groups []GroupOffsets, ops []EntryOp, done func([]MarkerResult, error)) {
	for _, op := range ops {
		if _, err := entryPrefix(op.Kind); err != nil {
			done(nil, err)
			return
		}
	}
	for _, g := range groups {
		if len(g.Group) > 0xffff {
			done(nil, fmt.Errorf("end transaction: group id too long"))
			return
		}
	}
	e := &endTxn{markers: markers, groups: groups, results: make([]MarkerResult, len(markers)), done: done}
	p := &pending{ops: ops, endTxn: e, enqueued: time.Now()}
	if len(markers) == 0 {
		// Offsets only: acknowledged as entry changes are.
		p.entriesDone = func(err error) { done(nil, err) }
	}
	if !l.enqueue(p) {
		done(nil, fmt.Errorf("end transaction: %w", ErrClosed))
	}
}

// endTxn is one EndTxnAsync in the commit queue.
type endTxn struct {
	markers []Marker
	groups  []GroupOffsets
	results []MarkerResult
	left    int // markers not yet acknowledged (syncer goroutine only)
	done    func([]MarkerResult, error)
}

// markerDone records one marker's outcome; the last calls done.
func (e *endTxn) markerDone(i int, r MarkerResult) {
	e.results[i] = r
	e.left--
	if e.left == 0 {
		e.finish(nil)
	}
}

func (e *endTxn) finish(err error) {
	if err == nil {
		for _, r := range e.results {
			if r.Err != nil {
				err = fmt.Errorf("%w: %w", ErrTxnMarkers, r.Err)
				break
			}
		}
	}
	e.done(e.results, err)
}

// expandEndTxn turns an EndTxn into one pending per marker, each appended to its
// shard like a record append, and writes the groups' offsets into b.
func (l *Log) expandEndTxn(b *pebble.Batch, p *pending) []*pending {
	e := p.endTxn
	writeOps(b, p.ops)
	for _, g := range e.groups {
		for _, c := range g.Offsets {
			s := l.Stream(c.Stream)
			if s == nil || c.Shard < 0 || c.Shard >= s.Shards() {
				continue // the stream went away: Kafka drops such offsets too
			}
			_ = b.Set(groupKey(g.Group, s.id, c.Shard), encodeCommitted(c), nil)
		}
	}
	out := make([]*pending, 0, len(e.markers))
	e.left = len(e.markers)
	for i := range e.markers {
		m := &e.markers[i]
		i := i
		mp := &pending{stream: m.Stream, shard: m.Shard, marker: m, enqueued: p.enqueued, firstTxn: -1,
			recs: []Record{controlRecord(m.Commit, m.CoordinatorEpoch)}}
		mp.done = func(r AppendResult, err error) {
			e.markerDone(i, MarkerResult{FirstOffset: mp.firstTxn, Offset: r.BaseOffset, Err: err})
		}
		out = append(out, mp)
	}
	return out
}

// txnBatch handles the committer's side of a transactional append or a marker p just
// placed at base in g's shard: the open transaction and abort index keys, and the
// first offset the marker's result reports.
func (g *shardGroup) txnBatch(b *pebble.Batch, p *pending, base int64) {
	sh := g.sh
	g.saveOpen()
	if p.marker != nil {
		m := p.marker
		first, open := sh.open[m.ProducerID]
		if open {
			delete(sh.open, m.ProducerID)
			_ = b.Delete(openTxnKey(g.stream.id, g.shard, m.ProducerID), nil)
			if !m.Commit {
				_ = b.Set(abortedTxnKey(g.stream.id, g.shard, base, m.ProducerID), binary.BigEndian.AppendUint64(nil, uint64(first)), nil)
			}
			p.firstTxn = first
		}
		return
	}
	if _, open := sh.open[p.txn.ProducerID]; !open {
		sh.open[p.txn.ProducerID] = base
		v := binary.BigEndian.AppendUint64(nil, uint64(base))
		v = binary.BigEndian.AppendUint16(v, uint16(p.txn.Epoch))
		_ = b.Set(openTxnKey(g.stream.id, g.shard, p.txn.ProducerID), v, nil)
	}
}

// saveOpen keeps the shard's open transactions as they were before the commit, to
// restore if it cannot be applied.
func (g *shardGroup) saveOpen() {
	if g.openBefore != nil {
		return
	}
	g.openBefore = make(map[int64]int64, len(g.sh.open))
	for k, v := range g.sh.open {
		g.openBefore[k] = v
	}
}

// stableBound is the first offset of the shard's oldest open transaction, or MaxInt64.
func (sh *shardState) stableBound() int64 {
	b := int64(math.MaxInt64)
	for _, first := range sh.open {
		b = min(b, first)
	}
	return b
}

// lastStable computes the LSO from the published high watermark and bound: the
// syncer stores the bound before the high watermark, and this reads them the other
// way round, so a high watermark is never paired with an older, larger bound.
func (sh *shardState) lastStable() int64 {
	hwm := sh.hwm.Load()
	lso := min(sh.bound.Load(), hwm)
	return max(lso, sh.start.Load())
}

// LastStable returns the shard's last stable offset: records below it are committed
// or aborted, none is in an open transaction.
func (s *Stream) LastStable(shard int32) (int64, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, err
	}
	return sh.lastStable(), nil
}

// OpenTxns returns the producers with a transaction open on the shard and where each
// began, as the committer knows them (durable or about to be).
func (s *Stream) OpenTxns(shard int32) (map[int64]int64, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return nil, err
	}
	s.log.commitMu.Lock()
	defer s.log.commitMu.Unlock()
	out := make(map[int64]int64, len(sh.open))
	for k, v := range sh.open {
		out[k] = v
	}
	return out, nil
}

// AbortedTxns returns the aborted transactions whose records overlap [from, to): their
// marker is at or after from and their first offset before to, in marker order.
func (s *Stream) AbortedTxns(shard int32, from, to int64) ([]AbortedTxn, error) {
	if _, err := s.shard(shard); err != nil {
		return nil, err
	}
	p := shardPrefix(prefixAbortedTxn, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("aborted transactions %s/%d: %w", s.name, shard, err)
	}
	defer it.Close()
	var out []AbortedTxn
	n := 0
	for ok := it.SeekGE(binary.BigEndian.AppendUint64(append([]byte(nil), p...), uint64(max(from, 0)))); ok && n < maxAbortedScan; ok = it.Next() {
		n++
		k, v := it.Key(), it.Value()
		if len(k) != len(p)+16 || len(v) != 8 {
			continue
		}
		a := AbortedTxn{
			LastOffset:  int64(binary.BigEndian.Uint64(k[len(p):])),
			ProducerID:  int64(binary.BigEndian.Uint64(k[len(p)+8:])),
			FirstOffset: int64(binary.BigEndian.Uint64(v)),
		}
		if a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out, it.Error()
}

// ReadCommitted is Read for readers that must see committed records only ($stream
// replay): it stops at the last stable offset, and a control batch or a batch of an
// aborted transaction comes back as an empty batch over the same offsets (no records),
// so the reader moves past it. Reading beyond the LSO returns nothing.
func (s *Stream) ReadCommitted(shard int32, offset int64, maxBytes int) ([]Batch, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return nil, err
	}
	lso := sh.lastStable()
	if offset >= lso {
		if start, hwm := sh.start.Load(), sh.hwm.Load(); offset < start || offset > hwm {
			return nil, fmt.Errorf("read %s/%d at %d (log %d..%d): %w", s.name, shard, offset, start, hwm, ErrOffsetOutOfRange)
		}
		return nil, nil
	}
	var out []Batch
	var aborted []AbortedTxn
	var abortErr error
	fetched := false
	err = s.scanTo(shard, offset, maxBytes, lso, func(base, last int64, sv storedValue) {
		pr := producerOf(sv.batch)
		skip := pr.attrs&attrControl != 0
		if !skip && pr.attrs&attrTransactional != 0 {
			if !fetched {
				aborted, abortErr = s.AbortedTxns(shard, offset, lso)
				fetched = true
			}
			for _, a := range aborted {
				if a.ProducerID == pr.id && base >= a.FirstOffset && base <= a.LastOffset {
					skip = true
					break
				}
			}
		}
		if skip {
			out = append(out, Batch{BaseOffset: base, LastOffset: last, TimestampUS: sv.tsUS, Data: emptyBatch(base, last)})
			return
		}
		out = append(out, Batch{BaseOffset: base, LastOffset: last, TimestampUS: sv.tsUS, Data: append([]byte(nil), sv.batch...), segs: append([]byte(nil), sv.segs...)})
	})
	if err == nil {
		err = abortErr
	}
	return out, err
}

// emptyBatch is a v2 batch of no records over base..last.
func emptyBatch(base, last int64) []byte {
	rb := kmsg.RecordBatch{FirstOffset: base, PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrLogAppendTime,
		LastOffsetDelta: int32(min(last-base, math.MaxInt32)), FirstTimestamp: -1, MaxTimestamp: -1,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:21], crc32c(b[crcStart:]))
	return b
}

// recoverTxns loads a shard's open transactions at open.
func (l *Log) recoverTxns(sid uint32, shard int32, sh *shardState) error {
	p := shardPrefix(prefixOpenTxn, sid, shard)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(p)+8 || len(v) < 8 {
			return fmt.Errorf("open transaction entry: %w", errCorruptBatch)
		}
		sh.open[int64(binary.BigEndian.Uint64(k[len(p):]))] = int64(binary.BigEndian.Uint64(v))
	}
	sh.bound.Store(sh.stableBound())
	return it.Error()
}

// AppendTxnAt is AppendAt for a replicated transactional append (txn set: recs of the
// producer's transaction) or transaction marker (m set, whose Stream and Shard are
// ignored: the control record is made here, recs must be empty), as a replica applies
// them (cluster/): the open-transaction and abort-index keys are written in the same
// Pebble batch, from the entry alone, so every replica holds the same last stable
// offset and aborted transactions. done gets where the batch landed and, for a
// marker, the first offset of the transaction it ended on the shard (-1 if none was
// open).
func (s *Stream) AppendTxnAt(shard int32, tsUS, base int64, txn *Txn, m *Marker, recs []Record, ops []EntryOp, done func(res AppendResult, first int64, err error)) {
	fail := func(err error) { done(AppendResult{}, -1, err) }
	switch {
	case tsUS <= 0:
		fail(fmt.Errorf("append %s/%d: append time %d", s.name, shard, tsUS))
		return
	case (txn == nil) == (m == nil):
		fail(fmt.Errorf("append %s/%d: a replicated transactional append needs a transaction or a marker", s.name, shard))
		return
	case txn != nil && len(recs) == 0:
		fail(fmt.Errorf("append %s/%d: no records", s.name, shard))
		return
	}
	if _, err := s.shard(shard); err != nil {
		fail(fmt.Errorf("append: %w", err))
		return
	}
	for _, op := range ops {
		if _, err := entryPrefix(op.Kind); err != nil {
			fail(fmt.Errorf("append %s/%d: %w", s.name, shard, err))
			return
		}
	}
	p := &pending{stream: s, shard: shard, ops: ops, enqueued: time.Now(), fixedTS: tsUS, wantBase: base, firstTxn: -1}
	if txn != nil {
		t := *txn
		p.txn, p.recs = &t, recs
	} else {
		mk := *m
		mk.Stream, mk.Shard = s, shard
		p.marker, p.recs = &mk, []Record{controlRecord(mk.Commit, mk.CoordinatorEpoch)}
	}
	p.done = func(r AppendResult, err error) { done(r, p.firstTxn, err) }
	s.log.submit(context.Background(), p, int64(estimateSize(p.recs)+opsSize(ops)), AppendBlock)
}

// BatchProducer is what an encoded batch's header says of its producer: id and epoch,
// and whether it is transactional or a control batch (a replica copying a shard's
// batches from its leader keeps them so: cluster snapshots).
func BatchProducer(b []byte) (pid int64, epoch int16, transactional, control bool) {
	if len(b) < batchHeaderLen {
		return -1, -1, false, false
	}
	p := producerOf(b)
	return p.id, p.epoch, p.attrs&attrTransactional != 0, p.attrs&attrControl != 0
}

// EncodeTxnRecords is EncodeRecords for records of producer pid's transaction, or
// (control) its marker: the header carries the producer and the attributes.
func EncodeTxnRecords(dst []byte, tsUS int64, recs []Record, pid int64, epoch int16, control bool) []byte {
	prod := batchProducer{id: pid, epoch: epoch, attrs: attrTransactional}
	if control {
		prod.attrs |= attrControl
	}
	v := encodeValueProducer(nil, 0, tsUS, 0, recs, nil, int32(len(recs)-1), prod)
	return append(dst, v[valueHeaderLen:]...)
}

// ParseMarker reads a marker's control record (commit or abort, coordinator epoch).
func ParseMarker(r Record) (commit bool, coordEpoch int32, err error) {
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(r.Key); err != nil {
		return false, 0, fmt.Errorf("control record key: %w", err)
	}
	var v kmsg.EndTxnMarker
	if err := v.ReadFrom(r.Value); err != nil {
		return false, 0, fmt.Errorf("control record value: %w", err)
	}
	return k.Type == kmsg.ControlRecordKeyTypeCommit, v.CoordinatorEpoch, nil
}
