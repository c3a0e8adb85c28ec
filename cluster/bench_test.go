package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// ingestWriters is BenchmarkIngest's concurrency (INGEST_WRITERS overrides).
var ingestWriters = 64

// BenchmarkIngest compares appends to one shard through a three-node cluster (all
// three on this machine, sharing its cores and disk, fsync on) with the log alone:
// 64 writers, one record of 100 bytes per append, as MQTT QoS 1 publishers make them.
//
//	go test -run XXX -bench Ingest -benchtime 20000x ./cluster/
func BenchmarkIngest(b *testing.B) {
	if w, err := strconv.Atoi(os.Getenv("INGEST_WRITERS")); err == nil && w > 0 {
		ingestWriters = w
	}
	val := make([]byte, 100)
	run := func(b *testing.B, appendOne func(i int, done func(error))) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Int64
		cpu0 := processCPU()
		start := time.Now()
		b.ResetTimer()
		for w := 0; w < ingestWriters; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1))
					if i > b.N {
						return
					}
					ch := make(chan error, 1)
					appendOne(i, func(err error) { ch <- err })
					if err := <-ch; err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d appends failed", n)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		// CPU per record is steadier than the rate on a shared machine.
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1000/float64(b.N), "cpu-µs/record")
	}
	b.Run("single", func(b *testing.B) {
		l, err := log.Open(log.Options{Dir: b.TempDir(), Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		if _, err := l.CreateStream(log.StreamSpec{Name: "s", Shards: 1}); err != nil {
			b.Fatal(err)
		}
		run(b, func(i int, done func(error)) {
			l.Append(context.Background(), log.AppendBlock, "s", 0, []log.Record{{Value: val}}, nil, func(_ log.AppendResult, err error) { done(err) })
		})
	})
	for _, via := range []string{"leader", "follower"} {
		b.Run("cluster3-via-"+via, func(b *testing.B) {
			tl := newTimeline()
			nodes := benchClusterWith(b, func(o *Options) {
				if os.Getenv("INGEST_TIMELINE") != "" {
					o.testTrace = tl.record
				}
			})
			defer tl.report(b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := nodes[0].PutStream(ctx, log.StreamSpec{Name: "s", Shards: 1}, 3); err != nil {
				b.Fatal(err)
			}
			var lead uint64
			for lead == 0 {
				ps, _ := nodes[0].Partition("s", 0)
				lead = ps.Leader
				time.Sleep(10 * time.Millisecond)
			}
			n := nodes[lead-1]
			if via == "follower" {
				n = nodes[lead%3]
			}
			var frames, bytes0 int64
			for _, x := range nodes {
				frames -= x.tr.sent[kindRaft].Load() + x.tr.sent[kindRequest].Load() + x.tr.sent[kindResponse].Load()
				bytes0 -= x.tr.sentBytes[kindRaft].Load() + x.tr.sentBytes[kindRequest].Load() + x.tr.sentBytes[kindResponse].Load()
			}
			run(b, func(i int, done func(error)) {
				n.Append(context.Background(), log.AppendBlock, "s", 0, []log.Record{{Value: val}}, nil, func(_ log.AppendResult, err error) { done(err) })
			})
			for _, x := range nodes {
				frames += x.tr.sent[kindRaft].Load() + x.tr.sent[kindRequest].Load() + x.tr.sent[kindResponse].Load()
				bytes0 += x.tr.sentBytes[kindRaft].Load() + x.tr.sentBytes[kindRequest].Load() + x.tr.sentBytes[kindResponse].Load()
			}
			// Raft messages and forwarded appends with their answers, all nodes.
			b.ReportMetric(float64(bytes0)/float64(b.N), "net-B/record")
			b.ReportMetric(float64(frames)/float64(b.N), "frames/record")
		})
	}
}

// timeline collects round timelines (Options.testTrace) and reports the median time
// of each step of a round, in µs, on the shard leader (L) and a follower (F).
type timeline struct {
	mu sync.Mutex
	at map[[3]uint64]*[traceEvents]time.Time // node, group, index
}

func newTimeline() *timeline { return &timeline{at: map[[3]uint64]*[traceEvents]time.Time{}} }

func (t *timeline) record(node, group, index uint64, ev int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := [3]uint64{node, group, index}
	e := t.at[k]
	if e == nil {
		e = new([traceEvents]time.Time)
		t.at[k] = e
	}
	if e[ev].IsZero() {
		e[ev] = at
	}
}

func (t *timeline) report(b *testing.B) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.at) == 0 {
		return
	}
	steps := []struct {
		name     string
		from, to int
		follower bool
	}{
		{"L-wait-propose", traceEnqueued, traceProposed, false},
		{"L-propose-send", traceProposed, traceSent, false},
		{"L-send-durable", traceSent, traceDurable, false},
		{"L-send-ack", traceSent, traceAcked, false},
		{"L-ack-commit", traceAcked, traceCommitted, false},
		{"L-commit-applied", traceCommitted, traceApplied, false},
		{"L-total", traceEnqueued, traceApplied, false},
		{"F-send-recv", traceSent, traceReceived, true},
		{"F-send-queued", traceSent, traceQueued, true},
		{"F-send-durable", traceSent, traceDurable, true},
		{"L-send-queued", traceSent, traceQueued, false},
	}
	for _, st := range steps {
		var ds []time.Duration
		for k, e := range t.at {
			if e[traceProposed].IsZero() {
				continue // not the leader's record
			}
			from, to := e[st.from], e[st.to]
			if st.follower {
				to = time.Time{}
				for kf, f := range t.at {
					if kf[0] != k[0] && kf[1] == k[1] && kf[2] == k[2] && !f[st.to].IsZero() && (to.IsZero() || f[st.to].Before(to)) {
						to = f[st.to]
					}
				}
			}
			if !from.IsZero() && !to.IsZero() {
				ds = append(ds, to.Sub(from))
			}
		}
		if len(ds) == 0 {
			continue
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), st.name+"-µs")
		if os.Getenv("INGEST_TIMELINE") == "all" {
			var sum time.Duration
			for _, d := range ds {
				sum += d
			}
			b.ReportMetric(float64(ds[len(ds)*9/10].Microseconds()), st.name+"-p90-µs")
			b.ReportMetric(float64(sum.Microseconds())/float64(len(ds)), st.name+"-mean-µs")
		}
	}
	rounds := 0
	for _, e := range t.at {
		if !e[traceProposed].IsZero() {
			rounds++
		}
	}
	b.ReportMetric(float64(b.N)/float64(max(rounds, 1)), "records/entry")
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCluster starts three nodes with real fsync and production tick settings.
func benchCluster(b *testing.B) []*Node { return benchClusterWith(b, nil) }

func benchClusterWith(b *testing.B, opt func(*Options)) []*Node {
	b.Helper()
	lns := make([]net.Listener, 3)
	var peers []Peer
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns[i] = ln
		peers = append(peers, Peer{ID: uint64(i + 1), RaftAddr: ln.Addr().String()})
	}
	nodes := make([]*Node, 3)
	for i := range nodes {
		l, err := log.Open(log.Options{Dir: b.TempDir(), Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		o := Options{Log: l, Logger: zerolog.Nop(), listener: lns[i]}
		if opt != nil {
			opt(&o)
		}
		n, err := Open(Config{NodeID: uint64(i + 1), RaftAddr: peers[i].RaftAddr, Peers: peers}, o)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
		b.Cleanup(func() { _ = n.Close(); _ = l.Close() })
	}
	return nodes
}

// BenchmarkFailover stops a shard's leader 20 times (production tick settings: 50 ms
// ticks, election after 15) and reports how long until an append through a surviving
// node succeeds again: p50, p99 and max over the kills. The stopped node comes back
// and catches up before the next kill.
//
//	go test -run XXX -bench Failover -benchtime 1x ./cluster/
func BenchmarkFailover(b *testing.B) {
	const kills = 20
	lns := make([]net.Listener, 3)
	var peers []Peer
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns[i] = ln
		peers = append(peers, Peer{ID: uint64(i + 1), RaftAddr: ln.Addr().String()})
	}
	dirs := []string{b.TempDir(), b.TempDir(), b.TempDir()}
	nodes := make([]*Node, 3)
	logs := make([]*log.Log, 3)
	start := func(i int, ln net.Listener) {
		l, err := log.Open(log.Options{Dir: dirs[i], Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		for ln == nil {
			if ln, err = net.Listen("tcp", peers[i].RaftAddr); err != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
		n, err := Open(Config{NodeID: uint64(i + 1), RaftAddr: peers[i].RaftAddr, Peers: peers}, Options{Log: l, Logger: zerolog.Nop(), listener: ln})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i], logs[i] = n, l
	}
	stop := func(i int) {
		_ = nodes[i].Close()
		_ = logs[i].Close()
		nodes[i], logs[i] = nil, nil
	}
	for i := range nodes {
		start(i, lns[i])
	}
	defer func() {
		for i := range nodes {
			if nodes[i] != nil {
				stop(i)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nodes[0].PutStream(ctx, log.StreamSpec{Name: "s", Shards: 1}, 3); err != nil {
		b.Fatal(err)
	}
	appendVia := func(n *Node) error {
		ch := make(chan error, 1)
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.Append(actx, log.AppendBlock, "s", 0, []log.Record{{Value: []byte("x")}}, nil, func(_ log.AppendResult, err error) { ch <- err })
		return <-ch
	}
	leader := func() int {
		for {
			ps, _ := nodes[0].Partition("s", 0)
			if i := int(ps.Leader) - 1; ps.Leader != 0 && nodes[i] != nil {
				if appendVia(nodes[i]) == nil {
					return i
				}
			}
			time.Sleep(10 * time.Millisecond)
			if ps, _ = nodes[1].Partition("s", 0); ps.Leader != 0 && nodes[ps.Leader-1] != nil {
				if appendVia(nodes[ps.Leader-1]) == nil {
					return int(ps.Leader - 1)
				}
			}
		}
	}
	var times []time.Duration
	for k := 0; k < kills; k++ {
		lead := leader()
		other := (lead + 1) % 3
		killed := time.Now()
		stop(lead)
		for appendVia(nodes[other]) != nil {
		}
		times = append(times, time.Since(killed))
		start(lead, nil)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
}

// BenchmarkIdle measures the CPU three nodes spend on 100 idle shards (300 replicas)
// once they settled, with and without quiescence, in CPU milliseconds per second.
//
//	go test -run XXX -bench Idle -benchtime 1x ./cluster/
func BenchmarkIdle(b *testing.B) {
	for _, quiesce := range []bool{true, false} {
		b.Run(fmt.Sprintf("quiesce=%v", quiesce), func(b *testing.B) {
			nodes := benchClusterWith(b, func(o *Options) { o.noQuiesce = !quiesce })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := nodes[0].PutStream(ctx, log.StreamSpec{Name: "idle", Shards: 100}, 3); err != nil {
				b.Fatal(err)
			}
			time.Sleep(5 * time.Second) // settle: elections, then quiescence after 1 s idle
			cpu := func() time.Duration {
				var ru syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			c0, t0 := cpu(), time.Now()
			time.Sleep(3 * time.Second)
			b.ReportMetric(float64((cpu()-c0).Milliseconds())/time.Since(t0).Seconds(), "cpu-ms/s")
		})
	}
}
