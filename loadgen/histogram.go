package loadgen

import (
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets (128 per power of two, so a reported
// value is within 0.8% of the true one), the layout of an HDR histogram.
// It is written here rather than imported so the product binary gains no dependency for
// a benchmark helper. The zero value is ready; it is not safe for concurrent use.
type Histogram struct {
	counts []uint64
	n      uint64
	max    int64
	sum    int64
}

const (
	subBits  = 8
	subCount = 1 << subBits
	// maxExp covers values up to 2^48 ns (about 3 days).
	maxExp = 48 - subBits + 1
)

func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // ≥ 1: v>>e is in [subCount/2, subCount)
	if e > maxExp {
		e = maxExp
		v = (1 << (maxExp + subBits)) - 1
	}
	return subCount + (e-1)*(subCount/2) + int(v>>e) - subCount/2
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	e := (i-subCount)/(subCount/2) + 1
	m := int64((i-subCount)%(subCount/2) + subCount/2)
	return (m+1)<<e - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint64, subCount+maxExp*(subCount/2))
	}
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average recorded value.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

// Quantile returns the value at or below which the fraction q of the values lie (the
// upper edge of its bucket, never above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketHigh(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// CDF returns (value, cumulative fraction) points, one per non-empty bucket, for plots.
func (h *Histogram) CDF() [][2]float64 {
	var out [][2]float64
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		v := bucketHigh(i)
		if v > h.max {
			v = h.max
		}
		out = append(out, [2]float64{float64(v), float64(seen) / float64(h.n)})
	}
	return out
}
