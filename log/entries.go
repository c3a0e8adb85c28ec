package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Entries are small named records that other packages own (the user store, broker
// state): the log keeps them durable in the same database as the streams, under
// their own key prefix, and knows nothing of what they hold.
//
//	e <len(kind) u8> <kind> <name> -> value

// ErrInvalidEntry is returned for an empty or over-long kind.
var ErrInvalidEntry = errors.New("invalid entry kind")

// Entry is one stored record of a kind.
type Entry struct {
	Name  string
	Value []byte
}

func entryPrefix(kind string) ([]byte, error) {
	if kind == "" || len(kind) > 0xff {
		return nil, fmt.Errorf("%w: %q", ErrInvalidEntry, kind)
	}
	k := make([]byte, 0, 2+len(kind))
	k = append(k, prefixEntry, byte(len(kind)))
	return append(k, kind...), nil
}

// PutEntries durably stores the given records of one kind in one synced write (all or
// none); a nil Value deletes the record.
func (l *Log) PutEntries(kind string, entries []Entry) error {
	p, err := entryPrefix(kind)
	if err != nil {
		return err
	}
	b := l.db.NewBatch()
	defer b.Close()
	for _, e := range entries {
		k := append(append([]byte(nil), p...), e.Name...)
		if e.Value == nil {
			_ = b.Delete(k, nil)
		} else {
			_ = b.Set(k, e.Value, nil)
		}
	}
	if err := l.guardWrite(b, l.syncOpt(), false); err != nil {
		return fmt.Errorf("put %d %s entries: %w", len(entries), kind, err)
	}
	return nil
}

// PutEntry durably stores one record (a nil value deletes it).
func (l *Log) PutEntry(kind, name string, value []byte) error {
	return l.PutEntries(kind, []Entry{{Name: name, Value: value}})
}

// DeleteEntry durably removes one record; removing a missing one is not an error.
func (l *Log) DeleteEntry(kind, name string) error {
	return l.PutEntries(kind, []Entry{{Name: name}})
}

// Entries returns every record of a kind in name order (values are copies).
func (l *Log) Entries(kind string) ([]Entry, error) {
	return l.EntriesPrefix(kind, "")
}

// EntriesPrefix returns the records of a kind whose names start with prefix, in name
// order (values are copies).
func (l *Log) EntriesPrefix(kind, prefix string) ([]Entry, error) {
	p, err := entryPrefix(kind)
	if err != nil {
		return nil, err
	}
	lower := append(p, prefix...)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, fmt.Errorf("list %s entries: %w", kind, err)
	}
	defer it.Close()
	var out []Entry
	for it.First(); it.Valid(); it.Next() {
		out = append(out, Entry{Name: string(it.Key()[len(p):]), Value: bytes.Clone(it.Value())})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list %s entries: %w", kind, err)
	}
	return out, nil
}

// EntryOp is one change to a record of a kind: a nil Value deletes it.
type EntryOp struct {
	Kind  string
	Name  string
	Value []byte
	// Build, for an op written with an append (AppendAsyncWith), makes the value once
	// the append's offsets are assigned, on the committer goroutine: state that names
	// the offsets it describes (a producer's last batches) is then stored in the same
	// Pebble batch as them. It must not block; Value is ignored when Build is set.
	Build func(AppendResult) []byte
	// WithResult, for an op written with an append, stores Value followed by the
	// append's base offset and append time (µs), 8 bytes big-endian each. Unlike
	// Build it is plain data, so a cluster replicates it with the records and every
	// replica stores the same value in the batch of the same records (cluster/).
	WithResult bool
}

// ResultValue is the value an op with WithResult stores for an append's result.
func ResultValue(prefix []byte, res AppendResult) []byte {
	v := make([]byte, 0, len(prefix)+16)
	v = append(v, prefix...)
	v = binary.BigEndian.AppendUint64(v, uint64(res.BaseOffset))
	return binary.BigEndian.AppendUint64(v, uint64(res.TimestampUS))
}

func opsSize(ops []EntryOp) int {
	n := 0
	for _, op := range ops {
		n += len(op.Kind) + len(op.Name) + len(op.Value) + 2
	}
	return n
}

// writeOps adds ops to a batch; their kinds were checked when they were queued. Ops
// with Build or WithResult wait for writeBuiltOps.
func writeOps(b *pebble.Batch, ops []EntryOp) {
	for _, op := range ops {
		if op.Build != nil || op.WithResult {
			continue
		}
		p, _ := entryPrefix(op.Kind)
		k := append(p, op.Name...)
		if op.Value == nil {
			_ = b.Delete(k, nil)
		} else {
			_ = b.Set(k, op.Value, nil)
		}
	}
}

// PutEntriesAsync queues entry changes for the next group commit, where they share the
// Pebble batch and the fsync of the appends queued around them, and calls done once
// they are durable (or failed). Changes are applied in the order they are queued; done
// runs on the syncer goroutine and must not block. An empty ops is a barrier: done
// runs once everything queued before it is durable.
func (l *Log) PutEntriesAsync(ops []EntryOp, done func(error)) {
	for _, op := range ops {
		if _, err := entryPrefix(op.Kind); err != nil {
			done(err)
			return
		}
	}
	if !l.enqueue(&pending{ops: ops, entriesDone: done, enqueued: time.Now()}) {
		done(fmt.Errorf("write %d entries: %w", len(ops), ErrClosed))
	}
}

// writeBuiltOps adds the ops with Build or WithResult of an append whose offsets are
// now assigned.
func writeBuiltOps(b *pebble.Batch, ops []EntryOp, res AppendResult) {
	for _, op := range ops {
		var v []byte
		switch {
		case op.Build != nil:
			v = op.Build(res)
		case op.WithResult:
			v = ResultValue(op.Value, res)
		default:
			continue
		}
		p, _ := entryPrefix(op.Kind)
		k := append(p, op.Name...)
		if v == nil {
			_ = b.Delete(k, nil)
		} else {
			_ = b.Set(k, v, nil)
		}
	}
}
