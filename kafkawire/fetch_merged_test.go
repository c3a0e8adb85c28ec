package kafkawire

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/log"
)

// TestFetchAcrossMerges consumes with franz-go while records are appended in small
// commits and the log merges them behind the consumer (and under it): every record
// arrives once, in offset order, with its value, headers and a timestamp no later than
// its acknowledgement; once merged, the same records read back identically.
func TestFetchAcrossMerges(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "merging", Shards: 2, Compression: log.CompressionLZ4})
	const perShard = 12_000
	acked := [2][]int64{make([]int64, perShard), make([]int64, perShard)}
	var wg sync.WaitGroup
	for sh := int32(0); sh < 2; sh++ {
		wg.Add(1)
		go func(sh int32) {
			defer wg.Done()
			for i := 0; i < perShard; i += 20 {
				var recs []log.Record
				for j := i; j < i+20; j++ {
					recs = append(recs, log.Record{Value: fmt.Appendf(nil, "%d-%d", sh, j), Headers: []log.Header{{Key: "n", Value: fmt.Appendf(nil, "%d", j)}}})
				}
				if _, err := st.Append(sh, recs); err != nil {
					t.Error(err)
					return
				}
				now := time.Now().UnixMilli()
				for j := i; j < i+20; j++ {
					acked[sh][j] = now
				}
			}
		}(sh)
	}
	consume := func() [2][]*kgo.Record {
		cl, err := kgo.NewClient(kgo.SeedBrokers(tb.addr), kgo.ConsumeTopics("merging"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var got [2][]*kgo.Record
		for len(got[0])+len(got[1]) < 2*perShard {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d+%d of %d: %v", len(got[0]), len(got[1]), 2*perShard, ctx.Err())
			}
			fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %d: %v", p, err) })
			fs.EachRecord(func(r *kgo.Record) { got[r.Partition] = append(got[r.Partition], r) })
		}
		return got
	}
	live := consume()
	wg.Wait()
	if err := tb.l.Coalesce(); err != nil {
		t.Fatal(err)
	}
	merged := consume()
	for sh := 0; sh < 2; sh++ {
		for i, r := range live[sh] {
			if r.Offset != int64(i) || string(r.Value) != fmt.Sprintf("%d-%d", sh, i) || len(r.Headers) != 1 || string(r.Headers[0].Value) != fmt.Sprint(i) {
				t.Fatalf("partition %d record %d: offset %d value %q headers %v", sh, i, r.Offset, r.Value, r.Headers)
			}
			if r.Timestamp.UnixMilli() > acked[sh][i] {
				t.Fatalf("partition %d record %d: timestamp %v after its ack %d", sh, i, r.Timestamp, acked[sh][i])
			}
			m := merged[sh][i]
			if m.Offset != r.Offset || string(m.Value) != string(r.Value) || !m.Timestamp.Equal(r.Timestamp) || string(m.Headers[0].Value) != string(r.Headers[0].Value) {
				t.Fatalf("partition %d record %d reads differently once merged: %+v, was %+v", sh, i, m, r)
			}
		}
	}
}
