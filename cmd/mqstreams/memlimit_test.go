package main

import (
	"context"
	"math"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"
)

func TestDerivedMemoryLimit(t *testing.T) {
	const base, mb = 144 << 20, 1 << 20
	for _, tc := range []struct {
		name         string
		queued, live int64
		want         int64
	}{
		{"idle", 0, 20 * mb, base},
		{"full queue and a small rest: the margin holds", 64 * mb, 100 * mb, base},
		{"large heap, empty queue: as GOGC", 0, 500 * mb, 1000 * mb},
		{"large heap, full queue: the queue is not doubled", 64 * mb, 500 * mb, 936 * mb},
	} {
		if got := derivedMemoryLimit(base, tc.queued, tc.live); got != tc.want {
			t.Errorf("%s: %d MiB, want %d MiB", tc.name, got/mb, tc.want/mb)
		}
	}
}

// TestApplyMemoryLimit: memory_limit wins, then GOMEMLIMIT, else the queue bound plus
// the margin.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	queued := func() int64 { return 0 }

	t.Setenv("GOMEMLIMIT", "")
	applyMemoryLimit(ctx, 0, 64<<20, queued, zerolog.Nop())
	if got := debug.SetMemoryLimit(-1); got != 64<<20+memoryMargin {
		t.Fatalf("default limit %d, want %d", got, 64<<20+memoryMargin)
	}
	applyMemoryLimit(ctx, 300<<20, 64<<20, queued, zerolog.Nop())
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("memory_limit 300MiB gave %d", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "1GiB")
	applyMemoryLimit(ctx, 0, 64<<20, queued, zerolog.Nop())
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set, but the limit changed to %d", got)
	}
}
