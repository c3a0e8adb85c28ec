package log

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestCompactionsDoNotRewriteMergedBatches: MQTT-shaped records committed to four shards
// at once and merged by the coalescer are written by flushes, and compactions then add
// little: the merged batches live in blob files and compactions carry references
// (valueSeparation). With the merged batches in the tables, every compaction into the
// last level rewrote the batches its key range overlapped: 3–5× the flushed bytes.
func TestCompactionsDoNotRewriteMergedBatches(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), NoSync: true, Logger: zerolog.Nop(), RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.CreateStream(StreamSpec{Name: "m", Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	const (
		total   = 400_000
		perCall = 250
	)
	recs := make([]Record, 4000)
	for i := range recs {
		recs[i] = Record{
			Value: fmt.Appendf(nil, `{"dev":"sensor-%03d","seq":%07d,"temp":21.%d,"hum":48.%d,"status":"ok","fw":"1.4.2"}`, i%256, i, i%10, i%7),
			Headers: []Header{{Key: "mqtt.topic", Value: fmt.Appendf(nil, "plant/line-%d/sensor-%03d", i%8, i%256)}, {Key: "mqtt.qos", Value: []byte("1")},
				{Key: "mqtt.retain", Value: []byte("false")}, {Key: "mqtt.client_id", Value: fmt.Appendf(nil, "gw-%03d", i%256)}},
		}
	}
	var wg sync.WaitGroup
	for w := int32(0); w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < total/4; j += perCall {
				k := (j + int(w)*1000) % (len(recs) - perCall)
				if _, err := s.Append(w, recs[k:k+perCall]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	if err := l.db.Flush(); err != nil {
		t.Fatal(err)
	}
	// Let the compactions the flushes scheduled finish.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := l.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compactions still running after 2 minutes:\n%s", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := l.db.Metrics()
	var flushed, compacted uint64
	for _, lv := range m.Levels {
		flushed += lv.TableBytesFlushed + lv.BlobBytesFlushed
		// Pebble counts a flush's blob files as compacted too (compaction.go).
		compacted += lv.TableBytesCompacted + lv.BlobBytesCompacted - lv.BlobBytesFlushed
	}
	t.Logf("%d records: flushes wrote %d KiB, compactions %d KiB (%.2f×); %d compactions",
		total, flushed>>10, compacted>>10, float64(compacted)/float64(flushed), m.Compact.Count)
	if m.Compact.Count == 0 {
		t.Fatalf("no compaction ran: the test measures nothing\n%s", m)
	}
	if compacted > flushed {
		t.Fatalf("compactions wrote %d bytes for %d flushed: merged batches are rewritten\n%s", compacted, flushed, m)
	}
}
