package log

import (
	"sync"
	"testing"
)

// TestAfterAcksFollowsEachGroup: AfterAcks callbacks run on the syncer after the done
// callbacks of the group, so the last one sees every append acknowledged.
func TestAfterAcksFollowsEachGroup(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked, calls, seenLast := 0, 0, -1
	l.AfterAcks(func() {
		mu.Lock()
		calls++
		seenLast = acked
		mu.Unlock()
	})
	const n = 200
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		s.AppendAsync(0, []Record{rec(i)}, func(_ AppendResult, err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			acked++
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	// The group holding the last append runs its AfterAcks after its callbacks: wait
	// for it with a synced append, acknowledged only in a later group.
	if _, err := s.Append(0, []Record{rec(n)}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || seenLast < n {
		t.Fatalf("AfterAcks ran %d times, last seeing %d of %d acknowledged", calls, seenLast, n)
	}
}
