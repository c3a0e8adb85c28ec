package log

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string, now func() time.Time) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, Now: now, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rec(i int) Record {
	return Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i)), Headers: []Header{{Key: "mqtt.topic", Value: []byte("a/b")}, {Key: "dup", Value: []byte("1")}, {Key: "dup", Value: []byte("2")}}}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		res, err := s.Append(1, []Record{rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		if res.BaseOffset != int64(i) {
			t.Fatalf("append %d got offset %d", i, res.BaseOffset)
		}
	}
	check := func(l *Log) {
		s := l.Stream("s")
		start, hwm, err := s.Offsets(1)
		if err != nil || start != 0 || hwm != 10 {
			t.Fatalf("offsets %d %d %v", start, hwm, err)
		}
		bs, err := s.Read(1, 3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got []StoredRecord
		for _, b := range bs {
			rs, err := b.Records(3)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rs...)
		}
		if len(got) != 7 || got[0].Offset != 3 || string(got[0].Value) != "v3" || len(got[0].Headers) != 3 || string(got[0].Headers[2].Value) != "2" {
			t.Fatalf("read got %+v", got)
		}
		if _, err := s.Read(1, 11, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read past hwm: %v", err)
		}
		if bs, err := s.Read(1, 10, 100); err != nil || len(bs) != 0 {
			t.Fatalf("read at hwm: %v %v", bs, err)
		}
		if _, err := s.Read(5, 0, 100); !errors.Is(err, ErrUnknownShard) {
			t.Fatalf("bad shard: %v", err)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	check(l)
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("second open of a locked dir succeeded")
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 4})
	var wg sync.WaitGroup
	const writers, per = 16, 50
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.Append(int32(w%4), []Record{rec(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	total := int64(0)
	for sh := int32(0); sh < 4; sh++ {
		_, hwm, _ := s.Offsets(sh)
		total += hwm
		// offsets contiguous: read all and check sequence
		next := int64(0)
		for next < hwm {
			bs, err := s.Read(sh, next, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				rs, _ := b.Records(next)
				for _, r := range rs {
					if r.Offset != next {
						t.Fatalf("shard %d offset %d want %d", sh, r.Offset, next)
					}
					next++
				}
			}
		}
	}
	if total != writers*per {
		t.Fatalf("total %d", total)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestTimeLookupAndClamp(t *testing.T) {
	c := &clock{t: time.UnixMicro(1_000_000)}
	l := openTest(t, t.TempDir(), c.now)
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	times := []int64{1_000_000, 2_000_000, 1_500_000 /* backwards: clamped */, 3_000_000}
	for i, ts := range times {
		c.set(time.UnixMicro(ts))
		res, err := s.Append(0, []Record{rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 && res.TimestampUS != 2_000_000 {
			t.Fatalf("clamp: ts %d", res.TimestampUS)
		}
	}
	cases := []struct{ ts, off, found int64 }{
		{0, 0, 1_000_000}, {1_000_000, 0, 1_000_000}, {1_000_001, 1, 2_000_000},
		{2_000_000, 1, 2_000_000}, {2_500_000, 3, 3_000_000}, {3_000_001, 4, -1},
	}
	for _, tc := range cases {
		off, found, err := s.OffsetForTime(0, tc.ts)
		if err != nil || off != tc.off || found != tc.found {
			t.Errorf("OffsetForTime(%d) = %d,%d,%v want %d,%d", tc.ts, off, found, err, tc.off, tc.found)
		}
	}
	off, ts, _ := s.MaxTimestamp(0)
	if off != 3 || ts != 3_000_000 {
		t.Fatalf("max ts %d %d", off, ts)
	}
	bs, _ := s.Read(0, 0, 1<<20)
	if bs[0].TimestampUS != 1_000_000 {
		t.Fatalf("batch ts %d", bs[0].TimestampUS)
	}
}

func TestRetention(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1000)
	cases := []struct {
		name      string
		ret       Retention
		wantStart int64
	}{
		{"messages", Retention{MaxMessages: 4}, 6},
		{"age", Retention{MaxAge: 5 * time.Second}, 5},
		{"bytes", Retention{MaxBytes: 3500}, 7},
		{"none", Retention{}, 0},
		{"age all", Retention{MaxAge: time.Microsecond}, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Unix(100, 0)}
			dir := t.TempDir()
			// Batches stay as appended: an idle tail (100 ms of wall clock after an
			// append, easily reached between two appends on a loaded machine) merged into
			// one batch would be what a read at the new start returns, from offset 0.
			open := func() *Log {
				l, err := Open(Options{Dir: dir, Now: c.now, RetentionInterval: time.Hour, Coalesce: CoalesceOptions{Disabled: true}})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			l := open()
			s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1, Retention: tc.ret})
			for i := 0; i < 10; i++ {
				c.set(time.Unix(100+int64(i), 0))
				if _, err := s.Append(0, []Record{{Value: big}}); err != nil {
					t.Fatal(err)
				}
			}
			c.set(time.Unix(109, 500_000_000))
			l.ApplyRetention()
			start, hwm, _ := s.Offsets(0)
			if start != tc.wantStart || hwm != 10 {
				t.Fatalf("start %d hwm %d, want start %d", start, hwm, tc.wantStart)
			}
			if _, err := s.Read(0, start-1, 100); start > 0 && !errors.Is(err, ErrOffsetOutOfRange) {
				t.Fatalf("read below start: %v", err)
			}
			if start < hwm {
				bs, err := s.Read(0, start, 1<<20)
				if err != nil || len(bs) == 0 || bs[0].BaseOffset != start {
					t.Fatalf("read at start: %v %v", bs, err)
				}
			}
			l.Close()
			l = open()
			defer l.Close()
			s = l.Stream("s")
			if st, hw, _ := s.Offsets(0); st != start || hw != hwm {
				t.Fatalf("after reopen %d %d", st, hw)
			}
			if res, err := s.Append(0, []Record{rec(1)}); err != nil || res.BaseOffset != 10 {
				t.Fatalf("append after retention: %v %v", res, err)
			}
		})
	}
}

func TestGroupOffsetsAndDelete(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	l.CreateStream(StreamSpec{Name: "a", Shards: 2})
	l.CreateStream(StreamSpec{Name: "b", Shards: 1})
	if err := l.CommitOffsets("g1", []CommittedOffset{{Stream: "a", Shard: 1, Offset: 5, LeaderEpoch: -1, Metadata: "m"}, {Stream: "b", Shard: 0, Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	if err := l.CommitOffsets("g1", []CommittedOffset{{Stream: "a", Shard: 9, Offset: 1}}); !errors.Is(err, ErrUnknownShard) {
		t.Fatalf("bad shard commit: %v", err)
	}
	l.CommitOffsets("g2", []CommittedOffset{{Stream: "a", Shard: 0, Offset: 1}})
	l.Close()
	l = openTest(t, dir, nil)
	defer l.Close()
	got, _ := l.GroupOffsets("g1")
	if len(got) != 2 || got[0].Offset != 5 || got[0].Metadata != "m" || got[1].Stream != "b" {
		t.Fatalf("offsets %+v", got)
	}
	gs, _ := l.Groups()
	if len(gs) != 2 || gs[0] != "g1" || gs[1] != "g2" {
		t.Fatalf("groups %v", gs)
	}
	if err := l.DeleteStream("a"); err != nil {
		t.Fatal(err)
	}
	got, _ = l.GroupOffsets("g1")
	if len(got) != 1 || got[0].Stream != "b" {
		t.Fatalf("after delete %+v", got)
	}
	s, _ := l.CreateStream(StreamSpec{Name: "a", Shards: 1})
	if _, hwm, _ := s.Offsets(0); hwm != 0 {
		t.Fatalf("recreated stream has data")
	}
}

func TestLastValueCompaction(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	s, _ := l.CreateStream(StreamSpec{Name: "lv", Shards: 1, LastValue: true})
	keys := []string{"a", "b", "a", "c", "b", "a"}
	for i, k := range keys {
		if _, err := s.Append(0, []Record{{Key: []byte(k), Value: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	// one batch holding several keys, one superseded inside it
	s.Append(0, []Record{{Key: []byte("d"), Value: []byte("6")}, {Key: []byte("d"), Value: []byte("7")}, {Value: []byte("nokey")}})
	before := s.Size(0)
	l.ApplyRetention()
	if s.Size(0) >= before {
		t.Fatalf("size %d not below %d", s.Size(0), before)
	}
	read := func(s *Stream) []string {
		var got []string
		bs, err := s.Read(0, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			rs, _ := b.Records(0)
			for _, r := range rs {
				got = append(got, fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, r.Value))
			}
		}
		return got
	}
	want := "[3:c=3 4:b=4 5:a=5 7:d=7 8:=nokey]"
	if got := fmt.Sprint(read(s)); got != want {
		t.Fatalf("after compaction %s, want %s", got, want)
	}
	if _, hwm, _ := s.Offsets(0); hwm != 9 {
		t.Fatalf("hwm %d", hwm)
	}
	l.Close()
	l = openTest(t, dir, nil)
	defer l.Close()
	s = l.Stream("lv")
	if got := fmt.Sprint(read(s)); got != want {
		t.Fatalf("after reopen %s", got)
	}
	if res, err := s.Append(0, []Record{{Key: []byte("a")}}); err != nil || res.BaseOffset != 9 {
		t.Fatalf("append after compaction %v %v", res, err)
	}
}

func TestNullAndEmptyValues(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	if _, err := s.Append(0, []Record{{Key: []byte("a"), Value: nil}, {Key: []byte("b"), Value: []byte{}}}); err != nil {
		t.Fatal(err)
	}
	bs, _ := s.Read(0, 0, 1<<20)
	rs, _ := bs[0].Records(0)
	if rs[0].Value != nil || rs[1].Value == nil || len(rs[1].Value) != 0 {
		t.Fatalf("null/empty not kept: %#v %#v", rs[0].Value, rs[1].Value)
	}
}
