package log

import (
	"context"
	"errors"
	"testing"
)

// TestQueueFull: QueueFull tells exactly when an AppendDrop append would be refused.
// A record of value v counts len(v)+16 bytes (estimateSize) plus recordOverhead.
func TestQueueFull(t *testing.T) {
	const bound = 1 << 20
	l, s, gate := openGated(t, Options{QueueBytes: bound}, nil, "q")
	gate.hold()
	if l.QueueFull(1016) {
		t.Fatal("empty queue reported full")
	}
	value := make([]byte, 1000)
	for i := 0; ; i++ {
		full := l.QueueFull(int64(len(value) + 16))
		refused := make(chan bool, 1)
		s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			refused <- errors.Is(err, ErrQueueFull)
		})
		var r bool
		select {
		case r = <-refused:
		default: // admitted: answered once durable
		}
		if full != r {
			t.Fatalf("append %d: QueueFull %v before it, refused %v", i, full, r)
		}
		if r {
			break
		}
		if i > 2*bound/len(value) {
			t.Fatal("never refused")
		}
	}
	gate.open()
	waitFor(t, "the queue to empty", func() bool { return l.QueuedBytes() == 0 })
	if l.QueueFull(bound) {
		t.Fatal("empty queue reported full (an empty queue admits any append)")
	}
}
