package log

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestEncodeDecodeRecords(t *testing.T) {
	recs := []Record{{Key: []byte("k"), Value: nil}, {Value: []byte{}}, {Key: []byte("a"), Value: []byte("v"), Headers: []Header{{Key: "h", Value: []byte("1")}, {Key: "h", Value: nil}}}}
	got, err := DecodeRecords(EncodeRecords(nil, 1234, recs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i].Key, recs[i].Key) || !bytes.Equal(got[i].Value, recs[i].Value) || (got[i].Value == nil) != (recs[i].Value == nil) || len(got[i].Headers) != len(recs[i].Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], recs[i])
		}
		for j, h := range recs[i].Headers {
			if g := got[i].Headers[j]; g.Key != h.Key || !bytes.Equal(g.Value, h.Value) || (g.Value == nil) != (h.Value == nil) {
				t.Fatalf("record %d header %d: %+v, want %+v", i, j, g, h)
			}
		}
	}
	// Appended after records already there; the headers share one allocation, but a
	// record's headers grown by their holder do not overwrite the next record's.
	two := []Record{recs[2], recs[2]}
	got, err = AppendDecodedRecords(got[:1], EncodeRecords(nil, 1, two))
	if err != nil || len(got) != 3 || string(got[0].Key) != "k" {
		t.Fatalf("appended: %+v, %v", got, err)
	}
	_ = append(got[1].Headers, Header{Key: "x"})
	if got[2].Headers[0].Key != "h" || len(got[2].Headers) != 2 {
		t.Fatalf("record after one whose headers grew: %+v", got[2].Headers)
	}
}

// Replicas apply the same appends at the leader's times: the same records, offsets and
// times whatever their own clocks say, with the applied index in the same batch.
func TestAppendAtKeepsTheGivenTimes(t *testing.T) {
	now := int64(5_000_000)
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	l.opts.Now = func() time.Time { return time.UnixMicro(now) }
	s, err := l.CreateStream(StreamSpec{Name: "r", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	sync := func(ts int64, v string) AppendResult {
		ch := make(chan AppendResult, 1)
		base := next
		next++
		s.AppendAt(0, ts, base, []Record{{Value: []byte(v)}}, []EntryOp{{Kind: "raft.applied", Name: "g", Value: []byte(v)}}, func(r AppendResult, err error) {
			if err != nil {
				t.Error(err)
			}
			ch <- r
		})
		return <-ch
	}
	if r := sync(1_000_000, "a"); r.BaseOffset != 0 || r.TimestampUS != 1_000_000 {
		t.Fatalf("first: %+v", r)
	}
	if r := sync(900_000, "b"); r.BaseOffset != 1 || r.TimestampUS != 1_000_000 {
		t.Fatalf("an earlier time is raised to the last one: %+v", r)
	}
	es, err := l.Entries("raft.applied")
	if err != nil || len(es) != 1 || string(es[0].Value) != "b" {
		t.Fatalf("applied entry: %+v %v", es, err)
	}
	ch := make(chan error, 1)
	s.AppendAt(0, 0, 2, []Record{{}}, nil, func(_ AppendResult, err error) { ch <- err })
	if err := <-ch; err == nil {
		t.Fatal("append time 0 accepted")
	}
	// Not at the next offset: refused, nothing written.
	s.AppendAt(0, 2_000_000, 5, []Record{{Value: []byte("x")}}, nil, func(_ AppendResult, err error) { ch <- err })
	if err := <-ch; !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("append at a wrong offset: %v", err)
	}
	if _, hwm, _ := s.Offsets(0); hwm != 2 {
		t.Fatalf("hwm %d after a refused append, want 2", hwm)
	}
}

func TestEnsureStreamID(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, err := l.EnsureStreamID(StreamSpec{Name: "x", Shards: 1}, 7)
	if err != nil || s.ID() != 7 {
		t.Fatalf("create with id 7: %v %v", s, err)
	}
	if s, err = l.EnsureStreamID(StreamSpec{Name: "x", Shards: 2}, 7); err != nil || s.Shards() != 2 {
		t.Fatalf("update: %v", err)
	}
	if _, err := l.EnsureStreamID(StreamSpec{Name: "x", Shards: 2}, 8); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("other id: %v", err)
	}
	if _, err := l.EnsureStreamID(StreamSpec{Name: "y", Shards: 1}, 7); err == nil {
		t.Fatal("a taken id accepted")
	}
	if s, err = l.CreateStream(StreamSpec{Name: "z", Shards: 1}); err != nil || s.ID() != 8 {
		t.Fatalf("a local create after id 7 got %v, %v", s.ID(), err)
	}
}

// TestEncodeDecodeRecordsAllocation: a cluster append encodes its records once into a
// Raft entry and every replica decodes them once, so neither grows its output step by
// step nor copies it: encoding allocates the batch alone (its scratch is pooled),
// decoding the records' slice and their headers alone.
func TestEncodeDecodeRecordsAllocation(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates on its own")
	}
	recs := make([]Record, 25)
	headers := 0
	for i := range recs {
		recs[i] = mqttLike(i)
		headers += len(recs[i].Headers)
	}
	enc := EncodeRecords(nil, 1, recs)
	// The pool may drop the scratch (a GC, or at random under the race detector):
	// then the scratch is allocated again, a few objects more now and then.
	if a := testing.AllocsPerRun(200, func() { EncodeRecords(nil, 1, recs) }); a > 2 {
		t.Errorf("EncodeRecords of %d records: %.1f allocations, want the batch alone", len(recs), a)
	}
	perRecord := 0.0
	if headers > 0 {
		perRecord = 1 // the headers' slice as decoded (handed on in one slice for all, keys pointing into the batch)
	}
	want := 2 + perRecord*float64(len(recs)) // the records' slice and the headers
	if a := testing.AllocsPerRun(200, func() {
		if _, err := DecodeRecords(enc); err != nil {
			t.Fatal(err)
		}
	}); a > want {
		t.Errorf("DecodeRecords of %d records: %.1f allocations, want %.0f", len(recs), a, want)
	}
}
