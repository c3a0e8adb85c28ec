package log

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Retention, last-value compaction and DeleteRecords in a cluster. A single node
// applies them to its own log (retention.go). In a cluster every replica of a shard
// must keep the same log start and the same records, so the cluster package turns the
// background loop off here (SetReplicatedMaintenance), asks the shard leader's log what
// retention wants (RetentionPlan), replicates the decision through the shard's Raft
// group and has every replica apply it at the same point of its log (TruncateAt,
// CompactAt), with its applied index in the same Pebble batch.

// RecordDeleter moves a shard's log start (Kafka DeleteRecords). The Log implements it
// alone; in a cluster the cluster package does, replicating the new log start.
type RecordDeleter interface {
	// DeleteRecords deletes the records of stream/shard below offset (-1: the high
	// watermark) and returns the log start once that is done (the low watermark).
	// An offset past the high watermark is ErrOffsetOutOfRange.
	DeleteRecords(ctx context.Context, stream string, shard int32, offset int64) (int64, error)
}

// DeleteRecords implements RecordDeleter on a single node (Stream.DeleteRecordsBefore).
func (l *Log) DeleteRecords(_ context.Context, stream string, shard int32, offset int64) (int64, error) {
	s := l.Stream(stream)
	if s == nil {
		return 0, fmt.Errorf("delete records %s: %w", stream, ErrUnknownStream)
	}
	return s.DeleteRecordsBefore(shard, offset)
}

// SetReplicatedMaintenance stops the log's own retention pass: a cluster node's shard
// leaders decide retention and every replica applies it in Raft order.
func (l *Log) SetReplicatedMaintenance() { l.replicatedMaint.Store(true) }

// RetentionPlan is what retention asks of a shard now, as its leader sees it.
type RetentionPlan struct {
	// Start is the shard's log start now.
	Start int64
	// CompactTo, when above 0, asks a last-value shard to be compacted below it (its
	// last stable offset); truncation waits until that is applied, since byte
	// retention weighs what compaction keeps.
	CompactTo int64
	// Truncate is the log start retention asks for (Start when nothing goes).
	Truncate int64
}

// RetentionPlan computes, without writing anything, what retention would do to a shard.
func (s *Stream) RetentionPlan(shard int32) (RetentionPlan, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return RetentionPlan{}, err
	}
	p := RetentionPlan{Start: sh.start.Load()}
	p.Truncate = p.Start
	if s.Spec().LastValue {
		if lso := sh.lastStable(); lso > sh.compactedTo.Load() && lso > p.Start {
			p.CompactTo = lso
			return p, nil
		}
	}
	if p.Truncate, err = s.retentionTarget(shard, sh); err != nil {
		return RetentionPlan{}, err
	}
	p.Truncate = max(p.Truncate, p.Start)
	return p, nil
}

// TruncateAt moves a shard's log start to target (nothing when it is there already)
// and writes ops in the same Pebble batch. A target past the high watermark is
// ErrOffsetOutOfRange. It returns the log start after.
func (s *Stream) TruncateAt(shard int32, target int64, ops []EntryOp) (int64, error) {
	sh, err := s.shard(shard)
	if err != nil {
		return 0, err
	}
	if hwm := sh.hwm.Load(); target > hwm {
		return 0, fmt.Errorf("truncate %s/%d at %d (high watermark %d): %w", s.name, shard, target, hwm, ErrOffsetOutOfRange)
	}
	s.log.maintMu.Lock()
	defer s.log.maintMu.Unlock()
	if err := s.truncateBefore(shard, sh, target, ops); err != nil {
		return 0, err
	}
	return sh.start.Load(), nil
}

// CompactAt compacts a last-value shard below to (at most its high watermark) and
// writes ops in the same Pebble batch.
func (s *Stream) CompactAt(shard int32, to int64, ops []EntryOp) error {
	sh, err := s.shard(shard)
	if err != nil {
		return err
	}
	s.log.maintMu.Lock()
	defer s.log.maintMu.Unlock()
	return s.compactShard(shard, sh, min(to, sh.hwm.Load()), ops)
}

// ResetShard deletes every record of a shard and makes it an empty shard whose log
// start and high watermark are start: a replica that a snapshot must bring past
// records its leader no longer has, or a node that no longer holds a replica of the
// shard. ops are written in the same Pebble batch. Appends to the shard must not be
// under way (the caller owns its writes).
func (s *Stream) ResetShard(shard int32, start int64, ops []EntryOp) error {
	sh, err := s.shard(shard)
	if err != nil {
		return err
	}
	s.log.maintMu.Lock()
	defer s.log.maintMu.Unlock()
	l := s.log
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if s.Deleted() {
		return nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	for _, p := range []byte{prefixBatch, prefixTime, prefixOpenTxn, prefixAbortedTxn} {
		sp := shardPrefix(p, s.id, shard)
		_ = b.DeleteRange(sp, prefixEnd(sp), nil)
	}
	if start > 0 {
		_ = b.Set(startKey(s.id, shard), binary.BigEndian.AppendUint64(nil, uint64(start)), nil)
		_ = b.Set(coalesceKey(s.id, shard), binary.BigEndian.AppendUint64(nil, uint64(start)), nil)
	} else {
		_ = b.Delete(startKey(s.id, shard), nil)
		_ = b.Delete(coalesceKey(s.id, shard), nil)
	}
	writeOps(b, ops)
	if err := l.guardWrite(b, pebble.Sync, true); err != nil {
		return fmt.Errorf("reset %s/%d at %d: %w", s.name, shard, start, err)
	}
	// Readers load hwm, then start: start never goes above hwm on the way.
	if start > sh.hwm.Load() {
		sh.hwm.Store(start)
		sh.start.Store(start)
	} else {
		sh.start.Store(start)
		sh.hwm.Store(start)
	}
	sh.next = start
	// Appends take max(their time, the shard's last): an empty shard has none, so the
	// records a replica pulls keep the times they have on the leader.
	sh.lastTS = 0
	sh.bytes.Store(0)
	sh.compactedTo.Store(start)
	clear(sh.open)
	sh.bound.Store(math.MaxInt64)
	sh.co.mergedTo.Store(start)
	sh.co.mergedCum.Store(sh.cum)
	sh.co.tailDone.Store(start)
	sh.appended()
	return nil
}

// CompactShardRange drops a shard's deleted data from disk (range deletions only hide
// it until Pebble compacts the range).
func (s *Stream) CompactShardRange(shard int32) error {
	for _, p := range []byte{prefixBatch, prefixTime} {
		sp := shardPrefix(p, s.id, shard)
		if err := s.log.db.Compact(context.Background(), sp, prefixEnd(sp), false); err != nil {
			return fmt.Errorf("compact %s/%d: %w", s.name, shard, err)
		}
	}
	return nil
}

// ShardKeys counts the stored keys of a shard's records and time index (tests check a
// shard's data is gone).
func (s *Stream) ShardKeys(shard int32) (int, error) {
	n := 0
	for _, p := range []byte{prefixBatch, prefixTime} {
		sp := shardPrefix(p, s.id, shard)
		it, err := s.log.db.NewIter(&pebble.IterOptions{LowerBound: sp, UpperBound: prefixEnd(sp)})
		if err != nil {
			return 0, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		if err := it.Close(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// writeOpsNow writes entry changes in one synced batch (nothing when there are none).
func (l *Log) writeOpsNow(ops []EntryOp) error {
	if len(ops) == 0 {
		return nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	writeOps(b, ops)
	if err := l.guardWrite(b, l.syncOpt(), false); err != nil {
		return fmt.Errorf("write %d entries: %w", len(ops), err)
	}
	return nil
}
