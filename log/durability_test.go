package log

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fsyncCounter counts the real WAL fsyncs and the records per durable group.
type fsyncCounter struct {
	fsyncs  atomic.Int64
	groups  atomic.Int64
	records atomic.Int64
}

func (c *fsyncCounter) ObserveAppend(string, int, int, time.Duration) {}
func (c *fsyncCounter) ObserveSync(time.Duration)                     { c.fsyncs.Add(1) }
func (c *fsyncCounter) ObserveCommit(_, records int) {
	c.groups.Add(1)
	c.records.Add(int64(records))
}

func appendN(t *testing.T, s *Stream, writers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Append(0, []Record{rec(i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestDurabilityFsyncs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		log       Durability
		stream    Durability
		wantFsync bool
	}{
		{"default is fsync", DurabilityDefault, DurabilityDefault, true},
		{"write", DurabilityWrite, DurabilityDefault, false},
		{"stream overrides write with fsync", DurabilityWrite, DurabilityFsync, true},
		{"stream overrides fsync with write", DurabilityFsync, DurabilityWrite, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c fsyncCounter
			l, err := Open(Options{Dir: t.TempDir(), Durability: tc.log, SyncInterval: time.Hour, Observer: &c})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1, Durability: tc.stream})
			if err != nil {
				t.Fatal(err)
			}
			before := c.fsyncs.Load()
			appendN(t, s, 4, 50)
			n := c.fsyncs.Load() - before
			if tc.wantFsync && (n == 0 || n > 200) {
				t.Fatalf("%d fsyncs for 200 appends, want between 1 and 200", n)
			}
			if !tc.wantFsync && n != 0 {
				t.Fatalf("%d fsyncs at write durability with an hour's sync interval", n)
			}
			if got := c.records.Load(); got != 200 {
				t.Fatalf("commit groups reported %d records, want 200", got)
			}
			if _, hwm, _ := s.Offsets(0); hwm != 200 {
				t.Fatalf("hwm %d, want 200", hwm)
			}
		})
	}
}

// TestSyncIntervalFsyncs checks `write` durability fsyncs by itself within sync_interval.
func TestSyncIntervalFsyncs(t *testing.T) {
	var c fsyncCounter
	l, err := Open(Options{Dir: t.TempDir(), Durability: DurabilityWrite, SyncInterval: 5 * time.Millisecond, Observer: &c})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	before := c.fsyncs.Load()
	appendN(t, s, 1, 1)
	deadline := time.Now().Add(10 * time.Second)
	for c.fsyncs.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no fsync within 10s of a `write` append with a 5ms sync interval")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBadDurability(t *testing.T) {
	if _, err := Open(Options{Dir: t.TempDir(), Durability: "sometimes"}); err == nil {
		t.Fatal("Open accepted durability \"sometimes\"")
	}
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	if _, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1, Durability: "never"}); err == nil {
		t.Fatal("CreateStream accepted durability \"never\"")
	}
}

// TestSyncedWritesGoThroughTheLog guards walfs.go's contract: Pebble's own WAL sync only
// reaches the operating system, so a write of this package that must be on disk goes
// through guardWrite (which fsyncs) or the committer and syncer, never a bare Commit or
// Apply of Pebble.
func TestSyncedWritesGoThroughTheLog(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"storage.go": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || allowed[f] {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			code := strings.TrimSpace(line)
			if strings.HasPrefix(code, "//") {
				continue
			}
			for _, bare := range []string{".Commit(pebble.Sync", ".Commit(l.syncOpt", "db.Apply(", "db.LogData("} {
				if strings.Contains(code, bare) {
					t.Errorf("%s:%d commits with Pebble directly (%s): use guardWrite, which fsyncs (walfs.go)", f, i+1, bare)
				}
			}
		}
	}
}
