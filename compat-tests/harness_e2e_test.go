package compattests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kgo"
)

// record is what the end-to-end test compares: what a Kafka consumer sees.
type record struct {
	key, value, topic string
}

// consume reads topic from the start until want records arrived or the deadline passed.
func consume(t *testing.T, kafkaAddr, topic string, want int) []record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(kafkaAddr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := Deadline(t, startTimeout)
	var got []record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records from %s before the deadline: %v", len(got), want, topic, got)
		}
		for _, e := range fs.Errors() {
			t.Logf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			rec := record{key: string(r.Key), value: string(r.Value)}
			for _, h := range r.Headers {
				if h.Key == "mqtt.topic" {
					rec.topic = string(h.Value)
				}
			}
			got = append(got, rec)
		})
	}
	sort.Slice(got, func(i, j int) bool { return got[i].value < got[j].value })
	return got
}

func publishPaho(t *testing.T, addr, clientID, topic, payload string) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetConnectTimeout(startTimeout).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(250)
	// QoS 1: the PUBACK comes only once the record is durable in the stream.
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		t.Fatalf("paho publish: %v", tok.Error())
	}
}

func publishMosquitto(t *testing.T, addr, clientID, topic, payload string) {
	t.Helper()
	NeedTool(t, "mosquitto_pub")
	host, port := SplitAddr(t, addr)
	cmd := exec.CommandContext(Deadline(t, startTimeout), "mosquitto_pub",
		"-h", host, "-p", port, "-i", clientID, "-q", "1", "-t", topic, "-m", payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
}

// metricValue sums the samples of a metric whose labels contain every given label pair.
func metricValue(t *testing.T, metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// TestEndToEnd: the README's first session, with mosquitto_pub and paho publishing
// into the embedded default stream and franz-go reading it back over the Kafka port,
// before and after a restart.
func TestEndToEnd(t *testing.T) {
	srv := StartServer(t, ServerOptions{})

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := srv.HTTPGet(t, path); code != 200 {
			t.Errorf("GET %s = %d %q, want 200", path, code, body)
		}
	}

	publishMosquitto(t, srv.MQTTAddr, "mosq-e2e", "a/b", "hi")
	publishPaho(t, srv.MQTTAddr, "paho-e2e", "sensors/1/temp", "hello")
	want := []record{
		{key: "mosq-e2e", value: "hi", topic: "a/b"},
		{key: "paho-e2e", value: "hello", topic: "sensors/1/temp"},
	}
	sort.Slice(want, func(i, j int) bool { return want[i].value < want[j].value })
	check := func(got []record) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("got %d records %v, want %v", len(got), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	}
	check(consume(t, srv.KafkaAddr, "mqtt", len(want)))

	code, metrics := srv.HTTPGet(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mqstreams_messages_appended_total", []string{`stream="mqtt"`}, 2},
		{"mqstreams_bytes_appended_total", []string{`stream="mqtt"`}, -1},
		{"mqstreams_append_latency_seconds_count", []string{`stream="mqtt"`}, 2},
		{"mqstreams_fsync_latency_seconds_count", nil, -1},
		{"mqstreams_log_high_watermark", []string{`stream="mqtt"`}, 2},
		{"mqstreams_log_size_bytes", []string{`stream="mqtt"`}, -1},
		{"mqstreams_build_info", []string{`version="` + testVersion + `"`}, 1},
		{"mqstreams_kafka_requests_total", []string{`api="Fetch"`}, -1},
		{"mqstreams_kafka_request_duration_seconds_count", []string{`api="Metadata"`}, -1},
		{"mqstreams_received_bytes_total", []string{`proto="mqtt"`}, -1},
		{"mqstreams_received_bytes_total", []string{`proto="kafka"`}, -1},
		{"mqstreams_sent_bytes_total", []string{`proto="mqtt"`}, -1},
		{"mqstreams_sent_bytes_total", []string{`proto="kafka"`}, -1},
		{"mqstreams_mqtt_publishes_unmatched_total", nil, 0}, // the default stream takes "#"
		{"go_goroutines", nil, -1},
		{"process_resident_memory_bytes", nil, -1},
	} {
		v, ok := metricValue(t, metrics, m.name, m.labels...)
		switch {
		case !ok:
			t.Errorf("metric %s%v missing from /metrics", m.name, m.labels)
		case m.want >= 0 && v != m.want:
			t.Errorf("metric %s%v = %v, want %v", m.name, m.labels, v, m.want)
		case m.want < 0 && v <= 0:
			t.Errorf("metric %s%v = %v, want > 0", m.name, m.labels, v)
		}
	}
	if n := strings.Count(metrics, "mqstreams_log_high_watermark{"); n != 4 {
		t.Errorf("%d high-watermark series, want one per shard of the default stream (4)", n)
	}

	srv.Restart(t)
	check(consume(t, srv.KafkaAddr, "mqtt", len(want)))
}

// TestShutdownOnSIGTERM: SIGTERM stops the server with exit code 0 and a final log line.
func TestShutdownOnSIGTERM(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	publishPaho(t, srv.MQTTAddr, "before-stop", "x", "y")
	srv.Stop(t) // fails unless exit 0
	if !strings.Contains(srv.Logs(), `"message":"stopped"`) {
		t.Errorf("no \"stopped\" log line:\n%s", srv.Logs())
	}
}

// TestConfigErrors: a bad config stops start-up with one line naming the field and a
// non-zero exit code, and never binds a port.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, config string
		want         *regexp.Regexp
	}{
		{"duplicate stream", "streams:\n  - {name: telemetry, filter: \"a/#\"}\n  - {name: telemetry, filter: \"b/#\"}\n",
			regexp.MustCompile(`bad\.yaml:3: streams\[1\]\.name: duplicate stream name \\"telemetry\\" \(also streams\[0\]\)`)},
		{"unknown field", "mqtt:\n  addr: \":1883\"\n  foo: 1\n", regexp.MustCompile(`bad\.yaml:3: mqtt\.foo: unknown field \(known: addr, `)},
		{"unknown stream field", "streams:\n  - name: s\n    filter: a\n    retention:\n      max_size: 1GiB\n",
			regexp.MustCompile(`bad\.yaml:5: streams\[0\]\.retention\.max_size: unknown field \(known: max_age, max_bytes, max_messages\) \(in \\"s\\"\)`)},
		{"bad duration", "streams:\n  - {name: s, filter: \"a\", retention: {max_age: soon}}\n",
			regexp.MustCompile(`bad\.yaml:2: streams\[0\]\.retention\.max_age: invalid duration \\"soon\\"`)},
		{"negative size", "streams:\n  - name: s\n    filter: a\n    retention:\n      max_bytes: -1\n",
			regexp.MustCompile(`bad\.yaml:5: streams\[0\]\.retention\.max_bytes: must not be negative`)},
		{"invalid filter", "streams:\n  - {name: s, filter: \"a/#/b\"}\n", regexp.MustCompile(`bad\.yaml:2: streams\[0\]\.filter: \\"a/#/b\\": '#' must be the last level`)},
		{"wrong type", "mqtt:\n  receive_maximum: lots\n", regexp.MustCompile(`bad\.yaml:2: mqtt\.receive_maximum: expected a whole number, got \\"lots\\"`)},
		{"bad password hash", "auth: {users: [{username: u, password_hash: h}]}\n", regexp.MustCompile(`bad\.yaml:1: auth\.users\[0\]\.password_hash: not a password hash`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(file, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := RunBinary(t, startTimeout, "serve", "--config", file, "--data-dir", filepath.Join(dir, "data"),
				"--mqtt-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json")
			if code == 0 {
				t.Fatalf("exit code 0 for a bad config; output:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 {
				t.Errorf("want one line, got %d:\n%s", len(lines), out)
			}
			if !tt.want.MatchString(out) {
				t.Errorf("output %q does not match %s", out, tt.want)
			}
			if strings.Contains(out, `"message":"ready"`) {
				t.Errorf("server became ready with a bad config")
			}
		})
	}
}

// TestDataDirInUse: a second server on the same data dir is refused with a clear message
// while the first keeps running.
func TestDataDirInUse(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	out, code := RunBinary(t, startTimeout, "serve", "--data-dir", srv.DataDir,
		"--mqtt-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json")
	if code == 0 || !strings.Contains(out, "in use by another process") {
		t.Errorf("second server on %s: exit %d, output:\n%s", srv.DataDir, code, out)
	}
	if code, _ := srv.HTTPGet(t, "/readyz"); code != 200 {
		t.Errorf("first server /readyz = %d after the refused start", code)
	}
	srv.Stop(t)
}

// TestVersion: the version stamped with -ldflags is printed.
func TestVersion(t *testing.T) {
	out, code := RunBinary(t, startTimeout, "version")
	if code != 0 || strings.TrimSpace(out) != "mqstreams "+testVersion {
		t.Errorf("version: exit %d, output %q", code, out)
	}
}

// TestRestartSamePorts: a restart can keep the addresses clients know.
func TestRestartSamePorts(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	before := [3]string{srv.MQTTAddr, srv.KafkaAddr, srv.HTTPAddr}
	srv.RestartSamePorts(t)
	if after := [3]string{srv.MQTTAddr, srv.KafkaAddr, srv.HTTPAddr}; after != before {
		t.Errorf("addresses changed: %v -> %v", before, after)
	}
	publishPaho(t, srv.MQTTAddr, "after-restart", "t", "v")
	if got := consume(t, srv.KafkaAddr, "mqtt", 1); got[0].value != "v" {
		t.Errorf("got %+v", got)
	}
}

// TestShutdownKeepsAcked: SIGTERM while a QoS 1 publisher is busy; after a restart every
// publish that got its PUBACK is in the stream, in order.
func TestShutdownKeepsAcked(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	opts := paho.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID("busy").
		SetConnectTimeout(startTimeout).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	var acked atomic.Int64
	enough := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			tok := c.Publish("busy/t", 1, false, fmt.Sprintf("m-%06d", i))
			if !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
				return // the server went away: this one may or may not be stored
			}
			if acked.Add(1) == 20 {
				close(enough)
			}
		}
	}()
	select {
	case <-enough:
	case <-done:
		t.Fatalf("publisher stopped after %d acks", acked.Load())
	}
	srv.Stop(t)
	<-done
	c.Disconnect(0)
	n := int(acked.Load())
	t.Logf("%d publishes acknowledged before shutdown", n)

	srv.Restart(t)
	got := consume(t, srv.KafkaAddr, "mqtt", n)
	for i := 0; i < n; i++ {
		if want := fmt.Sprintf("m-%06d", i); got[i].value != want {
			t.Fatalf("record %d = %q, want %q (acknowledged publish lost or reordered)", i, got[i].value, want)
		}
	}
}
