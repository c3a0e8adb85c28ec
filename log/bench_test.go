package log

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// BenchmarkDurableAppend measures synced appends of one 100-byte record per call with
// 1 and 64 concurrent writers spread over 4 shards.
func BenchmarkDurableAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(map[int]string{1: "writers=1", 64: "writers=64"}[writers], func(b *testing.B) {
			l, err := Open(Options{Dir: b.TempDir(), RetentionInterval: time.Hour})
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
		})
	}
}
