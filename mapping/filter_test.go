package mapping

import (
	"strings"
	"testing"
)

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter  string
		wantErr string
	}{
		{"a/b/c", ""},
		{"#", ""},
		{"+", ""},
		{"a/+/c", ""},
		{"a/#", ""},
		{"+/+/#", ""},
		{"/", ""},
		{"a//b", ""},
		{"$SYS/#", ""},
		{"", "must not be empty"},
		{"a/#/b", "'#' must be the last level"},
		{"a#", "'#' must occupy a whole level"},
		{"a/b#", "'#' must occupy a whole level"},
		{"a+/b", "'+' must occupy a whole level"},
		{"a/+b", "'+' must occupy a whole level"},
		{"a\x00b", "U+0000"},
		{"a/\xff", "UTF-8"},
		{strings.Repeat("a", 65536), "longer than"},
	}
	for _, tt := range tests {
		err := ValidFilter(tt.filter)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidFilter(%q) = %v, want nil", tt.filter, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidFilter(%.20q) = %v, want error containing %q", tt.filter, err, tt.wantErr)
		}
	}
}

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		ok    bool
	}{
		{"a/b", true},
		{"$SYS/broker", true},
		{"/", true},
		{"a/", true},
		{"", false},
		{"a/+", false},
		{"a/#", false},
		{"a\x00", false},
		{"\xc3\x28", false},
	}
	for _, tt := range tests {
		if err := ValidTopic(tt.topic); (err == nil) != tt.ok {
			t.Errorf("ValidTopic(%q) = %v, want ok=%v", tt.topic, err, tt.ok)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"+/b", "a/b", true},
		{"+/+", "/b", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"a/#", "a", true},
		{"a/#", "a/b", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"+/#", "a", true},
		{"+/#", "a/b/c", true},
		{"a/+/c/#", "a/b/c", true},
		{"a/+/c/#", "a/b/d", false},
		{"/#", "/a", true},
		{"/#", "a", false},
		// '$' topics: no first-level wildcard match (MQTT 4.7.2).
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"+/#", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
		{"$SYS/+", "$SYS/broker", true},
		{"$SYS/#", "$SYS", true},
		{"a/#", "a/$b", true},
		{"a/+", "a/$b", true},
	}
	for _, tt := range tests {
		if got := MatchFilter(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}
