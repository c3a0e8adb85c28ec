package main

// Section 4: ListOffsets-by-time latency as one partition grows.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/loadgen"
)

const lookupStreams = `streams:
  - {name: lookup, filter: "lookup/#", shards: 1, key: none}
`

func (b *bench) lookup() error {
	b.setPhase("lookup")
	mq, err := startMQStreams(b.bin, filepath.Join(b.tmp, "lookup"), lookupStreams)
	if err != nil {
		return err
	}
	b.track(mq)
	defer b.release(mq)
	prod, err := kgo.NewClient(kgo.SeedBrokers(mq.kafkaAddr), kgo.DefaultProduceTopic("lookup"),
		kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(200_000), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer prod.Close()
	value := make([]byte, 100)
	var have int64
	// Record times span the whole fill: lookups land anywhere in the partition.
	first := time.Now()
	for _, size := range b.sc.lookupSizes {
		start := time.Now()
		var perr error
		for ; have < size; have++ {
			prod.Produce(b.ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
				if err != nil && perr == nil {
					perr = err
				}
			})
		}
		// Every record is stamped when appended, after its Produce call: the last
		// record's time is at or after this, so every lookup up to here finds one.
		last := time.Now()
		if err := prod.Flush(b.ctx); err != nil {
			return err
		}
		if perr != nil {
			return fmt.Errorf("produce: %w", perr)
		}
		b.logf("[lookup] partition filled to %d records (Kafka Produce, %.1fs)", size, time.Since(start).Seconds())
		r := LookupResult{Records: size, Lookups: b.sc.lookups}
		h, err := timeLookups(b.ctx, prod, first, last, b.sc.lookups)
		if err != nil {
			r.Error = err.Error()
			b.errorf("lookup at %d: %v", size, err)
		}
		r.P50us, r.P99us, r.P999us, r.MaxUs = us(h.Quantile(0.5)), us(h.Quantile(0.99)), us(h.Quantile(0.999)), us(h.Max())
		b.res.Lookup = append(b.res.Lookup, r)
		b.logf("[lookup] %9d records/partition: ListOffsets by time p50 %.3fms p99 %.3fms p999 %.3fms (%d lookups)", size, r.P50us/1000, r.P99us/1000, r.P999us/1000, r.Lookups)
	}
	return nil
}

// timeLookups sends n ListOffsets requests, one at a time, each for a random time
// between from and to, and checks every answer is a real offset.
func timeLookups(ctx context.Context, cl *kgo.Client, from, to time.Time, n int) (loadgen.Histogram, error) {
	var h loadgen.Histogram
	span := to.UnixMilli() - from.UnixMilli()
	for i := 0; i < n; i++ {
		ts := from.UnixMilli() + rand.Int64N(span+1)
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = 4
		t := kmsg.NewListOffsetsRequestTopic()
		t.Topic = "lookup"
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Partition = 0
		p.Timestamp = ts
		p.CurrentLeaderEpoch = -1
		t.Partitions = append(t.Partitions, p)
		req.Topics = append(req.Topics, t)
		start := time.Now()
		resp, err := req.RequestWith(ctx, cl)
		d := time.Since(start)
		if err != nil {
			return h, err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return h, fmt.Errorf("ListOffsets answer has %d topics", len(resp.Topics))
		}
		rp := resp.Topics[0].Partitions[0]
		if rp.ErrorCode != 0 || rp.Offset < 0 {
			return h, fmt.Errorf("ListOffsets at %d: error %d offset %d", ts, rp.ErrorCode, rp.Offset)
		}
		h.Record(d)
	}
	return h, nil
}
