package log

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCoalesceWaitsWhileBacklogged: while appends find the queue full (a flood's QoS 0
// dropped, the sync stalled), background merging writes nothing, so the disk's
// bandwidth goes to the appends; once they find room again it merges as before.
func TestCoalesceWaitsWhileBacklogged(t *testing.T) {
	// Disabled: no background pass; the test runs coalescePass itself.
	co := CoalesceOptions{Records: 10, Delay: 50 * time.Millisecond, Disabled: true}
	l, s, gate := openGated(t, Options{QueueBytes: 1 << 20, Coalesce: co, RetentionInterval: time.Hour}, nil, "c")
	// Durable small batches, several full merged batches' worth.
	for i := 0; i < 50; i++ {
		if _, err := s.Append(0, []Record{{Value: []byte("small")}}); err != nil {
			t.Fatal(err)
		}
	}
	batches := func() int {
		_, n := readAll(t, s, 0, 0)
		return n
	}
	if n := batches(); n != 50 {
		t.Fatalf("%d batches before merging, want 50", n)
	}

	gate.hold()
	value := make([]byte, 1000)
	for dropped := false; !dropped; {
		s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			if errors.Is(err, ErrQueueFull) {
				dropped = true // answered at once when refused
			} else if err != nil {
				t.Errorf("append: %v", err)
			}
		})
	}
	l.coalescePass()
	if n := batches(); n != 50 {
		t.Fatalf("merged into %d batches while appends were dropped, want the 50 left alone", n)
	}

	gate.open()
	waitFor(t, "the queue to empty", func() bool { return l.QueuedBytes() == 0 })
	waitFor(t, "merging to resume", func() bool {
		l.coalescePass()
		_, hwm, _ := s.Offsets(0)
		_, n := readAll(t, s, 0, 0)
		return n < 50 && hwm > 50
	})
}
