package compattests

// Kafka transactions (issue 11) with real clients: a confluent-kafka-python
// (librdkafka) transactional producer commits and aborts; read_committed consumers
// (kcat, confluent-kafka-python, franz-go) see only the committed records,
// read_uncommitted ones all; live MQTT subscribers get the committed records only.

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runJSON runs argv and returns its JSON output lines of the given type.
func runJSON(t *testing.T, ctx context.Context, typ string, argv ...string) []map[string]any {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%v: %v\n%s%s", argv[1:], err, out, stderr)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: bad output line %q", argv[1:], l)
		}
		if m["type"] == typ {
			lines = append(lines, m)
		}
	}
	return lines
}

// franzValues reads partition 0 of topic with franz-go to the end offset for the
// isolation level and returns the values.
func franzValues(t *testing.T, ctx context.Context, addr, topic string, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go %s: got %v before the deadline", topic, out)
		}
		end := false
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				out = append(out, string(r.Value))
			}
			stop := p.HighWatermark
			if committed {
				stop = p.LastStableOffset
			}
			if len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset >= stop-2 {
				end = true // the rest up to stop is at most a marker
			}
		})
		if end {
			return out
		}
	}
}

func TestKafkaTransactionsClients(t *testing.T) {
	confluent := pythonScript(t, "confluent_kafka", "confluent_txn.py")
	kcat := NeedTool(t, "kcat")
	srv := StartServer(t, ServerOptions{Config: `streams:
  - {name: txn, filter: "txn-in/#", shards: 1}
`})
	ctx := Deadline(t, 3*startTimeout)
	live := startLiveSub(t, srv.MQTTAddr, 3, "-q", "1", "-t", "txn/#")
	if l := runJSON(t, ctx, "done", append(confluent, srv.KafkaAddr, "produce", "txn", "compat-txn")...); len(l) != 1 {
		t.Fatal("confluent producer did not finish")
	}
	// Delivery to MQTT happens at commit: c1, c2, then c3; never the aborted a1, a2.
	var topics []string
	for _, m := range live.wait(t) {
		f := strings.Split(m, "|")
		topics = append(topics, f[1]+"="+f[len(f)-1])
	}
	if got := strings.Join(topics, ","); got != "txn/c1=c1,txn/c2=c2,txn/c3=c3" {
		t.Fatalf("mosquitto_sub got %s", got)
	}

	// $stream replay from the start: the committed records only, no marker.
	replay := startLiveSub(t, srv.MQTTAddr, 3, "-q", "1", "-t", "$stream/txn", "-D", "subscribe", "user-property", "stream-offset", "earliest")
	topics = topics[:0]
	for _, m := range replay.wait(t) {
		f := strings.Split(m, "|")
		topics = append(topics, f[1]+"="+f[len(f)-1])
	}
	if got := strings.Join(topics, ","); got != "txn/c1=c1,txn/c2=c2,txn/c3=c3" {
		t.Fatalf("$stream replay got %s", got)
	}

	want := map[bool]string{true: "c1,c2,c3", false: "c1,c2,a1,a2,c3"}
	for _, committed := range []bool{true, false} {
		iso := map[bool]string{true: "read_committed", false: "read_uncommitted"}[committed]
		out, err := exec.CommandContext(ctx, kcat, "-b", srv.KafkaAddr, "-C", "-t", "txn", "-p", "0", "-o", "beginning", "-e",
			"-X", "isolation.level="+iso, "-f", "%s\n").Output()
		if err != nil {
			t.Fatalf("kcat %s: %v", iso, err)
		}
		if got := strings.Join(strings.Fields(string(out)), ","); got != want[committed] {
			t.Errorf("kcat %s got %s, want %s", iso, got, want[committed])
		}
		l := runJSON(t, ctx, "values", append(confluent, srv.KafkaAddr, "consume", "txn", iso)...)
		var vals []string
		for _, v := range l[0]["values"].([]any) {
			vals = append(vals, v.(string))
		}
		if got := strings.Join(vals, ","); got != want[committed] {
			t.Errorf("confluent %s got %s, want %s", iso, got, want[committed])
		}
		if got := strings.Join(franzValues(t, ctx, srv.KafkaAddr, "txn", committed), ","); got != want[committed] {
			t.Errorf("franz-go %s got %s, want %s", iso, got, want[committed])
		}
	}
}

// Transaction state survives kill -9: a transaction open when the server is killed
// still holds the last stable offset after the restart, its producer goes on and
// commits it; another one left open is aborted when a new instance of its producer
// initialises (read_committed never sees it).
func TestKafkaTransactionSurvivesKill(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: `streams:
  - {name: txk, filter: "txk-in/#", shards: 1}
`})
	ctx := Deadline(t, 3*startTimeout)
	client := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.TransactionalID(id), kgo.DefaultProduceTopic("txk"),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	produce := func(cl *kgo.Client, vals ...string) {
		t.Helper()
		for _, v := range vals {
			r := &kgo.Record{Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "mqtt.topic", Value: []byte("txk/" + v)}}}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	keep, lost := client("txk-keep"), client("txk-lost")
	for _, cl := range []*kgo.Client{keep, lost} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	produce(keep, "k1", "k2")
	produce(lost, "l1")
	srv.KillRestartSamePorts(t)

	if got := franzValues(t, ctx, srv.KafkaAddr, "txk", false); strings.Join(got, ",") != "k1,k2,l1" {
		t.Fatalf("read_uncommitted after the restart: %v", got)
	}
	end := func(committed bool) int64 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrListOffsetsRequest()
		if committed {
			req.IsolationLevel = 1
		}
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "txk"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].Offset
	}
	if lso := end(true); lso != 0 {
		t.Fatalf("last stable offset after the restart %d, want 0 (both transactions open)", lso)
	}
	// The commit after the restart delivers to MQTT what was stored before it too.
	live := startLiveSub(t, srv.MQTTAddr, 3, "-q", "1", "-t", "txk/#")
	produce(keep, "k3")
	if err := keep.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit after the restart: %v", err)
	}
	var delivered []string
	for _, m := range live.wait(t) {
		f := strings.Split(m, "|")
		delivered = append(delivered, f[1])
	}
	if got := strings.Join(delivered, ","); got != "txk/k1,txk/k2,txk/k3" {
		t.Fatalf("mosquitto_sub got %s at the commit", got)
	}
	// A new instance of the other producer fences the old one and aborts its transaction.
	lost2 := client("txk-lost")
	if err := lost2.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(lost2, "n1")
	if err := lost2.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(franzValues(t, ctx, srv.KafkaAddr, "txk", true), ","); got != "k1,k2,k3,n1" {
		t.Fatalf("read_committed got %s, want k1,k2,k3,n1", got)
	}
	if lso, hwm := end(true), end(false); lso != hwm {
		t.Fatalf("last stable offset %d, high watermark %d: a transaction is still open", lso, hwm)
	}
}
