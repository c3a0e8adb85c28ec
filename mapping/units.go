package mapping

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// ParseDuration parses a Go duration ("72h", "90m") that may start with a whole or
// fractional number of days ("7d", "1d12h", "0.5d"). Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty duration")
	}
	var days time.Duration
	rest := in
	if i := strings.IndexByte(in, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(in[:i], 64)
		if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) || in[:i] == "" || strings.ContainsAny(in[:i], "eEpPxX_") {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if n*float64(day) > math.MaxInt64 {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		days = time.Duration(n * float64(day))
		rest = in[i+1:]
		if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
	}
	var d time.Duration
	if rest != "" {
		var err error
		d, err = time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
	}
	if d > math.MaxInt64-days {
		return 0, fmt.Errorf("duration %q out of range", s)
	}
	return days + d, nil
}

// FormatDuration writes d in the shortest form ParseDuration reads back, e.g. "7d",
// "1d12h", "90s" becomes "1m30s".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}, {time.Nanosecond, "ns"}} {
		if n := d / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// byteUnits maps a size suffix (lower case) to its multiplier: SI units are powers of
// 1000 and IEC units ("KiB") powers of 1024, as their names say.
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
	"gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseBytes parses a byte size: a plain number of bytes ("1024") or a number with a
// unit ("512MB" = 512×10⁶, "10GiB" = 10×2³⁰, "1.5KiB"); units are case-insensitive.
func ParseBytes(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if strings.HasPrefix(in, "-") {
		return 0, fmt.Errorf("byte size %q is negative", s)
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid byte size %q (want e.g. 1024, 512MB, 10GiB)", s)
	}
	// big.Rat keeps "1.5GiB" exact and catches overflow without float rounding.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid byte size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("byte size %q is not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("byte size %q out of range", s)
	}
	return n.Int64(), nil
}
