package log

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// retentionLoop applies every stream's retention periodically. It writes only below the
// high watermark, so it never waits on or blocks the committer.
func (l *Log) retentionLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if l.replicatedMaint.Load() {
				continue // a cluster decides retention on each shard's leader (replicated.go)
			}
			l.ApplyRetention()
		}
	}
}

// ApplyRetention runs retention once over every stream (the background loop calls it).
func (l *Log) ApplyRetention() {
	for _, s := range l.Streams() {
		for i := int32(0); i < s.Shards(); i++ {
			l.maintMu.Lock()
			err := s.applyRetention(i)
			l.maintMu.Unlock()
			if err != nil {
				l.lg.Warn().Err(err).Str("stream", s.Name()).Int32("shard", i).Msg("retention")
			}
		}
	}
}

func (s *Stream) applyRetention(shard int32) error {
	sh, err := s.shard(shard)
	if err != nil {
		return nil // deleted meanwhile
	}
	if s.Spec().LastValue {
		// Compact first: byte retention then weighs what the shard really keeps.
		if err := s.compactShard(shard, sh, sh.lastStable(), nil); err != nil {
			return err
		}
	}
	target, err := s.retentionTarget(shard, sh)
	if err != nil {
		return err
	}
	if target > sh.start.Load() {
		if err := s.truncateBefore(shard, sh, target, nil); err != nil {
			return err
		}
	}
	return nil
}

// retentionTarget is the log start the stream's retention settings ask for now.
func (s *Stream) retentionTarget(shard int32, sh *shardState) (int64, error) {
	spec := s.Spec()
	r := spec.Retention
	start, hwm := sh.start.Load(), sh.hwm.Load()
	target := start
	if r.MaxMessages > 0 && hwm-r.MaxMessages > target {
		target = hwm - r.MaxMessages
	}
	if r.MaxAge > 0 {
		cutoff := s.log.nowUS() - r.MaxAge.Microseconds()
		off, _, err := s.OffsetForTime(shard, cutoff)
		if err != nil {
			return start, err
		}
		if off > target {
			target = off
		}
	}
	if r.MaxBytes > 0 && sh.bytes.Load() > r.MaxBytes {
		find := s.offsetForBytes
		if spec.LastValue {
			// Compaction rewrote batches smaller; the cumulative positions stored with
			// each batch count what was appended, so sizes are summed instead.
			find = s.offsetForRetainedBytes
		}
		off, err := find(shard, start, hwm, r.MaxBytes)
		if err != nil {
			return start, err
		}
		if off > target {
			target = off
		}
	}
	// Never past the last stable offset: an open transaction's records stay until it
	// ends, so its outcome is known for every record a reader can get.
	return min(target, sh.lastStable()), nil
}

// offsetForRetainedBytes finds the first offset from which at most maxBytes are
// retained, summing the stored sizes of the newest batches (a last-value shard is
// small: compaction reads it whole each pass anyway).
func (s *Stream) offsetForRetainedBytes(shard int32, start, hwm, maxBytes int64) (int64, error) {
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(s.id, shard, hwm)})
	if err != nil {
		return start, err
	}
	defer it.Close()
	cut, total := hwm, int64(0)
	for ok := it.Last(); ok; ok = it.Prev() {
		total += int64(len(it.Value()) - valueHeaderLen)
		if total > maxBytes {
			break
		}
		cut = batchKeyOffset(it.Key())
	}
	if cut < start {
		cut = start
	}
	return cut, it.Error()
}

// storedBytes sums the sizes of the shard's stored batches below end.
func (s *Stream) storedBytes(shard int32, end int64) (int64, error) {
	return storedBytes(s.log.db, s.id, shard, end)
}

func storedBytes(db *pebble.DB, sid uint32, shard int32, end int64) (int64, error) {
	p := shardPrefix(prefixBatch, sid, shard)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(sid, shard, end)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		n += int64(len(it.Value()) - valueHeaderLen)
	}
	return n, it.Error()
}

// batchInfo describes one stored batch without its records.
type batchInfo struct {
	base, tsUS, cum, last, size int64
	lastTS                      int64 // append time of its last commit (merged batches hold several)
}

// batchAt returns the stored batch that holds offset, or the last one before it.
func (s *Stream) batchAt(shard int32, offset int64) (batchInfo, bool, error) {
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return batchInfo{}, false, err
	}
	defer it.Close()
	if !it.SeekLT(batchKey(s.id, shard, offset+1)) {
		return batchInfo{}, false, it.Error()
	}
	sv, err := parseStored(it.Value())
	if err != nil {
		return batchInfo{}, false, err
	}
	bi := batchInfo{base: batchKeyOffset(it.Key()), tsUS: sv.tsUS, cum: sv.cum, last: batchLastOffset(sv.batch), size: sv.logical, lastTS: sv.tsUS}
	if n := sv.segs.n(); n > 0 {
		_, bi.lastTS = sv.segs.at(n - 1)
	}
	return bi, true, nil
}

// offsetForBytes finds, by binary search over the cumulative byte positions stored with
// each batch, the first offset from which at most maxBytes are retained.
func (s *Stream) offsetForBytes(shard int32, start, hwm, maxBytes int64) (int64, error) {
	last, ok, err := s.batchAt(shard, hwm-1)
	if err != nil || !ok {
		return start, err
	}
	need := last.cum + last.size - maxBytes
	lo, hi := start, hwm
	for lo < hi {
		mid := lo + (hi-lo)/2
		bi, ok, err := s.batchAt(shard, mid)
		if err != nil {
			return start, err
		}
		if ok && bi.cum >= need {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// truncateBefore moves the log start to target and deletes the batches (and their time
// index entries) that hold only records below it. ops are entry changes written in the
// same Pebble batch, also when the log start is past target already (a replica's
// applied index, replicated.go).
func (s *Stream) truncateBefore(shard int32, sh *shardState, target int64, ops []EntryOp) error {
	keepBase := target
	bi, ok, err := s.batchAt(shard, target)
	if err != nil {
		return err
	}
	straddles := ok && bi.last >= target
	keepTS := int64(0)
	keepCum := int64(-1)
	if straddles {
		keepBase, keepTS, keepCum = bi.base, bi.tsUS, bi.cum
	} else if ok {
		// Every batch up to and including this one goes: their time entries are
		// stamped at most its last commit's time and start below target.
		keepTS = bi.lastTS
	}
	s.log.commitMu.Lock()
	defer s.log.commitMu.Unlock()
	if s.Deleted() {
		return nil
	}
	if target <= sh.start.Load() {
		// Moved past target meanwhile (DeleteRecords and retention race).
		return s.log.writeOpsNow(ops)
	}
	// A compacted shard's cumulative positions overcount; its dropped bytes are summed.
	dropped := int64(-1)
	if s.Spec().LastValue {
		if dropped, err = s.storedBytes(shard, keepBase); err != nil {
			return err
		}
	}
	b := s.log.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(batchKey(s.id, shard, 0), batchKey(s.id, shard, keepBase), nil)
	if straddles {
		_ = b.DeleteRange(timeKey(s.id, shard, 0, 0), timeKey(s.id, shard, keepTS, keepBase), nil)
	} else {
		_ = b.DeleteRange(timeKey(s.id, shard, 0, 0), timeKey(s.id, shard, keepTS, target), nil)
	}
	_ = b.Set(startKey(s.id, shard), binary.BigEndian.AppendUint64(nil, uint64(target)), nil)
	// Aborted transactions whose marker is gone with the records.
	_ = b.DeleteRange(abortedTxnKey(s.id, shard, 0, 0), abortedTxnKey(s.id, shard, keepBase, 0), nil)
	writeOps(b, ops)
	if err := s.log.guardWrite(b, pebble.Sync, true); err != nil {
		return fmt.Errorf("retention %s/%d to %d: %w", s.name, shard, target, err)
	}
	sh.start.Store(target)
	if dropped >= 0 {
		sh.bytes.Add(-dropped)
	} else if keepCum >= 0 {
		sh.bytes.Store(sh.cum - keepCum)
	} else {
		sh.bytes.Store(0)
	}
	return nil
}
