package compattests

// Group consumers of every client resume after a server restart with exactly the
// records published while they were away (see groups_fixture_test.go). Each client has
// its own server, so the clients run in parallel.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGroupsResume(t *testing.T) {
	t.Parallel()
	kcat := NeedTool(t, "kcat")
	node := NeedTool(t, "node")
	if _, err := os.Stat(filepath.Join("node_modules", "kafkajs", "package.json")); err != nil {
		t.Fatalf("kafkajs is not installed in compat-tests/node_modules: run ./compat-tests/install-deps.sh (make test-deps): %v", err)
	}
	confluent := pythonScript(t, "confluent_kafka", "confluent_group.py")
	kafkaPython := pythonScript(t, "kafka", "kafkapython_group.py")
	cases := []groupResumeCase{
		{name: "franz", c: franzGroup{}, like: franzClient{}},
		{name: "sarama", c: saramaGroup{}, like: saramaClient{}, kill: true},
		{name: "kafkago", c: kafkaGoGroup{}, like: kafkaGoClient{}},
		{name: "confluent", c: scriptGroup{argv: confluent}, like: scriptClient{}, librdkafka: true},
		{name: "kafkapython", c: scriptGroup{argv: kafkaPython}, like: scriptClient{}, kill: true},
		{name: "kafkajs", c: scriptGroup{argv: []string{node, filepath.Join("clients", "kafkajs_group.js")}}, like: scriptClient{}},
		{name: "kcat", c: kcatGroup{bin: kcat}, like: kcatClient{}, librdkafka: true},
	}
	for _, gc := range cases {
		t.Run(gc.name, func(t *testing.T) {
			t.Parallel()
			runGroupResume(t, gc)
		})
	}
}

// franzGroup is a franz-go group consumer committing explicitly before it leaves.
type franzGroup struct{}

func (franzGroup) Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID("compat-franz-group"),
		kgo.ConsumerGroup(r.Group), kgo.ConsumeTopics(r.Topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close() // leaves the group
	var out []kafkaRecord
	for len(out) < r.Want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go group %s: read %d of %d records: %v", r.Group, len(out), r.Want, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("franz-go fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(rec *kgo.Record) { out = append(out, franzRecord(rec)) })
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("franz-go commit: %v", err)
	}
	return out
}

// saramaGroup is a sarama ConsumerGroup marking each message; its offset manager
// commits them (automatically, and when the session ends).
type saramaGroup struct{}

type saramaGroupHandler struct {
	mu   sync.Mutex
	out  []kafkaRecord
	want int
	done context.CancelFunc
}

func (h *saramaGroupHandler) Setup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaGroupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit()
	return nil
}

func (h *saramaGroupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(m, "")
			h.mu.Lock()
			h.out = append(h.out, saramaRecord(m))
			if len(h.out) >= h.want {
				h.done()
			}
			h.mu.Unlock()
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (saramaGroup) Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord {
	cfg := sarama.NewConfig()
	cfg.ClientID = "compat-sarama-group"
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup([]string{addr}, r.Group, cfg)
	if err != nil {
		t.Fatalf("sarama consumer group: %v", err)
	}
	readCtx, done := context.WithCancel(ctx)
	defer done()
	h := &saramaGroupHandler{want: r.Want, done: done}
	consumed := make(chan error, 1)
	go func() {
		// Consume returns at each rebalance; it is called again until the read is done.
		for readCtx.Err() == nil {
			if err := cg.Consume(readCtx, []string{r.Topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	var errs []error
	for waiting := true; waiting; {
		select {
		case err := <-cg.Errors():
			errs = append(errs, err)
		case err := <-consumed:
			if err != nil {
				errs = append(errs, err)
			}
			waiting = false
		}
	}
	if err := cg.Close(); err != nil { // leaves the group
		t.Errorf("sarama close: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ctx.Err() != nil || len(errs) > 0 {
		t.Fatalf("sarama group %s: read %d of %d records (context: %v), errors %v", r.Group, len(h.out), r.Want, ctx.Err(), errs)
	}
	return h.out
}

// kafkaGoGroup is a segmentio/kafka-go Reader with a GroupID; ReadMessage commits each
// message synchronously (CommitInterval 0).
type kafkaGoGroup struct{}

func (kafkaGoGroup) Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord {
	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, GroupID: r.Group, Topic: r.Topic,
		StartOffset: kafkago.FirstOffset, MaxWait: 250 * time.Millisecond, MaxBytes: 1 << 20,
		HeartbeatInterval: time.Second})
	var out []kafkaRecord
	for len(out) < r.Want {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			_ = rd.Close()
			t.Fatalf("kafka-go group %s: read %d of %d records: %v", r.Group, len(out), r.Want, err)
		}
		out = append(out, kafkaGoRecord(m))
	}
	if err := rd.Close(); err != nil { // leaves the group
		t.Errorf("kafka-go reader close: %v", err)
	}
	return out
}

// scriptGroup runs a client script: argv BOOTSTRAP consume GROUP TOPIC N.
type scriptGroup struct{ argv []string }

func (s scriptGroup) Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord {
	sc := scriptClient{argv: s.argv, addr: addr}
	return sc.records(t, sc.run(t, ctx, nil, "consume", r.Group, r.Topic, strconv.Itoa(r.Want)))
}

// kcatGroup is kcat's balanced consumer (-G). It has no exit-at-end mode, so it runs
// until it printed the records and the group's committed offsets reached the high
// watermarks, and is then stopped with SIGTERM, on which it closes the consumer and
// leaves the group. The auto-commit runs every 5 s: kcat 1.7 hands
// -X auto.commit.interval.ms (and -F files) to the legacy topic property of that name,
// so librdkafka's global interval cannot be shortened from the command line.
type kcatGroup struct{ bin string }

func (k kcatGroup) Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord {
	cmd := exec.CommandContext(ctx, k.bin, "-b", addr, "-G", r.Group, "-u", "-f", kcatFormat,
		"-X", "enable.auto.commit=true", "-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=500", r.Topic)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	var out []kafkaRecord
	sc := bufio.NewScanner(stdout)
	for len(out) < r.Want && sc.Scan() {
		out = append(out, parseKcatRecord(t, sc.Text()))
	}
	if len(out) < r.Want {
		stop()
		t.Fatalf("kcat -G %s: read %d of %d records (context: %v)\nstderr:\n%s", r.Group, len(out), r.Want, ctx.Err(), stderr.String())
	}
	waitCommitted(t, ctx, addr, r.Group, r.Ends)
	// Anything kcat prints until it exits is a record too many.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM kcat: %v", err)
	}
	for sc.Scan() {
		out = append(out, parseKcatRecord(t, sc.Text()))
	}
	if err := cmd.Wait(); err != nil && ctx.Err() != nil {
		t.Fatalf("kcat -G did not exit on SIGTERM: %v\nstderr:\n%s", err, stderr.String())
	}
	return out
}
