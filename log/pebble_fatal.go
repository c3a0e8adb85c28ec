package log

// This file is the adapter to Pebble's fatal errors (cockroachdb/pebble/v2 v2.1.7). What it
// relies on, read in that version's db.go, version_set.go, compaction.go and flush code:
//   - Pebble calls Logger.Fatalf where it cannot go on (a failed WAL write in
//     DB.applyInternal, a failed MANIFEST write in versionSet.UpdateVersionLocked, ...) and
//     assumes Fatalf never returns: returning would report a failed commit as done or
//     install a version the MANIFEST does not have.
//   - On the committing goroutine (DB.applyInternal, after the commit pipeline returned)
//     no Pebble lock is held, so a panic unwinds cleanly to guardCommit's recover
//     (absorbFatal); pebble.Open's fatals unwind to openPebble's recover likewise.
//   - Pebble's own goroutines (flush, compaction, table stats, obsolete-file deletion,
//     started by DB.maybeScheduleFlush / maybeScheduleCompaction / ...) have no recover,
//     and some of their Fatalf calls hold DB.mu, or sit between a d.mu.Unlock and a
//     deferred d.mu.Unlock of a caller: a panic there either kills the process or dies on
//     "sync: unlock of unlocked mutex", which no recover can catch. Such a goroutine is
//     parked instead (it never returns, holding what it holds); writes were refused the
//     moment Fatalf ran, reads go on (iterators and Get take no DB.mu), and everything
//     that would wait for the parked job (a flush, Close) stops waiting on storage.dead.
//   - DB.rotateWAL (a memtable switch, on a committing goroutine, a flush's or an
//     ingest's) releases DB.mu, then panics (a plain panic, not Fatalf) when closing the
//     old WAL or creating the next one fails; its caller's deferred d.mu.Unlock then
//     dies on "sync: unlock of unlocked mutex" (a WAL file vanishing under a flush did
//     this). walFS sees those failures first and parks the goroutine there (failStop),
//     DB.mu released, so nothing unwinds; the commit pipeline stays held, which refuses
//     nothing more than writes already refuse.

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/rs/zerolog"
)

type pebbleLogger struct {
	lg zerolog.Logger
	// fatal records a fatal error: writes are refused from then on (Log.fatal).
	fatal func(err error, parked bool)
}

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.lg.Debug().Msgf(format, args...)
}
func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.lg.Error().Msgf(format, args...)
}

// Fatalf must not exit the process (a full disk is not a reason to die) nor return
// (Pebble would report a failed commit as done). On a goroutine of ours it panics with
// pebbleFatal, which the write sites recover (absorbFatal); on one of Pebble's
// background goroutines it parks the goroutine for good (see the top of this file).
func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	err := fatalArgErr(format, args)
	parked := pebbleGoroutine()
	p.lg.Error().Err(err).Bool("background", parked).Msg("pebble fatal error")
	if p.fatal != nil {
		p.fatal(err, parked)
	}
	if !parked {
		panic(pebbleFatal{err})
	}
	select {} // never returns: Pebble must not go on, and must not unwind either
}

// errWALWriteFailed is the close error of a WAL file a write to had failed (Pebble's
// close of the WAL returns that write's error).
var errWALWriteFailed = errors.New("an earlier write to this WAL file failed")

// failStop parks the calling goroutine for good, writes refused, when a WAL file
// operation failed inside DB.rotateWAL, which would panic on it with DB.mu released
// (see the top of this file); elsewhere the error is returned to Pebble as usual.
func (w *walFS) failStop(err error) {
	if !onStack("github.com/cockroachdb/pebble/v2.(*DB).rotateWAL") {
		return
	}
	if w.fatal != nil {
		w.fatal(fmt.Errorf("switch to a new WAL: %w", err), true)
	}
	select {}
}

// onStack tells whether function fn is on the calling goroutine's stack.
func onStack(fn string) bool {
	pcs := make([]uintptr, 256)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}

// pebbleGoroutine tells whether the calling goroutine was started by Pebble (a
// background flush, compaction or cleanup job), not by our code calling into Pebble.
func pebbleGoroutine() bool {
	pcs := make([]uintptr, 256)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	outer := ""
	for {
		f, more := frames.Next()
		if f.Function != "runtime.goexit" {
			outer = f.Function
		}
		if !more {
			break
		}
	}
	if n == len(pcs) {
		return true // deeper than any stack of ours into Pebble: do not risk unwinding
	}
	return strings.HasPrefix(outer, "github.com/cockroachdb/pebble/")
}

// fatal records Pebble's fatal error err: writes are refused from now on (reads keep
// serving). parked says the Pebble job that hit it is parked for good: whoever would
// wait for it (a flush, Close) must not.
func (l *Log) fatal(err error, parked bool) {
	l.storageFailed(err)
	if parked {
		l.store.deadOnce.Do(func() { close(l.store.dead) })
	}
}
