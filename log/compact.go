package log

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// compactShard keeps only the newest record per key in a last-value stream's shard
// (Kafka cleanup.policy=compact). Records keep their offsets, so batches are rewritten
// with gaps; a batch left empty is removed. Records without a key are never compacted.
// It runs on the retention goroutine and only when the shard has grown since the last
// pass, because each pass reads the whole shard (small, for a last-value stream).
// It compacts below hwm, which callers keep at most the last stable offset: an open
// transaction's records may yet be aborted. Aborted records are dropped; markers are
// kept (txn.go). ops are entry changes written in the same Pebble batch (a replica's
// applied index, replicated.go).
func (s *Stream) compactShard(shard int32, sh *shardState, hwm int64, ops []EntryOp) error {
	start := sh.start.Load()
	if hwm <= sh.compactedTo.Load() || hwm <= start {
		return s.log.writeOpsNow(ops)
	}
	aborted, err := s.AbortedTxns(shard, start, hwm)
	if err != nil {
		return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
	}
	isAborted := func(pr batchProducer, base int64) bool {
		if pr.attrs&attrTransactional == 0 {
			return false
		}
		for _, a := range aborted {
			if a.ProducerID == pr.id && base >= a.FirstOffset && base <= a.LastOffset {
				return true
			}
		}
		return false
	}
	newest := map[string]int64{}
	type stored struct {
		b       Batch
		sv      storedValue
		recs    []StoredRecord
		aborted bool
	}
	var batches []stored
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(s.id, shard, hwm)})
	if err != nil {
		return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
	}
	for it.First(); it.Valid(); it.Next() {
		sv, err := parseStored(append([]byte(nil), it.Value()...))
		if err != nil {
			it.Close()
			return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
		}
		b := Batch{BaseOffset: batchKeyOffset(it.Key()), LastOffset: batchLastOffset(sv.batch), TimestampUS: sv.tsUS, Data: sv.batch, segs: sv.segs}
		pr := producerOf(sv.batch)
		if pr.attrs&attrControl != 0 {
			continue // a marker: kept as it is, its record is no data
		}
		if isAborted(pr, b.BaseOffset) {
			batches = append(batches, stored{b: b, sv: sv, aborted: true}) // removed below
			continue
		}
		recs, err := b.Records(start)
		if err != nil {
			it.Close()
			return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
		}
		for _, r := range recs {
			if r.Key != nil {
				newest[string(r.Key)] = r.Offset
			}
		}
		batches = append(batches, stored{b: b, sv: sv, recs: recs})
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
	}

	wb := s.log.db.NewBatch()
	defer wb.Close()
	saved := int64(0)
	var val []byte
	var m merger
	for _, st := range batches {
		var keep []Record
		var deltas []int32
		for _, r := range st.recs {
			if r.Key == nil || newest[string(r.Key)] == r.Offset {
				keep = append(keep, r.Record)
				deltas = append(deltas, int32(r.Offset-st.b.BaseOffset))
			}
		}
		if !st.aborted && len(keep) == len(st.recs) && st.b.BaseOffset >= start {
			continue
		}
		key := batchKey(s.id, shard, st.b.BaseOffset)
		if len(keep) == 0 {
			_ = wb.Delete(key, nil)
			_ = wb.Delete(timeKey(s.id, shard, st.b.TimestampUS, st.b.BaseOffset), nil)
			for i := 0; i < st.sv.segs.n(); i++ {
				d, ts := st.sv.segs.at(i)
				_ = wb.Delete(timeKey(s.id, shard, ts, st.b.BaseOffset+int64(d)), nil)
			}
			saved += int64(len(st.b.Data))
			continue
		}
		if st.sv.segs != nil {
			// A merged batch keeps its records' own times, its codec and its
			// append-time table.
			kept := make(map[int64]bool, len(deltas))
			for _, d := range deltas {
				kept[st.b.BaseOffset+int64(d)] = true
			}
			m.reset(st.b.BaseOffset, st.sv.tsUS)
			err := m.add(st.b.BaseOffset, st.sv, func(off int64) bool { return kept[off] })
			if err == nil {
				val, err = m.finish(val[:0], st.sv.cum, st.sv.codec())
			}
			if err != nil {
				return fmt.Errorf("compact %s/%d at %d: %w", s.name, shard, st.b.BaseOffset, err)
			}
			_ = wb.Set(key, val, nil)
			_, _, nb, _ := decodeValue(val)
			saved += int64(len(st.b.Data) - len(nb))
			continue
		}
		val = encodeValueProducer(val[:0], st.b.BaseOffset, st.b.TimestampUS, st.sv.cum, keep, deltas, int32(st.b.LastOffset-st.b.BaseOffset), producerOf(st.b.Data))
		_ = wb.Set(key, val, nil)
		saved += int64(len(st.b.Data) - (len(val) - valueHeaderLen))
	}
	s.log.commitMu.Lock()
	defer s.log.commitMu.Unlock()
	if s.Deleted() {
		return nil
	}
	writeOps(wb, ops)
	if !wb.Empty() {
		if err := s.log.guardWrite(wb, pebble.Sync, false); err != nil {
			return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
		}
		sh.bytes.Add(-saved)
	}
	sh.compactedTo.Store(hwm)
	return nil
}
