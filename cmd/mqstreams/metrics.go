package main

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
)

// logMetrics is the log.Observer that turns data-path measurements into Prometheus
// metrics, plus a collector reading per-shard size and high watermark at scrape time.
type logMetrics struct {
	messages      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	appendLatency *prometheus.HistogramVec
	syncLatency   prometheus.Histogram
	commitRecords prometheus.Histogram
	refused       *prometheus.CounterVec

	// perStream caches the label lookups: ObserveAppend runs once per durable append.
	perStream sync.Map // stream name -> *streamMetrics
}

type streamMetrics struct {
	messages prometheus.Counter
	bytes    prometheus.Counter
	latency  prometheus.Observer
}

// latencyBuckets span 50µs (a batched append on a fast disk) to 10s (a stalled disk).
var latencyBuckets = prometheus.ExponentialBucketsRange(50e-6, 10, 18)

func newLogMetrics() *logMetrics {
	return &logMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_messages_appended_total",
			Help: "Records durably appended to a stream.",
		}, []string{"stream"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_bytes_appended_total",
			Help: "Key, value and header bytes durably appended to a stream.",
		}, []string{"stream"}),
		appendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mqstreams_append_latency_seconds",
			Help:    "Time from an append request to its durable commit.",
			Buckets: latencyBuckets,
		}, []string{"stream"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_storage_writes_refused_total",
			Help: "Writes refused by the log: disk_full (below storage.min_free_bytes or out of space), storage_failed (Pebble failed; restart needed).",
		}, []string{"reason"}),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqstreams_fsync_latency_seconds",
			Help:    "Duration of each fsync of the log's write-ahead log (one fsync shared by a group of commits).",
			Buckets: latencyBuckets,
		}),
		commitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqstreams_commit_records",
			Help:    "Records per durable commit group (one WAL write, at most one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 16),
		}),
	}
}

func (m *logMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.messages, m.bytes, m.appendLatency, m.syncLatency, m.commitRecords, m.refused} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *logMetrics) stream(name string) *streamMetrics {
	if v, ok := m.perStream.Load(name); ok {
		return v.(*streamMetrics)
	}
	sm := &streamMetrics{
		messages: m.messages.WithLabelValues(name),
		bytes:    m.bytes.WithLabelValues(name),
		latency:  m.appendLatency.WithLabelValues(name),
	}
	v, _ := m.perStream.LoadOrStore(name, sm)
	return v.(*streamMetrics)
}

// ObserveAppend implements log.Observer.
func (m *logMetrics) ObserveAppend(stream string, records, bytes int, latency time.Duration) {
	sm := m.stream(stream)
	sm.messages.Add(float64(records))
	sm.bytes.Add(float64(bytes))
	sm.latency.Observe(latency.Seconds())
}

// ObserveSync implements log.Observer.
func (m *logMetrics) ObserveSync(latency time.Duration) {
	m.syncLatency.Observe(latency.Seconds())
}

// ObserveCommit implements log.CommitObserver.
func (m *logMetrics) ObserveCommit(_, records int) {
	m.commitRecords.Observe(float64(records))
}

// ObserveRefusal implements log.RefusalObserver.
func (m *logMetrics) ObserveRefusal(reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

// storageCollector reports whether the log accepts writes and the data dir's free
// space (as last measured) when scraped.
type storageCollector struct {
	log      *log.Log
	writable *prometheus.Desc
	free     *prometheus.Desc
	minFree  *prometheus.Desc
	// Pebble's memory outside the Go heap (log.Memory).
	cache, cacheLimit, memtables *prometheus.Desc
	queued                       *prometheus.Desc
}

func newStorageCollector(l *log.Log) *storageCollector {
	return &storageCollector{
		log:      l,
		writable: prometheus.NewDesc("mqstreams_storage_writable", "1 while the log accepts writes, 0 while it refuses them (disk full or storage failed; see /readyz).", nil, nil),
		free:     prometheus.NewDesc("mqstreams_storage_free_bytes", "Free bytes of the data directory's filesystem at the last check.", nil, nil),
		minFree:  prometheus.NewDesc("mqstreams_storage_min_free_bytes", "storage.min_free_bytes: below it writes are refused.", nil, nil),

		cache:      prometheus.NewDesc("mqstreams_storage_block_cache_bytes", "Bytes in the storage engine's block cache (C memory, outside go_memstats_*).", nil, nil),
		cacheLimit: prometheus.NewDesc("mqstreams_storage_block_cache_limit_bytes", "The block cache's bound.", nil, nil),
		queued:     prometheus.NewDesc("mqstreams_append_queue_bytes", "Memory of the appends accepted and not yet stored (bounded by append_queue_bytes).", nil, nil),
		memtables:  prometheus.NewDesc("mqstreams_storage_memtable_bytes", "Bytes of the storage engine's memtables, including those waiting to be flushed or reused (C memory, outside go_memstats_*).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.writable
	ch <- c.free
	ch <- c.minFree
	ch <- c.cache
	ch <- c.cacheLimit
	ch <- c.memtables
	ch <- c.queued
}

// Collect implements prometheus.Collector.
func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.log.Health()
	w := 0.0
	if h.Writable {
		w = 1
	}
	ch <- prometheus.MustNewConstMetric(c.writable, prometheus.GaugeValue, w)
	ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(h.FreeBytes))
	ch <- prometheus.MustNewConstMetric(c.minFree, prometheus.GaugeValue, float64(h.MinFreeBytes))
	m := c.log.Memory()
	ch <- prometheus.MustNewConstMetric(c.cache, prometheus.GaugeValue, float64(m.BlockCacheBytes))
	ch <- prometheus.MustNewConstMetric(c.cacheLimit, prometheus.GaugeValue, float64(m.BlockCacheLimitBytes))
	ch <- prometheus.MustNewConstMetric(c.memtables, prometheus.GaugeValue, float64(m.MemTableBytes))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(c.log.QueuedBytes()))
}

// shardCollector reports each shard's retained size and offsets when scraped, so the
// numbers are exact and streams created or deleted at run time appear and disappear.
type shardCollector struct {
	log   *log.Log
	size  *prometheus.Desc
	hwm   *prometheus.Desc
	start *prometheus.Desc
}

func newShardCollector(l *log.Log) *shardCollector {
	labels := []string{"stream", "shard"}
	return &shardCollector{
		log:   l,
		size:  prometheus.NewDesc("mqstreams_log_size_bytes", "Retained record-batch bytes of a stream shard.", labels, nil),
		hwm:   prometheus.NewDesc("mqstreams_log_high_watermark", "Next offset to be written in a stream shard.", labels, nil),
		start: prometheus.NewDesc("mqstreams_log_start_offset", "First retained offset of a stream shard.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *shardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.hwm
	ch <- c.start
}

// Collect implements prometheus.Collector.
func (c *shardCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.log.Streams() {
		for i := int32(0); i < s.Shards(); i++ {
			start, hwm, err := s.Offsets(i)
			if err != nil {
				continue // deleted while we scrape
			}
			shard := strconv.Itoa(int(i))
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size(i)), s.Name(), shard)
			ch <- prometheus.MustNewConstMetric(c.hwm, prometheus.GaugeValue, float64(hwm), s.Name(), shard)
			ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, float64(start), s.Name(), shard)
		}
	}
}

// newRegistry returns a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// groupLagCollector reports every consumer group's committed offset and lag per
// partition at scrape time, as lag checkers such as Burrow compute them.
type groupLagCollector struct {
	lags      func() []kafkawire.GroupLag
	lag       *prometheus.Desc
	committed *prometheus.Desc
}

func newGroupLagCollector(lags func() []kafkawire.GroupLag) *groupLagCollector {
	labels := []string{"group", "topic", "partition"}
	return &groupLagCollector{
		lags:      lags,
		lag:       prometheus.NewDesc("mqstreams_consumer_group_lag", "High watermark minus the group's committed offset.", labels, nil),
		committed: prometheus.NewDesc("mqstreams_consumer_group_committed_offset", "The group's committed offset.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *groupLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.committed
}

// Collect implements prometheus.Collector.
func (c *groupLagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.lags() {
		p := strconv.Itoa(int(l.Partition))
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.Lag), l.Group, l.Topic, p)
		ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, float64(l.Committed), l.Group, l.Topic, p)
	}
}
