package log

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrQueueFull is returned for an append refused because the append queue is full
// (Options.QueueBytes): at once for AppendDrop, when its context ends for AppendWait.
var ErrQueueFull = errors.New("append queue full")

// DefaultQueueBytes bounds the appends queued or written but not yet acknowledged.
const DefaultQueueBytes = 64 << 20

// bestEffortShare: the appends nobody waits for (AppendDrop: MQTT QoS 0 and wills) hold
// at most 1/bestEffortShare of the queue bound; past it they are dropped, while
// acknowledged appends (AppendBlock, AppendWait) may use the whole bound. The queue is
// one FIFO in front of one write-ahead log, so an acknowledged append waits for the
// sync of every byte admitted before it: with no share, a QoS 0 flood kept the queue
// full of QoS 0 bytes and a QoS 1 publish waited behind all of them (64 MiB at the
// 2 MB/s of scripts/flood-rss.sh: acks after 16-33 s). With the share it waits behind
// at most bound/bestEffortShare of them (8 MiB by default) plus the acknowledged
// appends ahead of it. One eighth still lets best-effort appends keep a disk busy:
// a sync covers everything admitted while the previous one ran, so the share needs only
// one fsync's worth of the disk's bandwidth (8 MiB: 4 GB/s at 2 ms a sync).
const bestEffortShare = 8

// Admission is what an append does when the append queue is full.
type Admission int

const (
	// AppendBlock blocks the caller until there is room: MQTT QoS 1/2, whose publisher
	// is then slowed by its socket not being read.
	AppendBlock Admission = iota
	// AppendDrop refuses the append with ErrQueueFull: MQTT QoS 0 and wills. These
	// best-effort appends also are refused once they hold their share of the queue
	// (bestEffortShare).
	AppendDrop
	// AppendWait queues the append without blocking the caller; it fails with
	// ErrQueueFull if its context ends before there is room (Kafka Produce's timeout).
	AppendWait
)

// admission bounds the bytes of appends between AppendAsync and their acknowledgement,
// so a disk slower than the publishers (or a stalled fsync) does not grow memory.
// Waiting appends are admitted in arrival order.
type admission struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	waiters list.List // *waiter
	closed  bool
	// best-effort (AppendDrop) bytes of used, and their bound (bestEffortShare)
	dropLimit int64
	dropUsed  int64
	// fullAt is when an append last found no room (see backlogged)
	fullAt time.Time
}

// setLimit sets the bound and the best-effort share of it.
func (a *admission) setLimit(n int64) {
	a.limit, a.dropLimit = n, n/bestEffortShare
}

// fits reports whether an append of n bytes may be admitted now, waiters aside. An
// append larger than the bound (or a best-effort one larger than the share) is
// admitted alone: into an empty queue (or an empty share).
func (a *admission) fits(n int64, mode Admission) bool {
	if a.used > 0 && a.used+n > a.limit {
		return false
	}
	return mode != AppendDrop || a.dropUsed == 0 || a.dropUsed+n <= a.dropLimit
}

// take counts an admitted append of n bytes.
func (a *admission) take(n int64, mode Admission) {
	a.used += n
	if mode == AppendDrop {
		a.dropUsed += n
	}
}

type waiter struct {
	p    *pending
	n    int64
	elem *list.Element
	stop func() bool // stops the context watch
}

// QueuedBytes is the size of the appends admitted and not yet acknowledged.
func (l *Log) QueuedBytes() int64 {
	l.adm.mu.Lock()
	defer l.adm.mu.Unlock()
	return l.adm.used
}

// QueueFull reports whether an AppendDrop append of one record with n bytes of key,
// value and headers (or fewer) would be refused now: appends wait for room, or it does
// not fit in the queue or in the best-effort share of it. A caller that would drop the
// append skips building it, which matters when a flood is mostly dropped.
func (l *Log) QueueFull(n int64) bool {
	n += recordOverhead
	l.adm.mu.Lock()
	defer l.adm.mu.Unlock()
	full := l.adm.waiters.Len() > 0 || !l.adm.fits(n, AppendDrop)
	if full {
		l.adm.fullAt = time.Now() // the caller drops it
	}
	return full
}

// backlogged reports whether the disk is behind the appends: an append found no room
// within the last d (a best-effort one dropped, an acknowledged one made to wait), or
// one waits now. Background writes that can wait (coalesce.go) then leave the disk to
// the appends.
func (l *Log) backlogged(d time.Duration) bool {
	l.adm.mu.Lock()
	defer l.adm.mu.Unlock()
	return l.adm.waiters.Len() > 0 || time.Since(l.adm.fullAt) < d
}

// Memory a queued record takes besides its key, value and header bytes: the Record and
// Header structs, the pending append and its callback, and the protocol's copy of the
// request it came in (an MQTT publish's packet). The queue bound counts them, so that
// what it holds in memory stays near Options.QueueBytes: counting payload bytes only,
// a QoS 0 flood of 1 KB messages held about 1.5 times the bound (heap profile of the
// flood benchmark, scripts/flood-rss.sh).
const (
	recordOverhead = 320
	headerOverhead = 40
)

// queueCost is what an append of recs and ops counts against the queue bound.
func queueCost(recs []Record, ops []EntryOp) int64 {
	n := estimateSize(recs) + opsSize(ops) + len(recs)*recordOverhead
	for _, r := range recs {
		n += len(r.Headers) * headerOverhead
	}
	return int64(n)
}

// submit admits p (n bytes) to the commit queue, or makes it wait or fails it as mode
// says (see fits).
func (l *Log) submit(ctx context.Context, p *pending, n int64, mode Admission) {
	a := &l.adm
	inner := p.done
	p.done = func(r AppendResult, err error) {
		inner(r, err)
		l.release(n, mode)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		inner(AppendResult{}, fmt.Errorf("append %s/%d: %w", p.stream.name, p.shard, ErrClosed))
		return
	}
	if a.waiters.Len() == 0 && a.fits(n, mode) {
		a.take(n, mode)
		ok := l.enqueue(p)
		if !ok {
			a.take(-n, mode)
		}
		a.mu.Unlock()
		if !ok {
			inner(AppendResult{}, fmt.Errorf("append %s/%d: %w", p.stream.name, p.shard, ErrClosed))
		}
		return
	}
	a.fullAt = time.Now()
	if mode == AppendDrop || ctx.Err() != nil {
		a.mu.Unlock()
		inner(AppendResult{}, fmt.Errorf("append %s/%d: %w", p.stream.name, p.shard, ErrQueueFull))
		return
	}
	w := &waiter{p: p, n: n}
	w.elem = a.waiters.PushBack(w)
	var admitted chan struct{}
	if mode == AppendBlock {
		admitted = make(chan struct{})
		w.stop = func() bool { close(admitted); return true }
	} else {
		w.stop = context.AfterFunc(ctx, func() { l.expire(w, inner) })
	}
	a.mu.Unlock()
	if admitted != nil {
		<-admitted
	}
}

// expire fails a waiter whose context ended before it was admitted.
func (l *Log) expire(w *waiter, inner func(AppendResult, error)) {
	a := &l.adm
	a.mu.Lock()
	if w.elem == nil {
		a.mu.Unlock()
		return // admitted meanwhile
	}
	a.waiters.Remove(w.elem)
	w.elem = nil
	admitted, failed := l.admitWaiting() // the head may have been the one that did not fit
	a.mu.Unlock()
	finish(admitted, failed)
	inner(AppendResult{}, fmt.Errorf("append %s/%d: %w", w.p.stream.name, w.p.shard, ErrQueueFull))
}

// release returns an acknowledged append's bytes and admits waiters that now fit.
func (l *Log) release(n int64, mode Admission) {
	a := &l.adm
	a.mu.Lock()
	a.take(-n, mode)
	admitted, failed := l.admitWaiting()
	a.mu.Unlock()
	finish(admitted, failed)
}

// admitWaiting moves the waiters at the head that fit into the commit queue, in order;
// it runs under adm.mu, so admissions never reorder.
func (l *Log) admitWaiting() (admitted, failed []*waiter) {
	a := &l.adm
	for e := a.waiters.Front(); e != nil; e = a.waiters.Front() {
		w := e.Value.(*waiter)
		if !a.fits(w.n, AppendBlock) { // waiters are never best-effort
			break
		}
		a.waiters.Remove(e)
		w.elem = nil
		a.used += w.n
		if l.enqueue(w.p) {
			admitted = append(admitted, w)
		} else {
			failed = append(failed, w) // closed: answered (and released) by finish
		}
	}
	return admitted, failed
}

// finish wakes blocked callers and stops the context watches of admitted waiters, and
// answers those the closed log refused. It runs without adm.mu.
func finish(admitted, failed []*waiter) {
	for _, w := range admitted {
		w.stop()
	}
	for _, w := range failed {
		w.stop()
		w.p.done(AppendResult{}, fmt.Errorf("append %s/%d: %w", w.p.stream.name, w.p.shard, ErrClosed))
	}
}

// closeAdmission fails every waiting append: the log is closing.
func (l *Log) closeAdmission() {
	a := &l.adm
	a.mu.Lock()
	a.closed = true
	var ws []*waiter
	for e := a.waiters.Front(); e != nil; e = a.waiters.Front() {
		w := e.Value.(*waiter)
		a.waiters.Remove(e)
		w.elem = nil
		a.used += w.n // released again by its done
		ws = append(ws, w)
	}
	a.mu.Unlock()
	finish(nil, ws)
}
