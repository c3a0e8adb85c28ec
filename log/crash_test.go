package log

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	crashEnv = "MQSTREAMS_LOG_CRASH_CHILD_DIR"
	// crashMergeEnv makes the child merge batches all the time (small merged batches,
	// compressed), so the kill lands during merges.
	crashMergeEnv = "MQSTREAMS_LOG_CRASH_CHILD_MERGE"
	// crashWriteEnv makes the child acknowledge at `write` durability with fsyncs an
	// hour apart, so nothing it acknowledged was fsynced when it is killed.
	crashWriteEnv = "MQSTREAMS_LOG_CRASH_CHILD_WRITE"
)

// TestCrashChild is the child half of TestCrashRecovery: it appends from many
// goroutines until killed, printing each record only after its append is acknowledged.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestCrashRecovery")
	}
	opts := Options{Dir: dir}
	spec := StreamSpec{Name: "crash", Shards: 2}
	if os.Getenv(crashMergeEnv) != "" {
		opts.Coalesce = CoalesceOptions{Records: 40, Delay: time.Millisecond}
		spec.Compression = CompressionLZ4
	}
	if os.Getenv(crashWriteEnv) != "" {
		opts.Durability = DurabilityWrite
		opts.SyncInterval = time.Hour
	}
	l, err := Open(opts)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s, err := l.EnsureStream(spec)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				v := fmt.Sprintf("w%d-%d", w, i)
				res, err := s.Append(int32(w%2), []Record{{Value: []byte(v)}})
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d %s %d\n", w%2, res.BaseOffset, v, res.TimestampUS)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// TestCrashRecovery kills a writer process with SIGKILL mid-append and checks that every
// acknowledged record is there after reopening, with contiguous offsets.
func TestCrashRecovery(t *testing.T) { crashRounds(t, false, false) }

// TestCrashRecoveryWrite is TestCrashRecovery at `write` durability with no fsync at all
// before the kill: what was acknowledged is in the operating system and survives.
func TestCrashRecoveryWrite(t *testing.T) { crashRounds(t, false, true) }

// TestCrashDuringCoalesce is TestCrashRecovery with batches merged all the time: every
// acknowledged record keeps its offset, value and append time, and merging resumes.
func TestCrashDuringCoalesce(t *testing.T) { crashRounds(t, true, false) }

// crashKillAfter is, per round, after how many acknowledgements the child is killed:
// early (the first commits and WAL), mid-stream and later, so kills land at different
// points of the commit pipeline.
var crashKillAfter = []int{1, 300, 2000, 77, 5000}

func crashRounds(t *testing.T, merge, write bool) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	for round, killAt := range crashKillAfter {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		if merge {
			cmd.Env = append(cmd.Env, crashMergeEnv+"=1")
		}
		if write {
			cmd.Env = append(cmd.Env, crashWriteEnv+"=1")
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		type ack struct {
			v  string
			ts int64
		}
		acked := map[int32]map[int64]ack{0: {}, 1: {}}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 {
				if strings.HasPrefix(sc.Text(), "ERR") {
					t.Fatal(sc.Text())
				}
				continue
			}
			sh, _ := strconv.Atoi(f[0])
			off, _ := strconv.ParseInt(f[1], 10, 64)
			ts, _ := strconv.ParseInt(f[3], 10, 64)
			acked[int32(sh)][off] = ack{f[2], ts}
			if n++; n == killAt {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		_ = cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child acknowledged only %d appends", round, n)
		}
		l := openTest(t, dir, nil)
		s := l.Stream("crash")
		merged := 0
		for sh := int32(0); sh < 2; sh++ {
			_, hwm, _ := s.Offsets(sh)
			seen := map[int64]ack{}
			next := int64(0)
			for next < hwm {
				bs, err := s.Read(sh, next, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range bs {
					if b.segs != nil {
						merged++
					}
					rs, err := b.Records(next)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rs {
						if r.Offset != next {
							t.Fatalf("shard %d: offset %d, want %d (gap)", sh, r.Offset, next)
						}
						seen[r.Offset] = ack{string(r.Value), r.TimestampUS}
						next++
					}
				}
			}
			for off, a := range acked[sh] {
				if seen[off] != a {
					t.Fatalf("round %d shard %d: acknowledged %+v at %d, stored %+v", round, sh, a, off, seen[off])
				}
			}
		}
		if merge && merged == 0 && killAt >= 2000 {
			t.Fatalf("round %d: no merged batch: the kill did not come during merging", round)
		}
		l.Close()
	}
}
