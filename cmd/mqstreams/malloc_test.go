package main

import "testing"

// TestMallocMapsMemtables: a memtable-sized C allocation is mapped on its own (so
// freeing it returns the memory) every time (malloc_glibc.go). glibc's default raises
// its mmap threshold once such a chunk is freed, and the next one comes from an arena
// that keeps it.
func TestMallocMapsMemtables(t *testing.T) {
	if _, ok := cMallocIsMapped(1 << 20); !ok {
		t.Skip("C malloc statistics not available (no cgo or not glibc)")
	}
	for i := range 4 {
		if mapped, _ := cMallocIsMapped(8 << 20); !mapped {
			t.Fatalf("allocation %d of 8 MiB came from an arena, not its own mapping", i)
		}
	}
}
