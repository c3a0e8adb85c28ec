//go:build pprof

package main

// Built only with -tags pprof: Go's profiler on MQSTREAMS_PPROF (host:port), for
// profiling the real binary under load (bench/). Never in a release build.

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	if addr := os.Getenv("MQSTREAMS_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
