package main

// Section 6: the cost of many streams: start-up, memory and publish throughput with 1,
// 1,000 and 100,000 streams, each with its own filter.

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/loadgen"
)

func (b *bench) streams() error {
	for _, n := range b.sc.streamCounts {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		b.setPhase(fmt.Sprintf("streams-%d", n))
		var cfg strings.Builder
		cfg.WriteString("streams:\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&cfg, "  - {name: s%d, filter: \"s%d/#\", shards: 1, key: none}\n", i, i)
		}
		dir := filepath.Join(b.tmp, fmt.Sprintf("streams-%d", n))
		r := StreamsResult{Streams: n}
		mq, err := startMQStreamsWait(fmt.Sprintf("mqstreams (%d streams)", n), b.bin, dir, cfg.String(), 5*time.Minute)
		if err != nil {
			return fmt.Errorf("%d streams: %w", n, err)
		}
		b.track(mq)
		r.FirstStartSeconds = mq.ready.Seconds()
		time.Sleep(time.Second)
		r.RSSIdleMB = mq.rssMB()
		// Publisher i writes to stream i (all to s0 with fewer streams than publishers):
		// every publish is matched against all n filters.
		topic := "s0/t"
		if n >= 16 {
			topic = "s%d/t"
		}
		res, err := loadgen.Run(b.ctx, loadgen.Config{Addr: mq.mqttAddr, QoS: 1, Publishers: 16, Duration: b.sc.ingestDur,
			PayloadSize: 100, InFlight: 20, Topic: topic, ClientIDPrefix: fmt.Sprintf("streams%d", n)})
		if err != nil {
			r.Error = err.Error()
			b.errorf("publish with %d streams: %v", n, err)
		}
		r.MsgPerSec, r.P99us = res.MsgPerSec(), us(res.Latency.Quantile(0.99))
		b.release(mq)
		mq2, err := startMQStreamsWait(fmt.Sprintf("mqstreams (%d streams)", n), b.bin, dir, cfg.String(), 5*time.Minute)
		if err != nil {
			return fmt.Errorf("restart with %d streams: %w", n, err)
		}
		r.RestartSeconds = mq2.ready.Seconds()
		mq2.stop()
		b.res.Streams = append(b.res.Streams, r)
		b.logf("[streams] %6d streams: first start %.2fs, restart %.2fs, idle RSS %.0f MB, QoS 1 16 publishers %.0f msg/s (ack p99 %.1f ms)",
			n, r.FirstStartSeconds, r.RestartSeconds, r.RSSIdleMB, r.MsgPerSec, r.P99us/1000)
	}
	return nil
}
