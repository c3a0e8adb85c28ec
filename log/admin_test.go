package log

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestDeleteRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Append(0, []Record{rec(2 * i), rec(2*i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		offset, want int64
		err          error
	}{
		{5, 5, nil}, // inside a batch: the batch stays, the start moves
		{3, 5, nil}, // below the start: nothing changes
		{21, 0, ErrOffsetOutOfRange},
		{-2, 0, ErrOffsetOutOfRange},
		{12, 12, nil},
	}
	for _, c := range cases {
		got, err := s.DeleteRecordsBefore(0, c.offset)
		if !errors.Is(err, c.err) || err == nil && got != c.want {
			t.Fatalf("delete before %d: %d %v, want %d %v", c.offset, got, err, c.want, c.err)
		}
	}
	bs, err := s.Read(0, 12, 1<<20)
	if err != nil || len(bs) == 0 {
		t.Fatal(bs, err)
	}
	rs, err := bs[0].Records(12)
	if err != nil || rs[0].Offset != 12 || string(rs[0].Value) != "v12" {
		t.Fatalf("first retained %+v %v", rs, err)
	}
	if _, err := s.Read(0, 11, 1<<20); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if low, err := s.DeleteRecordsBefore(0, -1); err != nil || low != 20 || s.Size(0) != 0 {
		t.Fatalf("delete all: %d %v size %d", low, err, s.Size(0))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	if start, hwm, _ := l.Stream("s").Offsets(0); start != 20 || hwm != 20 {
		t.Fatalf("reopened %d..%d", start, hwm)
	}
}

// TestDeleteStreamReclaimsSpace: deleting a stream gives its disk space back.
func TestDeleteStreamReclaimsSpace(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "big", Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2)) // incompressible values, so sizes are real
	for i := 0; i < 2000; i++ {
		val := make([]byte, 4096)
		for j := range val {
			val[j] = byte(rnd.Uint32())
		}
		if _, err := s.Append(int32(i%2), []Record{{Key: []byte("k"), Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.db.Flush(); err != nil {
		t.Fatal(err)
	}
	before := l.DiskUsage()
	if err := l.DeleteStream("big"); err != nil {
		t.Fatal(err)
	}
	after := l.DiskUsage()
	t.Logf("disk usage %d -> %d bytes after deleting an 8 MB stream", before, after)
	if before < 4<<20 || after > before/10 {
		t.Fatalf("disk usage %d -> %d: space not reclaimed", before, after)
	}
	if l.Stream("big") != nil {
		t.Fatal("stream still listed")
	}
	if _, _, err := s.Offsets(0); !errors.Is(err, ErrUnknownStream) {
		t.Fatalf("reader of a deleted stream: %v", err)
	}
}
