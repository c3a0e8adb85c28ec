package cluster

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// BenchmarkIngest compares appends to one shard through a three-node cluster (all
// three on this machine, sharing its cores and disk, fsync on) with the log alone:
// 64 writers, one record of 100 bytes per append, as MQTT QoS 1 publishers make them.
//
//	go test -run XXX -bench Ingest -benchtime 20000x ./cluster/
func BenchmarkIngest(b *testing.B) {
	val := make([]byte, 100)
	run := func(b *testing.B, appendOne func(i int, done func(error))) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Int64
		start := time.Now()
		b.ResetTimer()
		for w := 0; w < 64; w++ {
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
			nodes := benchCluster(b)
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
			run(b, func(i int, done func(error)) {
				n.Append(context.Background(), log.AppendBlock, "s", 0, []log.Record{{Value: val}}, nil, func(_ log.AppendResult, err error) { done(err) })
			})
		})
	}
}

// benchCluster starts three nodes with real fsync and production tick settings.
func benchCluster(b *testing.B) []*Node {
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
		n, err := Open(Config{NodeID: uint64(i + 1), RaftAddr: peers[i].RaftAddr, Peers: peers}, Options{Log: l, Logger: zerolog.Nop(), listener: lns[i]})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
		b.Cleanup(func() { _ = n.Close(); _ = l.Close() })
	}
	return nodes
}
