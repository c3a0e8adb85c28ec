package compattests

// Real clients against a real three-node cluster (issue 13): Kafka clients follow a
// partition's leader when it is killed (franz-go in process, confluent-kafka-python
// across the kill, kcat bootstrapped on a node that does not lead), and MQTT
// publishes reach subscribers on other nodes, with `$stream` replay on any node.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestClusterKafkaClientsFollowLeader(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	const topic = "moves"
	c := startCluster(t, 3, fmt.Sprintf("streams:\n  - {name: %s, filter: \"moves/#\", shards: 1}\n", topic))
	leaders := c.waitLeaders(t, topic, 1, 60*time.Second)
	leader := int(leaders[0]) - 1
	ctx := Deadline(t, 3*time.Minute)

	// kcat -L on any node lists the three nodes and the partition's replicas and ISR.
	kcat := NeedTool(t, "kcat")
	for i, a := range c.kafkaAddrs() {
		out, err := exec.CommandContext(ctx, kcat, "-b", a, "-L", "-t", topic).CombinedOutput()
		md := string(out)
		if err != nil || !strings.Contains(md, "3 brokers:") || !strings.Contains(md, "replicas: 1,2,3, isrs:") {
			t.Fatalf("kcat -L on node %d: %v\n%s", i+1, err, md)
		}
		for j, b := range c.kafkaAddrs() {
			if !strings.Contains(md, fmt.Sprintf("broker %d at %s", j+1, b)) {
				t.Fatalf("kcat -L on node %d does not list broker %d at %s:\n%s", i+1, j+1, b, md)
			}
		}
	}
	// Group coordinators are spread over the nodes: twelve groups land on more than one.
	coords := map[int32]bool{}
	for g := range 12 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = fmt.Sprintf("spread-%d", g)
		req.CoordinatorKeys = []string{req.CoordinatorKey}
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()[g%3]))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := req.RequestWith(ctx, cl)
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		node, code := resp.NodeID, resp.ErrorCode
		if len(resp.Coordinators) == 1 {
			node, code = resp.Coordinators[0].NodeID, resp.Coordinators[0].ErrorCode
		}
		if code != 0 || node < 1 || node > 3 {
			t.Fatalf("FindCoordinator spread-%d: node %d error %d", g, node, code)
		}
		coords[node] = true
	}
	if len(coords) < 2 {
		t.Fatalf("12 groups all coordinated by one node: %v", coords)
	}

	// franz-go, one long-lived client across the kill.
	fr, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMinAge(50*time.Millisecond), kgo.RecordRetries(1000), kgo.RecordDeliveryTimeout(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	franzAcked := map[string]int64{}
	frProduce := func(v string) {
		t.Helper()
		r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}
		if err := fr.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("franz-go produce %s: %v", v, err)
		}
		franzAcked[v] = r.Offset
	}
	frProduce("franz-before")

	// confluent-kafka-python, idempotent, producing throughout the kill: every
	// acknowledged record must be stored exactly once, at the offset acknowledged. A
	// batch in flight when the leader dies is retried at the new leader, which knows
	// the producer's sequence from the replicated state (kafkawire/cluster_producers.go).
	py := exec.CommandContext(ctx, Python(t), filepath.Join("clients", "cluster_confluent_produce.py"),
		strings.Join(c.kafkaAddrs(), ","), topic, "0", "confluent")
	stdin, err := py.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := py.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	py.Stderr = &stderr
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "started" {
		t.Fatalf("confluent producer did not start: %q %s", lines.Text(), stderr.String())
	}

	t.Logf("killing node %d, leader of %s/0", leader+1, topic)
	c.kill(t, leader)
	after := c.waitLeaders(t, topic, 1, 60*time.Second)
	t.Logf("new leader: node %d", after[0])
	frProduce("franz-after")

	// kcat, a fresh process bootstrapped on a node that does not lead the partition.
	var boot string
	for i, a := range c.kafkaAddrs() {
		if i != leader && i+1 != int(after[0]) {
			boot = a
		}
	}
	cmd := exec.CommandContext(ctx, kcat, "-b", boot, "-P", "-t", topic, "-p", "0")
	cmd.Stdin = strings.NewReader("kcat-after\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P through node %s: %v\n%s", boot, err, out)
	}

	c.restart(t, leader)
	c.waitLeaders(t, topic, 1, 60*time.Second)
	_ = stdin.Close()
	acked := map[string]int64{} // value → acknowledged offset
	var tail []string
	for lines.Scan() {
		l := lines.Text()
		if v, ok := strings.CutPrefix(l, "acked "); ok {
			f := strings.Fields(v)
			off, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if len(f) != 2 || err != nil {
				t.Fatalf("confluent producer printed %q", l)
			}
			acked[f[0]] = off
		} else {
			tail = append(tail, l)
		}
	}
	if err := py.Wait(); err != nil {
		t.Fatalf("confluent producer: %v %v\n%s", err, tail, stderr.String())
	}
	t.Logf("confluent-kafka: %d acknowledged across the kill (%v)", len(acked), tail)
	if len(acked) < 2 {
		t.Fatalf("confluent-kafka acknowledged only %d messages", len(acked))
	}

	// Every acknowledged record, from all three clients, is on every replica once, at
	// the offset its producer was given.
	dumps := c.converged(t, topic, 1, 60*time.Second)
	for _, r := range dumps[0] {
		count := map[string]int{}
		offset := map[string]int64{}
		for _, rec := range r.Records {
			count[string(rec.Value)]++
			offset[string(rec.Value)] = rec.Offset
		}
		for _, v := range []string{"franz-before", "franz-after", "kcat-after"} {
			if count[v] != 1 {
				t.Errorf("node %s holds %q %d times", r.Node, v, count[v])
			}
		}
		for v, off := range franzAcked {
			if offset[v] != off {
				t.Errorf("node %s holds %q at offset %d, acknowledged at %d", r.Node, v, offset[v], off)
			}
		}
		for v, off := range acked {
			switch {
			case count[v] == 0:
				t.Errorf("node %s lacks acknowledged %q", r.Node, v)
			case count[v] > 1:
				t.Errorf("node %s holds acknowledged %q %d times", r.Node, v, count[v])
			case offset[v] != off:
				t.Errorf("node %s holds %q at offset %d, acknowledged at %d", r.Node, v, offset[v], off)
			}
		}
	}
	bad := checkReplicas(nil, dumps[0])
	if len(bad) > 0 {
		t.Fatalf("replicas: %v", bad)
	}
}

func TestClusterMQTTAcrossNodes(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	sub := NeedTool(t, "mosquitto_sub")
	pub := NeedTool(t, "mosquitto_pub")
	c := startCluster(t, 3, "streams:\n  - {name: plant, filter: \"plant/#\", shards: 2, key: topic}\n")
	c.waitLeaders(t, "plant", 2, 60*time.Second)
	ctx := Deadline(t, 2*time.Minute)

	// A live subscriber on node 3 gets what is published on node 1. Publishing repeats
	// until it arrives: the route reaches node 1 shortly after the SUBACK on node 3.
	h3, p3 := SplitAddr(t, c.mqtt[2])
	s := exec.CommandContext(ctx, sub, "-h", h3, "-p", p3, "-t", "plant/+/temp", "-C", "1", "-F", "%t %p", "-W", "90")
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(out)
		got <- strings.TrimSpace(string(b))
	}()
	h1, p1 := SplitAddr(t, c.mqtt[0])
	var line string
	for n := 0; line == ""; n++ {
		cmd := exec.CommandContext(ctx, pub, "-h", h1, "-p", p1, "-q", "1", "-t", "plant/a/temp", "-m", "21."+strconv.Itoa(n))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub on node 1: %v %s", err, b)
		}
		select {
		case line = <-got:
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the subscriber on node 3 got nothing published on node 1")
		}
	}
	_ = s.Wait()
	if !strings.HasPrefix(line, "plant/a/temp 21.") {
		t.Fatalf("subscriber on node 3 got %q", line)
	}

	// `$stream` replay on node 2 of what node 1 stored (all of it: every node has a
	// replica), in MQTT 5 with the earliest offset.
	h2, p2 := SplitAddr(t, c.mqtt[1])
	replayCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r := exec.CommandContext(replayCtx, sub, "-V", "mqttv5", "-h", h2, "-p", p2, "-t", "$stream/plant",
		"-D", "subscribe", "user-property", "stream-offset", "earliest", "-C", "1", "-F", "%t %p")
	b, err := r.CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(b)), "plant/a/temp 21.") {
		t.Fatalf("$stream replay on node 2: %v %q", err, b)
	}
}
