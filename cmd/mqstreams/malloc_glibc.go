//go:build linux && cgo

package main

// Pebble (log/) allocates its block cache and memtables with C malloc when built with
// cgo (pebble v2.1 internal/manual, manual_cgo.go: calloc/free). glibc's defaults fit
// that badly, measured at 256 QoS 1 publishers (scripts/rss-cell.sh, 2 cores):
//   - one malloc arena per thread that calls it, up to 8 per core: the cgo calls of
//     the Go threads that run Pebble spread the cache's blocks over 6-16 arenas, each
//     keeping its freed blocks, so the arenas held ~59 MB while the cache held 17 MB;
//   - a dynamic mmap threshold: once one 8 MiB memtable is freed, glibc raises the
//     threshold to 8 MiB and later memtables come from the arenas, where freeing them
//     returns nothing to the system.
// Peak RSS 197-217 MiB with the defaults, 160-174 MiB with at most one arena per CPU
// (2 here) and a fixed 4 MiB threshold (memtables always mapped on their own and
// unmapped when freed), at the same CPU per message.
//
// The settings are made by a C constructor, before the Go runtime starts its threads:
// glibc gives each thread that first calls malloc an arena of its own and fixes its
// arena limit once 8 exist, so a mallopt from Go code comes too late for the arenas.
// An operator's MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES wins: glibc
// applied it already and the constructor leaves that parameter alone.

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <sys/sysinfo.h>
#endif

// mqs_malloc_tuned: bit 0 the arena limit was set, bit 1 the mmap threshold; -1 when
// the C library is not glibc.
static int mqs_malloc_tuned = -1;
static int mqs_malloc_arenas;

#define MQS_MMAP_THRESHOLD (4 << 20)

__attribute__((constructor)) static void mqs_tune_malloc(void) {
#ifdef __GLIBC__
	mqs_malloc_tuned = 0;
	if (getenv("GLIBC_TUNABLES") != NULL) {
		return;
	}
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		// More arenas than CPUs running threads at once buy little: Pebble's C calls
		// are short (calloc/free of cache blocks and memtables).
		int n = get_nprocs();
		mqs_malloc_arenas = n < 2 ? 2 : n;
		if (mallopt(M_ARENA_MAX, mqs_malloc_arenas) == 1) {
			mqs_malloc_tuned |= 1;
		}
	}
	// Pebble's memtables (8 MiB, log/log.go) are above it, its cache blocks (a record
	// batch, at most about 1 MiB) below.
	if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL && mallopt(M_MMAP_THRESHOLD, MQS_MMAP_THRESHOLD) == 1) {
		mqs_malloc_tuned |= 2;
	}
#endif
}

static int mqs_malloc_tuned_get(void) { return mqs_malloc_tuned; }
static int mqs_malloc_arenas_get(void) { return mqs_malloc_arenas; }

// mqs_mapped_bytes is glibc's count of bytes in chunks it mapped with mmap (-1 if
// unknown); tests use it to see where an allocation went.
static long long mqs_mapped_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	return (long long)mallinfo2().hblkhd;
#else
	return -1;
#endif
}
*/
import "C"

import (
	"unsafe"

	"github.com/rs/zerolog"
)

// logMallocTuning logs what the constructor (see the file comment) set.
func logMallocTuning(lg zerolog.Logger) {
	t := int(C.mqs_malloc_tuned_get())
	if t < 0 {
		return
	}
	e := lg.Debug()
	if t&1 != 0 {
		e = e.Int("malloc_arena_max", int(C.mqs_malloc_arenas_get()))
	}
	if t&2 != 0 {
		e = e.Int("malloc_mmap_threshold", int(C.MQS_MMAP_THRESHOLD))
	}
	e.Msg("C malloc tuned for the storage engine")
}

// cMallocIsMapped allocates n bytes with C malloc, touches and frees them, and tells
// whether glibc mapped them on their own (ok false when glibc cannot say).
func cMallocIsMapped(n int) (mapped, ok bool) {
	before := C.mqs_mapped_bytes()
	if before < 0 {
		return false, false
	}
	p := C.malloc(C.size_t(n))
	if p == nil {
		return false, false
	}
	b := unsafe.Slice((*byte)(p), n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	after := C.mqs_mapped_bytes()
	C.free(p)
	return after-before >= C.longlong(n), true
}
