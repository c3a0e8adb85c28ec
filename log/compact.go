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
func (s *Stream) compactShard(shard int32, sh *shardState) error {
	start, hwm := sh.start.Load(), sh.hwm.Load()
	if hwm == sh.compactedTo.Load() || hwm == start {
		return nil
	}
	newest := map[string]int64{}
	type stored struct {
		b    Batch
		cum  int64
		recs []StoredRecord
	}
	var batches []stored
	p := shardPrefix(prefixBatch, s.id, shard)
	it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: batchKey(s.id, shard, hwm)})
	if err != nil {
		return fmt.Errorf("compact %s/%d: %w", s.spec.Name, shard, err)
	}
	for it.First(); it.Valid(); it.Next() {
		ts, cum, raw, err := decodeValue(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("compact %s/%d: %w", s.spec.Name, shard, err)
		}
		b := Batch{BaseOffset: batchKeyOffset(it.Key()), LastOffset: batchLastOffset(raw), TimestampUS: ts, Data: append([]byte(nil), raw...)}
		recs, err := b.Records(start)
		if err != nil {
			it.Close()
			return fmt.Errorf("compact %s/%d: %w", s.spec.Name, shard, err)
		}
		for _, r := range recs {
			if r.Key != nil {
				newest[string(r.Key)] = r.Offset
			}
		}
		batches = append(batches, stored{b: b, cum: cum, recs: recs})
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("compact %s/%d: %w", s.spec.Name, shard, err)
	}

	wb := s.log.db.NewBatch()
	defer wb.Close()
	saved := int64(0)
	var val []byte
	for _, st := range batches {
		var keep []Record
		var deltas []int32
		for _, r := range st.recs {
			if r.Key == nil || newest[string(r.Key)] == r.Offset {
				keep = append(keep, r.Record)
				deltas = append(deltas, int32(r.Offset-st.b.BaseOffset))
			}
		}
		if len(keep) == len(st.recs) && st.b.BaseOffset >= start {
			continue
		}
		key := batchKey(s.id, shard, st.b.BaseOffset)
		if len(keep) == 0 {
			_ = wb.Delete(key, nil)
			_ = wb.Delete(timeKey(s.id, shard, st.b.TimestampUS, st.b.BaseOffset), nil)
			saved += int64(len(st.b.Data))
			continue
		}
		val = encodeValueDeltas(val[:0], st.b.BaseOffset, st.b.TimestampUS, st.cum, keep, deltas, int32(st.b.LastOffset-st.b.BaseOffset))
		_ = wb.Set(key, val, nil)
		saved += int64(len(st.b.Data) - (len(val) - valueHeaderLen))
	}
	s.log.commitMu.Lock()
	defer s.log.commitMu.Unlock()
	if s.Deleted() {
		return nil
	}
	if !wb.Empty() {
		if err := wb.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("compact %s/%d: %w", s.spec.Name, shard, err)
		}
		sh.bytes.Add(-saved)
	}
	sh.compactedTo.Store(hwm)
	return nil
}
