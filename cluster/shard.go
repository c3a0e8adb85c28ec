package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/mqstreams/mqstreams/log"
)

// A shard group's entry carries the appends one leader round took for the shard:
//
//	u8 entryRecords | u64 append time µs | uvarint count |
//	count × (u64 proposer node | u64 proposal id | uvarint records | uvarint len | Kafka v2 batch)
//
// Every replica applies it as one log append at that time, so replicas store the same
// records at the same offsets with the same times; the proposer finds its waiters by id.
//
// An entry of type entryRecordsOps has, after each append's batch, the entry ops that
// describe it (log.EntryOp.WithResult: an idempotent producer's state), stored by every
// replica in the Pebble batch of the records with the append's own offset:
//
//	uvarint ops × (uvarint len | kind | uvarint len | name | uvarint len | value prefix)
const (
	entryRecords    = 1
	entryRecordsOps = 2
)

const maxEntryBytes = 1 << 20

type subAppend struct {
	proposer, id uint64
	n            int
	batch        []byte
	ops          []log.EntryOp
}

func encodeEntry(tsUS int64, subs []*proposal, self uint64) []byte {
	size, typ := 16, byte(entryRecords)
	for _, p := range subs {
		size += 32 + len(p.batch)
		for _, op := range p.ops {
			typ = entryRecordsOps
			size += 15 + len(op.Kind) + len(op.Name) + len(op.Value)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, typ)
	b = binary.BigEndian.AppendUint64(b, uint64(tsUS))
	b = binary.AppendUvarint(b, uint64(len(subs)))
	for _, p := range subs {
		b = binary.BigEndian.AppendUint64(b, self)
		b = binary.BigEndian.AppendUint64(b, p.id)
		b = binary.AppendUvarint(b, uint64(p.n))
		b = binary.AppendUvarint(b, uint64(len(p.batch)))
		b = append(b, p.batch...)
		if typ == entryRecordsOps {
			b = binary.AppendUvarint(b, uint64(len(p.ops)))
			for _, op := range p.ops {
				b = appendBytes(b, []byte(op.Kind))
				b = appendBytes(b, []byte(op.Name))
				b = appendBytes(b, op.Value)
			}
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// readBytes takes a length-prefixed field off b.
func readBytes(b []byte) (v, rest []byte, err error) {
	l, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < l {
		return nil, nil, errBadEntry
	}
	return b[k : k+int(l)], b[k+int(l):], nil
}

var errBadEntry = errors.New("malformed shard entry")

func decodeEntry(b []byte) (tsUS int64, subs []subAppend, err error) {
	if len(b) < 9 || (b[0] != entryRecords && b[0] != entryRecordsOps) {
		return 0, nil, errBadEntry
	}
	withOps := b[0] == entryRecordsOps
	tsUS = int64(binary.BigEndian.Uint64(b[1:9]))
	b = b[9:]
	cnt, k := binary.Uvarint(b)
	if k <= 0 || cnt > uint64(len(b)) {
		return 0, nil, errBadEntry
	}
	b = b[k:]
	subs = make([]subAppend, 0, cnt)
	for i := uint64(0); i < cnt; i++ {
		if len(b) < 16 {
			return 0, nil, errBadEntry
		}
		s := subAppend{proposer: binary.BigEndian.Uint64(b), id: binary.BigEndian.Uint64(b[8:])}
		b = b[16:]
		nrec, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, nil, errBadEntry
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return 0, nil, errBadEntry
		}
		s.n, s.batch = int(nrec), b[k:k+int(l)]
		b = b[k+int(l):]
		if withOps {
			nops, k := binary.Uvarint(b)
			if k <= 0 || nops > uint64(len(b)) {
				return 0, nil, errBadEntry
			}
			b = b[k:]
			for j := uint64(0); j < nops; j++ {
				var kind, name, val []byte
				if kind, b, err = readBytes(b); err != nil {
					return 0, nil, err
				}
				if name, b, err = readBytes(b); err != nil {
					return 0, nil, err
				}
				if val, b, err = readBytes(b); err != nil {
					return 0, nil, err
				}
				s.ops = append(s.ops, log.EntryOp{Kind: string(kind), Name: string(name), Value: val, WithResult: true})
			}
		}
		subs = append(subs, s)
	}
	return tsUS, subs, nil
}

// applyTask is a snapshot to install or committed entries to apply, in Raft order.
type applyTask struct {
	snap *pb.Snapshot
	ents []*pb.Entry
}

// applier applies one shard replica's committed entries to the local log, in order,
// off the Raft loop: an append that waits for room in the log's queue, or a snapshot
// that pulls records from the leader, never stalls the other groups.
type applier struct {
	g      *group
	mu     sync.Mutex
	cond   *sync.Cond
	q      []applyTask
	closed bool
	done   chan struct{}

	next     int64 // the offset the next applied record gets
	inflight sync.WaitGroup
}

func newApplier(g *group, next int64) *applier {
	a := &applier{g: g, next: next, done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *applier) push(t applyTask) {
	a.mu.Lock()
	a.q = append(a.q, t)
	a.mu.Unlock()
	a.cond.Signal()
}

func (a *applier) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	a.cond.Broadcast()
	<-a.done
	a.inflight.Wait()
}

func (a *applier) stopped() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

func (a *applier) run() {
	defer close(a.done)
	for {
		a.mu.Lock()
		for len(a.q) == 0 && !a.closed {
			a.cond.Wait()
		}
		if a.closed {
			a.mu.Unlock()
			return
		}
		t := a.q[0]
		a.q[0] = applyTask{}
		a.q = a.q[1:]
		a.mu.Unlock()
		if a.g.failed.Load() != nil {
			if t.snap != nil {
				a.g.installs.Add(-1)
			}
			continue // a replica that failed to apply stops: it never diverges
		}
		if t.snap != nil {
			a.install(t.snap)
			continue
		}
		for _, e := range t.ents {
			a.applyEntry(e)
		}
	}
}

func (a *applier) fail(err error) {
	if a.g.failed.CompareAndSwap(nil, &err) {
		a.g.n.lg.Error().Err(err).Str("stream", a.g.stream).Int32("shard", a.g.shard).Uint64("group", a.g.id).
			Msg("replica stopped applying; it is reopened from its applied index once the log is writable")
	}
}

func (a *applier) applyEntry(e *pb.Entry) {
	g, n := a.g, a.g.n
	index := e.GetIndex()
	if applied, _, _ := g.appliedState(); index <= applied {
		return // applied before a restart (its effects are durable)
	}
	if g.failed.Load() != nil {
		return // after a failed entry nothing more: the replica is reopened (recover.go)
	}
	if skip := n.o.testSkipApply; skip != nil && skip(g.id, index) {
		return
	}
	if f := n.o.testFailApply; f != nil && f(g.id, index) {
		a.fail(fmt.Errorf("apply entry %d: injected failure", index))
		return
	}
	if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
		// No records: only the applied index moves, in the same queue as the appends.
		end := a.next
		a.inflight.Add(1)
		n.l.PutEntriesAsync([]log.EntryOp{{Kind: appliedKind, Name: groupName(g.id), Value: appliedValue(index, end)}}, func(err error) {
			defer a.inflight.Done()
			if err != nil {
				a.fail(fmt.Errorf("apply entry %d: %w", index, err))
				return
			}
			g.setApplied(index, end)
		})
		return
	}
	if isMaintEntry(e.GetData()) {
		a.applyMaint(index, e.GetData()) // retention.go
		return
	}
	if e.GetData()[0] == entryTxn {
		a.applyTxnEntry(e)
		return
	}
	tsUS, subs, err := decodeEntry(e.GetData())
	if err != nil {
		a.fail(fmt.Errorf("apply entry %d: %w", index, err))
		return
	}
	total := 0
	for _, s := range subs {
		total += s.n
	}
	recs := make([]log.Record, 0, total)
	ops := make([]log.EntryOp, 1, 1+len(subs))
	for _, s := range subs {
		// The entry is one log append: each append's ops get its own offset in it.
		skip := int64(len(recs))
		recs, err = log.AppendDecodedRecords(recs, s.batch)
		if err != nil || len(recs)-int(skip) != s.n {
			a.fail(fmt.Errorf("apply entry %d: records: %v", index, err))
			return
		}
		for _, op := range s.ops {
			prefix := op.Value
			ops = append(ops, log.EntryOp{Kind: op.Kind, Name: op.Name, Build: func(res log.AppendResult) []byte {
				return log.ResultValue(prefix, log.AppendResult{BaseOffset: res.BaseOffset + skip, TimestampUS: res.TimestampUS})
			}})
			ops = append(ops, resultOpIndex(g.id, op.Kind, op.Name))
		}
	}
	st := n.l.Stream(g.stream)
	if st == nil {
		a.fail(fmt.Errorf("apply entry %d: stream %q: %w", index, g.stream, log.ErrUnknownStream))
		return
	}
	base := a.next
	end := base + int64(len(recs))
	a.next = end
	a.inflight.Add(1)
	ops[0] = log.EntryOp{Kind: appliedKind, Name: groupName(g.id), Value: appliedValue(index, end)}
	st.AppendAt(g.shard, tsUS, base, recs, ops, func(res log.AppendResult, err error) {
		defer a.inflight.Done()
		if err == nil && res.BaseOffset != base {
			err = fmt.Errorf("replica diverged: entry %d stored at offset %d, expected %d", index, res.BaseOffset, base)
		}
		if err != nil {
			a.fail(fmt.Errorf("apply entry %d: %w", index, err))
			n.finishSubs(subs, res, err)
			return
		}
		g.setApplied(index, end)
		n.finishSubs(subs, res, nil)
		n.trace(g, index, traceApplied, n.traceNow())
	})
}

// finishSubs answers this node's proposals among an applied entry's appends.
func (n *Node) finishSubs(subs []subAppend, res log.AppendResult, err error) {
	off := res.BaseOffset
	for _, s := range subs {
		if s.proposer == n.Self() {
			if p := n.unwait(s.id); p != nil {
				p.finish(log.AppendResult{BaseOffset: off, TimestampUS: res.TimestampUS}, err)
			}
		}
		off += int64(s.n)
	}
}

// install brings the local shard to a snapshot's state: it waits for the appends
// under way, then pulls the records it lacks from the leader, as stored there (same
// offsets, same times), then the replicated ops of those records (snapshot_ops.go),
// and writes the snapshot's applied index with the ops.
func (a *applier) install(snap *pb.Snapshot) {
	g, n := a.g, a.g.n
	defer g.installs.Add(-1)
	if f := n.o.testBeforeInstall; f != nil {
		f(g.id)
	}
	a.inflight.Wait()
	index, end := parseApplied(snap.GetData())
	if applied, _, _ := g.appliedState(); index <= applied {
		return
	}
	st := n.l.Stream(g.stream)
	if st == nil {
		a.fail(fmt.Errorf("install snapshot: stream %q: %w", g.stream, log.ErrUnknownStream))
		return
	}
	_, hwm, err := st.Offsets(g.shard)
	if err != nil {
		a.fail(fmt.Errorf("install snapshot: %w", err))
		return
	}
	if hwm > end {
		a.fail(fmt.Errorf("install snapshot at %d: local shard holds %d records, the snapshot %d", index, hwm, end))
		return
	}
	n.lg.Info().Str("stream", g.stream).Int32("shard", g.shard).Int64("from", hwm).Int64("to", end).Msg("replica catching up from a snapshot")
	for hwm < end {
		if a.stopped() {
			return
		}
		if f := n.o.testSnapshotPull; f != nil {
			f(g.id)
		}
		start, runs, err := n.readFromLeader(g, hwm, end)
		if err != nil {
			n.lg.Debug().Err(err).Uint64("group", g.id).Msg("snapshot read")
			select {
			case <-time.After(200 * time.Millisecond):
			case <-a.done:
				return
			}
			continue
		}
		if start > hwm {
			// The leader's log start passed what this replica holds: the shard starts
			// there (retention.go). Past the snapshot's end, it starts at the end: the
			// entries after the snapshot bring the appends and the truncation after.
			at := min(start, end)
			if err := st.ResetShard(g.shard, at, nil); err != nil {
				a.fail(fmt.Errorf("install snapshot: start the shard at %d: %w", at, err))
				return
			}
			hwm = at
			continue
		}
		for _, r := range runs {
			if r.first != hwm {
				a.fail(fmt.Errorf("install snapshot: leader sent offset %d, need %d (its log start moved past this replica)", r.first, hwm))
				return
			}
			res, err := appendRunSync(st, g.shard, hwm, r)
			if err != nil || res.BaseOffset != hwm {
				a.fail(fmt.Errorf("install snapshot: append at %d: %v", hwm, err))
				return
			}
			hwm += int64(len(r.recs))
		}
	}
	// The replicated ops of the records pulled (an idempotent producer's state) come
	// with them, in the applied index's batch: a replica that leads after the snapshot
	// recognises a retry of a batch it only got through it.
	var ops []log.EntryOp
	for {
		if a.stopped() {
			return
		}
		var err error
		if ops, err = n.opsFromLeader(g, end); err == nil {
			break
		}
		n.lg.Debug().Err(err).Uint64("group", g.id).Msg("snapshot ops read")
		select {
		case <-time.After(200 * time.Millisecond):
		case <-a.done:
			return
		}
	}
	ops = append(ops, log.EntryOp{Kind: appliedKind, Name: groupName(g.id), Value: appliedValue(index, end)})
	ch := make(chan error, 1)
	n.l.PutEntriesAsync(ops, func(err error) { ch <- err })
	if err := <-ch; err != nil {
		a.fail(fmt.Errorf("install snapshot: %w", err))
		return
	}
	a.next = end
	g.setApplied(index, end)
}

func appendAtSync(st *log.Stream, shard int32, tsUS, base int64, recs []log.Record, ops []log.EntryOp) (log.AppendResult, error) {
	type out struct {
		res log.AppendResult
		err error
	}
	ch := make(chan out, 1)
	st.AppendAt(shard, tsUS, base, recs, ops, func(r log.AppendResult, err error) { ch <- out{r, err} })
	o := <-ch
	return o.res, o.err
}

// appendRunSync applies a run a snapshot pulled: a transactional batch or marker with
// its producer (log.Stream.AppendTxnAt), else as AppendAt.
func appendRunSync(st *log.Stream, shard int32, base int64, r recordRun) (log.AppendResult, error) {
	if !r.txn {
		return appendAtSync(st, shard, r.tsUS, base, r.recs, nil)
	}
	var txn *log.Txn
	var m *log.Marker
	if r.control {
		if len(r.recs) != 1 {
			return log.AppendResult{}, fmt.Errorf("a marker of %d records", len(r.recs))
		}
		commit, ce, err := log.ParseMarker(r.recs[0])
		if err != nil {
			return log.AppendResult{}, err
		}
		m = &log.Marker{ProducerID: r.pid, Epoch: r.epoch, Commit: commit, CoordinatorEpoch: ce}
	} else {
		txn = &log.Txn{ProducerID: r.pid, Epoch: r.epoch}
	}
	type out struct {
		res log.AppendResult
		err error
	}
	ch := make(chan out, 1)
	recs := r.recs
	if m != nil {
		recs = nil // the log makes the control record from m
	}
	st.AppendTxnAt(shard, r.tsUS, base, txn, m, recs, nil, func(res log.AppendResult, _ int64, err error) { ch <- out{res, err} })
	o := <-ch
	return o.res, o.err
}
