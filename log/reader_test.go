package log

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestReadShardLocal: start points, the long poll at the end, out-of-range bounds, and
// batches (merged ones, with their per-record times) surviving AppendBatches and
// DecodeBatches unchanged.
func TestReadShardLocal(t *testing.T) {
	clk := newStepClock()
	l := openCoalesce(t, t.TempDir(), clk.now, CoalesceOptions{Records: 100, Bytes: 1 << 20, Disabled: true})
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	var times []int64
	for i := 0; i < 30; i += 3 {
		res, err := s.Append(0, []Record{variedRecord(i), variedRecord(i + 1), variedRecord(i + 2)})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, res.TimestampUS)
	}
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func(req ReadRequest) ReadResult {
		t.Helper()
		req.Stream = "s"
		res, err := l.ReadShard(ctx, req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		return res
	}
	if r := read(ReadRequest{From: FromEarliest}); r.Offset != 0 || r.HighWatermark != 30 || len(r.Batches) != 0 {
		t.Fatalf("earliest, resolve only: %+v", r)
	}
	if r := read(ReadRequest{From: FromLatest}); r.Offset != 30 {
		t.Fatalf("latest: %+v", r)
	}
	if r := read(ReadRequest{From: FromTime, TimeUS: times[4]}); r.Offset != 12 {
		t.Fatalf("time of the fifth append: %+v, want offset 12", r)
	}

	r := read(ReadRequest{From: FromOffset, Offset: 5, MaxBytes: 1 << 20})
	if len(r.Batches) == 0 {
		t.Fatal("no batches")
	}
	dec, err := DecodeBatches(AppendBatches(nil, r.Batches))
	if err != nil {
		t.Fatal(err)
	}
	if len(dec) != len(r.Batches) {
		t.Fatalf("%d batches decoded of %d", len(dec), len(r.Batches))
	}
	merged := false
	for i := range dec {
		merged = merged || len(r.Batches[i].segs) > 0
		a, err := r.Batches[i].Records(5)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dec[i].Records(5)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("batch %d differs after the round trip", i)
		}
	}
	if !merged {
		t.Fatal("no merged batch read: the round trip of its time table is untested")
	}
	if _, err := DecodeBatches(AppendBatches(nil, r.Batches)[:20]); err == nil {
		t.Fatal("a cut answer decoded")
	}

	if _, err := l.ReadShard(ctx, ReadRequest{Stream: "s", Offset: 31, MaxBytes: 100}); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	if _, err := l.ReadShard(ctx, ReadRequest{Stream: "s", StreamID: s.ID() + 1, MaxBytes: 100}); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("another id: %v", err)
	}

	// At the end: nothing after the wait, or the next append as soon as it comes.
	start := time.Now()
	if r := read(ReadRequest{Offset: 30, MaxBytes: 100, Wait: 100 * time.Millisecond}); len(r.Batches) != 0 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("read at the end: %+v after %v", r, time.Since(start))
	}
	done := make(chan ReadResult, 1)
	go func() { done <- read(ReadRequest{Offset: 30, MaxBytes: 100, Wait: time.Minute}) }()
	if _, err := s.Append(0, []Record{variedRecord(99)}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if len(r.Batches) != 1 || r.Batches[0].BaseOffset != 30 {
			t.Fatalf("live read: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the append did not end the wait")
	}
}
