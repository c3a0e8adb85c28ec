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
)

const crashEnv = "MQSTREAMS_LOG_CRASH_CHILD_DIR"

// TestCrashChild is the child half of TestCrashRecovery: it appends from many
// goroutines until killed, printing each record only after its append is acknowledged.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestCrashRecovery")
	}
	l, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	s, err := l.EnsureStream(StreamSpec{Name: "crash", Shards: 2})
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
				fmt.Fprintf(out, "%d %d %s\n", w%2, res.BaseOffset, v)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// TestCrashRecovery kills a writer process with SIGKILL mid-append and checks that every
// acknowledged record is there after reopening, with contiguous offsets.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int32]map[int64]string{0: {}, 1: {}}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 {
				if strings.HasPrefix(sc.Text(), "ERR") {
					t.Fatal(sc.Text())
				}
				continue
			}
			sh, _ := strconv.Atoi(f[0])
			off, _ := strconv.ParseInt(f[1], 10, 64)
			acked[int32(sh)][off] = f[2]
			if n++; n == 2000 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		_ = cmd.Wait()
		if n < 2000 {
			t.Fatalf("round %d: child acknowledged only %d appends", round, n)
		}
		l := openTest(t, dir, nil)
		s := l.Stream("crash")
		for sh := int32(0); sh < 2; sh++ {
			_, hwm, _ := s.Offsets(sh)
			seen := map[int64]string{}
			next := int64(0)
			for next < hwm {
				bs, err := s.Read(sh, next, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range bs {
					rs, err := b.Records(next)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rs {
						if r.Offset != next {
							t.Fatalf("shard %d: offset %d, want %d (gap)", sh, r.Offset, next)
						}
						seen[r.Offset] = string(r.Value)
						next++
					}
				}
			}
			for off, v := range acked[sh] {
				if seen[off] != v {
					t.Fatalf("round %d shard %d: acknowledged %q at %d, stored %q", round, sh, v, off, seen[off])
				}
			}
		}
		l.Close()
	}
}
