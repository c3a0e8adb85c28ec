package main

// Section 3: end-to-end latency, MQTT publish to a Kafka consumer (long poll) and to a
// `$stream` subscriber of the same stream, at fixed publish rates.

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/loadgen"
)

const e2eStreams = `streams:
  - {name: e2e, filter: "e2e/#", shards: 4, key: clientid}
`

// latencySink collects the latency of stamped payloads as they arrive.
type latencySink struct {
	mu   sync.Mutex
	h    loadgen.Histogram
	n    atomic.Int64
	live atomic.Bool // false during warm-up
}

func (s *latencySink) record(payload []byte) {
	ts, ok := loadgen.Stamp(payload)
	if !ok {
		return
	}
	d := time.Since(ts)
	s.n.Add(1)
	if !s.live.Load() {
		return
	}
	s.mu.Lock()
	s.h.Record(d)
	s.mu.Unlock()
}

func (s *latencySink) reset() {
	s.mu.Lock()
	s.h = loadgen.Histogram{}
	s.mu.Unlock()
	s.n.Store(0)
	s.live.Store(true)
}

func (b *bench) e2e() error {
	b.setPhase("e2e")
	mq, err := startMQStreams(b.bin, filepath.Join(b.tmp, "e2e"), e2eStreams)
	if err != nil {
		return err
	}
	b.track(mq)
	defer b.release(mq)
	ctx, cancel := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	// The readers stop on cancel; wait for them only after it.
	defer wg.Wait()
	defer cancel()

	kafka, stream := &latencySink{}, &latencySink{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(mq.kafkaAddr), kgo.ConsumeTopics("e2e"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) { kafka.record(r.Value) })
		}
	}()
	sub, err := loadgen.Subscribe(ctx, loadgen.SubConfig{
		Addr: mq.mqttAddr, Version: loadgen.V5, ClientID: "e2e-sub", Filter: "$stream/e2e",
		QoS: 1, StreamOffset: "latest", ReceiveMax: 1024,
	})
	if err != nil {
		return fmt.Errorf("$stream subscriber: %w", err)
	}
	defer sub.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sub.Receive(ctx, func(_, p []byte) { stream.record(p) })
	}()

	// Warm up until both readers see publishes, so no reader is still joining when
	// the measured publishes start.
	deadline := time.Now().Add(30 * time.Second)
	for kafka.n.Load() == 0 || stream.n.Load() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("readers saw nothing within 30s (kafka %d, $stream %d)", kafka.n.Load(), stream.n.Load())
		}
		if _, err := loadgen.Run(ctx, loadgen.Config{Addr: mq.mqttAddr, QoS: 1, Publishers: 1, Messages: 20, Rate: 200,
			StampPayload: true, PayloadSize: 100, Topic: "e2e/warm", ClientIDPrefix: "warm"}); err != nil {
			return err
		}
	}
	time.Sleep(200 * time.Millisecond)

	for _, rate := range b.sc.e2eRates {
		fsyncBefore, _ := mq.scrapeHistogram("mqstreams_fsync_latency_seconds", "")
		appendBefore, _ := mq.scrapeHistogram("mqstreams_append_latency_seconds", `stream="e2e"`)
		kafka.reset()
		stream.reset()
		pubs := 4
		res, err := loadgen.Run(ctx, loadgen.Config{
			Addr: mq.mqttAddr, QoS: 1, Publishers: pubs, Duration: b.sc.e2eDur, Rate: float64(rate),
			StampPayload: true, PayloadSize: 100, InFlight: 100, Topic: "e2e/%d", ClientIDPrefix: fmt.Sprintf("e2e%d", rate),
		})
		if err != nil {
			return fmt.Errorf("publish at %d msg/s: %w", rate, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for (kafka.n.Load() < res.Acked || stream.n.Load() < res.Acked) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		// Where the time goes: the server's own histograms over the same interval
		// (bucket upper bounds, so "at most").
		fsyncAfter, _ := mq.scrapeHistogram("mqstreams_fsync_latency_seconds", "")
		appendAfter, _ := mq.scrapeHistogram("mqstreams_append_latency_seconds", `stream="e2e"`)
		server := LatencyResult{Path: "server: append to durable commit (bucket bound)", Rate: rate,
			P50us: appendAfter.quantileSince(appendBefore, 0.5) * 1e6, P99us: appendAfter.quantileSince(appendBefore, 0.99) * 1e6,
			P999us: appendAfter.quantileSince(appendBefore, 0.999) * 1e6}
		fsync := LatencyResult{Path: "server: fsync (bucket bound)", Rate: rate,
			P50us: fsyncAfter.quantileSince(fsyncBefore, 0.5) * 1e6, P99us: fsyncAfter.quantileSince(fsyncBefore, 0.99) * 1e6,
			P999us: fsyncAfter.quantileSince(fsyncBefore, 0.999) * 1e6}
		b.res.E2EServer = append(b.res.E2EServer, server, fsync)
		b.logf("[e2e] server at %5d msg/s: append→commit p50 ≤ %.2fms p99 ≤ %.2fms p999 ≤ %.2fms; fsync p50 ≤ %.2fms p99 ≤ %.2fms p999 ≤ %.2fms",
			rate, server.P50us/1000, server.P99us/1000, server.P999us/1000, fsync.P50us/1000, fsync.P99us/1000, fsync.P999us/1000)
		for _, s := range []struct {
			path string
			sink *latencySink
		}{{"MQTT → Kafka consumer (long poll)", kafka}, {"MQTT → $stream subscriber", stream}} {
			s.sink.mu.Lock()
			h := s.sink.h
			s.sink.mu.Unlock()
			r := LatencyResult{Path: s.path, Rate: rate, Count: h.Count(), Sent: res.Acked,
				P50us: us(h.Quantile(0.5)), P99us: us(h.Quantile(0.99)), P999us: us(h.Quantile(0.999)), MaxUs: us(h.Max())}
			for _, pt := range h.CDF() {
				r.CDF = append(r.CDF, [2]float64{pt[0] / 1000, pt[1]})
			}
			if int64(h.Count()) < res.Acked {
				r.Error = fmt.Sprintf("received %d of %d acknowledged publishes within 30s", h.Count(), res.Acked)
				b.errorf("e2e %s at %d msg/s: %s", s.path, rate, r.Error)
			}
			b.res.E2E = append(b.res.E2E, r)
			b.logf("[e2e] %-34s at %5d msg/s (%d msgs): p50 %.2fms p99 %.2fms p999 %.2fms max %.2fms", s.path, rate, r.Count, r.P50us/1000, r.P99us/1000, r.P999us/1000, r.MaxUs/1000)
		}
	}
	return nil
}
