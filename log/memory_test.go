package log

import (
	"testing"
	"time"
)

// TestMemory: the storage engine's C memory is reported: the memtable from the start,
// the block cache once a read went to a table, and the cache's bound.
func TestMemory(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), RetentionInterval: time.Hour, CacheBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if m := l.Memory(); m.MemTableBytes <= 0 || m.BlockCacheLimitBytes != 8<<20 {
		t.Fatalf("fresh log: %+v", m)
	}
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := s.Append(0, []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(0, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if m := l.Memory(); m.BlockCacheBytes <= 0 || m.BlockCacheBytes > m.BlockCacheLimitBytes {
		t.Fatalf("after a read from a table: %+v", m)
	}
}
