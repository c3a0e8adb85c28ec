package compattests

// Kafka clients outside Go, driven through the scripts in clients/ (confluent-kafka and
// kafka-python under Python, kafkajs under Node.js), each printing JSON lines.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestKafkaPythonClients(t *testing.T) {
	t.Parallel()
	confluent := pythonScript(t, "confluent_kafka", "confluent_client.py")
	kafkaPython := pythonScript(t, "kafka", "kafkapython_client.py")
	fx := startKafkaFixture(t, "confluent", "kafkapython")
	t.Run("confluent", func(t *testing.T) {
		t.Parallel()
		requireLibrdkafkaMsgVer2(t, fx.srv.KafkaAddr)
		runKafkaClient(t, fx, "confluent", scriptClient{argv: confluent, addr: fx.srv.KafkaAddr})
		t.Run("by-time-future", func(t *testing.T) { checkFutureOffsets(t, fx, scriptClient{argv: confluent, addr: fx.srv.KafkaAddr}) })
	})
	t.Run("kafkapython", func(t *testing.T) {
		t.Parallel()
		runKafkaClient(t, fx, "kafkapython", scriptClient{argv: kafkaPython, addr: fx.srv.KafkaAddr})
		t.Run("by-time-future", func(t *testing.T) { checkFutureOffsets(t, fx, scriptClient{argv: kafkaPython, addr: fx.srv.KafkaAddr}) })
	})
}

// checkFutureOffsets: a timestamp newer than every record resolves to offset -1 on every
// partition, as Kafka answers (kafka-python returns None, printed as -1; confluent-kafka
// returns OFFSET_END, -1), and nothing is replayed from it.
func checkFutureOffsets(t *testing.T, fx *kafkaFixture, c scriptClient) {
	ms := time.Now().Add(time.Hour).UnixMilli()
	offsets, recs := c.ByTime(t, Deadline(t, 60*time.Second), kafkaTopic, ms)
	if len(offsets) != kafkaPartitions {
		t.Fatalf("offsets for %d: %v, want all %d partitions", ms, offsets, kafkaPartitions)
	}
	for p, o := range offsets {
		if o != -1 {
			t.Errorf("partition %d: offset %d for a time after every record, want -1", p, o)
		}
	}
	if len(recs) != 0 {
		t.Errorf("replayed %d records from a time after every record", len(recs))
	}
}

func TestKafkaJS(t *testing.T) {
	t.Parallel()
	node := NeedTool(t, "node")
	if _, err := os.Stat(filepath.Join("node_modules", "kafkajs", "package.json")); err != nil {
		t.Fatalf("kafkajs is not installed in compat-tests/node_modules: run ./compat-tests/install-deps.sh (make test-deps): %v", err)
	}
	fx := startKafkaFixture(t, "kafkajs")
	runKafkaClient(t, fx, "kafkajs", scriptClient{argv: []string{node, filepath.Join("clients", "kafkajs_client.js")}, addr: fx.srv.KafkaAddr})
}

// pythonScript returns the command line running script with the harness's Python
// (the Debian interpreter the packages install into), failing when it cannot import
// module.
func pythonScript(t *testing.T, module, script string) []string {
	t.Helper()
	py := Python(t)
	if out, err := exec.Command(py, "-c", "import "+module).CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import %s: run ./compat-tests/install-deps.sh (make test-deps): %v\n%s", py, module, err, out)
	}
	return []string{py, filepath.Join("clients", script)}
}

// scriptClient runs a client script: argv BOOTSTRAP MODE [TOPIC [MS]].
type scriptClient struct {
	argv []string
	addr string
}

// scriptLine is one JSON line a script prints.
type scriptLine struct {
	Type      string           `json:"type"`
	Topics    map[string]int   `json:"topics"`
	Offsets   map[string]int64 `json:"offsets"`
	Partition int32            `json:"partition"`
	Offset    int64            `json:"offset"`
	Timestamp int64            `json:"timestamp"`
	Key       *string          `json:"key"`
	Value     *string          `json:"value"`
	Headers   [][2]*string     `json:"headers"`
	RecvMs    int64            `json:"recv_ms"`
}

func (l scriptLine) record(t *testing.T) kafkaRecord {
	t.Helper()
	r := kafkaRecord{Partition: l.Partition, Offset: l.Offset, Timestamp: l.Timestamp, Key: hexOrNil(t, l.Key), Value: hexOrNil(t, l.Value)}
	for _, h := range l.Headers {
		if h[0] == nil {
			t.Fatalf("header without a name: %v", h)
		}
		r.Headers = append(r.Headers, kafkaHeader{*h[0], hexOrNil(t, h[1])})
	}
	return r
}

// run runs the script to completion and returns its lines; onLine, when set, sees each
// line as it is printed.
func (s scriptClient) run(t *testing.T, ctx context.Context, onLine func(scriptLine), args ...string) []scriptLine {
	t.Helper()
	argv := append(append(append([]string{}, s.argv...), s.addr), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	var lines []scriptLine
	var raw bytes.Buffer
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		raw.Write(sc.Bytes())
		raw.WriteByte('\n')
		var l scriptLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("%s: bad output line %q: %v", filepath.Base(argv[1]), sc.Text(), err)
			continue
		}
		if onLine != nil {
			onLine(l)
		}
		lines = append(lines, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %v (context: %v)\nstderr:\n%s\nstdout:\n%s", argv[1:], err, ctx.Err(), stderr.String(), raw.String())
	}
	return lines
}

func (s scriptClient) Metadata(t *testing.T, ctx context.Context) map[string]int {
	for _, l := range s.run(t, ctx, nil, "metadata") {
		if l.Type == "metadata" {
			return l.Topics
		}
	}
	t.Fatal("script printed no metadata")
	return nil
}

func (s scriptClient) records(t *testing.T, lines []scriptLine) []kafkaRecord {
	t.Helper()
	var out []kafkaRecord
	for _, l := range lines {
		if l.Type == "record" {
			out = append(out, l.record(t))
		}
	}
	return out
}

func (s scriptClient) Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord {
	return s.records(t, s.run(t, ctx, nil, "earliest", topic))
}

func (s scriptClient) ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord) {
	lines := s.run(t, ctx, nil, "time", topic, strconv.FormatInt(ms, 10))
	offsets := map[int32]int64{}
	for _, l := range lines {
		if l.Type == "offsets" {
			for p, o := range l.Offsets {
				n, err := strconv.ParseInt(p, 10, 32)
				if err != nil {
					t.Fatalf("bad partition %q", p)
				}
				offsets[int32(n)] = o
			}
		}
	}
	return offsets, s.records(t, lines)
}

func (s scriptClient) Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time) {
	var (
		wg     sync.WaitGroup
		once   sync.Once
		recv   kafkaRecord
		recvAt time.Time
		got    bool
	)
	s.run(t, ctx, func(l scriptLine) {
		switch l.Type {
		case "ready":
			// Publish beside the reader, so the script's output keeps flowing.
			once.Do(func() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					publish()
				}()
			})
		case "record":
			if !got {
				got = true
				recv, recvAt = l.record(t), time.UnixMilli(l.RecvMs)
			}
		}
	}, "latest", topic)
	wg.Wait()
	if !got {
		t.Fatal("script exited without a record")
	}
	return recv, recvAt
}
