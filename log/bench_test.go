package log

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkDurableAppend measures acknowledged appends of one 100-byte record per call
// with 1 and 64 concurrent writers spread over 4 shards, at both durabilities.
func BenchmarkDurableAppend(b *testing.B) {
	for _, d := range []Durability{DurabilityFsync, DurabilityWrite} {
		for _, writers := range []int{1, 64} {
			benchAppend(b, d, writers)
		}
	}
}

func benchAppend(b *testing.B, d Durability, writers int) {
	b.Run(fmt.Sprintf("%s/writers=%d", d, writers), func(b *testing.B) {
		var c fsyncCounter
		l, err := Open(Options{Dir: b.TempDir(), RetentionInterval: time.Hour, Durability: d, Observer: &c})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		s, _ := l.CreateStream(StreamSpec{Name: "bench", Shards: 4})
		r := []Record{{Key: []byte("device-1"), Value: bytes.Repeat([]byte("x"), 100)}}
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		per := b.N / writers
		if per == 0 {
			per = 1
		}
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if _, err := s.Append(int32(w%4), r); err != nil {
						b.Error(err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "records/s")
		if g := c.groups.Load(); g > 0 {
			b.ReportMetric(float64(c.records.Load())/float64(g), "records/commit")
		}
	})
}
