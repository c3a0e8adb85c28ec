package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// Retention, last-value compaction and Kafka DeleteRecords are replicated: a shard's
// leader decides (its retention loop below, or a DeleteRecords forwarded to it from
// any node) and proposes a maintenance entry through the shard's Raft group; every
// replica applies it in Raft order, after the appends before it and before those
// after it, with its applied index in the same Pebble batch (log/replicated.go). So
// every replica has the same log start and the same records at every applied index,
// and a replica restarted mid-way applies the entry again (both operations are
// idempotent). The log's own retention loop is off on a cluster node.
//
// A maintenance entry:
//
//	u8 entryMaint | u8 op | i64 offset | u64 proposer node | u64 proposal id
//
// op maintTruncate moves the log start to offset (retention never proposes past the
// leader's last stable offset; DeleteRecords at most its high watermark, as alone);
// maintCompact compacts a last-value shard below offset (the leader's last stable
// offset). The proposer finds its waiter by id and answers with the log start the
// entry left on it.
const (
	entryMaint = 3

	maintTruncate byte = 1
	maintCompact  byte = 2

	maintEntryLen = 26

	// methodDeleteRecords asks a shard's leader to move its log start: request
	// u16 stream length | stream | i32 shard | i64 offset; answer as maintAnswer.
	methodDeleteRecords byte = 20

	defaultRetentionInterval = 10 * time.Second
)

func encodeMaint(op byte, offset int64, proposer, id uint64) []byte {
	b := make([]byte, 0, maintEntryLen)
	b = append(b, entryMaint, op)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint64(b, proposer)
	return binary.BigEndian.AppendUint64(b, id)
}

func isMaintEntry(b []byte) bool { return len(b) > 0 && b[0] == entryMaint }

// maintWaits are this node's maintenance proposals waiting for their apply here.
type maintWaits struct {
	mu sync.Mutex
	m  map[uint64]chan maintResult
}

type maintResult struct {
	start int64
	err   error
}

func (w *maintWaits) add(id uint64) chan maintResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[uint64]chan maintResult{}
	}
	ch := make(chan maintResult, 1)
	w.m[id] = ch
	return ch
}

func (w *maintWaits) done(id uint64, r maintResult) {
	w.mu.Lock()
	ch := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

func (w *maintWaits) drop(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// applyMaint applies a maintenance entry on the applier, once the appends before it
// are in the log, with the applied index in the same batch.
func (a *applier) applyMaint(index uint64, data []byte) {
	g, n := a.g, a.g.n
	if len(data) != maintEntryLen {
		a.fail(fmt.Errorf("apply entry %d: %w", index, errBadEntry))
		return
	}
	op, off := data[1], int64(binary.BigEndian.Uint64(data[2:]))
	proposer, id := binary.BigEndian.Uint64(data[10:]), binary.BigEndian.Uint64(data[18:])
	a.inflight.Wait()
	st := n.l.Stream(g.stream)
	if st == nil {
		a.fail(fmt.Errorf("apply entry %d: stream %q: %w", index, g.stream, log.ErrUnknownStream))
		return
	}
	end := a.next
	ops := []log.EntryOp{{Kind: appliedKind, Name: groupName(g.id), Value: appliedValue(index, end)}}
	var res maintResult
	switch op {
	case maintTruncate:
		res.start, res.err = st.TruncateAt(g.shard, off, ops)
	case maintCompact:
		res.err = st.CompactAt(g.shard, off, ops)
		res.start, _, _ = st.Offsets(g.shard)
	default:
		res.err = fmt.Errorf("maintenance op %d: %w", op, errBadEntry)
	}
	if res.err != nil {
		a.fail(fmt.Errorf("apply entry %d: %w", index, res.err))
	} else {
		g.setApplied(index, end)
	}
	if proposer == n.Self() {
		n.maint.done(id, res)
	}
}

// proposeMaint proposes a maintenance entry on the group (this node must lead it) and
// waits until this node has applied it; it returns the log start after.
func (n *Node) proposeMaint(ctx context.Context, gid uint64, op byte, offset int64) (int64, error) {
	id := n.propSeq.Add(1)
	ch := n.maint.add(id)
	defer n.maint.drop(id)
	var perr error
	if err := n.do(func() {
		g := n.groups[gid]
		if g == nil || !g.isLeaderNow() {
			perr = &NotLeaderError{Leader: n.leaderOf(gid)}
			return
		}
		g.wake()
		perr = g.rn.Propose(encodeMaint(op, offset, n.Self(), id))
	}); err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, perr
	}
	select {
	case r := <-ch:
		return r.start, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	case <-n.stop:
		return 0, ErrClosed
	}
}

// DeleteRecords implements log.RecordDeleter in a cluster: the shard's leader (this
// node or the one the request is forwarded to) checks offset against its high
// watermark and proposes the new log start; the answer comes once the entry is
// committed and applied on the leader, with the log start every replica gets.
func (n *Node) DeleteRecords(ctx context.Context, stream string, shard int32, offset int64) (int64, error) {
	if err := n.refuseRemoved(); err != nil {
		return 0, err
	}
	sp, err := n.placement(stream, shard)
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.o.AppendTimeout)
		defer cancel()
	}
	for {
		var low int64
		lead := n.leaderOf(sp.Group)
		switch lead {
		case 0:
			err = ErrNoLeader
		case n.Self():
			low, err = n.leadDeleteRecords(ctx, sp.Group, stream, shard, offset)
		default:
			low, err = n.forwardDeleteRecords(ctx, lead, stream, shard, offset)
		}
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrLinkDown)) {
			return low, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("delete records %s/%d: %w: %w (last: %v)", stream, shard, ErrTimeout, ctx.Err(), err)
		case <-n.stop:
			return 0, ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) leadDeleteRecords(ctx context.Context, gid uint64, stream string, shard int32, offset int64) (int64, error) {
	st := n.l.Stream(stream)
	if st == nil {
		return 0, fmt.Errorf("delete records %s: %w", stream, log.ErrUnknownStream)
	}
	start, hwm, err := st.Offsets(shard)
	if err != nil {
		return 0, err
	}
	if offset == -1 {
		offset = hwm
	}
	if offset < 0 || offset > hwm {
		return 0, fmt.Errorf("delete records %s/%d before %d (log %d..%d): %w", stream, shard, offset, start, hwm, log.ErrOffsetOutOfRange)
	}
	if offset <= start {
		return start, nil
	}
	return n.proposeMaint(ctx, gid, maintTruncate, offset)
}

// Answer of methodDeleteRecords: 0 | i64 low watermark, 1 | u64 leader (not the
// leader), 3 (offset out of range), 4 (unknown stream or shard), or 2 | message.
func (n *Node) forwardDeleteRecords(ctx context.Context, to uint64, stream string, shard int32, offset int64) (int64, error) {
	req := binary.BigEndian.AppendUint16(nil, uint16(len(stream)))
	req = append(req, stream...)
	req = binary.BigEndian.AppendUint32(req, uint32(shard))
	req = binary.BigEndian.AppendUint64(req, uint64(offset))
	timeout := n.o.AppendTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	type out struct {
		b   []byte
		err error
	}
	ch := make(chan out, 1)
	n.tr.call(to, methodDeleteRecords, req, timeout, func(b []byte, err error) { ch <- out{b, err} })
	o := <-ch
	if o.err != nil {
		return 0, o.err
	}
	b := o.b
	switch {
	case len(b) == 9 && b[0] == 0:
		return int64(binary.BigEndian.Uint64(b[1:])), nil
	case len(b) == 9 && b[0] == 1:
		return 0, &NotLeaderError{Leader: binary.BigEndian.Uint64(b[1:])}
	case len(b) == 1 && b[0] == 3:
		return 0, fmt.Errorf("delete records %s/%d before %d: %w", stream, shard, offset, log.ErrOffsetOutOfRange)
	case len(b) == 1 && b[0] == 4:
		return 0, fmt.Errorf("delete records %s/%d: %w", stream, shard, log.ErrUnknownShard)
	case len(b) > 0 && b[0] == 2:
		return 0, &remoteError{msg: string(b[1:])}
	}
	return 0, errBadEntry
}

func (n *Node) onDeleteRecords(_ uint64, body []byte, reply func([]byte, error)) {
	if len(body) < 2 {
		reply(nil, errBadEntry)
		return
	}
	sl := int(binary.BigEndian.Uint16(body))
	if len(body) != 2+sl+12 {
		reply(nil, errBadEntry)
		return
	}
	stream := string(body[2 : 2+sl])
	shard := int32(binary.BigEndian.Uint32(body[2+sl:]))
	offset := int64(binary.BigEndian.Uint64(body[2+sl+4:]))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.o.AppendTimeout)
		defer cancel()
		var low int64
		sp, err := n.placement(stream, shard)
		if err == nil {
			if lead := n.leaderOf(sp.Group); lead != n.Self() {
				err = &NotLeaderError{Leader: lead}
			} else {
				low, err = n.leadDeleteRecords(ctx, sp.Group, stream, shard, offset)
			}
		}
		var nl *NotLeaderError
		switch {
		case err == nil:
			reply(binary.BigEndian.AppendUint64([]byte{0}, uint64(low)), nil)
		case errors.As(err, &nl):
			reply(binary.BigEndian.AppendUint64([]byte{1}, nl.Leader), nil)
		case errors.Is(err, log.ErrOffsetOutOfRange):
			reply([]byte{3}, nil)
		case errors.Is(err, log.ErrUnknownShard), errors.Is(err, log.ErrUnknownStream):
			reply([]byte{4}, nil)
		default:
			reply(append([]byte{2}, err.Error()...), nil)
		}
	}()
}

// retentionLoop runs retention on the shards this node leads.
func (n *Node) retentionLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.o.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.applyRetention()
		}
	}
}

// applyRetention proposes, for each shard this node leads, what its retention asks
// for (one step per pass: a compaction first, the truncation on a later pass).
func (n *Node) applyRetention() {
	if n.Removed() {
		return
	}
	n.mu.RLock()
	var led []*group
	for _, g := range n.groups {
		if g.id != catalogGroup && g.failed.Load() == nil {
			g.mu.Lock()
			if g.isLeader {
				led = append(led, g)
			}
			g.mu.Unlock()
		}
	}
	n.mu.RUnlock()
	for _, g := range led {
		st := n.l.Stream(g.stream)
		if st == nil {
			continue
		}
		plan, err := st.RetentionPlan(g.shard)
		if err != nil {
			n.lg.Warn().Err(err).Str("stream", g.stream).Int32("shard", g.shard).Msg("retention")
			continue
		}
		op, off := maintTruncate, plan.Truncate
		if plan.CompactTo > 0 {
			op, off = maintCompact, plan.CompactTo
		} else if plan.Truncate <= plan.Start {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.o.AppendTimeout)
		_, err = n.proposeMaint(ctx, g.id, op, off)
		cancel()
		if err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrClosed) {
			n.lg.Warn().Err(err).Str("stream", g.stream).Int32("shard", g.shard).Msg("retention")
		}
	}
}

// registerMaintenance registers the DeleteRecords call; startMaintenance hands
// retention to the shard leaders (called by Open).
func (n *Node) registerMaintenance() {
	n.tr.register(methodDeleteRecords, n.onDeleteRecords)
}

func (n *Node) startMaintenance() {
	n.l.SetReplicatedMaintenance()
	n.wg.Add(1)
	go n.retentionLoop()
}
