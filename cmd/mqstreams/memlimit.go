package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// memoryMargin is what the default soft memory limit allows above the append queue's
// bound for the rest of the Go heap (sessions, streams, buffers, the garbage of the
// traffic). Issue 10's budget is the queue bound plus 200 MB of RSS; Pebble's block
// cache (then 64 MiB, now storage.cache_bytes: 32 MiB), its memtables (up to 3 × 8 MiB,
// outside the Go heap) and the binary took about 110 MB of it (flood benchmark, pmap),
// which leaves about this much with room for the collector's lag (80 MiB peaked at
// 250-271 MiB, 64 MiB at 229).
const memoryMargin = 64 << 20

// applyMemoryLimit sets the Go runtime's soft memory limit: memory_limit if set, else
// (unless the GOMEMLIMIT environment variable sets one) a default derived from the
// append queue's bound, kept up to date by a goroutine until ctx ends; queued reports
// the queue's bytes now.
//
// Why a default: with GOGC alone the heap grows to twice what a collection leaves live,
// and under a QoS 0 flood faster than the disk the live heap is mostly the full append
// queue, so the process held about twice the queue plus the rest (flood benchmark,
// scripts/flood-rss.sh). The default limit is the queue bound plus memoryMargin, but never
// below what GOGC would give the part of the live heap that is not the queue (what is
// queued plus twice the rest): with the queue empty the limit is never tighter than
// GOGC, so it costs CPU only while a full queue is what fills the heap.
func applyMemoryLimit(ctx context.Context, set, queueBound int64, queued func() int64, lg zerolog.Logger) {
	if set > 0 {
		// A soft limit: the garbage collector works harder as the heap nears it, so a
		// burst (a QoS 0 flood) does not leave the process holding twice its live heap.
		debug.SetMemoryLimit(set)
		lg.Info().Int64("memory_limit", set).Msg("go runtime memory limit set")
		return
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return // the operator's, applied by the runtime
	}
	base := queueBound + memoryMargin
	debug.SetMemoryLimit(base)
	lg.Debug().Int64("memory_limit", base).Msg("go runtime memory limit derived from append_queue_bytes")
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := base
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			limit := derivedMemoryLimit(base, queued(), int64(sample[0].Value.Uint64()))
			if limit != last {
				debug.SetMemoryLimit(limit)
				last = limit
			}
		}
	}()
}

// derivedMemoryLimit is the default soft limit for a live heap of live bytes of which
// queued are the append queue's (see applyMemoryLimit).
func derivedMemoryLimit(base, queued, live int64) int64 {
	return max(base, queued+2*(live-queued))
}
