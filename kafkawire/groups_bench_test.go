package kafkawire

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkOffsetCommit: 1 or 100 groups commit concurrently, each from its own client and
// connection, every commit durable (fsynced) before its answer. Reports commits/s and
// the round-trip p50/p99.
func BenchmarkOffsetCommit(b *testing.B) {
	for _, groups := range []int{1, 100} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) { benchOffsetCommit(b, groups) })
	}
}

func benchOffsetCommit(b *testing.B, groups int) {
	e := grpStart(b, b.TempDir())
	clients := make([]*kgo.Client, groups)
	for i := range clients {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		clients[i] = cl
		// Warm the connection and the group.
		if err := benchCommit(cl, fmt.Sprintf("bench-%d", i), 0); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, groups)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			g := fmt.Sprintf("bench-%d", i)
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				t0 := time.Now()
				if err := benchCommit(clients[i], g, n); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

func benchCommit(cl *kgo.Client, group string, offset int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = grpTopic
	for p := int32(0); p < 4; p++ {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p, offset
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		return err
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			return fmt.Errorf("commit error code %d", p.ErrorCode)
		}
	}
	return nil
}

// BenchmarkRebalance10: ten franz-go members (heartbeat 100 ms, rebalance timeout 1 s,
// the smallest kgo allows being far lower) are Stable; one leaves; reported is the time
// until the other nine hold all partitions again. Each iteration adds the member back.
func BenchmarkRebalance10(b *testing.B) {
	e := grpStart(b, b.TempDir())
	opts := func(tr *assignmentTracker) []kgo.Opt {
		return append(groupOpts("rebal", tr.opts()...),
			kgo.HeartbeatInterval(100*time.Millisecond),
			kgo.RebalanceTimeout(time.Second),
			kgo.Balancers(kgo.RangeBalancer()))
	}
	trackers := make([]*assignmentTracker, 10)
	clients := make([]*kgo.Client, 10)
	stops := make([]func(), 10)
	start := func(i int) {
		trackers[i] = &assignmentTracker{}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.FetchMaxWait(100 * time.Millisecond)}, opts(trackers[i])...)...)
		if err != nil {
			b.Fatal(err)
		}
		clients[i], stops[i] = cl, pollLoop(cl)
	}
	held := func(from int) int {
		n := 0
		for _, tr := range trackers[from:] {
			n += len(tr.get())
		}
		return n
	}
	waitB := func(what string, cond func() bool) {
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range clients {
		start(i)
	}
	waitB("10 members to be assigned", func() bool { return held(0) == 4 && groupMembers(e) == 10 })
	b.ResetTimer()
	var total time.Duration
	for n := 0; n < b.N; n++ {
		t0 := time.Now()
		stops[0]()
		clients[0].Close()
		waitB("9 members to hold all partitions", func() bool { return held(1) == 4 && groupMembers(e) == 9 })
		total += time.Since(t0)
		b.StopTimer()
		start(0)
		waitB("10 members again", func() bool { return held(0) == 4 && groupMembers(e) == 10 })
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rebalance")
	for i := range clients {
		stops[i]()
		clients[i].Close()
	}
}

// groupMembers counts the Stable members of group "rebal".
func groupMembers(e *grpEnv) int {
	s, found, err := e.srv.groups().describe("rebal")
	if err != nil || !found || s.state != stateStable {
		return -1
	}
	return len(s.members)
}
