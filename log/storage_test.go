package log

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestDiskFullRefusesAndResumes drives the free-space guard with a measured value the
// test controls: appends are refused with ENOSPC below the threshold, reads keep
// serving, and appends resume by themselves once space returns.
func TestDiskFullRefusesAndResumes(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	l, err := Open(Options{Dir: t.TempDir(), RetentionInterval: time.Hour, MinFreeBytes: 100 << 20,
		DiskCheckInterval: 10 * time.Millisecond, statfs: func(string) (uint64, error) { return free.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(0, []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	free.Store(10 << 20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Append(0, []Record{rec(1)})
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrDiskFull) {
				t.Fatalf("refusal %v does not wrap ENOSPC", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("appends still accepted below min_free_bytes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h := l.Health(); h.Writable || h.Reason == "" {
		t.Fatalf("health %+v while full", h)
	}
	if err := l.CommitOffsets("g", []CommittedOffset{{Stream: "s", Shard: 0, Offset: 1}}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("offset commit on a full disk: %v", err)
	}
	_, hwm, err := s.Offsets(0)
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := s.Read(0, 0, 1<<20); err != nil || len(bs) == 0 {
		t.Fatalf("read on a full disk: %d batches, %v", len(bs), err)
	}
	free.Store(1 << 30)
	deadline = time.Now().Add(5 * time.Second)
	for {
		res, err := s.Append(0, []Record{rec(2)})
		if err == nil {
			if res.BaseOffset != hwm {
				t.Fatalf("resumed at offset %d, want %d", res.BaseOffset, hwm)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends not resumed: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h := l.Health(); !h.Writable {
		t.Fatalf("health %+v after space returned", h)
	}
}

// TestStartFullDiskComesUpRefusing opens a log on a disk already below the threshold:
// it opens, serves reads, refuses writes, and accepts them once space returns.
func TestStartFullDiskComesUpRefusing(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if _, err := s.Append(0, []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	var free atomic.Uint64
	free.Store(1 << 20)
	l, err := Open(Options{Dir: dir, RetentionInterval: time.Hour, MinFreeBytes: 100 << 20,
		DiskCheckInterval: 10 * time.Millisecond, statfs: func(string) (uint64, error) { return free.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s = l.Stream("s")
	if _, err := s.Append(0, []Record{rec(1)}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk at start: %v", err)
	}
	if _, hwm, _ := s.Offsets(0); hwm != 1 {
		t.Fatalf("hwm %d", hwm)
	}
	free.Store(1 << 30)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.Append(0, []Record{rec(1)}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPebbleFatalIsAnError checks the logger turns Pebble's Fatalf into a recoverable
// panic carrying the error, never an exit.
func TestPebbleFatalIsAnError(t *testing.T) {
	defer func() {
		r := recover()
		pf, ok := r.(pebbleFatal)
		if !ok || !errors.Is(pf, syscall.ENOSPC) {
			t.Fatalf("recovered %v", r)
		}
	}()
	var _ pebble.Logger = pebbleLogger{}
	pebbleLogger{}.Fatalf("pebble: fatal commit error: %v", syscall.ENOSPC)
}

// TestWALNoSpace makes the filesystem fail every write with ENOSPC under a running log
// with the free-space guard off, so Pebble's own failure path runs: the append is
// refused with an error wrapping ENOSPC (never acknowledged), the process does not
// exit, later writes are refused and reads keep serving.
func TestWALNoSpace(t *testing.T) {
	var fail atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if fail.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	}))
	l, s := openOnFaultyFS(t, t.TempDir(), fs)
	fail.Store(true)
	if _, err := s.Append(0, []Record{rec(1)}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a failing disk: %v, want ENOSPC", err)
	}
	if h := l.Health(); h.Writable {
		t.Fatal("log still writable after a failed commit")
	}
	if _, err := s.Append(0, []Record{rec(2)}); err == nil {
		t.Fatal("append accepted after a failed commit")
	}
	if _, hwm, _ := s.Offsets(0); hwm != 1 {
		t.Fatalf("high watermark %d after a failed commit, want 1", hwm)
	}
	if bs, err := s.Read(0, 0, 1<<20); err != nil || len(bs) != 1 {
		t.Fatalf("read after a failed commit: %d batches, %v", len(bs), err)
	}
	fail.Store(false)
	_ = l.Close()
}

// openOnFaultyFS opens a log in dir on fs (a fault-injecting filesystem, healthy for
// now) with nothing running in the background, and stores one record in stream "s".
func openOnFaultyFS(t *testing.T, dir string, fs vfs.FS) (*Log, *Stream) {
	t.Helper()
	l, err := Open(Options{Dir: dir, RetentionInterval: time.Hour, MinFreeBytes: -1, fs: fs,
		Coalesce: CoalesceOptions{Disabled: true}, IdleFlush: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(0, []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	return l, s
}
