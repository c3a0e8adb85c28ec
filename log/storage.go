package log

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrDiskFull refuses a write while the data directory's free space is below
// Options.MinFreeBytes. It wraps syscall.ENOSPC so protocol layers map it to their
// "out of space" answers (MQTT 0x97, Kafka KAFKA_STORAGE_ERROR) with errors.Is.
var ErrDiskFull = fmt.Errorf("storage low on free space: %w", syscall.ENOSPC)

// ErrStorageFailed refuses every write after Pebble reported an error it cannot
// recover from (a failed WAL write leaves its commit pipeline unusable): reads keep
// serving, writes need a restart.
var ErrStorageFailed = errors.New("storage failed; restart required")

// pebbleFatal is what pebbleLogger.Fatalf panics with: Pebble's fatal errors (a failed
// WAL write on a full disk) must neither exit the process nor return to Pebble, which
// would report the failed commit as a success. The write sites recover it (guardWrite).
type pebbleFatal struct{ err error }

func (p pebbleFatal) Error() string { return p.err.Error() }
func (p pebbleFatal) Unwrap() error { return p.err }

// storage watches the data directory's free space and Pebble's errors and decides
// whether writes are accepted. One owner: the Log; everyone else asks Health.
type storage struct {
	dir     string
	minFree uint64
	// statfs reports the free bytes of dir (tests replace it).
	statfs func(dir string) (uint64, error)

	low    atomic.Bool  // free space below minFree (or a write hit ENOSPC)
	free   atomic.Int64 // last measured free bytes
	failed atomic.Pointer[error]
	// dead is closed when a Pebble background job parked on a fatal error
	// (pebble_fatal.go): a flush or Close waiting for Pebble would wait forever.
	dead     chan struct{}
	deadOnce sync.Once

	mu     sync.Mutex
	onLow  func(bool) // told on each transition
	logged bool
}

func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// check measures free space and updates the low flag; it returns the new state.
func (s *storage) check() bool {
	free, err := s.statfs(s.dir)
	if err != nil {
		// Cannot tell: keep the previous state rather than flap.
		return s.low.Load()
	}
	s.free.Store(int64(free))
	low := free < s.minFree
	s.setLow(low)
	return low
}

func (s *storage) setLow(low bool) {
	if s.low.Swap(low) == low {
		return
	}
	s.mu.Lock()
	f := s.onLow
	s.mu.Unlock()
	if f != nil {
		f(low)
	}
}

// writeErr is the error a new write gets now, or nil.
func (s *storage) writeErr() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	if s.low.Load() {
		return ErrDiskFull
	}
	return nil
}

// Health says whether the log accepts writes, and why not.
type Health struct {
	// Writable is false while writes are refused.
	Writable bool
	// Reason explains a refusal ("" when writable).
	Reason string
	// FreeBytes is the data directory's free space at the last check.
	FreeBytes int64
	// MinFreeBytes is the threshold below which writes are refused.
	MinFreeBytes int64
}

// Health reports whether writes are accepted (for /readyz and metrics).
func (l *Log) Health() Health {
	s := &l.store
	h := Health{Writable: true, FreeBytes: s.free.Load(), MinFreeBytes: int64(s.minFree)}
	if p := s.failed.Load(); p != nil {
		h.Writable, h.Reason = false, (*p).Error()
	} else if s.low.Load() {
		h.Writable = false
		h.Reason = fmt.Sprintf("disk full: %d bytes free in %s, below storage.min_free_bytes %d; writes resume when space returns", h.FreeBytes, s.dir, s.minFree)
	}
	return h
}

// diskLoop re-measures free space so writes resume by themselves when space returns.
func (l *Log) diskLoop(every time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.store.check()
		}
	}
}

// guardWrite commits b unless writes are refused; freeing writes (retention's deletes)
// pass always=true and are let through on a low disk, since they give space back.
// A Pebble fatal error becomes ErrStorageFailed; ENOSPC marks the disk low until the
// next measurement says otherwise.
func (l *Log) guardWrite(b *pebble.Batch, opt *pebble.WriteOptions, always bool) error {
	if err := l.guardCommit(b, opt, always); err != nil || !opt.Sync || l.opts.NoSync {
		return err
	}
	// Pebble's WAL sync only reached the operating system (walfs.go): fsync.
	if _, err := l.wfs.fsync(); err != nil {
		l.fail(err)
		return l.failure()
	}
	return nil
}

// guardCommit is guardWrite without the fsync: a synced commit returns once its WAL
// write reached the operating system (the committer and the syncer, sync.go).
func (l *Log) guardCommit(b *pebble.Batch, opt *pebble.WriteOptions, always bool) (err error) {
	if werr := l.store.writeErr(); werr != nil && (!always || errors.Is(werr, ErrStorageFailed)) {
		l.observeRefusal(werr)
		return werr
	}
	defer l.absorbFatal(&err)
	return b.Commit(opt)
}

// absorbFatal, deferred around a Pebble commit or flush, turns the pebbleFatal that
// pebbleLogger.Fatalf panics with into ErrStorageFailed in *err (writes refused until
// restart, reads keep serving), and marks the disk low when *err is ENOSPC or EDQUOT.
func (l *Log) absorbFatal(err *error) {
	if r := recover(); r != nil {
		pf, ok := r.(pebbleFatal)
		if !ok {
			panic(r)
		}
		l.storageFailed(pf.err)
		*err = fmt.Errorf("%w: %w", ErrStorageFailed, pf.err)
	}
	if *err != nil && (errors.Is(*err, syscall.ENOSPC) || errors.Is(*err, syscall.EDQUOT)) {
		l.store.setLow(true)
	}
}

// storageFailed refuses every write from now on for Pebble's fatal error err (the
// first one is logged; reads keep serving).
func (l *Log) storageFailed(err error) {
	e := fmt.Errorf("%w: %w", ErrStorageFailed, err)
	if l.store.failed.CompareAndSwap(nil, &e) {
		l.lg.Error().Err(err).Msg("storage failed: writes refused until restart, reads keep serving")
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		l.store.setLow(true)
	}
}

// deadErr is the error of a wait for Pebble that a parked background job would never
// end, or nil while none is parked.
func (l *Log) deadErr() error {
	select {
	case <-l.store.dead:
		return l.failure()
	default:
		return nil
	}
}

// RefusalObserver is implemented by an Observer that also counts refused writes.
type RefusalObserver interface {
	// ObserveRefusal counts one write refused for reason ("disk_full", "storage_failed").
	ObserveRefusal(reason string)
}

func (l *Log) observeRefusal(err error) {
	if o, ok := l.opts.Observer.(RefusalObserver); ok {
		o.ObserveRefusal(refusalReason(err))
	}
}

func refusalReason(err error) string {
	if errors.Is(err, ErrStorageFailed) {
		return "storage_failed"
	}
	return "disk_full"
}

// fatalArgErr finds the error among a Fatalf's arguments, so ENOSPC stays visible to
// errors.Is.
func fatalArgErr(format string, args []interface{}) error {
	msg := fmt.Sprintf(format, args...)
	for _, a := range args {
		if e, ok := a.(error); ok {
			return fmt.Errorf("%s: %w", msg, e)
		}
	}
	return errors.New(msg)
}

// flush flushes the memtable, a Pebble fatal error becoming ErrStorageFailed as in
// guardWrite.
func (l *Log) flush() error {
	return l.waitPebble(l.db.Flush)
}

// waitPebble runs f, a call into Pebble that waits for its background jobs (a flush, a
// manual compaction, Close), and returns its error, a Pebble fatal error becoming
// ErrStorageFailed. Once a background job has parked on a fatal error (pebble_fatal.go)
// f may never return: the wait stops then, leaving f blocked.
func (l *Log) waitPebble(f func() error) error {
	if err := l.deadErr(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		defer l.absorbFatal(&err)
		err = f()
	}()
	select {
	case err := <-done:
		return err
	case <-l.store.dead:
		return l.failure()
	}
}
