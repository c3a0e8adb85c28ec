package log

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// dirBytes is the disk space the files under dir occupy (allocated blocks, so
// preallocated WAL space counts).
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed by Pebble meanwhile
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func retainedBytes(l *Log) int64 {
	var n int64
	for _, s := range l.Streams() {
		for i := int32(0); i < s.Shards(); i++ {
			n += s.Size(i)
		}
	}
	return n
}

// TestDiskUseBounded: while appends run and once they stop, the data dir stays within
// twice the bytes the streams hold plus DiskOverheadBytes (docs/operations.md).
func TestDiskUseBounded(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, Logger: zerolog.Nop(), RetentionInterval: time.Hour, IdleFlush: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "d", Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	const (
		total   = 48 << 20
		recSize = 4 << 10
		perCall = 64 // 256 KiB per append
	)
	payload := make([]byte, total)
	_, _ = rand.Read(payload) // incompressible, the worst case
	check := func(when string) (used, retained int64) {
		t.Helper()
		used, retained = dirBytes(t, dir), retainedBytes(l)
		if limit := 2*retained + DiskOverheadBytes; used > limit {
			t.Fatalf("%s: data dir %d bytes for %d retained (limit %d = 2×retained + %d)", when, used, retained, limit, DiskOverheadBytes)
		}
		return used, retained
	}
	var peak int64
	for off, n := 0, 0; off < total; n++ {
		recs := make([]Record, 0, perCall)
		for i := 0; i < perCall && off < total; i++ {
			recs = append(recs, Record{Value: payload[off : off+recSize]})
			off += recSize
		}
		if _, err := s.Append(int32(n%4), recs); err != nil {
			t.Fatal(err)
		}
		if n%8 == 0 {
			used, _ := check("while appending")
			peak = max(peak, used)
		}
	}
	used, retained := check("after the last append")
	peak = max(peak, used)
	// Idle: the memtable is flushed and the WAL it needed is released.
	deadline := time.Now().Add(30 * time.Second)
	for l.unflushed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	idle, _ := check("idle")
	t.Logf("retained %d MiB; data dir peak %d MiB, after last append %d MiB, idle %d MiB (overhead allowance %d MiB)",
		retained>>20, peak>>20, used>>20, idle>>20, DiskOverheadBytes>>20)
}

// TestFormatMajorVersionPinned: a new data dir gets the pinned format, not whatever
// the linked Pebble calls newest, and keeps it across reopens.
func TestFormatMajorVersionPinned(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		l := openTest(t, dir, nil)
		if got := l.db.FormatMajorVersion(); got != formatMajorVersion {
			t.Fatalf("format major version %d, want %d", got, formatMajorVersion)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
