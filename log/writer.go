package log

import (
	"context"
	"fmt"
)

// Writer is where the protocol servers (mqtt, kafkawire) write records. On a single
// node the Log itself implements it; in a cluster the cluster package does, replicating
// each append through its shard's Raft group before acknowledging it. The protocol
// servers keep reading from the local Log either way.
type Writer interface {
	// Append queues recs for a shard of the named stream and calls done once they are
	// acknowledged: durable on this node as the stream's durability defines it (single
	// node), or committed by a quorum of the shard's replicas (cluster). mode says what
	// to do while the append queue is full (queue.go). ops are entry changes written
	// with the records: in the same Pebble batch on a single node. done runs once, on a
	// goroutine that must not be blocked, in the order appends to one shard were queued.
	Append(ctx context.Context, mode Admission, stream string, shard int32, recs []Record, ops []EntryOp, done func(AppendResult, error))
}

// Append implements Writer on a single node: Stream.AppendAsyncAdmit on the named
// stream; an unknown or deleted stream fails with ErrUnknownStream.
func (l *Log) Append(ctx context.Context, mode Admission, stream string, shard int32, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	s := l.Stream(stream)
	if s == nil {
		done(AppendResult{}, fmt.Errorf("append %s: %w", stream, ErrUnknownStream))
		return
	}
	s.AppendAsyncAdmit(ctx, mode, shard, recs, ops, done)
}
