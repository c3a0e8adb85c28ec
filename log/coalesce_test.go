package log

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stepClock is a clock that moves 1.5ms (not a whole ms) per reading, so every commit
// has its own time and µs differ from ms.
type stepClock struct{ us atomic.Int64 }

func newStepClock() *stepClock {
	c := &stepClock{}
	c.us.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	return c
}

func (c *stepClock) now() time.Time { return time.UnixMicro(c.us.Add(1500)) }

func openCoalesce(t *testing.T, dir string, now func() time.Time, co CoalesceOptions) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, Now: now, RetentionInterval: time.Hour, Coalesce: co})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// variedRecord exercises every record field: nil and empty keys and values, headers
// (duplicates, empty values).
func variedRecord(i int) Record {
	r := Record{Key: []byte(fmt.Sprintf("key-%d", i%37)), Value: []byte(fmt.Sprintf(`{"i":%d,"t":21.5}`, i))}
	switch i % 7 {
	case 1:
		r.Key = nil
	case 2:
		r.Value = nil
	case 3:
		r.Value = []byte{}
	case 4:
		r.Headers = []Header{{Key: "mqtt.topic", Value: []byte("a/b")}, {Key: "dup", Value: []byte("1")}, {Key: "dup", Value: nil}}
	}
	return r
}

// readAll reads a shard from offset from to the high watermark with small reads,
// returning every record and the number of batches seen.
func readAll(t *testing.T, s *Stream, shard int32, from int64) ([]StoredRecord, int) {
	t.Helper()
	_, hwm, err := s.Offsets(shard)
	if err != nil {
		t.Fatal(err)
	}
	var out []StoredRecord
	batches := 0
	for next := from; next < hwm; {
		bs, err := s.Read(shard, next, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) == 0 {
			t.Fatalf("read at %d below hwm %d returned nothing", next, hwm)
		}
		for _, b := range bs {
			checkBatchBytes(t, b)
			batches++
			rs, err := b.Records(next)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rs...)
			next = b.LastOffset + 1
		}
	}
	return out, batches
}

// checkBatchBytes checks what a Kafka client checks: the batch length and CRC-32C.
func checkBatchBytes(t *testing.T, b Batch) {
	t.Helper()
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b.Data); err != nil {
		t.Fatalf("batch at %d: %v", b.BaseOffset, err)
	}
	if int(rb.Length)+12 != len(b.Data) {
		t.Fatalf("batch at %d: length %d, have %d bytes", b.BaseOffset, rb.Length, len(b.Data))
	}
	if crc := crc32.Checksum(b.Data[21:], crc32.MakeTable(crc32.Castagnoli)); int32(crc) != rb.CRC {
		t.Fatalf("batch at %d: bad CRC", b.BaseOffset)
	}
	if rb.FirstOffset != b.BaseOffset || rb.FirstOffset+int64(rb.LastOffsetDelta) != b.LastOffset {
		t.Fatalf("batch at %d: header offsets %d+%d", b.BaseOffset, rb.FirstOffset, rb.LastOffsetDelta)
	}
}

func normalize(rs []StoredRecord) []StoredRecord {
	for i := range rs {
		for j := range rs[i].Headers {
			if len(rs[i].Headers[j].Value) == 0 {
				rs[i].Headers[j].Value = nil
			}
		}
		if len(rs[i].Headers) == 0 {
			rs[i].Headers = nil
		}
	}
	return rs
}

func TestCoalescePreservesRecords(t *testing.T) {
	for _, codec := range []string{"", CompressionNone, CompressionLZ4, CompressionZstd} {
		t.Run("codec="+codec, func(t *testing.T) {
			dir := t.TempDir()
			clk := newStepClock()
			co := CoalesceOptions{Records: 100, Bytes: 1 << 20, Disabled: true}
			l := openCoalesce(t, dir, clk.now, co)
			s, err := l.CreateStream(StreamSpec{Name: "s", Shards: 2, Compression: codec})
			if err != nil {
				t.Fatal(err)
			}
			const n = 1000
			for i := 0; i < n; i += 3 {
				if _, err := s.Append(int32(i%2), []Record{variedRecord(i), variedRecord(i + 1), variedRecord(i + 2)}); err != nil {
					t.Fatal(err)
				}
			}
			type shardView struct {
				recs    []StoredRecord
				times   map[int64][2]int64 // time → offset and found time
				size    int64
				batches int
			}
			view := func(l *Log) []shardView {
				s := l.Stream("s")
				var out []shardView
				for sh := int32(0); sh < 2; sh++ {
					recs, batches := readAll(t, s, sh, 0)
					v := shardView{recs: normalize(recs), times: map[int64][2]int64{}, size: s.Size(sh), batches: batches}
					for _, r := range recs {
						for _, q := range []int64{r.TimestampUS - 1, r.TimestampUS, r.TimestampUS + 1} {
							off, ts, err := s.OffsetForTime(sh, q)
							if err != nil {
								t.Fatal(err)
							}
							v.times[q] = [2]int64{off, ts}
						}
					}
					out = append(out, v)
				}
				return out
			}
			before := view(l)
			if err := l.Coalesce(); err != nil {
				t.Fatal(err)
			}
			after := view(l)
			for sh := range before {
				b, a := before[sh], after[sh]
				if !reflect.DeepEqual(a.recs, b.recs) {
					for i := range a.recs {
						if i >= len(b.recs) || !reflect.DeepEqual(a.recs[i], b.recs[i]) {
							t.Fatalf("shard %d record %d after coalescing %+v, before %+v", sh, i, a.recs[i], b.recs[min(i, len(b.recs)-1)])
						}
					}
					t.Fatalf("shard %d: %d records after, %d before", sh, len(a.recs), len(b.recs))
				}
				if !reflect.DeepEqual(a.times, b.times) {
					t.Fatalf("shard %d: time lookups differ after coalescing", sh)
				}
				if a.size != b.size {
					t.Fatalf("shard %d: size %d after, %d before", sh, a.size, b.size)
				}
				if want := (len(b.recs) + 99) / 100; a.batches > want+1 || a.batches >= b.batches {
					t.Fatalf("shard %d: %d batches after coalescing (%d before), want about %d", sh, a.batches, b.batches, want)
				}
			}
			// Kafka timestamps: each record's ms time is its commit's.
			bs, _ := l.Stream("s").Read(0, 0, 1<<30)
			for _, bt := range bs {
				var rb kmsg.RecordBatch
				_ = rb.ReadFrom(bt.Data)
				if rb.Attributes&attrLogAppendTime != 0 {
					t.Fatalf("merged batch at %d has LogAppendTime", bt.BaseOffset)
				}
				if want := map[string]int16{"": 0, "none": 0, "lz4": 3, "zstd": 4}[codec]; rb.Attributes&7 != want {
					t.Fatalf("merged batch at %d codec %d, want %d", bt.BaseOffset, rb.Attributes&7, want)
				}
			}
			// Reopen: the same records, sizes and time lookups; appends continue.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openCoalesce(t, dir, clk.now, co)
			defer l.Close()
			reopened := view(l)
			if !reflect.DeepEqual(reopened, after) {
				t.Fatal("a reopened log reads differently")
			}
			res, err := l.Stream("s").Append(0, []Record{variedRecord(0)})
			if err != nil || res.BaseOffset != int64(len(after[0].recs)) {
				t.Fatalf("append after reopen at %d (%v), want %d", res.BaseOffset, err, len(after[0].recs))
			}
		})
	}
}

// TestCoalesceConcurrentReaders reads shards while they are appended to and merged in
// the background: every reader sees every offset once, in order, with its value.
func TestCoalesceConcurrentReaders(t *testing.T) {
	l := openCoalesce(t, t.TempDir(), nil, CoalesceOptions{Records: 64, Delay: time.Millisecond})
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 2, Compression: CompressionLZ4})
	const writers, per = 4, 600
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.Append(int32(w%2), []Record{{Value: []byte(fmt.Sprintf("%d-%d", w, i))}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	want := writers / 2 * per
	var rg sync.WaitGroup
	for r := 0; r < 4; r++ {
		rg.Add(1)
		go func(r int) {
			defer rg.Done()
			sh := int32(r % 2)
			seen := map[string]bool{}
			deadline := time.Now().Add(time.Minute)
			for next := int64(0); next < int64(want); {
				if time.Now().After(deadline) {
					t.Errorf("reader %d stuck at %d", r, next)
					return
				}
				ch, _ := s.Appended(sh)
				bs, err := s.Read(sh, next, 1+r*300)
				if err != nil {
					t.Error(err)
					return
				}
				if len(bs) == 0 {
					select {
					case <-ch:
					case <-time.After(time.Second):
					}
					continue
				}
				for _, b := range bs {
					rs, err := b.Records(next)
					if err != nil {
						t.Error(err)
						return
					}
					for _, rec := range rs {
						if rec.Offset != next {
							t.Errorf("reader %d: offset %d, want %d", r, rec.Offset, next)
							return
						}
						if seen[string(rec.Value)] {
							t.Errorf("reader %d: %q twice", r, rec.Value)
							return
						}
						seen[string(rec.Value)] = true
						next++
					}
				}
			}
		}(r)
	}
	wg.Wait()
	rg.Wait()
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	for sh := int32(0); sh < 2; sh++ {
		recs, batches := readAll(t, s, sh, 0)
		if len(recs) != want || batches > want/64+2 {
			t.Fatalf("shard %d: %d records in %d batches after coalescing", sh, len(recs), batches)
		}
	}
}

// TestRetentionAndCompactionOnMerged applies message, byte and age retention and
// last-value compaction to merged batches.
func TestRetentionAndCompactionOnMerged(t *testing.T) {
	clk := newStepClock()
	l := openCoalesce(t, t.TempDir(), clk.now, CoalesceOptions{Records: 50, Disabled: true})
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1, Compression: CompressionZstd})
	for i := 0; i < 500; i += 5 {
		var rs []Record
		for j := i; j < i+5; j++ {
			rs = append(rs, Record{Key: []byte(fmt.Sprintf("k%d", j%10)), Value: []byte(fmt.Sprintf("v%d", j))})
		}
		if _, err := s.Append(0, rs); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	all, _ := readAll(t, s, 0, 0)
	size := s.Size(0)

	// Message retention cuts inside a merged batch: reads and time lookups start at
	// the cut, records keep their times.
	spec := s.Spec()
	spec.Retention.MaxMessages = 333
	if _, err := l.UpdateStream(spec); err != nil {
		t.Fatal(err)
	}
	l.ApplyRetention()
	start, hwm, _ := s.Offsets(0)
	if start != 167 || hwm != 500 {
		t.Fatalf("offsets %d..%d after retention, want 167..500", start, hwm)
	}
	got, _ := readAll(t, s, 0, start)
	if !reflect.DeepEqual(got, all[167:]) {
		t.Fatal("records after retention differ")
	}
	if off, ts, _ := s.OffsetForTime(0, 0); off != 167 || ts != all[165].TimestampUS {
		t.Fatalf("time lookup from 0: %d at %d, want 167 at %d", off, ts, all[165].TimestampUS)
	}
	if off, _, _ := s.OffsetForTime(0, all[250].TimestampUS); off != 250 {
		t.Fatalf("time lookup of record 250: %d", off)
	}
	if s.Size(0) >= size {
		t.Fatalf("size %d after retention, %d before", s.Size(0), size)
	}

	// Byte retention keeps about the bytes asked for, at merged batch granularity.
	spec.Retention.MaxBytes = s.Size(0) / 2
	_, _ = l.UpdateStream(spec)
	l.ApplyRetention()
	start2, _, _ := s.Offsets(0)
	if start2 <= start || s.Size(0) > spec.Retention.MaxBytes+s.Size(0)/2 {
		t.Fatalf("byte retention: start %d, size %d for max %d", start2, s.Size(0), spec.Retention.MaxBytes)
	}

	// Last-value compaction keeps the newest record per key, with its offset and time.
	spec.Retention = Retention{}
	spec.LastValue = true
	_, _ = l.UpdateStream(spec)
	l.ApplyRetention()
	got, _ = readAll(t, s, 0, start2)
	if len(got) != 10 {
		t.Fatalf("%d records after compaction, want 10", len(got))
	}
	for i, r := range got {
		if want := all[490+i]; !reflect.DeepEqual(r, want) {
			t.Fatalf("compacted record %+v, want %+v", r, want)
		}
	}
	if off, _, _ := s.OffsetForTime(0, all[480].TimestampUS); off > 490 {
		t.Fatalf("time lookup after compaction: %d", off)
	}

	// Age retention removing every merged batch leaves none of their time entries.
	s2, _ := l.CreateStream(StreamSpec{Name: "s2", Shards: 1})
	for i := 0; i < 100; i += 5 {
		if _, err := s2.Append(0, []Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}, {Value: []byte("d")}, {Value: []byte("e")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	spec2 := s2.Spec()
	spec2.Retention.MaxAge = time.Microsecond
	_, _ = l.UpdateStream(spec2)
	l.ApplyRetention()
	if start, hwm, _ := s2.Offsets(0); start != 100 || hwm != 100 {
		t.Fatalf("offsets %d..%d after age retention, want 100..100", start, hwm)
	}
	p := shardPrefix(prefixTime, s2.id, 0)
	it, _ := l.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	defer it.Close()
	if it.First() {
		_, base := timeKeyParts(it.Key())
		t.Fatalf("time entry for offset %d left behind", base)
	}
}

func TestCoalesceTrickleTail(t *testing.T) {
	l := openCoalesce(t, t.TempDir(), nil, CoalesceOptions{Records: 1000, Delay: time.Millisecond})
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "s", Shards: 1})
	for i := 0; i < 40; i++ {
		if _, err := s.Append(0, []Record{{Value: bytes.Repeat([]byte{'x'}, i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// The idle tail merges on its own (the loop, not Coalesce).
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, batches := readAll(t, s, 0, 0)
		if len(recs) != 40 {
			t.Fatalf("%d records", len(recs))
		}
		if batches == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle tail still in %d batches", batches)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCoalesceAfterCompaction merges batches that last-value compaction left with
// offset gaps (and a batch it emptied): offsets, gaps and times are kept.
func TestCoalesceAfterCompaction(t *testing.T) {
	clk := newStepClock()
	l := openCoalesce(t, t.TempDir(), clk.now, CoalesceOptions{Records: 1000, Disabled: true})
	defer l.Close()
	s, _ := l.CreateStream(StreamSpec{Name: "lv", Shards: 1, LastValue: true, Compression: CompressionLZ4})
	for i := 0; i < 200; i += 4 {
		var rs []Record
		for j := i; j < i+4; j++ {
			rs = append(rs, Record{Key: []byte(fmt.Sprintf("k%d", j%7)), Value: []byte(fmt.Sprintf("v%d", j))})
		}
		if _, err := s.Append(0, rs); err != nil {
			t.Fatal(err)
		}
	}
	l.ApplyRetention() // compaction: 7 records left, in a few batches with gaps
	before, _ := readAll(t, s, 0, 0)
	if len(before) != 7 {
		t.Fatalf("%d records after compaction", len(before))
	}
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	after, batches := readAll(t, s, 0, 0)
	if batches != 1 || !reflect.DeepEqual(after, before) {
		t.Fatalf("after merging (%d batches):\n%+v\nbefore:\n%+v", batches, after, before)
	}
	bs, _ := s.Read(0, 0, 1<<20)
	if bs[0].BaseOffset > before[0].Offset || bs[0].LastOffset != 199 {
		t.Fatalf("merged batch spans %d..%d", bs[0].BaseOffset, bs[0].LastOffset)
	}
	// More appends and another compaction pass over the merged batch.
	if _, err := s.Append(0, []Record{{Key: []byte("k0"), Value: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	l.ApplyRetention()
	got, _ := readAll(t, s, 0, 0)
	if len(got) != 7 || string(got[6].Value) != "new" || got[6].Offset != 200 {
		t.Fatalf("after a second compaction: %+v", got)
	}
	var want []StoredRecord
	for _, r := range after {
		if string(r.Key) != "k0" {
			want = append(want, r)
		}
	}
	if !reflect.DeepEqual(got[:6], want) {
		t.Fatalf("second compaction of the merged batch:\n%+v\nwant\n%+v", got[:6], want)
	}
}
