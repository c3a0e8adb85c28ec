package log

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// maxBatchBytes caps one stored record batch so a burst of appends to one shard does not
// become a single batch larger than consumers' fetch sizes.
const maxBatchBytes = 1 << 20

// Append appends recs to a shard and returns once they are durable.
func (s *Stream) Append(shard int32, recs []Record) (AppendResult, error) {
	type result struct {
		res AppendResult
		err error
	}
	ch := make(chan result, 1)
	s.AppendAsync(shard, recs, func(r AppendResult, err error) { ch <- result{r, err} })
	r := <-ch
	return r.res, r.err
}

// AppendAsync queues recs for the shard and calls done once they are durable (or
// failed) as the stream's durability defines it. While the append queue is full
// (Options.QueueBytes) it blocks. Appends are committed in the order
// they are queued; done runs on the syncer goroutine, in commit order, and must not
// block. An append refused up front (unknown shard, closed log) calls done before
// AppendAsync returns.
func (s *Stream) AppendAsync(shard int32, recs []Record, done func(AppendResult, error)) {
	s.AppendAsyncWith(shard, recs, nil, done)
}

// AppendAsyncWith is AppendAsync that also writes the entry changes ops in the same
// Pebble batch as the records: both are durable, or neither is.
func (s *Stream) AppendAsyncWith(shard int32, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	s.AppendAsyncAdmit(context.Background(), AppendBlock, shard, recs, ops, done)
}

// AppendAsyncAdmit is AppendAsyncWith with what to do when the append queue is full
// (queue.go): block, drop (ErrQueueFull at once) or wait until ctx ends.
func (s *Stream) AppendAsyncAdmit(ctx context.Context, mode Admission, shard int32, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	s.appendAsync(ctx, mode, shard, nil, recs, ops, done)
}

func (s *Stream) appendAsync(ctx context.Context, mode Admission, shard int32, txn *Txn, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	if len(recs) == 0 {
		done(AppendResult{}, fmt.Errorf("append %s/%d: no records", s.name, shard))
		return
	}
	if _, err := s.shard(shard); err != nil {
		done(AppendResult{}, fmt.Errorf("append: %w", err))
		return
	}
	if err := s.log.store.writeErr(); err != nil {
		s.log.observeRefusal(err)
		done(AppendResult{}, fmt.Errorf("append %s/%d: %w", s.name, shard, err))
		return
	}
	for _, op := range ops {
		if _, err := entryPrefix(op.Kind); err != nil {
			done(AppendResult{}, fmt.Errorf("append %s/%d: %w", s.name, shard, err))
			return
		}
	}
	p := &pending{stream: s, shard: shard, recs: recs, ops: ops, txn: txn, done: done, enqueued: time.Now()}
	s.log.submit(ctx, p, queueCost(recs, ops), mode)
}

// AppendAt is AppendAsyncWith for a replica applying a replicated append (cluster/):
// the records get append time tsUS (or the shard's last append time, if later) instead
// of the clock's, and are stored as a batch of their own. Replicas that apply the same
// appends in the same order from the same state so store the same records at the same
// offsets with the same times. base is the offset the first record must get: when the
// shard's next offset is another (an earlier apply failed), nothing is written and done
// gets ErrOffsetMismatch, so a replica never stores an entry at the wrong place. done
// does not wait for an fsync: the caller's Raft log already holds the records durably
// and is replayed after a crash.
func (s *Stream) AppendAt(shard int32, tsUS, base int64, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
	if tsUS <= 0 {
		done(AppendResult{}, fmt.Errorf("append %s/%d: append time %d", s.name, shard, tsUS))
		return
	}
	if len(recs) == 0 {
		done(AppendResult{}, fmt.Errorf("append %s/%d: no records", s.name, shard))
		return
	}
	if _, err := s.shard(shard); err != nil {
		done(AppendResult{}, fmt.Errorf("append: %w", err))
		return
	}
	for _, op := range ops {
		if _, err := entryPrefix(op.Kind); err != nil {
			done(AppendResult{}, fmt.Errorf("append %s/%d: %w", s.name, shard, err))
			return
		}
	}
	p := &pending{stream: s, shard: shard, recs: recs, ops: ops, done: done, enqueued: time.Now(), fixedTS: tsUS, wantBase: base}
	s.log.submit(context.Background(), p, queueCost(recs, ops), AppendBlock)
}

// enqueue hands p to the committer; false means the log is closed.
func (l *Log) enqueue(p *pending) bool {
	l.queueMu.Lock()
	if l.closed {
		l.queueMu.Unlock()
		return false
	}
	l.queue = append(l.queue, p)
	l.queueMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// commitLoop is the single sequencer: it takes every append queued since its last
// commit, assigns offsets, writes one batch per shard and applies them all in one Pebble
// batch without waiting for the disk, then hands the commit to the syncer (sync.go).
// So commit N+1 is built and written while commit N syncs; acknowledgements and high
// watermarks still advance in commit order, and only once durable.
func (l *Log) commitLoop() {
	defer l.wg.Done()
	defer l.endCommitter()
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			// Drain what was queued before Close.
			for q := l.take(); len(q) > 0; q = l.take() {
				l.commit(q)
			}
			return
		}
		if q := l.take(); len(q) > 0 {
			l.commit(q)
		}
	}
}

// maxCommitBytes bounds one commit, so a burst of queued appends becomes several
// commits of bounded size rather than one huge Pebble batch.
const maxCommitBytes = 4 << 20 // at most half a memtable (log.go), so a commit is an ordinary batch

// take removes from the queue the appends for the next commit: all of them, or as many
// as fit in maxCommitBytes (at least one). What stays queued wakes the loop again.
func (l *Log) take() []*pending {
	l.queueMu.Lock()
	defer l.queueMu.Unlock()
	n, size := 0, 0
	for ; n < len(l.queue); n++ {
		sz := estimateSize(l.queue[n].recs) + opsSize(l.queue[n].ops)
		if n > 0 && size+sz > maxCommitBytes {
			break
		}
		size += sz
	}
	q := l.queue[:n:n]
	l.queue = append([]*pending(nil), l.queue[n:]...)
	if len(l.queue) > 0 {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return q
}

type shardGroup struct {
	stream *Stream
	shard  int32
	sh     *shardState
	items  []*pending
	// committer state before the commit (restored if it cannot be applied) and after
	// it (published by the syncer once durable)
	next, lastTS, cum int64
	newNext, newCum   int64
	// openBefore is the shard's open transactions before the commit, saved when the
	// commit changes them; newBound is their smallest first offset after it (txn.go).
	openBefore map[int64]int64
	newBound   int64
}

func (l *Log) commit(q []*pending) {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()

	if err := l.failure(); err != nil {
		for _, p := range q {
			if p.endTxn != nil && p.entriesDone == nil {
				p.endTxn.done(nil, fmt.Errorf("end transaction: %w", err))
				continue
			}
			if p.stream == nil {
				p.entriesDone(fmt.Errorf("write %d entries: %w", len(p.ops), err))
				continue
			}
			p.done(AppendResult{}, fmt.Errorf("append %s/%d: %w", p.stream.name, p.shard, err))
		}
		return
	}
	groups := make(map[*shardState]*shardGroup)
	var order []*shardGroup
	var entryOnly []*pending
	b := l.db.NewBatch()
	handed := false // the syncer closes a batch it was handed (sync.go)
	defer func() {
		if !handed {
			_ = b.Close()
		}
	}()
	for i := 0; i < len(q); i++ {
		p := q[i]
		if p.endTxn != nil && p.entriesDone == nil {
			// Its markers join the queue as appends, in its place.
			ms := l.expandEndTxn(b, p)
			q = append(q[:i:i], append(ms, q[i+1:]...)...)
			i--
			continue
		}
		if p.endTxn != nil {
			l.expandEndTxn(b, p) // offsets only, no marker
		}
		if p.stream == nil {
			writeOps(b, p.ops)
			entryOnly = append(entryOnly, p)
			continue
		}
		sh, err := p.stream.shard(p.shard)
		if err != nil {
			p.done(AppendResult{}, fmt.Errorf("append: %w", err))
			continue
		}
		g := groups[sh]
		if g == nil {
			g = &shardGroup{stream: p.stream, shard: p.shard, sh: sh, next: sh.next, lastTS: sh.lastTS, cum: sh.cum}
			groups[sh] = g
			order = append(order, g)
		}
		g.items = append(g.items, p)
		writeOps(b, p.ops)
	}
	if len(order) == 0 && len(entryOnly) == 0 {
		return
	}
	now := l.nowUS()
	// Scratch kept across commits (the committer's alone, under commitMu): the batch
	// copies what is set, so only the records' references need clearing afterwards.
	recs, val, enc := l.commitRecs[:0], l.commitVal[:0], &l.commitEnc
	defer func() {
		clear(recs[:cap(recs)])
		l.commitRecs, l.commitVal = recs[:0], val[:0]
	}()
	a := &applied{groups: order}
	for _, g := range order {
		sh := g.sh
		last := sh.lastTS    // the latest append time written to the shard
		ts := max(now, last) // timestamps never decrease within a shard
		flush := func() {
			if len(recs) == 0 {
				return
			}
			base := sh.next
			val = enc.encode(val[:0], base, ts, sh.cum, recs, nil, int32(len(recs)-1), noProducer)
			_ = b.Set(batchKey(g.stream.id, g.shard, base), val, nil)
			_ = b.Set(timeKey(g.stream.id, g.shard, ts, base), nil, nil)
			sh.next += int64(len(recs))
			sh.cum += int64(len(val) - valueHeaderLen)
			recs = recs[:0]
			last = ts
		}
		size := 0
		for _, p := range g.items {
			p.bytes = estimateSize(p.recs)
			if p.txn != nil || p.marker != nil {
				// A batch of its own, which carries the producer.
				flush()
				size = 0
				bts := ts
				if p.fixedTS != 0 {
					// Replicated (AppendTxnAt): at the offset the replica expects, with
					// the leader's time, or not at all.
					if sh.next != p.wantBase {
						p.refused = true
						continue
					}
					bts = max(p.fixedTS, last)
				}
				p.base, p.tsUS = sh.next, bts
				prod := batchProducer{id: -1, epoch: -1, attrs: attrTransactional}
				if p.txn != nil {
					prod.id, prod.epoch = p.txn.ProducerID, p.txn.Epoch
				} else {
					prod.id, prod.epoch, prod.attrs = p.marker.ProducerID, p.marker.Epoch, attrTransactional|attrControl
				}
				val = enc.encode(val[:0], p.base, bts, sh.cum, p.recs, nil, int32(len(p.recs)-1), prod)
				_ = b.Set(batchKey(g.stream.id, g.shard, p.base), val, nil)
				_ = b.Set(timeKey(g.stream.id, g.shard, bts, p.base), nil, nil)
				g.txnBatch(b, p, p.base)
				sh.next += int64(len(p.recs))
				sh.cum += int64(len(val) - valueHeaderLen)
				if len(p.ops) > 0 {
					writeBuiltOps(b, p.ops, AppendResult{BaseOffset: p.base, TimestampUS: p.tsUS})
				}
				a.appends++
				a.records += len(p.recs)
				last = bts
				if p.fixedTS != 0 {
					ts = max(now, last)
				}
				continue
			}
			if p.fixedTS != 0 {
				// A replicated append is a batch of its own with the leader's time, at
				// the offset the replica expects or not at all.
				flush()
				size = 0
				if sh.next != p.wantBase {
					p.refused = true // answered below, once, and out of the commit
					continue
				}
				ts = max(p.fixedTS, last)
			} else if size > 0 && size+p.bytes > maxBatchBytes {
				flush()
				size = 0
			}
			p.base = sh.next + int64(len(recs))
			p.tsUS = ts
			if len(p.ops) > 0 {
				writeBuiltOps(b, p.ops, AppendResult{BaseOffset: p.base, TimestampUS: p.tsUS})
			}
			size += p.bytes
			recs = append(recs, p.recs...)
			a.appends++
			a.records += len(p.recs)
			if p.fixedTS != 0 {
				flush()
				size = 0
				ts = max(now, last)
			}
		}
		flush()
		kept := g.items[:0]
		for _, p := range g.items {
			if !p.refused {
				kept = append(kept, p)
				continue
			}
			p.done(AppendResult{}, fmt.Errorf("append %s/%d at %d: %w", g.stream.name, g.shard, p.wantBase, ErrOffsetMismatch))
		}
		g.items = kept
		sh.lastTS = last
		g.newNext, g.newCum = sh.next, sh.cum
		g.newBound = sh.stableBound()
		if g.stream.durability(l.opts.Durability) == DurabilityFsync && !allReplicated(g.items) {
			a.fsync = true
		}
	}
	// Written to Pebble's memtable, and its WAL write(2) requested without waiting
	// for it: the syncer waits for it (and fsyncs) while this goroutine builds the
	// next commit.
	err := l.commitAsync(b)
	l.lastCommit.Store(time.Now().UnixNano())
	l.dirty.Store(true)
	if err != nil {
		l.lg.Error().Err(err).Int("appends", len(q)).Msg("commit failed")
		for _, g := range order {
			g.sh.next, g.sh.lastTS, g.sh.cum = g.next, g.lastTS, g.cum
			if g.openBefore != nil {
				g.sh.open = g.openBefore
			}
			for _, p := range g.items {
				p.done(AppendResult{}, fmt.Errorf("append %s/%d: %w", g.stream.name, g.shard, err))
			}
		}
		for _, p := range entryOnly {
			p.entriesDone(fmt.Errorf("write %d entries: %w", len(p.ops), err))
		}
		return
	}
	a.entries = entryOnly
	if len(entryOnly) > 0 && l.opts.Durability == DurabilityFsync {
		a.fsync = true // broker state follows the server's durability
	}
	if !l.opts.NoSync {
		a.batch, handed = b, true
	}
	l.handToSyncer(a)
}

// commitAsync applies b to the memtable and asks Pebble's WAL flush loop to write it
// to the WAL file (write(2); walfs.go makes the flush loop's own sync a no-op) without
// waiting: the loop starts on it at once, and the syncer waits for it with
// b.SyncWait. With Options.NoSync nothing is requested and the batch is the
// committer's to close.
func (l *Log) commitAsync(b *pebble.Batch) (err error) {
	if l.opts.NoSync {
		return l.guardCommit(b, pebble.NoSync, false)
	}
	if werr := l.store.writeErr(); werr != nil {
		l.observeRefusal(werr)
		return werr
	}
	defer l.absorbFatal(&err)
	return l.db.ApplyNoSyncWait(b, pebble.Sync)
}

// allReplicated reports whether every append of a group is a replica applying a
// replicated append (AppendAt): those are already durable in the cluster's Raft log,
// which a crash replays from the applied index written with them, so the apply itself
// need not wait for an fsync.
func allReplicated(ps []*pending) bool {
	for _, p := range ps {
		if p.fixedTS == 0 {
			return false
		}
	}
	return true
}

func estimateSize(recs []Record) int {
	n := 0
	for _, r := range recs {
		n += len(r.Key) + len(r.Value) + 16
		for _, h := range r.Headers {
			n += len(h.Key) + len(h.Value) + 4
		}
	}
	return n
}
