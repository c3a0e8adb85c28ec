package log

import (
	"fmt"
	"time"
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

// AppendAsync queues recs for the shard and calls done once they are durable (or failed).
// Appends are committed in the order they are queued; done runs on the committer
// goroutine, in commit order, and must not block. An append refused up front (unknown
// shard, closed log) calls done before AppendAsync returns.
func (s *Stream) AppendAsync(shard int32, recs []Record, done func(AppendResult, error)) {
	s.AppendAsyncWith(shard, recs, nil, done)
}

// AppendAsyncWith is AppendAsync that also writes the entry changes ops in the same
// Pebble batch as the records: both are durable, or neither is.
func (s *Stream) AppendAsyncWith(shard int32, recs []Record, ops []EntryOp, done func(AppendResult, error)) {
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
	p := &pending{stream: s, shard: shard, recs: recs, ops: ops, done: done, enqueued: time.Now()}
	if !s.log.enqueue(p) {
		done(AppendResult{}, fmt.Errorf("append %s/%d: %w", s.name, shard, ErrClosed))
	}
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

// commitLoop is the single sequencer: it takes every append queued while the previous
// commit was syncing, assigns offsets, writes one batch per shard and commits them all
// in one synced Pebble batch — the group commit.
func (l *Log) commitLoop() {
	defer l.wg.Done()
	last := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-l.wake:
			l.gather(last, timer)
		case <-l.stop:
			// Drain what was queued before Close.
			for q := l.take(); len(q) > 0; q = l.take() {
				l.commit(q)
			}
			return
		}
		q := l.take()
		if len(q) > 0 {
			l.commit(q)
		}
		last = len(q)
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

// maxGatherWait bounds how long the committer waits for the writers of the previous
// commit to come back. Writers woken by a commit re-append a few microseconds apart;
// without this pause the next commit takes only the first of them and the rest wait a
// whole extra sync, which halves throughput with many writers.
const maxGatherWait = 200 * time.Microsecond

// gather waits, at most maxGatherWait, until as many appends are queued as the previous
// commit held. A lone writer (last == 1) never waits.
func (l *Log) gather(last int, timer *time.Timer) {
	queued := func() int {
		l.queueMu.Lock()
		defer l.queueMu.Unlock()
		return len(l.queue)
	}
	if last <= 1 || queued() >= last {
		return
	}
	timer.Reset(maxGatherWait)
	defer timer.Stop()
	for queued() < last {
		select {
		case <-l.wake:
		case <-timer.C:
			return
		case <-l.stop:
			return
		}
	}
}

type shardGroup struct {
	stream *Stream
	shard  int32
	sh     *shardState
	items  []*pending
	// saved committer state, restored if the commit fails
	next, lastTS, cum int64
}

func (l *Log) commit(q []*pending) {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()

	groups := make(map[*shardState]*shardGroup)
	var order []*shardGroup
	var entryOnly []*pending
	b := l.db.NewBatch()
	defer b.Close()
	for _, p := range q {
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
	var recs []Record
	var val []byte
	for _, g := range order {
		sh := g.sh
		ts := now
		if ts < sh.lastTS {
			ts = sh.lastTS // timestamps never decrease within a shard
		}
		flush := func() {
			if len(recs) == 0 {
				return
			}
			base := sh.next
			val = encodeValue(val[:0], base, ts, sh.cum, recs)
			_ = b.Set(batchKey(g.stream.id, g.shard, base), val, nil)
			_ = b.Set(timeKey(g.stream.id, g.shard, ts, base), nil, nil)
			sh.next += int64(len(recs))
			sh.cum += int64(len(val) - valueHeaderLen)
			recs = recs[:0]
		}
		size := 0
		for _, p := range g.items {
			p.bytes = estimateSize(p.recs)
			if size > 0 && size+p.bytes > maxBatchBytes {
				flush()
				size = 0
			}
			p.base = sh.next + int64(len(recs))
			p.tsUS = ts
			size += p.bytes
			recs = append(recs, p.recs...)
		}
		flush()
		sh.lastTS = ts
	}
	start := time.Now()
	err := l.guardWrite(b, l.syncOpt(), false)
	l.opts.Observer.ObserveSync(time.Since(start))
	l.lastCommit.Store(time.Now().UnixNano())
	l.dirty.Store(true)
	if err != nil {
		l.lg.Error().Err(err).Int("appends", len(q)).Msg("commit failed")
		for _, g := range order {
			g.sh.next, g.sh.lastTS, g.sh.cum = g.next, g.lastTS, g.cum
			for _, p := range g.items {
				p.done(AppendResult{}, fmt.Errorf("append %s/%d: %w", g.stream.name, g.shard, err))
			}
		}
		for _, p := range entryOnly {
			p.entriesDone(fmt.Errorf("write %d entries: %w", len(p.ops), err))
		}
		return
	}
	for _, p := range entryOnly {
		p.entriesDone(nil)
	}
	done := time.Now()
	wakeCoalescer := false
	for _, g := range order {
		g.sh.bytes.Add(g.sh.cum - g.cum)
		g.sh.hwm.Store(g.sh.next)
		if g.sh.co.noteCommit(&l.opts.Coalesce, g.sh.next, g.sh.cum, done) {
			wakeCoalescer = true
		}
		g.sh.appended()
		for _, p := range g.items {
			l.opts.Observer.ObserveAppend(g.stream.name, len(p.recs), p.bytes, done.Sub(p.enqueued))
			p.done(AppendResult{BaseOffset: p.base, TimestampUS: p.tsUS}, nil)
		}
	}
	if wakeCoalescer && !l.opts.Coalesce.Disabled {
		l.wakeCoalescer()
	}
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
