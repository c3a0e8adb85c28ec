package main

// Reading mqstreams' Prometheus histograms, to say where end-to-end latency goes.

import (
	"bufio"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// histogram is a Prometheus histogram's cumulative bucket counts by upper bound.
type histogram map[float64]float64

// scrapeHistogram reads the buckets of metric name whose labels contain match
// (e.g. `stream="e2e"`; "" for any), summed over the series that match.
func (p *proc) scrapeHistogram(name, match string) (histogram, error) {
	h := histogram{}
	if p.httpAddr == "" {
		return h, nil
	}
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := name + "_bucket{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		labels, val, ok := strings.Cut(line[len(prefix):], "} ")
		if !ok || (match != "" && !strings.Contains(labels, match)) {
			continue
		}
		i := strings.Index(labels, `le="`)
		if i < 0 {
			continue
		}
		leStr, _, _ := strings.Cut(labels[i+4:], `"`)
		le, err := strconv.ParseFloat(leStr, 64)
		if err != nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		h[le] += v
	}
	return h, sc.Err()
}

// quantileSince returns the upper bound of the bucket holding quantile q of the
// observations made between before and h (seconds; -1 when beyond the last finite
// bound: JSON has no infinity).
func (h histogram) quantileSince(before histogram, q float64) float64 {
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0
	}
	total := h[les[len(les)-1]] - before[les[len(les)-1]]
	if total <= 0 {
		return 0
	}
	for _, le := range les {
		if h[le]-before[le] >= q*total {
			if math.IsInf(le, 1) {
				return -1
			}
			return le
		}
	}
	return -1
}
