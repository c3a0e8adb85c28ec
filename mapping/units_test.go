package mapping

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"72h", 72 * time.Hour, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"0.5d", 12 * time.Hour, true},
		{"1d30m", 24*time.Hour + 30*time.Minute, true},
		{"90s", 90 * time.Second, true},
		{"0", 0, true},
		{" 2h ", 2 * time.Hour, true},
		{"", 0, false},
		{"d", 0, false},
		{"7", 0, false},
		{"-1h", 0, false},
		{"-1d", 0, false},
		{"1d-1h", 0, false},
		{"12h1d", 0, false},
		{"1e3d", 0, false},
		{"abc", 0, false},
		{"999999999d", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, d := range []time.Duration{7 * 24 * time.Hour, 36 * time.Hour, 90 * time.Second, 1500 * time.Millisecond, time.Nanosecond, 72 * time.Hour, 0} {
		s := FormatDuration(d)
		back, err := ParseDuration(s)
		if err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q, parsed back %v, %v", d, s, back, err)
		}
	}
	if got := FormatDuration(36 * time.Hour); got != "1d12h" {
		t.Errorf("FormatDuration(36h) = %q, want 1d12h", got)
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"0", 0, true},
		{"10KiB", 10 << 10, true},
		{"10GiB", 10 << 30, true},
		{"512MB", 512e6, true},
		{"512mb", 512e6, true},
		{"1.5KiB", 1536, true},
		{"2 TiB", 2 << 40, true},
		{"100B", 100, true},
		{"1k", 1000, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"10XB", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"1.2.3MB", 0, false},
		{"99999999TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
