package log

import (
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestCoalesceAllocation: merging keeps its buffers between merges and does not copy
// each stored batch into a fresh slice: a merge allocates a few dozen objects (Pebble's
// iterator and write batch), not one or more per batch merged.
func TestCoalesceAllocation(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), NoSync: true, Logger: zerolog.Nop(), RetentionInterval: time.Hour,
		IdleFlush: time.Hour, Coalesce: CoalesceOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "c", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, 25)
	for i := range recs {
		recs[i] = mqttLike(i)
	}
	// One round: 5,000 records (a full merged batch) in 200 committed batches, merged.
	round := func() (allocated, objects, merged uint64) {
		before := s.Size(0)
		for range 200 {
			if _, err := s.Append(0, recs); err != nil {
				t.Fatal(err)
			}
		}
		merged = uint64(s.Size(0) - before)
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		if err := l.Coalesce(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc, b.Mallocs - a.Mallocs, merged
	}
	round() // the first merge sizes the buffers
	// MemStats count every goroutine's allocations (Pebble's background work too), so
	// the quietest of five rounds is checked: copying each batch alone took 200 objects
	// in every round. Bytes vary with Pebble's batch pool, which the race detector
	// empties at random: logged, not checked.
	least := uint64(1 << 62)
	for i := range 5 {
		allocated, objects, merged := round()
		t.Logf("round %d: merging %d KiB of batches allocated %d KiB in %d objects", i, merged>>10, allocated>>10, objects)
		least = min(least, objects)
	}
	if least > 150 {
		t.Fatalf("merging 200 batches allocated at least %d objects per merge", least)
	}
}
