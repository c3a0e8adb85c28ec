package main

import "time"

// Results is bench/results.json: everything one run measured.
type Results struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Mode     string    `json:"mode"` // "full" or "quick"
	Command  string    `json:"command"`
	Machine  Machine   `json:"machine"`
	Versions Versions  `json:"versions"`
	// Durability lists the mqstreams durability modes measured; "write" appears only
	// when the binary accepts `durability: write`.
	Durability []string `json:"durability"`
	Notes      []string `json:"notes,omitempty"`
	// RSSLimitMB is the resident memory at which a load run was stopped.
	RSSLimitMB float64          `json:"rss_limit_mb"`
	Ingest     []IngestResult   `json:"ingest"`
	PubLines   []PubLinesResult `json:"mosquitto_pub_lines,omitempty"`
	Replay     []ReplayResult   `json:"replay"`
	E2E        []LatencyResult  `json:"e2e"`
	// E2EServer are mqstreams' own append and fsync histograms over each e2e rate.
	E2EServer []LatencyResult  `json:"e2e_server,omitempty"`
	Lookup    []LookupResult   `json:"time_lookup"`
	Footprint *FootprintResult `json:"footprint,omitempty"`
	Streams   []StreamsResult  `json:"streams,omitempty"`
	// Compression is bytes at rest and replay speed per stored-batch compression.
	Compression []CompressionResult `json:"compression,omitempty"`
	// Cluster is one-shard ingest through three nodes against one (issue 13).
	Cluster []ClusterIngestResult `json:"cluster_ingest,omitempty"`
	RSS     []RSSSample           `json:"rss_samples,omitempty"`
	// Profile is perf\'s view of mqstreams over the one-publisher QoS 1 cell.
	Profile *Profile          `json:"profile,omitempty"`
	Errors  []string          `json:"errors,omitempty"`
	Extra   map[string]string `json:"extra,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU          string `json:"cpu"`
	Cores        int    `json:"cores"`
	Kernel       string `json:"kernel"`
	MemMB        int    `json:"mem_mb"`
	LoadStart    string `json:"load_start"`
	LoadEnd      string `json:"load_end"`
	Filesystem   string `json:"filesystem"`
	OtherProcCPU string `json:"other_cpu,omitempty"`
}

// Versions of everything compared.
type Versions struct {
	MQStreams string `json:"mqstreams"`
	Mosquitto string `json:"mosquitto"`
	Mochi     string `json:"mochi"`
	FranzGo   string `json:"franz_go"`
	Kfake     string `json:"kfake"`
	Kcat      string `json:"kcat"`
	Go        string `json:"go"`
}

// IngestResult is one load-generator run against one broker.
type IngestResult struct {
	Broker     string  `json:"broker"`
	QoS        int     `json:"qos"`
	Publishers int     `json:"publishers"`
	Payload    int     `json:"payload"`
	InFlight   int     `json:"inflight"`
	Messages   int64   `json:"messages"`
	Seconds    float64 `json:"seconds"`
	MsgPerSec  float64 `json:"msg_per_sec"`
	P50us      float64 `json:"ack_p50_us,omitempty"`
	P99us      float64 `json:"ack_p99_us,omitempty"`
	P999us     float64 `json:"ack_p999_us,omitempty"`
	// RecordsPerFsync and FsyncMeanUs come from mqstreams' /metrics over the cell.
	RecordsPerFsync float64 `json:"records_per_fsync,omitempty"`
	FsyncMeanUs     float64 `json:"fsync_mean_us,omitempty"`
	// StoredPerSec is, for mqstreams at QoS 0, the records stored per second from the
	// start of the load until its backlog was written.
	StoredPerSec float64 `json:"stored_per_sec,omitempty"`
	// BrokerCPU and GenCPU are the CPU used by the broker and by the load generator
	// over the load, in percent of one core.
	BrokerCPU float64 `json:"broker_cpu_pct"`
	GenCPU    float64 `json:"generator_cpu_pct"`
	Error     string  `json:"error,omitempty"`
}

// PubLinesResult is one `mosquitto_pub -l` run (issue 10's measure).
type PubLinesResult struct {
	Broker   string  `json:"broker"`
	Messages int     `json:"messages"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
}

// ReplayResult is one Kafka replay of the seeded records.
type ReplayResult struct {
	Client     string    `json:"client"`
	Broker     string    `json:"broker"`
	Records    int64     `json:"records"`
	Seconds    float64   `json:"seconds"`
	RecPerSec  float64   `json:"records_per_sec"`
	MBPerSec   float64   `json:"mb_per_sec"`
	Runs       int       `json:"runs"`
	AllRecPerS []float64 `json:"all_records_per_sec,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// LatencyResult is an end-to-end latency distribution.
type LatencyResult struct {
	Path   string       `json:"path"`
	Rate   int          `json:"rate"`
	Count  uint64       `json:"count"`
	Sent   int64        `json:"sent"`
	P50us  float64      `json:"p50_us"`
	P99us  float64      `json:"p99_us"`
	P999us float64      `json:"p999_us"`
	MaxUs  float64      `json:"max_us"`
	CDF    [][2]float64 `json:"cdf_us,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// LookupResult is ListOffsets-by-time latency at one partition size.
type LookupResult struct {
	Records int64   `json:"records_per_partition"`
	Lookups int     `json:"lookups"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	P999us  float64 `json:"p999_us"`
	MaxUs   float64 `json:"max_us"`
	Error   string  `json:"error,omitempty"`
}

// FootprintResult is memory and disk use.
type FootprintResult struct {
	RSSIdleMB        float64 `json:"rss_idle_mb"`
	RSSLoadMaxMB     float64 `json:"rss_under_qos1_load_max_mb"`
	RSSQoS0MaxMB     float64 `json:"rss_under_qos0_load_max_mb"`
	MosquittoMaxMB   float64 `json:"mosquitto_rss_max_mb"`
	MochiMaxMB       float64 `json:"mochi_rss_max_mb"`
	StoredRecords    int64   `json:"stored_records"`
	PayloadBytes     int     `json:"payload_bytes"`
	DiskBytes        int64   `json:"disk_bytes"`
	BytesPerRecord   float64 `json:"disk_bytes_per_record"`
	StartupSeconds   float64 `json:"startup_seconds"`
	StartupRecords   int64   `json:"startup_stored_records"`
	StartupDiskBytes int64   `json:"startup_disk_bytes"`
	// The stored section: an empty server, then one filled with large values by Kafka
	// Produce and restarted.
	RSSEmptyMB float64 `json:"rss_empty_mb,omitempty"`
	// RSSSmallIdleMB is the idle RSS after a restart with the replay section's data.
	RSSSmallIdleMB       float64 `json:"rss_small_idle_mb,omitempty"`
	RSSFillMaxMB         float64 `json:"rss_fill_max_mb,omitempty"`
	StoredValueBytes     int64   `json:"stored_value_bytes,omitempty"`
	StoredBytesDisk      int64   `json:"stored_disk_bytes,omitempty"`
	StoredStartupSeconds float64 `json:"stored_startup_seconds,omitempty"`
	RSSStoredIdleMB      float64 `json:"rss_stored_idle_mb,omitempty"`
}

// RSSSample is one reading of a broker's resident memory.
type RSSSample struct {
	Broker  string  `json:"broker"`
	Seconds float64 `json:"t"`
	MB      float64 `json:"mb"`
	Phase   string  `json:"phase"`
}

// StreamsResult is the cost of one number of streams.
type StreamsResult struct {
	Streams           int     `json:"streams"`
	FirstStartSeconds float64 `json:"first_start_seconds"`
	RestartSeconds    float64 `json:"restart_seconds"`
	RSSIdleMB         float64 `json:"rss_idle_mb"`
	MsgPerSec         float64 `json:"qos1_16pub_msg_per_sec"`
	P99us             float64 `json:"ack_p99_us"`
	Error             string  `json:"error,omitempty"`
}

// CompressionResult is one stored-batch compression setting.
type CompressionResult struct {
	Codec           string  `json:"codec"`
	Records         int64   `json:"records"`
	ValueBytes      int64   `json:"value_bytes"`
	DiskBytes       int64   `json:"disk_bytes"`
	BytesPerRecord  float64 `json:"disk_bytes_per_record"`
	ReplayRecPerSec float64 `json:"franz_go_replay_records_per_sec"`
	ReplayMBPerSec  float64 `json:"franz_go_replay_mb_per_sec"`
	Error           string  `json:"error,omitempty"`
}
