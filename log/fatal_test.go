package log

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestPebbleFatalKeepsServing makes Pebble fail where it gives up: a MANIFEST write of a
// memtable flush (Logger.Fatalf on Pebble's flush goroutine, DB.mu held), and the
// creation of the next WAL when a flush switches memtables (a plain panic inside
// DB.rotateWAL with DB.mu released, which used to end the process on "sync: unlock of
// unlocked mutex"). Each time the process stays up, the flush and later appends are
// refused with ErrStorageFailed, reads keep serving, and Close returns; reopened, the log
// has what was acknowledged.
func TestPebbleFatalKeepsServing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(op errorfs.Op) bool
		// commitsComplete: a commit already inside Pebble completes (Pebble's commits
		// take DB.mu, which the parked flush holds, only to switch memtables). Not after
		// a failed WAL switch: there is no WAL to write to, and the switch holds the
		// commit pipeline.
		commitsComplete bool
	}{
		{"manifest write in flush", func(op errorfs.Op) bool {
			return op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "MANIFEST")
		}, true},
		{"next WAL in flush", func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpCreate || op.Kind == errorfs.OpReuseForWrite) && strings.HasSuffix(op.Path, ".log")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fail atomic.Bool
			fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if fail.Load() && tc.fail(op) {
					return syscall.EIO
				}
				return nil
			}))
			dir := t.TempDir()
			l, s := openOnFaultyFS(t, dir, fs)
			fail.Store(true)
			if err := l.flush(); !errors.Is(err, ErrStorageFailed) {
				t.Fatalf("flush: %v, want ErrStorageFailed", err)
			}
			if h := l.Health(); h.Writable || !strings.Contains(h.Reason, "storage failed") {
				t.Fatalf("health after a fatal storage error: %+v", h)
			}
			if _, err := s.Append(0, []Record{rec(1)}); !errors.Is(err, ErrStorageFailed) {
				t.Fatalf("append after a fatal storage error: %v, want ErrStorageFailed", err)
			}
			if bs, err := s.Read(0, 0, 1<<20); err != nil || len(bs) != 1 {
				t.Fatalf("read after a fatal storage error: %d batches, %v", len(bs), err)
			}
			if tc.commitsComplete {
				commitInsidePebble(t, l)
			}
			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			select {
			case err := <-closed:
				t.Logf("close: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("Close hangs after a fatal storage error")
			}
			// A restart recovers what was acknowledged. The parked job keeps this
			// process's lock on dir, so a copy of its files stands in for the restart.
			copied := t.TempDir()
			if err := os.CopyFS(copied, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			l2, err := Open(Options{Dir: copied, RetentionInterval: time.Hour, Coalesce: CoalesceOptions{Disabled: true}})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer l2.Close()
			if bs, err := l2.Stream("s").Read(0, 0, 1<<20); err != nil || len(bs) != 1 {
				t.Fatalf("read after reopening: %d batches, %v", len(bs), err)
			}
		})
	}
}

// commitInsidePebble checks that a commit already inside Pebble when a job parked
// completes. It is written straight to Pebble, past the log's refusal, under a key the
// log never reads.
func commitInsidePebble(t *testing.T, l *Log) {
	t.Helper()
	committed := make(chan error, 1)
	go func() {
		b := l.db.NewBatch()
		_ = b.Set([]byte{0xff, 't', 'e', 's', 't'}, nil, nil)
		committed <- b.Commit(pebble.NoSync)
	}()
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("commit inside Pebble after the job parked: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a commit inside Pebble blocks after the job parked")
	}
}
