package kafkawire

import (
	"context"
	"errors"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// chargeFunc asks the request-bytes budget for n more bytes; false means refused.
type chargeFunc func(n int) bool

// errBudget stops a request whose memory the server-wide budget cannot cover.
var errBudget = errors.New("server request-memory budget exhausted (kafka.queued_max_request_bytes); retry")

// smallFrame is the size below which a request frame is read without asking the
// budget: such frames fit the connection's read buffer, and the connection cap bounds
// them in all, so a budget exhausted by large requests never delays small ones.
const smallFrame = 64 << 10

// requestBudget is Kafka's queued.max.request.bytes: the bytes of requests read but
// not yet handled, and of their inflated records, across all connections. A large frame
// reserves its announced size before its body is read (so two half-read frames cannot
// each wait for the other's memory); inflation is charged as it grows and refused,
// rather than waited for, when the budget is spent.
type requestBudget struct {
	sem     *semaphore.Weighted
	total   int64
	freeing atomic.Bool
}

func newRequestBudget(total int64) *requestBudget {
	return &requestBudget{sem: semaphore.NewWeighted(total), total: total}
}

// reserve waits until n bytes are free, the deadline passes or done closes.
func (b *requestBudget) reserve(n int64, deadline time.Time, done <-chan struct{}) error {
	if b.sem.TryAcquire(n) {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := b.sem.Acquire(ctx, n); err != nil {
		return errBudget
	}
	return nil
}

// charge is the connection's chargeFunc: what it takes is given back after the
// request is handled.
func (c *conn) charge(n int) bool {
	if c.s.budget == nil {
		return true
	}
	if !c.s.budget.sem.TryAcquire(int64(n)) {
		c.s.metrics.limitRefused("request_budget")
		return false
	}
	c.held += int64(n)
	return true
}

// releaseHeld gives back the budget the request being handled took.
func (c *conn) releaseHeld() {
	if c.held > 0 && c.s.budget != nil {
		c.s.budget.sem.Release(c.held)
		if c.held >= largeRelease {
			c.s.budget.returnMemory()
		}
	}
	c.held = 0
}

// largeRelease is the budget release after which memory is handed back to the OS.
const largeRelease = 16 << 20

// returnMemory hands the memory of large requests back to the OS a second after the
// last one: an idle server runs no garbage collection for minutes, and a burst of
// large or hostile requests would otherwise keep its peak RSS that long.
func (b *requestBudget) returnMemory() {
	if !b.freeing.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Second, func() {
		b.freeing.Store(false)
		debug.FreeOSMemory()
	})
}
