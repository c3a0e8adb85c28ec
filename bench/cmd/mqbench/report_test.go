package main

import (
	"math"
	"strings"
	"testing"
)

func TestTargetsFromResults(t *testing.T) {
	r := &Results{
		Mode:       "full",
		Durability: []string{"fsync"},
		Ingest: []IngestResult{
			{Broker: "mqstreams-fsync", QoS: 1, Publishers: 1, Payload: 100, MsgPerSec: 40_000},
			{Broker: "mosquitto", QoS: 1, Publishers: 1, Payload: 100, MsgPerSec: 45_000},
			{Broker: "mochi", QoS: 1, Publishers: 1, Payload: 100, MsgPerSec: 60_000},
			{Broker: "mqstreams-fsync", QoS: 1, Publishers: 256, Payload: 100, MsgPerSec: 90_000, P99us: 12_000},
		},
		Replay: []ReplayResult{
			{Client: "franz-go", Broker: "mqstreams", Records: 1_000_000, RecPerSec: 2_500_000},
			{Client: "franz-go", Broker: "kfake", Records: 1_000_000, RecPerSec: 1_000_000},
		},
		E2E: []LatencyResult{
			{Path: "MQTT → Kafka consumer (long poll)", Rate: 1000, P99us: 9000},
			{Path: "MQTT → Kafka consumer (long poll)", Rate: 10000, P99us: 4000},
		},
		Lookup: []LookupResult{{Records: 1_000_000, P99us: 300}},
		// The cluster target is the median ratio over the rounds (0.45 here), each
		// round listed as it came; a failed round counts for nothing.
		Cluster: []ClusterIngestResult{
			{Publishers: 16, Round: 1, Seconds: 4, Single: 60_000, Cluster: 18_000, Ratio: 0.30},
			{Publishers: 16, Round: 2, Seconds: 4, Single: 60_000, Cluster: 27_000, Ratio: 0.45},
			{Publishers: 16, Round: 3, Seconds: 4, Single: 40_000, Cluster: 24_000, Ratio: 0.60},
			{Publishers: 256, Round: 1, Seconds: 4, Single: 70_000, Cluster: 21_000, Ratio: 0.30, Error: "cluster: connection refused"},
			{Publishers: 256, Round: 2, Seconds: 4, Single: 70_000, Cluster: 21_000, Ratio: 0.30},
		},
	}
	got := map[string]targetRow{}
	for _, tr := range targets(r) {
		got[tr.Name] = tr
	}
	for name, want := range map[string]string{
		"QoS 1, 1 publisher, 100 B (`durability: fsync`)":                          "met",        // 45/40 = 1.125 ≤ 1.25
		"QoS 1, 1 publisher, 100 B (`durability: write`)":                          "—",          // not built
		"QoS 1, 256 publishers, 100 B (`fsync`)":                                   "**missed**", // 90k < 100k
		"Kafka replay, franz-go, vs kfake":                                         "met",        // 2.5×
		"end-to-end, MQTT → Kafka consumer (long poll)":                            "met",        // only the 10k row counts
		"time lookup, largest partition":                                           "met at 1,000,000 (10^7 not run)",
		"3-node ingest, one shard, QoS 1, 16 publishers, 100 B, fsync (issue 13)":  "met",
		"3-node ingest, one shard, QoS 1, 256 publishers, 100 B, fsync (issue 13)": "**missed**",
	} {
		tr, ok := got[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if tr.Status != want {
			t.Errorf("%s: status %q (%s), want %q", name, tr.Status, tr.Measured, want)
		}
	}
	if m := got["3-node ingest, one shard, QoS 1, 16 publishers, 100 B, fsync (issue 13)"].Measured; m != "0.45× median of 3 rounds (0.30–0.60)" {
		t.Errorf("cluster target measured %q", m)
	}
	md := report(r, []plotFile{{"ingest-qos1-100B.png", "t"}}, ".", "## Notes\n\nhand written")
	for _, want := range []string{"| 1 | 100 B | 1 | 40,000 | 45,000 | 60,000 | 0.89 | 0.67 | — | — |", "![t](ingest-qos1-100B.png)", "hand written", "not in this binary", "| 16 | 3 |  | 40,000 | 24,000 | 0.60× |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestKfmt(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -45000: "-45,000"} {
		if got := kfmt(in); got != want {
			t.Errorf("kfmt(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestHistogramQuantileSince(t *testing.T) {
	before := histogram{0.001: 10, 0.01: 10, math.Inf(1): 10}
	after := histogram{0.001: 100, 0.01: 109, math.Inf(1): 110}
	// 100 new observations: 90 ≤ 1 ms, 9 in (1, 10] ms, 1 beyond.
	if got := after.quantileSince(before, 0.5); got != 0.001 {
		t.Errorf("p50 = %v, want 0.001", got)
	}
	if got := after.quantileSince(before, 0.99); got != 0.01 {
		t.Errorf("p99 = %v, want 0.01", got)
	}
	if got := after.quantileSince(before, 0.999); got != -1 {
		t.Errorf("p999 = %v, want -1 (beyond the last bound)", got)
	}
}
