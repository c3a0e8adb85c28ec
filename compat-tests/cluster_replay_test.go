package compattests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// replicasOf asks a node's Kafka Metadata for a partition's leader and replicas
// (1-based node ids).
func (c *testCluster) replicasOf(ctx context.Context, node int, topic string, partition int32) (int32, []int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[node]), kgo.RequestRetries(0))
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return 0, nil, err
	}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.Partition == partition {
				return p.Leader, p.Replicas, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("metadata from node %d has no %s/%d", node+1, topic, partition)
}

// TestClusterReplayRemote: `$stream` replay on a node holding no replica of the shard
// (replication_factor 2 of 3 nodes). mosquitto_sub there gets the history, then live
// records; the shard's leader is SIGKILLed; a second mosquitto_sub started while it is
// down gets the whole history from the remaining replica; once the killed node is
// back and the shard has a leader again, both get the new records, the first with
// every record once, in order. Then a replica moves from another node to the
// subscribers' node, and a subscriber on the node it left reads everything too.
func TestClusterReplayRemote(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	subBin := NeedTool(t, "mosquitto_sub")
	pubBin := NeedTool(t, "mosquitto_pub")
	const topic = "rr"
	c := startCluster(t, 3, fmt.Sprintf("streams:\n  - {name: %s, filter: \"rr/#\", shards: 1, key: clientid, replication_factor: 2}\n", topic))
	c.waitLeaders(t, topic, 1, 60*time.Second)
	ctx := Deadline(t, 4*time.Minute)

	leader, replicas, err := c.replicasOf(ctx, 0, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(replicas) != 2 {
		t.Fatalf("replicas %v, want 2", replicas)
	}
	outside := -1
	for i := range c.nodes {
		if !slices.Contains(replicas, int32(i+1)) {
			outside = i
		}
	}
	t.Logf("replicas %v, leader %d, subscribers on node %d", replicas, leader, outside+1)

	// publish sends lines prefix0..prefix(n-1) at QoS 1 through node's MQTT listener.
	publish := func(node int, prefix string, n int) {
		t.Helper()
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, "%s%d\n", prefix, i)
		}
		h, p := SplitAddr(t, c.mqtt[node])
		cmd := exec.CommandContext(ctx, pubBin, "-h", h, "-p", p, "-q", "1", "-i", "rr-pub-"+prefix, "-t", "rr/a", "-l")
		cmd.Stdin = strings.NewReader(in.String())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub on node %d: %v %s", node+1, err, b)
		}
	}
	subscribe := func(node int, id string) *reader {
		h, p := SplitAddr(t, c.mqtt[node])
		return startReader(t, ctx, subBin, "-h", h, "-p", p, "-V", "mqttv5", "-i", id, "-q", "1",
			"-t", "$stream/"+topic, "-D", "subscribe", "user-property", "stream-offset", "earliest", "-v")
	}

	publish(int(leader)-1, "h", 50)
	first := subscribe(outside, "rr-sub-1")
	first.waitFor(t, ctx, "rr/a h49\n")
	publish(outside, "l", 10) // live, forwarded to the leader by the subscribers' node
	first.waitFor(t, ctx, "rr/a l9\n")

	c.kill(t, int(leader)-1)
	second := subscribe(outside, "rr-sub-2")
	second.waitFor(t, ctx, "rr/a l9\n")

	c.restart(t, int(leader)-1)
	c.waitLeaders(t, topic, 1, 60*time.Second)
	publish(outside, "m", 10)
	first.waitFor(t, ctx, "rr/a m9\n")
	second.waitFor(t, ctx, "rr/a m9\n")

	// move-replica takes a replica away from a node (its log keeps the records it had)
	// and gives one to the subscribers' node: the subscribers there go on reading (now
	// from their own replica), and a subscriber on the node that lost its replica gets
	// every record, those written after the move too.
	var from int32
	for _, id := range replicas {
		if id != leader {
			from = id
		}
	}
	out, code := RunBinary(t, 2*time.Minute, "cluster", "move-replica", topic, "0", "--from", strconv.Itoa(int(from)),
		"--to", strconv.Itoa(outside+1), "--server", "http://"+c.nodes[outside].HTTPAddr)
	if code != 0 {
		t.Fatalf("move-replica: %s", out)
	}
	c.waitLeaders(t, topic, 1, 60*time.Second)
	publish(int(from)-1, "n", 10)
	third := subscribe(int(from)-1, "rr-sub-3")
	for _, r := range []*reader{first, second, third} {
		r.waitFor(t, ctx, "rr/a n9\n")
	}

	var want strings.Builder
	for _, r := range []struct {
		p string
		n int
	}{{"h", 50}, {"l", 10}, {"m", 10}, {"n", 10}} {
		for i := range r.n {
			fmt.Fprintf(&want, "rr/a %s%d\n", r.p, i)
		}
	}
	for i, r := range []*reader{first, second, third} {
		if got := r.output(); got != want.String() {
			t.Fatalf("subscriber %d got:\n%s\nwant every record once, in order:\n%s", i+1, got, want.String())
		}
	}
	for i, srv := range c.nodes { // with MQSTREAMS_RACE=1, the race detector's reports
		if strings.Contains(srv.Logs(), "DATA RACE") {
			t.Fatalf("node %d reported a data race:\n%s", i+1, srv.Logs())
		}
	}
}

// TestClusterReplayRemoteACL: read grants apply on the node the client is connected to
// when the shard is read from another node: on a node holding no replica, alice (read
// on the stream) replays it, bob (no read grant) is refused in the SUBACK.
func TestClusterReplayRemoteACL(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	subBin := NeedTool(t, "mosquitto_sub")
	pubBin := NeedTool(t, "mosquitto_pub")
	creds, err := auth.HashPassword(mqttAuthPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "racl"
	c := startCluster(t, 3, fmt.Sprintf(`streams:
  - {name: %s, filter: "racl/#", shards: 1, replication_factor: 1}
auth:
  allow_anonymous: false
  users:
    - username: alice
      password_hash: %q
      acl:
        - {topic: "racl/#", allow: [publish, subscribe]}
        - {stream: %s, allow: [read]}
    - username: bob
      password_hash: %q
      acl:
        - {topic: "#", allow: [subscribe]}
    - username: admin
      password_hash: %q
      superuser: true
`, topic, creds.String(), topic, creds.String(), creds.String()))
	ctx := Deadline(t, 2*time.Minute)
	// The shard's only replica (its leader) from the nodes' cluster status (an
	// administrator's: Kafka Metadata would need SASL here).
	var leader int
	for leader == 0 {
		for _, srv := range c.nodes {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.HTTPAddr+"/api/v1/cluster/status", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("admin", mqttAuthPassword)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			var st struct {
				Groups []struct {
					Group  string `json:"group"`
					Leader int    `json:"leader"`
				} `json:"groups"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			for _, g := range st.Groups {
				if err == nil && g.Group == topic+"/0" && g.Leader != 0 {
					leader = g.Leader
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no node names a leader of the shard")
		case <-time.After(100 * time.Millisecond):
		}
	}
	outside := leader % 3 // a node other than the only replica (0-based)
	h, p := SplitAddr(t, c.mqtt[leader-1])
	pub := exec.CommandContext(ctx, pubBin, "-h", h, "-p", p, "-u", "alice", "-P", mqttAuthPassword, "-q", "1", "-t", "racl/x", "-l")
	pub.Stdin = strings.NewReader("one\ntwo\nthree\n")
	if b, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, b)
	}
	h, p = SplitAddr(t, c.mqtt[outside])
	replay := func(user string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		b, err := exec.CommandContext(cctx, subBin, "-h", h, "-p", p, "-V", "mqttv5", "-u", user, "-P", mqttAuthPassword,
			"-t", "$stream/"+topic, "-D", "subscribe", "user-property", "stream-offset", "earliest", "-C", "3", "-W", "30").CombinedOutput()
		return string(b), err
	}
	if out, err := replay("alice"); err != nil || fmt.Sprint(strings.Fields(out)) != "[one two three]" {
		t.Fatalf("alice on node %d: %v %q, want one two three", outside+1, err, out)
	}
	if out, _ := replay("bob"); !strings.Contains(out, "All subscription requests were denied") {
		t.Fatalf("bob on node %d: %q, want the subscription denied", outside+1, out)
	}
}
