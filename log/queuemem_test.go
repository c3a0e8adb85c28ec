package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// queueMemChild marks the test binary run again to measure the heap alone.
const queueMemChild = "MQSTREAMS_QUEUEMEM_CHILD"

// TestQueueBoundCountsMemory fills the append queue, its sync stalled, with records
// shaped like MQTT publishes (a 1 KB value of its own, four small headers): the Go heap
// the admitted records hold fits in the bound, not only the bytes of their values.
// The heap as a whole grows by the explained sum, no more:
//   - the admitted records, referenced by their queue entries until acknowledged;
//   - the Pebble batches of the commits applied and waiting for the held sync (each
//     commit's batch is kept until Batch.SyncWait, append.go): at most every admitted
//     record encoded, in buffers grown by doubling, so up to twice that;
//   - under -race, the memtables: Pebble allocates them from the Go heap in half the
//     processes (pebble v2.1 internal/manual, useGoAllocation), else with C malloc;
//   - the queue entries themselves, the WAL's block pool and the committer's scratch.
//
// How much of the queue the committer had applied before the stalled sync stopped it
// varies from run to run, so the heap grew by 32-85 MiB for a 32 MiB bound (s4-rss
// profiles: 32 MiB with nothing applied, records alone; 51 MiB with 13 MiB of batches).
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
	l, s, gate := openGated(t, Options{QueueBytes: bound}, nil, "q")
	mqttShaped := func(i int) []Record {
		return []Record{{Value: make([]byte, 1000), Headers: []Header{
			{Key: "mqtt.topic", Value: []byte(fmt.Sprintf("plant/%d/telemetry", i%16))},
			{Key: "mqtt.qos", Value: []byte("0")},
			{Key: "mqtt.retain", Value: []byte("false")},
			{Key: "mqtt.clientid", Value: []byte("flooder")},
		}}}
	}
	// What one such record holds on the heap by itself, before any queue.
	const sample = 4000
	before := heapAlloc()
	held := make([][]Record, sample)
	for i := range held {
		held[i] = mqttShaped(i)
	}
	perRecord := float64(heapAlloc()-before) / sample
	runtime.KeepAlive(held)
	held = nil

	gate.hold()
	base := heapAlloc()
	admitted := 0
	// Acknowledged appends fill the whole bound (best-effort ones only their share of
	// it): each is admitted at once until one has to wait for room, which is then
	// given up.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; ; i++ {
		s.AppendAsyncAdmit(ctx, AppendWait, 0, mqttShaped(i), nil, func(_ AppendResult, err error) {
			if err != nil && !errors.Is(err, ErrQueueFull) {
				t.Errorf("append: %v", err)
			}
		})
		if l.waiting() > 0 {
			cancel()
			break
		}
		admitted++
	}
	waitFor(t, "the last append to give up waiting", func() bool { return l.waiting() == 0 })
	grown := int64(heapAlloc()) - int64(base)
	t.Logf("%d records admitted (%.0f B of heap each), heap grew by %.1f MiB for a %d MiB bound",
		admitted, perRecord, float64(grown)/(1<<20), bound>>20)
	// The bound counts each record's Go memory: what the admitted records hold by
	// themselves fits in it. Counting only their bytes admitted ~31,600 of them (~41 MiB).
	if held := float64(admitted) * perRecord; held > bound*1.05 {
		t.Fatalf("the admitted records hold %.1f MiB of heap by themselves, bound %d MiB", held/(1<<20), bound>>20)
	}
	// Besides them, the explained sum (see above); more means something else keeps them.
	encoded := admitted * estimateSize(mqttShaped(0))
	memtables := l.Memory().MemTableBytes // on the Go heap in half the -race runs
	const entries = 16 << 20              // queue entries (~300 B each), WAL blocks, scratch
	limit := int64(float64(admitted)*perRecord) + 2*int64(encoded) + memtables + entries
	t.Logf("explained: up to %.1f MiB (memtables on the Go heap or not: %.1f MiB)", float64(limit)/(1<<20), float64(memtables)/(1<<20))
	if grown > limit {
		t.Fatalf("a full queue holds %.1f MiB of heap, more than the %.1f MiB explained (records %.1f, batches up to 2 × %.1f, memtables %.1f, entries %d MiB; bound %d MiB)",
			float64(grown)/(1<<20), float64(limit)/(1<<20), float64(admitted)*perRecord/(1<<20), float64(encoded)/(1<<20), float64(memtables)/(1<<20), entries>>20, bound>>20)
	}
}
