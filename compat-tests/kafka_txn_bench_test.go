package compattests

// Transactional produce throughput vs idempotent, through the real binary:
// go test -run '^$' -bench KafkaTxnProduce -benchtime 1x ./compat-tests/

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const txnBenchRecords = 100000

// BenchmarkKafkaTxnProduce produces 100,000 records of 100 bytes into 4 partitions with
// franz-go: idempotent (async, flushed at the end), and transactional with 100 or 1,000
// records per transaction (each committed before the next begins).
func BenchmarkKafkaTxnProduce(b *testing.B) {
	srv := StartServer(b, ServerOptions{Config: fmt.Sprintf(
		"streams:\n  - {name: txbench, filter: \"txbench/#\", shards: %d}\n", benchPartitions)})
	benchTxnProduce(b, srv.KafkaAddr)
}

// BenchmarkKafkaTxnProduceCluster is the same against a 3-node cluster on loopback
// (replication factor 3: every append and marker through a shard's Raft group, the
// coordinator's state through the catalog group):
// go test -run '^$' -bench KafkaTxnProduceCluster -benchtime 1x ./compat-tests/
func BenchmarkKafkaTxnProduceCluster(b *testing.B) {
	if !clusterSupported(b) {
		b.Skip("no cluster mode")
	}
	c := startCluster(b, 3, fmt.Sprintf(
		"streams:\n  - {name: txbench, filter: \"txbench/#\", shards: %d, replication_factor: 3}\n", benchPartitions))
	c.waitLeaders(b, "txbench", benchPartitions, 60*time.Second)
	benchTxnProduce(b, c.kafka[0])
}

func benchTxnProduce(b *testing.B, addr string) {
	value := []byte(strings.Repeat("x", benchRecordSize))
	produce := func(b *testing.B, cl *kgo.Client, n int) {
		var failed atomic.Value
		for i := 0; i < n; i++ {
			cl.Produce(context.Background(), &kgo.Record{Topic: "txbench", Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Store(err)
				}
			})
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("idempotent", func(b *testing.B) {
		cl := benchKgo(b, addr, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			produce(b, cl, txnBenchRecords)
		}
		b.ReportMetric(float64(txnBenchRecords*b.N)/time.Since(start).Seconds(), "records/s")
	})
	for _, per := range []int{100, 1000} {
		b.Run(fmt.Sprintf("transactional/%d-per-txn", per), func(b *testing.B) {
			cl := benchKgo(b, addr, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
				kgo.TransactionalID(fmt.Sprintf("bench-%d-%d", per, time.Now().UnixNano())))
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for done := 0; done < txnBenchRecords; done += per {
					if err := cl.BeginTransaction(); err != nil {
						b.Fatal(err)
					}
					produce(b, cl, per)
					if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
						b.Fatal(err)
					}
				}
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(txnBenchRecords*b.N)/elapsed, "records/s")
			b.ReportMetric(float64(txnBenchRecords/per*b.N)/elapsed, "txns/s")
		})
	}
}
