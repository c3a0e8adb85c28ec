package compattests

// The fault tests' checker (issue 13): after faults, what every replica holds is read
// through the replica API (/api/v1/cluster/replica/{stream}/{shard}, one node's own
// log, no leadership needed) and checked against what clients were told:
//   - every acknowledged record is stored exactly once on every replica;
//   - per key, records are stored in the order their publisher sent them;
//   - offsets are contiguous from the log start (every replica has the same one:
//     retention and DeleteRecords are replicated; an acknowledged record missing
//     below it is deleted, not lost: it is older, per key, than every record of its
//     key still stored);
//   - replicas are identical: same records at the same offsets (a SHA-256 over
//     offsets, timestamps, keys, values, headers);
//   - a group's committed offsets never move backwards.
// Records are written by the tests as key = publisher id, value = "<publisher>/<seq>".

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// ackedRecord is a record a client was told is stored (a PUBACK, a produce answer).
type ackedRecord struct {
	Key string
	Seq int // the publisher's own sequence: per key, stored order must follow it
}

func (a ackedRecord) value() string { return a.Key + "/" + strconv.Itoa(a.Seq) }

// storedRecord is one record of one replica.
type storedRecord struct {
	Offset      int64  `json:"offset"`
	TimestampUS int64  `json:"timestamp_us"`
	Key         []byte `json:"key"`
	Value       []byte `json:"value"`
}

// replicaDump is a whole shard of one replica.
type replicaDump struct {
	Node     string
	LogStart int64
	HWM      int64
	SHA256   []string // per page, in order
	Records  []storedRecord
}

// fetchReplica reads one node's replica of a shard through its HTTP API.
func fetchReplica(t testing.TB, node, httpAddr, stream string, shard int32) replicaDump {
	t.Helper()
	d := replicaDump{Node: node}
	for from := int64(0); ; {
		resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/cluster/replica/%s/%d?from=%d", httpAddr, stream, shard, from))
		if err != nil {
			t.Fatalf("replica %s of %s/%d: %v", node, stream, shard, err)
		}
		var page struct {
			LogStart   int64          `json:"log_start"`
			HWM        int64          `json:"high_watermark"`
			NextOffset int64          `json:"next_offset"`
			SHA256     string         `json:"sha256"`
			Records    []storedRecord `json:"records"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("replica %s of %s/%d: status %d, %v", node, stream, shard, resp.StatusCode, err)
		}
		if from == 0 {
			d.LogStart, d.HWM = page.LogStart, page.HWM
		}
		d.SHA256 = append(d.SHA256, page.SHA256)
		d.Records = append(d.Records, page.Records...)
		if len(page.Records) == 0 || page.NextOffset >= d.HWM {
			return d
		}
		from = page.NextOffset
	}
}

// checkReplicas returns every violation found in the replicas of one shard given the
// records acknowledged into it. Records stored but never acknowledged (the client
// gave up, the ack was lost) are allowed, once each.
func checkReplicas(acked []ackedRecord, replicas []replicaDump) []string {
	var bad []string
	if len(replicas) == 0 {
		return []string{"no replica to check"}
	}
	ref := replicas[0]
	for _, r := range replicas {
		bad = append(bad, checkOneReplica(acked, r)...)
		if r.Node == ref.Node {
			continue
		}
		if r.LogStart != ref.LogStart || r.HWM != ref.HWM || len(r.Records) != len(ref.Records) {
			bad = append(bad, fmt.Sprintf("replica %s holds [%d,%d) (%d records), replica %s [%d,%d) (%d records)",
				r.Node, r.LogStart, r.HWM, len(r.Records), ref.Node, ref.LogStart, ref.HWM, len(ref.Records)))
			continue
		}
		if strings.Join(r.SHA256, ",") != strings.Join(ref.SHA256, ",") {
			for i := range r.Records {
				a, b := r.Records[i], ref.Records[i]
				if a.Offset != b.Offset || a.TimestampUS != b.TimestampUS || string(a.Key) != string(b.Key) || string(a.Value) != string(b.Value) {
					bad = append(bad, fmt.Sprintf("replicas %s and %s differ at offset %d: %q=%q@%d vs %q=%q@%d",
						r.Node, ref.Node, b.Offset, a.Key, a.Value, a.TimestampUS, b.Key, b.Value, b.TimestampUS))
					break
				}
			}
			if len(bad) == 0 || !strings.Contains(bad[len(bad)-1], "differ at offset") {
				bad = append(bad, fmt.Sprintf("replicas %s and %s have different digests (headers differ)", r.Node, ref.Node))
			}
		}
	}
	return bad
}

func checkOneReplica(acked []ackedRecord, r replicaDump) []string {
	var bad []string
	next := r.LogStart
	count := map[string]int{}
	lastSeq := map[string]int{}
	firstSeq := map[string]int{} // per key, the oldest stored
	for _, rec := range r.Records {
		if rec.Offset != next {
			bad = append(bad, fmt.Sprintf("replica %s: offset %d follows %d (not contiguous)", r.Node, rec.Offset, next-1))
		}
		next = rec.Offset + 1
		v := string(rec.Value)
		count[v]++
		if count[v] == 2 {
			bad = append(bad, fmt.Sprintf("replica %s: %q stored more than once (again at offset %d)", r.Node, v, rec.Offset))
		}
		key, seqText, ok := strings.Cut(v, "/")
		if !ok || key != string(rec.Key) {
			continue // not a record of the checked writers
		}
		seq, err := strconv.Atoi(seqText)
		if err != nil {
			continue
		}
		if _, seen := firstSeq[key]; !seen {
			firstSeq[key] = seq
		}
		if last, seen := lastSeq[key]; seen && seq <= last {
			bad = append(bad, fmt.Sprintf("replica %s: key %s seq %d stored after seq %d (offset %d): order broken", r.Node, key, seq, last, rec.Offset))
		}
		lastSeq[key] = seq
	}
	if next != r.HWM && len(r.Records) > 0 {
		bad = append(bad, fmt.Sprintf("replica %s: records end at %d, high watermark %d", r.Node, next, r.HWM))
	}
	var missing []string
	for _, a := range acked {
		if count[a.value()] > 0 {
			continue
		}
		if first, kept := firstSeq[a.Key]; r.LogStart > 0 && (!kept || a.Seq < first) {
			continue // below the log start: deleted by retention or DeleteRecords
		}
		missing = append(missing, a.value())
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		if len(missing) > 10 {
			missing = append(missing[:10], fmt.Sprintf("... %d in all", len(missing)))
		}
		bad = append(bad, fmt.Sprintf("replica %s: acknowledged records missing: %s", r.Node, strings.Join(missing, ", ")))
	}
	return bad
}

// checkCommitted returns a violation for every committed offset of a group's partition
// that moved backwards, given the offsets observed over time (in observation order).
func checkCommitted(observed map[string][]int64) []string {
	var bad []string
	for part, offs := range observed {
		for i := 1; i < len(offs); i++ {
			if offs[i] < offs[i-1] {
				bad = append(bad, fmt.Sprintf("committed offset of %s moved back from %d to %d", part, offs[i-1], offs[i]))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestClusterChecker: the checker accepts good replicas and names each kind of
// violation in bad ones (so a fault test using it can fail).
func TestClusterChecker(t *testing.T) {
	rec := func(off int64, key string, seq int) storedRecord {
		return storedRecord{Offset: off, TimestampUS: 1000 + off, Key: []byte(key), Value: []byte(key + "/" + strconv.Itoa(seq))}
	}
	good := []storedRecord{rec(0, "a", 1), rec(1, "b", 1), rec(2, "a", 2), rec(3, "b", 2)}
	dump := func(node string, recs []storedRecord, digest string) replicaDump {
		return replicaDump{Node: node, LogStart: 0, HWM: int64(len(recs)), SHA256: []string{digest}, Records: recs}
	}
	acked := []ackedRecord{{"a", 1}, {"a", 2}, {"b", 1}}
	if bad := checkReplicas(acked, []replicaDump{dump("1", good, "x"), dump("2", good, "x")}); len(bad) != 0 {
		t.Fatalf("good replicas: %v", bad)
	}
	cases := map[string]struct {
		acked []ackedRecord
		reps  []replicaDump
		want  string
	}{
		"lost":      {append(acked, ackedRecord{"c", 1}), []replicaDump{dump("1", good, "x")}, "missing: c/1"},
		"duplicate": {acked, []replicaDump{dump("1", append(good[:4:4], rec(4, "a", 2)), "x")}, "more than once"},
		"gap":       {acked, []replicaDump{{Node: "1", HWM: 5, SHA256: []string{"x"}, Records: []storedRecord{rec(0, "a", 1), rec(2, "a", 2), rec(3, "b", 1), rec(4, "b", 2)}}}, "not contiguous"},
		"order":     {acked, []replicaDump{dump("1", []storedRecord{rec(0, "a", 2), rec(1, "a", 1), rec(2, "b", 1)}, "x")}, "order broken"},
		"diverged": {acked, []replicaDump{dump("1", good, "x"), dump("2", []storedRecord{rec(0, "a", 1), rec(1, "b", 1), rec(2, "b", 2), rec(3, "a", 2)}, "y")},
			"differ at offset 2"},
		"shorter": {acked, []replicaDump{dump("1", good, "x"), dump("2", good[:3], "z")}, "holds [0,3)"},
		"lost above the log start": {acked, []replicaDump{{Node: "1", LogStart: 2, HWM: 4, SHA256: []string{"x"}, Records: []storedRecord{rec(2, "a", 1), rec(3, "b", 1)}}},
			"missing: a/2"},
		"log starts differ": {acked, []replicaDump{dump("1", good, "x"), {Node: "2", LogStart: 2, HWM: 4, SHA256: []string{"y"}, Records: good[2:]}}, "holds [2,4)"},
	}
	for name, c := range cases {
		bad := checkReplicas(c.acked, c.reps)
		if !strings.Contains(strings.Join(bad, "\n"), c.want) {
			t.Errorf("%s: violations %q, want one containing %q", name, bad, c.want)
		}
	}
	// Records below the log start went by retention or DeleteRecords: not lost.
	trimmed := replicaDump{Node: "1", LogStart: 2, HWM: 4, SHA256: []string{"x"}, Records: good[2:]}
	if bad := checkReplicas(acked, []replicaDump{trimmed, {Node: "2", LogStart: 2, HWM: 4, SHA256: []string{"x"}, Records: good[2:]}}); len(bad) != 0 {
		t.Fatalf("replicas trimmed alike: %v", bad)
	}
	if bad := checkCommitted(map[string][]int64{"g/s/0": {1, 5, 5, 9}}); len(bad) != 0 {
		t.Fatalf("monotonic commits: %v", bad)
	}
	if bad := checkCommitted(map[string][]int64{"g/s/0": {1, 5, 3}}); len(bad) != 1 {
		t.Fatalf("a commit moving back: %v", bad)
	}
}

// TestClusterCheckerReadsReplicas runs fetchReplica against a real server (a node
// alone is its only replica): paging, digest and the checks on what it stored.
func TestClusterCheckerReadsReplicas(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: "streams:\n  - name: s\n    filter: s/#\n    shards: 1\n    key: clientid\n"})
	host, port := SplitAddr(t, srv.MQTTAddr)
	pub := NeedTool(t, "mosquitto_pub")
	var acked []ackedRecord
	var lines []string
	for i := range 20 {
		acked = append(acked, ackedRecord{Key: "p1", Seq: i})
		lines = append(lines, "p1/"+strconv.Itoa(i))
	}
	cmd := exec.CommandContext(Deadline(t, startTimeout), pub, "-h", host, "-p", port, "-i", "p1", "-q", "1", "-t", "s/x", "-l")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	d := fetchReplica(t, "1", srv.HTTPAddr, "s", 0)
	if bad := checkReplicas(acked, []replicaDump{d}); len(bad) != 0 {
		t.Fatalf("violations: %v", bad)
	}
	if d.HWM != 20 || len(d.Records) != 20 {
		t.Fatalf("replica holds %d records, hwm %d", len(d.Records), d.HWM)
	}
}
