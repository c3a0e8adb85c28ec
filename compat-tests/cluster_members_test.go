package compattests

// Membership operations on a real cluster under QoS 1 load (issue 13): a shard's
// replica moved onto a node that had none (`mqstreams cluster move-replica`), then a
// rolling restart (every node stopped and started again in turn, each waiting for
// leaders everywhere before the next). The checker then reads each shard's replicas,
// as Kafka Metadata lists them: every acknowledged record once on every replica,
// replicas identical.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// placement asks node for each partition's replicas and ISR (node ids).
func (c *testCluster) placement(ctx context.Context, node int, topic string) (reps, isr map[int32][]int32, err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[node]), kgo.RequestRetries(0))
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		return nil, nil, fmt.Errorf("metadata of %s: %+v", topic, resp.Topics)
	}
	reps, isr = map[int32][]int32{}, map[int32][]int32{}
	for _, p := range resp.Topics[0].Partitions {
		reps[p.Partition], isr[p.Partition] = slices.Sorted(slices.Values(p.Replicas)), slices.Sorted(slices.Values(p.ISR))
	}
	return reps, isr, nil
}

func TestClusterMoveReplicaAndRollingRestart(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	const topic, shards = "members", 2
	c := startCluster(t, 4, fmt.Sprintf("streams:\n  - {name: %s, filter: \"faults/#\", shards: %d, key: clientid, replication_factor: 3}\n", topic, shards))
	c.waitLeaders(t, topic, shards, 60*time.Second)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var pubs []*faultPublisher
	for i := range 4 {
		p := &faultPublisher{id: fmt.Sprintf("pub%d", i), home: i}
		pubs = append(pubs, p)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx, c) }()
	}
	ackedSoFar := func() int { return ackedBy(pubs) }
	waitAcked := func(n int) { t.Helper(); waitAckedBy(t, pubs, n) }
	waitAcked(100)

	// Move shard 0's replica from a follower (and shard 1's from its leader) to the
	// node that has none, through the CLI as an operator would.
	leaders := c.waitLeaders(t, topic, shards, 60*time.Second)
	reps, _, err := c.placement(Deadline(t, 10*time.Second), 0, topic)
	if err != nil {
		t.Fatal(err)
	}
	for part := int32(0); part < shards; part++ {
		if len(reps[part]) != 3 {
			t.Fatalf("partition %d replicas %v, want 3", part, reps[part])
		}
		var to, from int32
		for id := int32(1); id <= 4; id++ {
			if !slices.Contains(reps[part], id) {
				to = id
			}
		}
		for _, id := range reps[part] {
			if (part == 0) != (id == leaders[part]) {
				from = id // shard 0: a follower; shard 1: the leader
			}
		}
		start := time.Now()
		out, code := RunBinary(t, 2*time.Minute, "cluster", "move-replica", topic, strconv.Itoa(int(part)),
			"--from", strconv.Itoa(int(from)), "--to", strconv.Itoa(int(to)), "--server", "http://"+c.nodes[(part+1)%4].HTTPAddr)
		if code != 0 {
			t.Fatalf("move-replica %d: %s", part, out)
		}
		t.Logf("partition %d: replica moved %d→%d in %v: %s", part, from, to, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		// Every node's Metadata shows the new replica set, in sync.
		want := slices.Sorted(slices.Values(append(slices.DeleteFunc(slices.Clone(reps[part]), func(id int32) bool { return id == from }), to)))
		deadline := time.Now().Add(30 * time.Second)
		for node := range c.nodes {
			for {
				r, isr, err := c.placement(Deadline(t, 10*time.Second), node, topic)
				ls, lerr := c.leaders(Deadline(t, 10*time.Second), node, topic)
				if err == nil && lerr == nil && slices.Equal(r[part], want) && slices.Equal(isr[part], want) && slices.Contains(want, ls[part]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d: partition %d replicas %v isr %v (err %v), want %v", node+1, part, r[part], isr[part], err, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitAcked(ackedSoFar() + 50)
	}
	out, code := RunBinary(t, 30*time.Second, "cluster", "status", "--server", "http://"+c.nodes[0].HTTPAddr)
	if code != 0 {
		t.Fatalf("cluster status: %s", out)
	}
	t.Logf("cluster status after the moves:\n%s", out)

	// Rolling restart: each node stopped and started again in turn under load.
	for i := range c.nodes {
		c.up[i].Store(false)
		c.nodes[i].Stop(t)
		c.restart(t, i)
		c.waitLeaders(t, topic, shards, 60*time.Second)
		n := ackedSoFar()
		waitAcked(n + 20)
		t.Logf("node %d restarted; %d publishes acknowledged so far", i+1, n)
	}
	stop()
	wg.Wait()

	var acked []ackedRecord
	for _, p := range pubs {
		t.Logf("%s: %d acknowledged, %d without an answer", p.id, len(p.acked), p.fails)
		acked = append(acked, p.acked...)
	}
	reps, _, err = c.placement(Deadline(t, 10*time.Second), 0, topic)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	stored := map[string]bool{}
	for part := int32(0); part < shards; part++ {
		dumps := c.convergedOn(t, topic, part, reps[part], 60*time.Second)
		keys := map[string]bool{}
		for _, r := range dumps[0].Records {
			keys[string(r.Key)], stored[string(r.Key)] = true, true
		}
		var mine []ackedRecord
		for _, a := range acked {
			if keys[a.Key] {
				mine = append(mine, a)
			}
		}
		for _, v := range checkReplicas(mine, dumps) {
			bad = append(bad, fmt.Sprintf("shard %d: %s", part, v))
		}
	}
	for _, p := range pubs {
		if len(p.acked) > 0 && !stored[p.id] {
			bad = append(bad, fmt.Sprintf("none of %s's %d acknowledged records is stored", p.id, len(p.acked)))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d violations:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	t.Logf("%d acknowledged records checked on the 3 replicas of each of %d shards", len(acked), shards)
}

// convergedOn waits until the given replicas (node ids) of a shard have the same high
// watermark and returns their dumps.
func (c *testCluster) convergedOn(t testing.TB, stream string, shard int32, nodes []int32, timeout time.Duration) []replicaDump {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var reps []replicaDump
		same := true
		for _, id := range nodes {
			reps = append(reps, fetchReplica(t, strconv.Itoa(int(id)), c.nodes[id-1].HTTPAddr, stream, shard))
			same = same && reps[len(reps)-1].HWM == reps[0].HWM
		}
		if same {
			return reps
		}
		if time.Now().After(deadline) {
			var hw []string
			for _, r := range reps {
				hw = append(hw, fmt.Sprintf("node%s=%d", r.Node, r.HWM))
			}
			t.Fatalf("replicas of %s/%d did not converge within %v: %s", stream, shard, timeout, strings.Join(hw, " "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A fourth node joins a running three-node cluster under QoS 1 load
// (`mqstreams cluster add-node`), takes a shard replica (`move-replica`), then an old
// node is removed (`remove-node`: its replicas move off first) and killed. Metadata
// lists the new brokers and replicas; the checker reads every shard's replicas.
func TestClusterAddAndRemoveNode(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	const topic, shards = "members", 2
	c := startCluster(t, 3, fmt.Sprintf("streams:\n  - {name: %s, filter: \"faults/#\", shards: %d, key: clientid}\n", topic, shards))
	c.waitLeaders(t, topic, shards, 60*time.Second)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var pubs []*faultPublisher
	for i := range 6 { // six client ids: both shards get keys
		p := &faultPublisher{id: fmt.Sprintf("pub%d", i), home: i % 3}
		pubs = append(pubs, p)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx, c) }()
	}
	ackedSoFar := func() int { return ackedBy(pubs) }
	waitAcked := func(n int) { t.Helper(); waitAckedBy(t, pubs, n) }
	waitAcked(100)

	// Node 4: its config names the running nodes (their real addresses) and join: true.
	raft4 := freePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "cluster:\n  node_id: 4\n  raft_addr: %s\n  join: true\n  peers:\n", raft4)
	for j := range 3 {
		fmt.Fprintf(&b, "    - {id: %d, raft_addr: %q}\n", j+1, c.raft[j])
	}
	n4 := LaunchServer(t, ServerOptions{Config: b.String()})
	start := time.Now()
	out, code := RunBinary(t, 2*time.Minute, "cluster", "add-node", "4", "--raft-addr", raft4, "--server", "http://"+c.nodes[1].HTTPAddr)
	if code != 0 {
		t.Fatalf("add-node: %s", out)
	}
	n4.AwaitReady(t)
	t.Logf("node 4 added and ready in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	http := map[int32]string{1: c.nodes[0].HTTPAddr, 2: c.nodes[1].HTTPAddr, 3: c.nodes[2].HTTPAddr, 4: n4.HTTPAddr}

	// Kafka Metadata from every node lists broker 4.
	brokers := func(node string) (map[int32]bool, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(node), kgo.RequestRetries(0))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(Deadline(t, 10*time.Second), cl)
		if err != nil {
			return nil, err
		}
		out := map[int32]bool{}
		for _, b := range resp.Brokers {
			out[b.NodeID] = true
		}
		return out, nil
	}
	waitBrokers := func(addrs []string, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for _, a := range addrs {
			for {
				bs, err := brokers(a)
				if err == nil && fmt.Sprint(slices.Sorted(func(yield func(int32) bool) {
					for id := range bs {
						if !yield(id) {
							return
						}
					}
				})) == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Metadata from %s lists brokers %v (err %v), want %s", a, bs, err, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	waitBrokers([]string{c.kafka[0], c.kafka[1], c.kafka[2], n4.KafkaAddr}, "[1 2 3 4]")

	// Shard 0's replica on node 3 moves to node 4.
	out, code = RunBinary(t, 2*time.Minute, "cluster", "move-replica", topic, "0", "--from", "3", "--to", "4", "--server", "http://"+c.nodes[0].HTTPAddr)
	if code != 0 {
		t.Fatalf("move-replica: %s", out)
	}
	waitAcked(ackedSoFar() + 50)

	// Node 1 leaves: its replicas move to the nodes without one, then it is removed.
	start = time.Now()
	out, code = RunBinary(t, 2*time.Minute, "cluster", "remove-node", "1", "--server", "http://"+c.nodes[1].HTTPAddr)
	if code != 0 {
		t.Fatalf("remove-node: %s", out)
	}
	t.Logf("node 1 removed in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	checkRemovedNode(t, c.nodes[0], "faults/to-removed") // cluster_removed_test.go
	c.kill(t, 0)
	waitBrokers([]string{c.kafka[1], c.kafka[2], n4.KafkaAddr}, "[2 3 4]")
	waitAcked(ackedSoFar() + 50)
	stop()
	wg.Wait()

	reps, isr, err := c.placement(Deadline(t, 10*time.Second), 1, topic)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(reps[0]) != "[2 3 4]" || fmt.Sprint(reps[1]) != "[2 3 4]" {
		t.Fatalf("replicas after the changes %v (isr %v), want [2 3 4] for both shards", reps, isr)
	}
	out, _ = RunBinary(t, 30*time.Second, "cluster", "status", "--server", "http://"+n4.HTTPAddr)
	t.Logf("cluster status from node 4:\n%s", out)

	var acked []ackedRecord
	for _, p := range pubs {
		t.Logf("%s: %d acknowledged, %d without an answer", p.id, len(p.acked), p.fails)
		acked = append(acked, p.acked...)
	}
	var bad []string
	stored := map[string]bool{}
	for part := int32(0); part < shards; part++ {
		var dumps []replicaDump
		deadline := time.Now().Add(60 * time.Second)
		for {
			dumps = nil
			same := true
			for _, id := range reps[part] {
				dumps = append(dumps, fetchReplica(t, strconv.Itoa(int(id)), http[id], topic, part))
				same = same && dumps[len(dumps)-1].HWM == dumps[0].HWM
			}
			if same {
				break
			}
			if time.Now().After(deadline) {
				var hw []string
				for _, d := range dumps {
					hw = append(hw, fmt.Sprintf("node%s=%d", d.Node, d.HWM))
				}
				t.Fatalf("replicas of shard %d did not converge: %s", part, strings.Join(hw, " "))
			}
			time.Sleep(200 * time.Millisecond)
		}
		keys := map[string]bool{}
		for _, r := range dumps[0].Records {
			keys[string(r.Key)], stored[string(r.Key)] = true, true
		}
		var mine []ackedRecord
		for _, a := range acked {
			if keys[a.Key] {
				mine = append(mine, a)
			}
		}
		for _, v := range checkReplicas(mine, dumps) {
			bad = append(bad, fmt.Sprintf("shard %d: %s", part, v))
		}
	}
	for _, p := range pubs {
		if len(p.acked) > 0 && !stored[p.id] {
			bad = append(bad, fmt.Sprintf("none of %s's %d acknowledged records is stored", p.id, len(p.acked)))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d violations:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	t.Logf("%d acknowledged records checked on the replicas (nodes 2, 3, 4) of %d shards", len(acked), shards)
}
