package log

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestLastValueMaxBytes: byte retention on a last-value stream counts the bytes the
// shard retains after compaction, not what was appended. The case: keys x, b,
// a, a compacted, then c, d appended, with max_bytes room for four batches: only x goes.
func TestLastValueMaxBytes(t *testing.T) {
	dir := t.TempDir()
	// Batches stay as appended: merging an idle tail (100 ms after the last append, easily
	// reached between two appends on a loaded machine) would change the sizes counted.
	open := func() *Log {
		l, err := Open(Options{Dir: dir, RetentionInterval: time.Hour, Coalesce: CoalesceOptions{Disabled: true}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	s, err := l.CreateStream(StreamSpec{Name: "lv", Shards: 1, LastValue: true})
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 1000)
	put := func(k string) {
		t.Helper()
		if _, err := s.Append(0, []Record{{Key: []byte(k), Value: val}}); err != nil {
			t.Fatal(err)
		}
	}
	put("x")
	one := s.Size(0) // every batch here has one record of the same size
	for _, k := range []string{"b", "a", "a"} {
		put(k)
	}
	l.ApplyRetention() // no byte cap yet: compaction drops the first a
	if got := s.Size(0); got != 3*one {
		t.Fatalf("after compaction %d bytes, want %d", got, 3*one)
	}
	put("c")
	put("d")
	spec := s.Spec()
	spec.Retention.MaxBytes = 4*one + one/2
	if _, err := l.UpdateStream(spec); err != nil {
		t.Fatal(err)
	}
	l.ApplyRetention()
	keys := func(s *Stream) string {
		start, _, _ := s.Offsets(0)
		bs, err := s.Read(0, start, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range bs {
			rs, _ := b.Records(start)
			for _, r := range rs {
				got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Key))
			}
		}
		return fmt.Sprint(got)
	}
	const want = "[1:b 3:a 4:c 5:d]"
	if got := keys(s); got != want {
		t.Fatalf("retained %s, want %s", got, want)
	}
	if got := s.Size(0); got != 4*one {
		t.Fatalf("size %d, want %d", got, 4*one)
	}
	// Appending more keeps the newest within the cap, counting real sizes.
	put("e")
	l.ApplyRetention()
	if got := keys(s); got != "[3:a 4:c 5:d 6:e]" || s.Size(0) != 4*one {
		t.Fatalf("after e: %s, %d bytes", got, s.Size(0))
	}
	// The size survives a restart: it is what the shard holds, not the appended total.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	defer l.Close()
	if got := l.Stream("lv").Size(0); got != 4*one {
		t.Fatalf("size after reopen %d, want %d", got, 4*one)
	}
}
