package log

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// CommittedOffset is a consumer group's committed position in one shard.
type CommittedOffset struct {
	Stream      string
	Shard       int32
	Offset      int64
	LeaderEpoch int32
	Metadata    string
}

func encodeCommitted(c CommittedOffset) []byte {
	v := make([]byte, 0, 12+len(c.Metadata))
	v = binary.BigEndian.AppendUint64(v, uint64(c.Offset))
	v = binary.BigEndian.AppendUint32(v, uint32(c.LeaderEpoch))
	return append(v, c.Metadata...)
}

// CommitOffsets durably stores a group's offsets (all or none).
func (l *Log) CommitOffsets(group string, offsets []CommittedOffset) error {
	if len(group) > 0xffff {
		return fmt.Errorf("commit offsets: group id too long")
	}
	b := l.db.NewBatch()
	defer b.Close()
	for _, c := range offsets {
		s := l.Stream(c.Stream)
		if s == nil {
			return fmt.Errorf("commit %s %s: %w", group, c.Stream, ErrUnknownStream)
		}
		if c.Shard < 0 || c.Shard >= s.Shards() {
			return fmt.Errorf("commit %s %s/%d: %w", group, c.Stream, c.Shard, ErrUnknownShard)
		}
		_ = b.Set(groupKey(group, s.id, c.Shard), encodeCommitted(c), nil)
	}
	if err := l.guardWrite(b, l.syncOpt(), false); err != nil {
		return fmt.Errorf("commit offsets for %s: %w", group, err)
	}
	return nil
}

// GroupOffsets returns every committed offset of the group, in stream id and shard order.
func (l *Log) GroupOffsets(group string) ([]CommittedOffset, error) {
	p := groupPrefix(group)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("group offsets %s: %w", group, err)
	}
	defer it.Close()
	var out []CommittedOffset
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(p)+8 || len(v) < 12 {
			continue
		}
		s := l.streamByID(binary.BigEndian.Uint32(k[len(p):]))
		if s == nil {
			continue
		}
		out = append(out, CommittedOffset{
			Stream:      s.Name(),
			Shard:       int32(binary.BigEndian.Uint32(k[len(p)+4:])),
			Offset:      int64(binary.BigEndian.Uint64(v)),
			LeaderEpoch: int32(binary.BigEndian.Uint32(v[8:])),
			Metadata:    string(v[12:]),
		})
	}
	return out, it.Error()
}

// DeleteGroupOffsets removes the group's offsets for the given shards of a stream, or for
// every shard when shards is nil.
func (l *Log) DeleteGroupOffsets(group, stream string, shards []int32) error {
	s := l.Stream(stream)
	if s == nil {
		return fmt.Errorf("delete offsets %s %s: %w", group, stream, ErrUnknownStream)
	}
	b := l.db.NewBatch()
	defer b.Close()
	if shards == nil {
		p := binary.BigEndian.AppendUint32(groupPrefix(group), s.id)
		_ = b.DeleteRange(p, prefixEnd(p), nil)
	}
	for _, sh := range shards {
		_ = b.Delete(groupKey(group, s.id, sh), nil)
	}
	if err := l.guardWrite(b, l.syncOpt(), true); err != nil {
		return fmt.Errorf("delete offsets %s %s: %w", group, stream, err)
	}
	return nil
}

// DeleteGroup removes every committed offset of the group.
func (l *Log) DeleteGroup(group string) error {
	p := groupPrefix(group)
	b := l.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(p, prefixEnd(p), nil)
	if err := l.guardWrite(b, l.syncOpt(), true); err != nil {
		return fmt.Errorf("delete group %s: %w", group, err)
	}
	return nil
}

// Groups lists the groups that have committed offsets, sorted.
func (l *Log) Groups() ([]string, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixGroup}, UpperBound: []byte{prefixGroup + 1}})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 3 {
			ok = it.Next()
			continue
		}
		n := int(binary.BigEndian.Uint16(k[1:3]))
		if len(k) < 3+n {
			ok = it.Next()
			continue
		}
		g := string(k[3 : 3+n])
		out = append(out, g)
		ok = it.SeekGE(prefixEnd(groupPrefix(g)))
	}
	return out, it.Error()
}

// deleteStreamOffsets adds to b the deletion of every group's offsets for stream sid.
func (l *Log) deleteStreamOffsets(b *pebble.Batch, sid uint32) error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixGroup}, UpperBound: []byte{prefixGroup + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < 11 {
			continue
		}
		n := int(binary.BigEndian.Uint16(k[1:3]))
		if len(k) == 3+n+8 && binary.BigEndian.Uint32(k[3+n:]) == sid {
			_ = b.Delete(append([]byte(nil), k...), nil)
		}
	}
	return it.Error()
}
