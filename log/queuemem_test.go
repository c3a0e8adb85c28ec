package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// queueMemChild marks the test binary run again to measure the heap alone.
const queueMemChild = "MQSTREAMS_QUEUEMEM_CHILD"

// TestQueueBoundCountsMemory fills the append queue, its sync stalled, with records
// shaped like MQTT publishes (a 1 KB value of its own, four small headers): the Go heap
// they hold stays near the bound, not at the bytes of their values plus whatever each
// record costs beside them. Near: what is committed and not yet synced also sits in
// the committer's Pebble batches (32 MiB bound: 31-47 MiB of heap, against 71-94 MiB
// when only the bytes were counted).
//
// The heap is measured in a process of its own (the test binary run again for this
// test alone): in the whole package run, what earlier tests left on the heap (63-80
// MiB seen) made the figure depend on the order of tests, not on the queue.
func TestQueueBoundCountsMemory(t *testing.T) {
	if os.Getenv(queueMemChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestQueueBoundCountsMemory$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), queueMemChild+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("measured in a process of its own:\n%s", out)
		if err != nil {
			t.Fatalf("the measuring process failed: %v", err)
		}
		return
	}
	const bound = 32 << 20
	gate := newSyncGate(nil)
	l, err := Open(Options{Dir: t.TempDir(), QueueBytes: bound, testBeforeSync: gate.beforeSync})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer gate.open()
	s, err := l.CreateStream(StreamSpec{Name: "q", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	gate.hold()
	base := heapAlloc()
	admitted := 0
	for i := 0; ; i++ {
		rec := Record{Value: make([]byte, 1000), Headers: []Header{
			{Key: "mqtt.topic", Value: []byte(fmt.Sprintf("plant/%d/telemetry", i%16))},
			{Key: "mqtt.qos", Value: []byte("0")},
			{Key: "mqtt.retain", Value: []byte("false")},
			{Key: "mqtt.clientid", Value: []byte("flooder")},
		}}
		refused := false
		s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{rec}, nil, func(_ AppendResult, err error) {
			refused = errors.Is(err, ErrQueueFull) // called at once when refused
		})
		if refused {
			break
		}
		admitted++
	}
	grown := int64(heapAlloc()) - int64(base)
	t.Logf("%d records admitted, heap grew by %.1f MiB for a %d MiB bound", admitted, float64(grown)/(1<<20), bound>>20)
	if grown > bound*7/4 {
		t.Fatalf("a full queue holds %.1f MiB of heap, bound %d MiB", float64(grown)/(1<<20), bound>>20)
	}
}
