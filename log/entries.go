package log

import (
	"bytes"
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
	p, err := entryPrefix(kind)
	if err != nil {
		return nil, err
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
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
}

func opsSize(ops []EntryOp) int {
	n := 0
	for _, op := range ops {
		n += len(op.Kind) + len(op.Name) + len(op.Value) + 2
	}
	return n
}

// writeOps adds ops to a batch; their kinds were checked when they were queued.
func writeOps(b *pebble.Batch, ops []EntryOp) {
	for _, op := range ops {
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
