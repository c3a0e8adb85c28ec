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
