package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

func testConfig(t *testing.T, yaml string) Config {
	t.Helper()
	c, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c.DataDir = t.TempDir()
	c.MQTT.Addr, c.Kafka.Addr, c.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	return c
}

func names(defs []mapping.Definition) string {
	var ns []string
	for _, d := range defs {
		ns = append(ns, d.Name)
	}
	return strings.Join(ns, ",")
}

func openTestLog(t *testing.T, dir string) *log.Log {
	t.Helper()
	l, err := openLog(dir, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func openTestCatalog(t *testing.T, l *log.Log) *mapping.Catalog {
	t.Helper()
	c, err := mapping.OpenCatalog(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestApplyStreams(t *testing.T) {
	dir := t.TempDir()
	var logged bytes.Buffer
	lg := zerolog.New(&logged)
	apply := func(c *mapping.Catalog, cfg Config) ([]mapping.Definition, error) {
		err := applyStreams(c, cfg, lg)
		return c.Definitions(), err
	}

	// Empty data dir, no streams key: the embedded default.
	l := openTestLog(t, dir)
	cat := openTestCatalog(t, l)
	defs, err := apply(cat, Config{})
	if err != nil || names(defs) != "mqtt" || defs[0].Filters[0] != "#" || defs[0].Shards != 4 || defs[0].Key != "clientid" {
		t.Fatalf("default: %+v %v", defs, err)
	}

	// A configured stream is added; the stored default is kept (config never deletes).
	c := Config{StreamsSet: true, Streams: []mapping.Definition{{Name: "tele", Filters: []string{"t/#"}, Shards: 2}}}
	if err := c.Streams[0].Validate(); err != nil {
		t.Fatal(err)
	}
	if defs, err = apply(cat, c); err != nil || names(defs) != "mqtt,tele" {
		t.Fatalf("configured: %+v %v", defs, err)
	}

	// Growing shards updates the stored stream, and the change is logged; shrinking is refused.
	c.Streams[0].Shards = 3
	if defs, err = apply(cat, c); err != nil || defs[1].Shards != 3 {
		t.Fatalf("grow: %+v %v", defs, err)
	}
	if !strings.Contains(logged.String(), `"changed":["shards"]`) {
		t.Fatalf("grow not logged: %s", logged.String())
	}
	// Fewer shards than stored (grown at run time): the stored count stays, with a warning.
	c.Streams[0].Shards = 1
	if defs, err = apply(cat, c); err != nil || defs[1].Shards != 3 || !strings.Contains(logged.String(), "cannot shrink") {
		t.Fatalf("shrink: %+v %v", defs, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened without config: stored streams are served, no default is added.
	l = openTestLog(t, dir)
	defer l.Close()
	if defs, err = apply(openTestCatalog(t, l), Config{}); err != nil || names(defs) != "mqtt,tele" || defs[1].Shards != 3 {
		t.Fatalf("reopen: %+v %v", defs, err)
	}

	// streams: [] on an empty log means no streams at all.
	l2 := openTestLog(t, t.TempDir())
	defer l2.Close()
	if defs, err = apply(openTestCatalog(t, l2), Config{StreamsSet: true, Streams: []mapping.Definition{}}); err != nil || len(defs) != 0 {
		t.Fatalf("explicit empty: %+v %v", defs, err)
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir)
	defer l.Close()
	if _, err := openLog(dir, zerolog.Nop(), nil); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServerLifecycle starts the wired server in-process, appends through the log,
// checks the endpoints and shuts down.
func TestServerLifecycle(t *testing.T) {
	c := testConfig(t, "")
	s, err := startServer(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := s.http.Addr().String()
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, httpAddr, p); code != 200 {
			t.Errorf("%s = %d %q", p, code, body)
		}
	}
	st := s.log.Stream("mqtt")
	if st == nil {
		t.Fatal("default stream missing")
	}
	if _, err := st.Append(1, []log.Record{{Key: []byte("k"), Value: []byte("hello")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.log.CommitOffsets("readers", []log.CommittedOffset{{Stream: "mqtt", Shard: 1, Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	code, groups := httpGet(t, httpAddr, "/api/v1/groups")
	wantGroups := `{"data":[{"group":"readers","total_lag":1,"partitions":[{"topic":"mqtt","partition":1,"committed":0,"hwm":1,"lag":1}]}]}`
	if code != 200 || strings.TrimSpace(groups) != wantGroups {
		t.Errorf("/api/v1/groups = %d %s, want %s", code, groups, wantGroups)
	}
	code, metrics := httpGet(t, httpAddr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`mqstreams_consumer_group_lag{group="readers",partition="1",topic="mqtt"} 1`,
		`mqstreams_consumer_group_committed_offset{group="readers",partition="1",topic="mqtt"} 0`,
		`mqstreams_messages_appended_total{stream="mqtt"} 1`,
		`mqstreams_append_latency_seconds_count{stream="mqtt"} 1`,
		`mqstreams_log_high_watermark{shard="1",stream="mqtt"} 1`,
		`mqstreams_log_high_watermark{shard="0",stream="mqtt"} 0`,
		`mqstreams_log_start_offset{shard="1",stream="mqtt"} 0`,
		`mqstreams_log_size_bytes{shard="1",stream="mqtt"}`,
		`mqstreams_fsync_latency_seconds_count`,
		`mqstreams_connections{proto="mqtt"}`,
		`mqstreams_build_info{version="dev"} 1`,
		`mqstreams_storage_block_cache_bytes`,
		`mqstreams_storage_block_cache_limit_bytes 3.3554432e+07`,
		`mqstreams_storage_memtable_bytes`,
		`mqstreams_append_queue_bytes 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		t.Error("HTTP still serving after Close")
	}
	// The data is durable: reopen and find the record.
	l := openTestLog(t, c.DataDir)
	defer l.Close()
	if _, hwm, err := l.Stream("mqtt").Offsets(1); err != nil || hwm != 1 {
		t.Errorf("after reopen: hwm %d, %v", hwm, err)
	}
}

func TestReadyzBeforeReady(t *testing.T) {
	h, err := newHTTPServer("127.0.0.1:0", nil, newRegistry(), nil, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	addr := h.Addr().String()
	if code, _ := httpGet(t, addr, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d", code)
	}
	if code, _ := httpGet(t, addr, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	h.SetReady(true)
	if code, _ := httpGet(t, addr, "/readyz"); code != 200 {
		t.Errorf("/readyz after ready = %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	c := testConfig(t, "")
	first, err := startServer(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	// Same data dir: refused after the HTTP listener was bound, which must be released.
	c2 := c
	c2.HTTP.Addr = "127.0.0.1:0"
	if _, err := startServer(c2, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server: %v", err)
	}
	// Taken MQTT port: refused after the log was opened, which must be closed again.
	c3 := testConfig(t, "")
	c3.MQTT.Addr = first.mqtt.Addr().String()
	if _, err := startServer(c3, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "mqtt listen") {
		t.Fatalf("taken port: %v", err)
	}
	l := openTestLog(t, c3.DataDir) // would fail if the failed start kept it locked
	l.Close()
}

func TestSecurityStartChecks(t *testing.T) {
	tests := []struct {
		name, yaml, kafkaAddr, want string
	}{
		{"missing certificate", "mqtt: {tls: {cert: c.pem, key: k.pem}}\n", "", "mqtt.tls: tls c.pem / k.pem"},
		{"sasl_ssl without tls", "kafka: {security_protocol: sasl_ssl}\n", "", "kafka.tls: security_protocol sasl_ssl needs tls.cert and tls.key"},
		{"open mode on all interfaces", "", "0.0.0.0:0", "kafka.addr: 0.0.0.0:0 is not a loopback address and no user is configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.yaml)
			if tt.kafkaAddr != "" {
				c.Kafka.Addr = tt.kafkaAddr
			}
			_, err := startServer(c, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOpenModeAddrs(t *testing.T) {
	c := DefaultConfig()
	c.MQTT.WSAddr = ":8083"
	if err := openModeAddrs(&c, true, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{c.MQTT.Addr, c.MQTT.WSAddr, c.Kafka.Addr, c.HTTP.Addr} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("open mode binds %s, want loopback", a)
		}
	}
	c = DefaultConfig()
	c.MQTT.Addr = "[::1]:1883"
	if err := openModeAddrs(&c, true, zerolog.Nop()); err != nil || c.MQTT.Addr != "[::1]:1883" {
		t.Errorf("::1 refused or changed: %v %s", err, c.MQTT.Addr)
	}
	c = DefaultConfig()
	c.MQTT.Addr = "0.0.0.0:1883"
	if err := openModeAddrs(&c, false, zerolog.Nop()); err != nil || c.MQTT.Addr != "0.0.0.0:1883" {
		t.Errorf("with users the address must stay: %v %s", err, c.MQTT.Addr)
	}
}

func TestLogMetricsObserver(t *testing.T) {
	m := newLogMetrics()
	m.ObserveAppend("a", 3, 100, time.Millisecond)
	m.ObserveAppend("a", 2, 50, time.Millisecond)
	m.ObserveAppend("b", 1, 7, time.Millisecond)
	m.ObserveSync(time.Millisecond)
	m.ObserveCommit(2, 40)
	value := func(c prometheus.Metric) *dto.Metric {
		var d dto.Metric
		if err := c.Write(&d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	if h := value(m.commitRecords).GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 40 {
		t.Errorf("commit records: %v", h)
	}
	if v := value(m.messages.WithLabelValues("a")).GetCounter().GetValue(); v != 5 {
		t.Errorf("messages a = %v", v)
	}
	if v := value(m.bytes.WithLabelValues("a")).GetCounter().GetValue(); v != 150 {
		t.Errorf("bytes a = %v", v)
	}
	if v := value(m.messages.WithLabelValues("b")).GetCounter().GetValue(); v != 1 {
		t.Errorf("messages b = %v", v)
	}
	if n := value(m.appendLatency.WithLabelValues("a").(prometheus.Metric)).GetHistogram().GetSampleCount(); n != 2 {
		t.Errorf("append latency samples a = %d", n)
	}
	if n := value(m.syncLatency).GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("sync latency samples = %d", n)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	lg, err := newLogger(&buf, "warn", "")
	if err != nil {
		t.Fatal(err)
	}
	lg.Info().Msg("hidden")
	lg.Warn().Str("k", "v").Msg("shown")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["message"] != "shown" || line["k"] != "v" {
		t.Errorf("line = %v", line)
	}
	buf.Reset()
	if lg, err = newLogger(&buf, "info", "console"); err != nil {
		t.Fatal(err)
	}
	lg.Info().Msg("hello")
	if strings.HasPrefix(buf.String(), "{") || !strings.Contains(buf.String(), "hello") {
		t.Errorf("console output %q", buf.String())
	}
	for _, bad := range [][2]string{{"loud", "json"}, {"info", "xml"}, {"", "json"}} {
		if _, err := newLogger(&buf, bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestRunCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || out.String() != "mqstreams dev\n" {
		t.Errorf("version: %d %q", code, out.String())
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Errorf("no args: %d", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Errorf("unknown command: %d", code)
	}
	errOut.Reset()
	if code := run([]string{"serve", "--log-format", "json", "--config", "/nonexistent/x.yaml"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "/nonexistent/x.yaml") || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("missing config: %d %q", code, errOut.String())
	}
	if code := run([]string{"serve", "--bogus"}, &out, &errOut); code != 2 {
		t.Errorf("bad flag: %d", code)
	}
}

// TestAutoCreateWired checks that auto_create reaches the MQTT side: a $stream
// subscription with a filter creates the stream, with the configured shard count.
func TestAutoCreateWired(t *testing.T) {
	c := testConfig(t, "auto_create: {enabled: true, shards: 3}\n")
	s, err := startServer(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = s.Close(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := mqtttest.Dial(ctx, s.mqtt.Addr().String(), mqtttest.Options{ClientID: "auto-sub", Version: 4, CleanStart: true})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cl.Disconnect()
	sa, err := cl.Subscribe(ctx, packets.Properties{}, packets.Subscription{Filter: "$stream/auto/plant/#", Qos: 1})
	if err != nil || sa.ReasonCodes[0] != 1 {
		t.Fatalf("suback %v %v", sa.ReasonCodes, err)
	}
	st := s.log.Stream("auto")
	if st == nil || st.Shards() != 3 {
		t.Fatalf("auto-created stream: %v", st)
	}
}

// TestHTTPTimeouts: /readyz gives the health reason, and a keep-alive connection left
// idle is closed at http.idle_timeout_ms and counted.
func TestHTTPTimeouts(t *testing.T) {
	reg := newRegistry()
	h, err := newHTTPServer("127.0.0.1:0", nil, reg, nil, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.setTimeouts(5*time.Second, 200*time.Millisecond, reg)
	h.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = h.Shutdown(ctx)
	}()
	h.SetReady(true)
	h.SetHealth(func() (bool, string) { return false, "disk full: test" })
	addr := h.Addr().String()
	if code, body := httpGet(t, addr, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk full: test") {
		t.Errorf("/readyz while unhealthy = %d %q", code, body)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The response, then EOF once the idle timeout closes the connection.
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("keep-alive connection not closed when idle: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mfs, _ := reg.Gather()
		found := false
		for _, mf := range mfs {
			if mf.GetName() == "mqstreams_connections_refused_total" {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle timeout not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExplicitRefusalIsNotDemoMode: allow_anonymous: false with no user is a locked
// server, not the open demo mode, so it may listen beyond loopback.
func TestExplicitRefusalIsNotDemoMode(t *testing.T) {
	c := testConfig(t, "auth: {allow_anonymous: false}\n")
	c.MQTT.Addr = "0.0.0.0:0"
	s, err := startServer(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if s.auth.Open() {
		t.Fatal("store in demo mode although anonymous clients were refused")
	}
}
