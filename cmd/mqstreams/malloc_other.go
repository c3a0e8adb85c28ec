//go:build !linux || !cgo

package main

import "github.com/rs/zerolog"

// logMallocTuning has nothing to log: without cgo Pebble allocates from the Go heap,
// and other systems' allocators are left as they are (malloc_glibc.go).
func logMallocTuning(zerolog.Logger) {}

// cMallocIsMapped cannot tell without cgo.
func cMallocIsMapped(int) (mapped, ok bool) { return false, false }
