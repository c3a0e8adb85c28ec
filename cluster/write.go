package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/mqstreams/mqstreams/log"
)

// Call methods of the transport.
const (
	methodAppend    byte = 1 // a forwarded append, answered once committed and applied
	methodCatalog   byte = 2 // a catalog change for the catalog leader to propose
	methodReadShard byte = 3 // records of a shard, for a replica installing a snapshot
)

// proposal is one append waiting on this node (the shard leader) for its entry to be
// committed and applied here.
type proposal struct {
	id       uint64
	group    uint64
	batch    []byte // the records as a Kafka v2 batch (log.EncodeRecords)
	n        int
	ops      []log.EntryOp // replicated with the records (WithResult)
	deadline time.Time
	txn      *txnTag // a transactional append or a marker: an entry of its own (txn.go)
	done     func(log.AppendResult, error)
	once     atomic.Bool
	timer    *time.Timer
	enq      time.Time // when it reached this node (traced benchmarks only)
}

func (p *proposal) finish(res log.AppendResult, err error) {
	if !p.once.CompareAndSwap(false, true) {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.done(res, err)
}

// Append implements log.Writer: the records are proposed to the shard's Raft group
// (forwarded to its leader when that is another node) and done runs once a quorum of
// replicas has them in its Raft log (each writing as the durability setting says) and
// the leader has applied them to its log, with the offset they got there. ops are this
// node's own entry changes: written here once the append is acknowledged.
func (n *Node) Append(ctx context.Context, mode log.Admission, stream string, shard int32, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	if len(recs) == 0 {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: no records", stream, shard))
		return
	}
	if err := n.refuseRemoved(); err != nil {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, err))
		return
	}
	sp, err := n.placement(stream, shard)
	if err != nil {
		done(log.AppendResult{}, err)
		return
	}
	repl, own := splitOps(ops)
	finish := done
	if len(own) > 0 {
		finish = func(res log.AppendResult, err error) {
			if err != nil {
				done(res, err)
				return
			}
			built := make([]log.EntryOp, len(own))
			for i, op := range own {
				if op.Build != nil {
					op.Value, op.Build = op.Build(res), nil
				}
				built[i] = op
			}
			n.l.PutEntriesAsync(built, func(err error) { done(res, err) })
		}
	}
	deadline := time.Now().Add(n.o.AppendTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if mode == log.AppendDrop && len(n.props) > cap(n.props)/2 {
		finish(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, log.ErrQueueFull))
		return
	}
	if len(repl) > 0 {
		// State describing the records (an idempotent producer's) is proposed only by
		// the leader whose caller keeps that state: a forwarded append would change it
		// behind the leader's back. The caller answers "not the leader" and the
		// client moves to the leader.
		if lead := n.leaderOf(sp.Group); lead != n.Self() {
			finish(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, &NotLeaderError{Leader: lead}))
			return
		}
	}
	n.route(sp.Group, stream, shard, log.EncodeRecords(nil, 1, recs), len(recs), repl, deadline, finish)
}

// deadlineError is an append that was never proposed and ran out of time (no leader,
// or the link to it down, until its deadline).
type deadlineError struct{ err error }

func (e *deadlineError) Error() string { return e.err.Error() }
func (e *deadlineError) Unwrap() error { return e.err }
func (e *deadlineError) Timeout() bool { return true }

// splitOps separates the ops that describe the records (WithResult: replicated in the
// entry, stored by every replica in the batch of the records) from this node's own.
func splitOps(ops []log.EntryOp) (repl, own []log.EntryOp) {
	for _, op := range ops {
		if op.WithResult {
			repl = append(repl, op)
		} else {
			own = append(own, op)
		}
	}
	return repl, own
}

// route sends an append to the group's leader: proposed here when this node leads,
// forwarded otherwise, retried while no leader is known or the one asked was not it
// any more (the append was then certainly not proposed), until the deadline.
// Appends with replicated ops (repl) are only proposed here: never forwarded.
func (n *Node) route(group uint64, stream string, shard int32, batch []byte, nrec int, repl []log.EntryOp, deadline time.Time, done func(log.AppendResult, error)) {
	retry := func(err error) {
		if n.closed.Load() {
			done(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, err))
			return
		}
		if time.Until(deadline) <= 0 {
			// Certainly not stored, and out of time: a timeout to the client (Kafka
			// REQUEST_TIMED_OUT, MQTT 5 PUBACK 0x80, MQTT 3.1.1 disconnected).
			done(log.AppendResult{}, &deadlineError{err: fmt.Errorf("append %s/%d: no leader took it by its deadline: %w", stream, shard, err)})
			return
		}
		time.AfterFunc(20*time.Millisecond, func() { n.route(group, stream, shard, batch, nrec, repl, deadline, done) })
	}
	leader := n.leaderOf(group)
	switch {
	case len(repl) > 0 && leader != n.Self():
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, &NotLeaderError{Leader: leader}))
	case leader == 0:
		retry(ErrNoLeader)
	case leader == n.Self():
		p := &proposal{group: group, batch: batch, n: nrec, ops: repl, deadline: deadline, enq: n.traceNow(), done: func(res log.AppendResult, err error) {
			if errors.Is(err, ErrNotLeader) && len(repl) == 0 {
				retry(err)
				return
			}
			done(res, err)
		}}
		select {
		case n.props <- p:
		case <-n.stop:
			done(log.AppendResult{}, ErrClosed)
		}
	default:
		body := encodeForward(stream, shard, deadline, nrec, batch)
		n.tr.callFrame(leader, methodAppend, body, time.Until(deadline)+time.Second, func(resp []byte, err error) {
			if err != nil {
				if errors.Is(err, ErrLinkDown) || errors.Is(err, ErrQueueFull) {
					retry(err) // never sent: safe to send again
					return
				}
				// Sent, then no answer: the leader died or was cut off (the link went
				// down: errLinkLost, at once) or no answer came by the deadline. The
				// append may or may not be committed, so it is not sent again (a
				// committed one would be stored twice): the caller gets an uncertain
				// outcome at once and the client decides (an MQTT 5 publisher gets
				// PUBACK 0x80, a 3.1.1 one is disconnected and resends; Kafka
				// REQUEST_TIMED_OUT). Never an ack for a record a quorum may not hold.
				done(log.AppendResult{}, &UncertainError{Err: fmt.Errorf("append %s/%d via node %d: %w", stream, shard, leader, err)})
				return
			}
			res, lerr := decodeForwardAnswer(resp)
			if errors.Is(lerr, ErrNotLeader) {
				retry(lerr)
				return
			}
			done(res, lerr)
		})
	}
}

// propose takes an append on the Raft loop; flushProposals proposes each group's
// appends of the round as few entries.
func (n *Node) propose(p *proposal) {
	n.mu.RLock()
	g := n.groups[p.group]
	n.mu.RUnlock()
	if g == nil {
		p.finish(log.AppendResult{}, &NotLeaderError{})
		return
	}
	g.pending = append(g.pending, p)
}

func (n *Node) flushProposals() {
	n.mu.RLock()
	var gs []*group
	for _, g := range n.groups {
		if len(g.pending) > 0 {
			gs = append(gs, g)
		}
	}
	n.mu.RUnlock()
	for _, g := range gs {
		bs := g.rn.BasicStatus()
		if bs.RaftState == raft.StateLeader && g.writing() && pendingBytes(g.pending) < maxEntryBytes {
			// The leader's write of its last proposal is under way: these wait and
			// go with the next proposal, taken when it returns (persist.go). Every
			// write then carries what arrived during the one before, as the
			// single-node log's group commit does.
			continue
		}
		ps := g.pending
		g.pending = nil
		g.wake()
		if bs.RaftState != raft.StateLeader {
			for _, p := range ps {
				p.finish(log.AppendResult{}, &NotLeaderError{Leader: bs.Lead})
			}
			continue
		}
		ts := max(time.Now().UnixMicro(), g.lastTS)
		g.lastTS = ts
		for len(ps) > 0 {
			k, size := 0, 0
			for k < len(ps) && (k == 0 || size+len(ps[k].batch) <= maxEntryBytes) && (k == 0 || ps[k].txn == nil) && ps[0].txn == nil {
				size += len(ps[k].batch)
				k++
			}
			k = max(k, 1)
			chunk := ps[:k]
			ps = ps[k:]
			for _, p := range chunk {
				n.wait(p)
			}
			if n.o.testTrace != nil {
				tp := traceProp{enq: chunk[0].enq, at: time.Now()}
				for _, p := range chunk {
					if p.enq.Before(tp.enq) {
						tp.enq = p.enq
					}
				}
				g.traceProps = append(g.traceProps, tp)
			}
			var data []byte
			if chunk[0].txn != nil {
				data = encodeTxnEntry(ts, chunk[0], n.Self())
			} else {
				data = encodeEntry(ts, chunk, n.Self())
			}
			if err := g.rn.Propose(data); err != nil {
				for _, p := range chunk {
					if n.unwait(p.id) != nil {
						p.finish(log.AppendResult{}, &NotLeaderError{Leader: bs.Lead})
					}
				}
			}
		}
	}
}

func pendingBytes(ps []*proposal) int {
	n := 0
	for _, p := range ps {
		n += len(p.batch)
	}
	return n
}

// wait registers a proposal until its entry is applied or its deadline passes.
func (n *Node) wait(p *proposal) {
	p.id = n.propSeq.Add(1)
	n.waitMu.Lock()
	n.waiters[p.id] = p
	n.waitMu.Unlock()
	id := p.id
	p.timer = time.AfterFunc(max(time.Until(p.deadline), 0), func() {
		if q := n.unwait(id); q != nil {
			q.finish(log.AppendResult{}, &UncertainError{Err: ErrTimeout})
		}
	})
}

func (n *Node) unwait(id uint64) *proposal {
	n.waitMu.Lock()
	defer n.waitMu.Unlock()
	p := n.waiters[id]
	delete(n.waiters, id)
	return p
}

// Forwarded append: u16 stream length | stream | i32 shard | i64 deadline (Unix ns) |
// uvarint records | batch, built behind callHeader free bytes (transport.callFrame). Answer: 0 | i64 base | i64 time µs, or 1 | u64 leader
// (not the leader), or 2 | message, or 3 | message (timed out: outcome unknown).
func encodeForward(stream string, shard int32, deadline time.Time, nrec int, batch []byte) []byte {
	b := make([]byte, callHeader, callHeader+2+len(stream)+12+10+len(batch))
	b = binary.BigEndian.AppendUint16(b, uint16(len(stream)))
	b = append(b, stream...)
	b = binary.BigEndian.AppendUint32(b, uint32(shard))
	b = binary.BigEndian.AppendUint64(b, uint64(deadline.UnixNano()))
	b = binary.AppendUvarint(b, uint64(nrec))
	return append(b, batch...)
}

func (n *Node) onForwardedAppend(_ uint64, body []byte, reply func([]byte, error)) {
	answer := func(res log.AppendResult, err error) {
		var nl *NotLeaderError
		switch {
		case err == nil:
			out := []byte{0}
			out = binary.BigEndian.AppendUint64(out, uint64(res.BaseOffset))
			reply(binary.BigEndian.AppendUint64(out, uint64(res.TimestampUS)), nil)
		case errors.As(err, &nl):
			reply(binary.BigEndian.AppendUint64([]byte{1}, nl.Leader), nil)
		case errors.Is(err, ErrTimeout):
			reply(append([]byte{3}, err.Error()...), nil)
		default:
			reply(append([]byte{2}, err.Error()...), nil)
		}
	}
	if len(body) < 2 {
		answer(log.AppendResult{}, errBadEntry)
		return
	}
	sl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+sl+12 {
		answer(log.AppendResult{}, errBadEntry)
		return
	}
	stream := string(body[2 : 2+sl])
	body = body[2+sl:]
	shard := int32(binary.BigEndian.Uint32(body))
	deadline := time.Unix(0, int64(binary.BigEndian.Uint64(body[4:])))
	nrec, k := binary.Uvarint(body[12:])
	if k <= 0 {
		answer(log.AppendResult{}, errBadEntry)
		return
	}
	batch := body[12+k:]
	sp, err := n.placement(stream, shard)
	if err != nil {
		answer(log.AppendResult{}, err)
		return
	}
	if lead := n.leaderOf(sp.Group); lead != n.Self() {
		answer(log.AppendResult{}, &NotLeaderError{Leader: lead})
		return
	}
	if h := n.o.testForwardArrived; h != nil && h() {
		return // dropped unanswered: the leader dies or is cut off before answering
	}
	p := &proposal{group: sp.Group, batch: batch, n: int(nrec), deadline: deadline, enq: n.traceNow(), done: answer}
	select {
	case n.props <- p:
	case <-n.stop:
		answer(log.AppendResult{}, ErrClosed)
	}
}

func decodeForwardAnswer(b []byte) (log.AppendResult, error) {
	if len(b) == 0 {
		return log.AppendResult{}, errBadEntry
	}
	switch b[0] {
	case 0:
		if len(b) < 17 {
			return log.AppendResult{}, errBadEntry
		}
		return log.AppendResult{BaseOffset: int64(binary.BigEndian.Uint64(b[1:])), TimestampUS: int64(binary.BigEndian.Uint64(b[9:]))}, nil
	case 1:
		if len(b) < 9 {
			return log.AppendResult{}, errBadEntry
		}
		return log.AppendResult{}, &NotLeaderError{Leader: binary.BigEndian.Uint64(b[1:])}
	case 3:
		return log.AppendResult{}, &UncertainError{Err: &remoteError{msg: string(b[1:])}}
	default:
		return log.AppendResult{}, &remoteError{msg: string(b[1:])}
	}
}

// placement is a shard's group and replicas from the applied catalog.
func (n *Node) placement(stream string, shard int32) (shardPlacement, error) {
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	sp := cat.Streams[stream]
	if sp == nil {
		return shardPlacement{}, fmt.Errorf("append %s: %w", stream, log.ErrUnknownStream)
	}
	if shard < 0 || int(shard) >= len(sp.Shards) {
		return shardPlacement{}, fmt.Errorf("append %s/%d: %w", stream, shard, log.ErrUnknownShard)
	}
	return sp.Shards[shard], nil
}
