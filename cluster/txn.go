package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/mqstreams/mqstreams/log"
)

// Kafka transactions in a cluster (docs/transactions.md, "Cluster"). A transactional
// append or a transaction marker is proposed to its shard's group as an entry of its
// own:
//
//	u8 entryTxn | u64 append time µs | u64 proposer | u64 proposal id | u8 flags |
//	u64 producer id | u16 epoch | u32 coordinator epoch | uvarint records | uvarint len |
//	Kafka v2 batch (empty for a marker) | uvarint ops × (kind | name | value prefix)
//
// flags: txnFlagMarker (a marker, else records of the producer's open transaction),
// txnFlagCommit (a commit marker, else abort). Every replica applies it with
// log.Stream.AppendTxnAt, which writes the open-transaction and abort-index keys from
// the entry in the batch of the records, so the last stable offset and the aborted
// transactions are the same on every replica and survive a leader change.
const entryTxn = 4

const (
	txnFlagMarker = 1
	txnFlagCommit = 2
)

// methodMarker: a transaction marker for the shard leader to propose (forwarded like
// an append). Request: u16 stream length | stream | i32 shard | i64 deadline (Unix ns)
// | u64 producer id | u16 epoch | u8 commit | u32 coordinator epoch. Answer: 0 | i64
// offset | i64 first offset of the transaction there (-1: none open) | i64 time µs, or
// 1 | u64 leader (not the leader), or 2 | message.
const methodMarker byte = 6

// txnTag makes a proposal transactional: records of an open transaction, or a marker.
type txnTag struct {
	marker, commit bool
	pid            int64
	epoch          int16
	coordEpoch     int32
	first          int64 // a marker's result: the transaction's first offset on the shard
}

// AppendTxn proposes records of producer txn's open transaction to the shard's group.
// Like an append with replicated ops, only the shard leader proposes it (the caller
// keeps the producer's state): elsewhere it fails with a *NotLeaderError at once.
func (n *Node) AppendTxn(ctx context.Context, stream string, shard int32, txn log.Txn, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error)) {
	if len(recs) == 0 {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: no records", stream, shard))
		return
	}
	sp, err := n.placement(stream, shard)
	if err != nil {
		done(log.AppendResult{}, err)
		return
	}
	if lead := n.leaderOf(sp.Group); lead != n.Self() {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, &NotLeaderError{Leader: lead}))
		return
	}
	if fenced := n.fences.get(sp.Group, txn.ProducerID); txn.Epoch < fenced {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: %w", stream, shard, &ProducerFencedError{Epoch: txn.Epoch, Fenced: fenced}))
		return
	}
	repl, own := splitOps(ops)
	if len(own) > 0 {
		done(log.AppendResult{}, fmt.Errorf("append %s/%d: transactional appends take replicated ops only", stream, shard))
		return
	}
	deadline := time.Now().Add(n.o.AppendTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	p := &proposal{group: sp.Group, batch: log.EncodeRecords(nil, 1, recs), n: len(recs), ops: repl, deadline: deadline, done: done,
		txn: &txnTag{pid: txn.ProducerID, epoch: txn.Epoch, first: -1}}
	select {
	case n.props <- p:
	case <-n.stop:
		done(log.AppendResult{}, ErrClosed)
	}
}

// MarkerResult is where a marker landed on its shard: the control batch's offset, and
// the first offset of the transaction it ended there (-1 when none was open).
type MarkerResult struct {
	Offset, First, TimestampUS int64
}

// WriteMarker has the shard's leader propose a transaction marker (forwarded to it
// when that is another node; retried while there is no leader, until the deadline) and
// answers once the leader applied it. Writing a marker again is harmless: with no
// transaction of the producer open on the shard it ends nothing and takes one offset.
func (n *Node) WriteMarker(ctx context.Context, stream string, shard int32, pid int64, epoch int16, commit bool, coordEpoch int32, done func(MarkerResult, error)) {
	sp, err := n.placement(stream, shard)
	if err != nil {
		done(MarkerResult{}, err)
		return
	}
	if h := n.o.testHoldMarkers; h != nil && h() {
		done(MarkerResult{}, fmt.Errorf("marker %s/%d: held by the test", stream, shard))
		return
	}
	deadline := time.Now().Add(n.o.AppendTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	tag := txnTag{marker: true, commit: commit, pid: pid, epoch: epoch, coordEpoch: coordEpoch, first: -1}
	n.routeMarker(sp.Group, stream, shard, tag, deadline, done)
}

func (n *Node) routeMarker(group uint64, stream string, shard int32, tag txnTag, deadline time.Time, done func(MarkerResult, error)) {
	retry := func(err error) {
		if time.Until(deadline) <= 0 || n.closed.Load() {
			done(MarkerResult{}, fmt.Errorf("marker %s/%d: %w", stream, shard, err))
			return
		}
		time.AfterFunc(20*time.Millisecond, func() { n.routeMarker(group, stream, shard, tag, deadline, done) })
	}
	leader := n.leaderOf(group)
	switch leader {
	case 0:
		retry(ErrNoLeader)
	case n.Self():
		n.proposeMarker(group, stream, shard, tag, deadline, func(r MarkerResult, err error) {
			var nl *NotLeaderError
			if errors.Is(err, ErrNotLeader) || errors.As(err, &nl) {
				retry(err) // not proposed: safe to send again (and a marker may go twice)
				return
			}
			done(r, err)
		})
	default:
		body := encodeMarkerForward(stream, shard, deadline, tag)
		n.tr.call(leader, methodMarker, body, time.Until(deadline)+time.Second, func(resp []byte, err error) {
			if err != nil {
				// A marker may go twice: retried whether it was sent or not.
				retry(err)
				return
			}
			r, lerr := decodeMarkerAnswer(resp)
			var nl *NotLeaderError
			if errors.As(lerr, &nl) {
				retry(lerr)
				return
			}
			done(r, lerr)
		})
	}
}

// MarkerHook is told of each commit marker this node proposed, as the partition's
// leader, once applied here: the producer's records from first up to the marker are
// committed (Kafka → MQTT delivery).
type MarkerHook func(stream string, shard int32, pid, first, marker int64)

// SetMarkerHook sets the MarkerHook (once, at start).
func (n *Node) SetMarkerHook(h MarkerHook) { n.markerHook.Store(&h) }

func (n *Node) proposeMarker(group uint64, stream string, shard int32, tag txnTag, deadline time.Time, done func(MarkerResult, error)) {
	// Records of an older epoch proposed after this marker would open a transaction
	// behind it (a zombie fenced by an abort's epoch bump): refused from now on.
	n.fences.raise(group, tag.pid, tag.epoch)
	t := tag
	p := &proposal{group: group, n: 1, deadline: deadline, txn: &t}
	p.done = func(res log.AppendResult, err error) {
		if h := n.markerHook.Load(); h != nil && err == nil && t.commit && t.first >= 0 {
			go (*h)(stream, shard, t.pid, t.first, res.BaseOffset) // off the log's syncer
		}
		done(MarkerResult{Offset: res.BaseOffset, First: t.first, TimestampUS: res.TimestampUS}, err)
	}
	select {
	case n.props <- p:
	case <-n.stop:
		done(MarkerResult{}, ErrClosed)
	}
}

func encodeMarkerForward(stream string, shard int32, deadline time.Time, t txnTag) []byte {
	b := make([]byte, 0, 2+len(stream)+4+8+8+2+1+4)
	b = binary.BigEndian.AppendUint16(b, uint16(len(stream)))
	b = append(b, stream...)
	b = binary.BigEndian.AppendUint32(b, uint32(shard))
	b = binary.BigEndian.AppendUint64(b, uint64(deadline.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.pid))
	b = binary.BigEndian.AppendUint16(b, uint16(t.epoch))
	c := byte(0)
	if t.commit {
		c = 1
	}
	b = append(b, c)
	return binary.BigEndian.AppendUint32(b, uint32(t.coordEpoch))
}

func (n *Node) onForwardedMarker(_ uint64, body []byte, reply func([]byte, error)) {
	answer := func(r MarkerResult, err error) {
		var nl *NotLeaderError
		switch {
		case err == nil:
			out := []byte{0}
			out = binary.BigEndian.AppendUint64(out, uint64(r.Offset))
			out = binary.BigEndian.AppendUint64(out, uint64(r.First))
			reply(binary.BigEndian.AppendUint64(out, uint64(r.TimestampUS)), nil)
		case errors.As(err, &nl):
			reply(binary.BigEndian.AppendUint64([]byte{1}, nl.Leader), nil)
		case errors.Is(err, ErrNotLeader):
			reply(binary.BigEndian.AppendUint64([]byte{1}, 0), nil)
		default:
			reply(append([]byte{2}, err.Error()...), nil)
		}
	}
	if len(body) < 2 {
		answer(MarkerResult{}, errBadEntry)
		return
	}
	sl := int(binary.BigEndian.Uint16(body))
	if len(body) != 2+sl+4+8+8+2+1+4 {
		answer(MarkerResult{}, errBadEntry)
		return
	}
	stream := string(body[2 : 2+sl])
	b := body[2+sl:]
	shard := int32(binary.BigEndian.Uint32(b))
	deadline := time.Unix(0, int64(binary.BigEndian.Uint64(b[4:])))
	t := txnTag{marker: true, first: -1,
		pid:        int64(binary.BigEndian.Uint64(b[12:])),
		epoch:      int16(binary.BigEndian.Uint16(b[20:])),
		commit:     b[22] == 1,
		coordEpoch: int32(binary.BigEndian.Uint32(b[23:]))}
	sp, err := n.placement(stream, shard)
	if err != nil {
		answer(MarkerResult{}, err)
		return
	}
	if lead := n.leaderOf(sp.Group); lead != n.Self() {
		answer(MarkerResult{}, &NotLeaderError{Leader: lead})
		return
	}
	n.proposeMarker(sp.Group, stream, shard, t, deadline, answer)
}

func decodeMarkerAnswer(b []byte) (MarkerResult, error) {
	if len(b) == 0 {
		return MarkerResult{}, errBadEntry
	}
	switch b[0] {
	case 0:
		if len(b) < 25 {
			return MarkerResult{}, errBadEntry
		}
		return MarkerResult{Offset: int64(binary.BigEndian.Uint64(b[1:])), First: int64(binary.BigEndian.Uint64(b[9:])),
			TimestampUS: int64(binary.BigEndian.Uint64(b[17:]))}, nil
	case 1:
		if len(b) < 9 {
			return MarkerResult{}, errBadEntry
		}
		return MarkerResult{}, &NotLeaderError{Leader: binary.BigEndian.Uint64(b[1:])}
	default:
		return MarkerResult{}, &remoteError{msg: string(b[1:])}
	}
}

func encodeTxnEntry(tsUS int64, p *proposal, self uint64) []byte {
	size := 64 + len(p.batch)
	for _, op := range p.ops {
		size += 15 + len(op.Kind) + len(op.Name) + len(op.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, entryTxn)
	b = binary.BigEndian.AppendUint64(b, uint64(tsUS))
	b = binary.BigEndian.AppendUint64(b, self)
	b = binary.BigEndian.AppendUint64(b, p.id)
	t := p.txn
	flags := byte(0)
	if t.marker {
		flags |= txnFlagMarker
	}
	if t.commit {
		flags |= txnFlagCommit
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(t.pid))
	b = binary.BigEndian.AppendUint16(b, uint16(t.epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(t.coordEpoch))
	b = binary.AppendUvarint(b, uint64(p.n))
	b = binary.AppendUvarint(b, uint64(len(p.batch)))
	b = append(b, p.batch...)
	b = binary.AppendUvarint(b, uint64(len(p.ops)))
	for _, op := range p.ops {
		b = appendBytes(b, []byte(op.Kind))
		b = appendBytes(b, []byte(op.Name))
		b = appendBytes(b, op.Value)
	}
	return b
}

// txnEntry is a decoded entryTxn.
type txnEntry struct {
	tsUS int64
	sub  subAppend
	tag  txnTag
}

func decodeTxnEntry(b []byte) (txnEntry, error) {
	var e txnEntry
	if len(b) < 1+8+8+8+1+8+2+4 || b[0] != entryTxn {
		return e, errBadEntry
	}
	e.tsUS = int64(binary.BigEndian.Uint64(b[1:]))
	e.sub.proposer = binary.BigEndian.Uint64(b[9:])
	e.sub.id = binary.BigEndian.Uint64(b[17:])
	flags := b[25]
	e.tag = txnTag{marker: flags&txnFlagMarker != 0, commit: flags&txnFlagCommit != 0, first: -1,
		pid:        int64(binary.BigEndian.Uint64(b[26:])),
		epoch:      int16(binary.BigEndian.Uint16(b[34:])),
		coordEpoch: int32(binary.BigEndian.Uint32(b[36:]))}
	b = b[40:]
	nrec, k := binary.Uvarint(b)
	if k <= 0 {
		return e, errBadEntry
	}
	e.sub.n = int(nrec)
	var err error
	if e.sub.batch, b, err = readBytes(b[k:]); err != nil {
		return e, err
	}
	nops, k := binary.Uvarint(b)
	if k <= 0 || nops > uint64(len(b)) {
		return e, errBadEntry
	}
	b = b[k:]
	for j := uint64(0); j < nops; j++ {
		var kind, name, val []byte
		if kind, b, err = readBytes(b); err != nil {
			return e, err
		}
		if name, b, err = readBytes(b); err != nil {
			return e, err
		}
		if val, b, err = readBytes(b); err != nil {
			return e, err
		}
		e.sub.ops = append(e.sub.ops, log.EntryOp{Kind: string(kind), Name: string(name), Value: val, WithResult: true})
	}
	return e, nil
}

// applyTxnEntry applies an entryTxn as AppendTxnAt, the applied index in its batch.
func (a *applier) applyTxnEntry(e *pb.Entry) {
	g, n := a.g, a.g.n
	index := e.GetIndex()
	te, err := decodeTxnEntry(e.GetData())
	if err != nil {
		a.fail(fmt.Errorf("apply entry %d: %w", index, err))
		return
	}
	var recs []log.Record
	if !te.tag.marker {
		if recs, err = log.DecodeRecords(te.sub.batch); err != nil || len(recs) != te.sub.n {
			a.fail(fmt.Errorf("apply entry %d: records: %v", index, err))
			return
		}
	} else if te.sub.n != 1 {
		a.fail(fmt.Errorf("apply entry %d: a marker of %d records", index, te.sub.n))
		return
	}
	ops := []log.EntryOp{{}}
	for _, op := range te.sub.ops {
		prefix := op.Value
		ops = append(ops, log.EntryOp{Kind: op.Kind, Name: op.Name, Build: func(res log.AppendResult) []byte {
			return log.ResultValue(prefix, res)
		}})
		ops = append(ops, resultOpIndex(g.id, op.Kind, op.Name))
	}
	st := n.l.Stream(g.stream)
	if st == nil {
		a.fail(fmt.Errorf("apply entry %d: stream %q: %w", index, g.stream, log.ErrUnknownStream))
		return
	}
	base := a.next
	end := base + int64(te.sub.n)
	a.next = end
	ops[0] = log.EntryOp{Kind: appliedKind, Name: groupName(g.id), Value: appliedValue(index, end)}
	var txn *log.Txn
	var m *log.Marker
	if te.tag.marker {
		m = &log.Marker{ProducerID: te.tag.pid, Epoch: te.tag.epoch, Commit: te.tag.commit, CoordinatorEpoch: te.tag.coordEpoch}
	} else {
		txn = &log.Txn{ProducerID: te.tag.pid, Epoch: te.tag.epoch}
	}
	a.inflight.Add(1)
	st.AppendTxnAt(g.shard, te.tsUS, base, txn, m, recs, ops, func(res log.AppendResult, first int64, err error) {
		defer a.inflight.Done()
		if err == nil && res.BaseOffset != base {
			err = fmt.Errorf("replica diverged: entry %d stored at offset %d, expected %d", index, res.BaseOffset, base)
		}
		if err != nil {
			a.fail(fmt.Errorf("apply entry %d: %w", index, err))
		} else {
			g.setApplied(index, end)
		}
		if te.sub.proposer == n.Self() {
			if p := n.unwait(te.sub.id); p != nil {
				if p.txn != nil {
					p.txn.first = first
				}
				p.finish(res, err)
			}
		}
	})
}

// ProducerFencedError is a transactional append of an epoch older than a marker this
// node, as the shard's leader, already wrote for the producer (Kafka's partition leader
// takes the epoch of each marker it writes): INVALID_PRODUCER_EPOCH.
type ProducerFencedError struct{ Epoch, Fenced int16 }

func (e *ProducerFencedError) Error() string {
	return fmt.Sprintf("producer epoch %d fenced by a marker of epoch %d", e.Epoch, e.Fenced)
}

// ProducerFenced tells callers that cannot import this package (kafkawire) what it is.
func (e *ProducerFencedError) ProducerFenced() bool { return true }

// markerFences: per shard group, the highest epoch of the markers this node proposed
// per producer id (kept while it runs: a new leader knows only its own markers).
type markerFences struct {
	mu sync.Mutex
	m  map[uint64]map[int64]int16
}

func (f *markerFences) raise(group uint64, pid int64, epoch int16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[uint64]map[int64]int16{}
	}
	g := f.m[group]
	if g == nil {
		g = map[int64]int16{}
		f.m[group] = g
	}
	if cur, ok := g[pid]; !ok || epoch > cur {
		g[pid] = epoch
	}
}

func (f *markerFences) get(group uint64, pid int64) int16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[group][pid]; ok {
		return e
	}
	return -1
}
