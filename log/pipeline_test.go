package log

import (
	"testing"
	"time"
)

// TestGatherTargetRemembersLargestGroup: once a pipelined writer's window was synced in
// two parts, the syncer waits for the whole window again. Following only the previous
// group (17 then 3 of a window of 20) waited for 3 and kept the window split for good.
func TestGatherTargetRemembersLargestGroup(t *testing.T) {
	var g gatherTarget
	for _, step := range []struct{ add, want int }{
		{20, 20}, {17, 20}, {3, 20}, {20, 20}, {3, 20}, {3, 20}, {3, 20}, {3, 3}, {1, 3},
	} {
		g.add(step.add)
		if got := g.target(); got != step.want {
			t.Fatalf("after a group of %d: gather target %d, want %d (recent groups %v)", step.add, got, step.want, g.sizes)
		}
	}
}

// TestCommitWritesWALWhileSyncerBusy: a commit's WAL write(2) is requested with the
// commit, so it reaches the operating system while the syncer is still busy with the
// previous group (pipelined group commit). Before, the WAL was written only when the
// syncer came round to make its own synced commit.
func TestCommitWritesWALWhileSyncerBusy(t *testing.T) {
	l, s, gate := openGated(t, Options{}, nil, "s")
	if _, err := s.Append(0, []Record{rec(0)}); err != nil { // fsynced: no WAL file dirty
		t.Fatal(err)
	}
	if walDirty(l) {
		t.Fatal("a WAL file is unsynced after an acknowledged `fsync` append")
	}
	gate.hold()
	done := make(chan error, 1)
	s.AppendAsync(0, []Record{rec(1)}, func(_ AppendResult, err error) { done <- err })
	deadline := time.Now().Add(10 * time.Second)
	for !walDirty(l) {
		if time.Now().After(deadline) {
			t.Fatal("the commit's WAL write waited for the held syncer")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("append acknowledged while the syncer was held (err %v)", err)
	default:
	}
	gate.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// walDirty reports whether some WAL file holds writes not yet fsynced.
func walDirty(l *Log) bool {
	l.wfs.mu.Lock()
	defer l.wfs.mu.Unlock()
	for f := range l.wfs.files {
		if f.dirty.Load() {
			return true
		}
	}
	return false
}
