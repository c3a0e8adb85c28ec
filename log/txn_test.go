package log

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func appendTxn(t *testing.T, s *Stream, shard int32, pid int64, recs ...Record) AppendResult {
	t.Helper()
	ch := make(chan error, 1)
	var res AppendResult
	s.AppendTxnAsync(context.Background(), AppendBlock, shard, Txn{ProducerID: pid, Epoch: 3}, recs, nil, func(r AppendResult, err error) {
		res = r
		ch <- err
	})
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	return res
}

func endTxnSync(t *testing.T, l *Log, ms []Marker, groups []GroupOffsets) []MarkerResult {
	t.Helper()
	ch := make(chan error, 1)
	var out []MarkerResult
	l.EndTxnAsync(ms, groups, nil, func(rs []MarkerResult, err error) {
		out = rs
		ch <- err
	})
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	return out
}

// committedValues reads the shard as $stream replay does.
func committedValues(t *testing.T, s *Stream, shard int32) (vals []string, next int64) {
	t.Helper()
	next, _, _ = s.Offsets(shard)
	for {
		bs, err := s.ReadCommitted(shard, next, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) == 0 {
			return vals, next
		}
		for _, b := range bs {
			rs, err := b.Records(next)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				vals = append(vals, string(r.Value))
			}
			next = b.LastOffset + 1
		}
	}
}

func val(v string) Record { return Record{Key: []byte("k" + v), Value: []byte(v)} }

func TestTxnLastStableOffsetAndMarkers(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(0, []Record{val("a")}); err != nil { // 0
		t.Fatal(err)
	}
	r := appendTxn(t, s, 0, 7, val("t1"), val("t2")) // 1-2, aborted below
	if r.BaseOffset != 1 {
		t.Fatalf("txn base %d", r.BaseOffset)
	}
	if _, err := s.Append(0, []Record{val("b")}); err != nil { // 3
		t.Fatal(err)
	}
	appendTxn(t, s, 0, 8, val("u1")) // 4, committed below
	if lso, _ := s.LastStable(0); lso != 1 {
		t.Fatalf("LSO %d, want 1 (first open transaction)", lso)
	}
	if vals, next := committedValues(t, s, 0); fmt.Sprint(vals) != "[a]" || next != 1 {
		t.Fatalf("before the markers: %v next %d", vals, next)
	}

	// Kill the process while both are open: the open transactions come back.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	s = l.Stream("s")
	if lso, _ := s.LastStable(0); lso != 1 {
		t.Fatalf("LSO after reopen %d, want 1", lso)
	}

	rs := endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 7, Epoch: 3, Commit: false}}, nil) // 5
	if rs[0].FirstOffset != 1 || rs[0].Offset != 5 {
		t.Fatalf("abort marker %+v", rs[0])
	}
	if lso, _ := s.LastStable(0); lso != 4 {
		t.Fatalf("LSO %d, want 4 (producer 8 still open)", lso)
	}
	rs = endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 8, Epoch: 3, Commit: true}},
		[]GroupOffsets{{Group: "g", Offsets: []CommittedOffset{{Stream: "s", Shard: 0, Offset: 42, LeaderEpoch: -1}}}}) // 6
	if rs[0].FirstOffset != 4 || rs[0].Offset != 6 {
		t.Fatalf("commit marker %+v", rs[0])
	}
	if lso, _ := s.LastStable(0); lso != 7 {
		t.Fatalf("LSO %d, want the high watermark 7", lso)
	}
	offs, err := l.GroupOffsets("g")
	if err != nil || len(offs) != 1 || offs[0].Offset != 42 {
		t.Fatalf("group offsets with the commit: %+v %v", offs, err)
	}
	if vals, next := committedValues(t, s, 0); fmt.Sprint(vals) != "[a b u1]" || next != 7 {
		t.Fatalf("committed: %v next %d", vals, next)
	}
	ab, err := s.AbortedTxns(0, 0, 7)
	if err != nil || len(ab) != 1 || ab[0] != (AbortedTxn{ProducerID: 7, FirstOffset: 1, LastOffset: 5}) {
		t.Fatalf("aborted %+v %v", ab, err)
	}
	if ab, _ := s.AbortedTxns(0, 6, 7); len(ab) != 0 {
		t.Fatalf("aborted from 6: %+v", ab)
	}

	// Kafka sees the batches as Kafka stores them: producer ids, attributes, markers.
	raw, err := s.ReadBytes(nil, 0, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		base  int64
		pid   int64
		attrs int16
	}
	var got []seen
	for len(raw) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		got = append(got, seen{rb.FirstOffset, rb.ProducerID, rb.Attributes &^ attrLogAppendTime})
		if rb.Attributes&attrControl != 0 {
			var k kmsg.ControlRecordKey
			var kr kmsg.Record
			if err := kr.ReadFrom(rb.Records); err != nil {
				t.Fatal(err)
			}
			if err := k.ReadFrom(kr.Key); err != nil {
				t.Fatal(err)
			}
			want := kmsg.ControlRecordKeyTypeAbort
			if rb.ProducerID == 8 {
				want = kmsg.ControlRecordKeyTypeCommit
			}
			if k.Type != want {
				t.Fatalf("marker of %d is %v", rb.ProducerID, k.Type)
			}
		}
		raw = raw[12+int(rb.Length):]
	}
	want := []seen{{0, -1, 0}, {1, 7, attrTransactional}, {3, -1, 0}, {4, 8, attrTransactional}, {5, 7, attrTransactional | attrControl}, {6, 8, attrTransactional | attrControl}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}

	// Coalescing keeps transactional and control batches as they are.
	for i := 0; i < 5; i++ {
		if _, err := s.Append(0, []Record{val(fmt.Sprint("c", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	if vals, _ := committedValues(t, s, 0); fmt.Sprint(vals) != "[a b u1 c0 c1 c2 c3 c4]" {
		t.Fatalf("after coalescing: %v", vals)
	}
	if ab, _ := s.AbortedTxns(0, 0, 100); len(ab) != 1 {
		t.Fatalf("aborted after coalescing: %+v", ab)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTxnLastValueAndRetention(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "lv", Shards: 1, LastValue: true, Retention: Retention{MaxMessages: 2}})
	if err != nil {
		t.Fatal(err)
	}
	kv := func(k, v string) Record { return Record{Key: []byte(k), Value: []byte(v)} }
	if _, err := s.Append(0, []Record{kv("x", "1")}); err != nil {
		t.Fatal(err)
	}
	appendTxn(t, s, 0, 5, kv("x", "aborted")) // 1
	endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 5, Epoch: 3}}, nil)
	appendTxn(t, s, 0, 6, kv("x", "2")) // 3, open
	s.log.ApplyRetention()
	// The aborted value did not replace x=1; the open one does not yet; retention
	// stops at the LSO (3), whatever max_messages says.
	if vals, _ := committedValues(t, s, 0); fmt.Sprint(vals) != "[]" {
		t.Fatalf("read below the open transaction: %v", vals)
	}
	if raw, _ := s.ReadBytes(nil, 0, 2, 1<<20); len(raw) == 0 {
		t.Fatal("the abort marker went")
	}
	if start, _, _ := s.Offsets(0); start > 3 {
		t.Fatalf("retention passed the LSO: start %d", start)
	}
	endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 6, Epoch: 3, Commit: true}}, nil)
	for i := 0; i < 3; i++ {
		if _, err := s.Append(0, []Record{kv("y", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	s.log.ApplyRetention()
	start, hwm, _ := s.Offsets(0)
	if start != hwm-2 {
		t.Fatalf("retention after commit: %d..%d", start, hwm)
	}
	if ab, _ := s.AbortedTxns(0, 0, hwm); len(ab) != 0 {
		t.Fatalf("abort index kept below the log start: %+v", ab)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if vals, _ := committedValues(t, s, 0); len(vals) > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("nothing readable after retention")
}

// Last-value compaction below the LSO: an aborted record never replaces a key's value
// and is dropped; markers stay; a committed transactional record keeps its producer.
func TestTxnCompaction(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "lv", Shards: 1, LastValue: true})
	if err != nil {
		t.Fatal(err)
	}
	kv := func(k, v string) Record { return Record{Key: []byte(k), Value: []byte(v)} }
	if _, err := s.Append(0, []Record{kv("x", "1"), kv("y", "1")}); err != nil { // 0-1
		t.Fatal(err)
	}
	appendTxn(t, s, 0, 5, kv("x", "aborted"))                                                     // 2
	endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 5, Epoch: 3}}, nil)               // 3
	appendTxn(t, s, 0, 6, kv("y", "2"))                                                           // 4
	endTxnSync(t, l, []Marker{{Stream: s, Shard: 0, ProducerID: 6, Epoch: 3, Commit: true}}, nil) // 5
	s.log.ApplyRetention()
	if vals, _ := committedValues(t, s, 0); fmt.Sprint(vals) != "[1 2]" {
		t.Fatalf("after compaction: %v, want x=1 y=2", vals)
	}
	bs, err := s.Read(0, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bs {
		got = append(got, fmt.Sprintf("%d:%d/%v", b.BaseOffset, b.ProducerID(), b.Control()))
	}
	if fmt.Sprint(got) != "[0:-1/false 3:5/true 4:6/false 5:6/true]" {
		t.Fatalf("stored batches after compaction %v", got)
	}
}

// appendTxnAt applies a replicated transactional append (m nil) or marker.
func appendTxnAt(s *Stream, tsUS, base int64, txn *Txn, m *Marker, recs ...Record) (AppendResult, int64, error) {
	type out struct {
		res   AppendResult
		first int64
		err   error
	}
	ch := make(chan out, 1)
	s.AppendTxnAt(0, tsUS, base, txn, m, recs, nil, func(r AppendResult, first int64, err error) { ch <- out{r, first, err} })
	o := <-ch
	return o.res, o.first, o.err
}

// A replica applying replicated transactional appends and markers stores them at the
// leader's offsets and times, with the open-transaction and abort keys, as the leader
// does; at another offset nothing is written.
func TestTxnAppendAtReplica(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UnixMicro()
	if _, _, err := appendTxnAt(s, ts, 0, &Txn{ProducerID: 5, Epoch: 1}, nil, val("t1"), val("t2")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := appendTxnAt(s, ts, 7, &Txn{ProducerID: 5, Epoch: 1}, nil, val("x")); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("append at the wrong offset: %v", err)
	}
	if lso, _ := s.LastStable(0); lso != 0 {
		t.Fatalf("LSO %d with a transaction open at 0", lso)
	}
	res, first, err := appendTxnAt(s, ts+1, 2, nil, &Marker{ProducerID: 5, Epoch: 1, Commit: false})
	if err != nil || res.BaseOffset != 2 || first != 0 || res.TimestampUS != ts+1 {
		t.Fatalf("abort marker: %+v first %d: %v", res, first, err)
	}
	ab, err := s.AbortedTxns(0, 0, 3)
	if err != nil || fmt.Sprint(ab) != "[{5 0 2}]" {
		t.Fatalf("aborted %v: %v", ab, err)
	}
	if lso, _ := s.LastStable(0); lso != 3 {
		t.Fatalf("LSO %d after the abort, want 3", lso)
	}
	// A marker again (a new coordinator re-sending it): it ends nothing.
	if _, first, err := appendTxnAt(s, ts+2, 3, nil, &Marker{ProducerID: 5, Epoch: 1, Commit: false}); err != nil || first != -1 {
		t.Fatalf("marker again: first %d: %v", first, err)
	}
	if vals, next := committedValues(t, s, 0); len(vals) != 0 || next != 4 {
		t.Fatalf("committed %v next %d", vals, next)
	}
}
