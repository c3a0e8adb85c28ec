package compattests

// A cluster under test (issue 13): three real mqstreams processes on loopback, every
// inter-node link through a linkProxy (cluster_proxy_test.go), so faults can cut,
// slow or half-cut any link, and nodes can be killed and restarted on the same ports.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type testCluster struct {
	nodes   []*Server             // index i is node id i+1
	raft    []string              // each node's own raft_addr
	proxies map[[2]int]*linkProxy // [from, to] (0-based): from's link to to
	up      []atomic.Bool         // running (as far as the test made it)
	// mqtt and kafka are the nodes' client addresses, fixed at start (restarts keep
	// the ports), for goroutines that must not read the Servers the test restarts.
	mqtt, kafka []string
}

// clusterSupported tells whether the binary has a cluster mode (the `cluster:` config
// section), so the fault tests can say plainly that they cannot run yet.
func clusterSupported(t testing.TB) bool {
	t.Helper()
	f := filepath.Join(t.TempDir(), "probe.yaml")
	// Followed by an unknown key, so that a binary with cluster mode stops too.
	cfg := "cluster:\n  node_id: 1\n  raft_addr: 127.0.0.1:1\n  peers: []\nzz_probe: 1\n"
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := RunBinary(t, startTimeout, "serve", "--config", f, "--data-dir", t.TempDir())
	if code == 0 {
		t.Fatalf("a config with an unknown key was accepted:\n%s", out)
	}
	return !strings.Contains(out, "cluster: unknown field")
}

// freePort reserves nothing: it finds a port free now, for a raft_addr that must be
// known before the node starts (the proxies point at it). It picks below Linux's
// ephemeral range (32768–60999): a port the kernel handed out for ":0" is handed out
// again to the next outgoing connection (a client of another test) once released, and
// the node then fails with "address already in use" (seen once in a full run). A port
// is never handed out twice in one test process: a cluster picks all its ports before
// any node binds one, so "free now" alone let two nodes of one cluster draw the same
// port (CI, TestClusterAddAndRemoveNode: nodes 2 and 3 both got 127.0.0.1:26229).
func freePort(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		portsGiven[port] = true
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // every port freePort returned in this process
)

// startCluster starts n nodes; extra is YAML appended to every node's config (streams).
func startCluster(t testing.TB, n int, extra string) *testCluster {
	t.Helper()
	c := &testCluster{proxies: map[[2]int]*linkProxy{}, up: make([]atomic.Bool, n)}
	for range n {
		c.raft = append(c.raft, freePort(t))
	}
	for i := range n {
		for j := range n {
			if i != j {
				c.proxies[[2]int{i, j}] = startLinkProxy(t, fmt.Sprintf("%d→%d", i+1, j+1), c.raft[j])
			}
		}
	}
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "cluster:\n  node_id: %d\n  raft_addr: %s\n  peers:\n", i+1, c.raft[i])
		for j := range n {
			if j != i {
				fmt.Fprintf(&b, "    - {id: %d, raft_addr: %q}\n", j+1, c.proxies[[2]int{i, j}].Addr())
			}
		}
		b.WriteString(extra)
		c.nodes = append(c.nodes, LaunchServer(t, ServerOptions{Config: b.String()}))
	}
	// A node is ready once a quorum of the cluster runs: launch all, then wait.
	for i, srv := range c.nodes {
		srv.AwaitReady(t)
		c.mqtt, c.kafka = append(c.mqtt, srv.MQTTAddr), append(c.kafka, srv.KafkaAddr)
		c.up[i].Store(true)
	}
	return c
}

func (c *testCluster) kafkaAddrs() []string { return c.kafka }

func (c *testCluster) kill(t testing.TB, i int) {
	t.Helper()
	c.up[i].Store(false)
	c.nodes[i].Kill(t)
}

func (c *testCluster) restart(t testing.TB, i int) {
	t.Helper()
	c.nodes[i].RestartSamePorts(t)
	c.up[i].Store(true)
}

// setLink applies a fault to the link from node i to node j (0-based).
func (c *testCluster) setLink(i, j int, f linkFault, delay time.Duration) {
	c.proxies[[2]int{i, j}].set(f, delay)
}

func (c *testCluster) healLinks() {
	for _, p := range c.proxies {
		p.set(linkPass, 0)
	}
}

// leaders asks one node for a topic's partitions: leader per partition (-1: none); an
// error until the node lists every running node as a broker.
func (c *testCluster) leaders(ctx context.Context, node int, topic string) (map[int32]int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[node]), kgo.RequestRetries(0))
	if err != nil {
		return nil, err
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
		return nil, err
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		return nil, fmt.Errorf("metadata of %s from node %d: %+v", topic, node+1, resp.Topics)
	}
	out := map[int32]int32{}
	for _, p := range resp.Topics[0].Partitions {
		out[p.Partition] = p.Leader
	}
	// Clients can reach a leader only through its Metadata entry: every node running
	// must be listed (nodes spread their addresses shortly after they start).
	listed := map[int32]bool{}
	for _, b := range resp.Brokers {
		listed[b.NodeID] = true
	}
	for i := range c.nodes {
		if c.up[i].Load() && !listed[int32(i+1)] {
			return nil, fmt.Errorf("metadata from node %d does not list node %d yet", node+1, i+1)
		}
	}
	return out, nil
}

// waitLeaders waits until every running node names a live leader for every partition
// of topic, and they agree; it returns the leaders (node ids, 1-based as the cluster
// numbers them).
func (c *testCluster) waitLeaders(t testing.TB, topic string, partitions int, timeout time.Duration) map[int32]int32 {
	t.Helper()
	ctx := Deadline(t, timeout)
	var last string
	for {
		var agreed map[int32]int32
		ok := true
		for i := range c.nodes {
			if !c.up[i].Load() {
				continue
			}
			ls, err := c.leaders(ctx, i, topic)
			if err != nil {
				last, ok = err.Error(), false
				break
			}
			for p := int32(0); p < int32(partitions); p++ {
				l, has := ls[p]
				if !has || l < 1 || int(l) > len(c.nodes) || !c.up[l-1].Load() {
					last, ok = fmt.Sprintf("node %d: partition %d leader %d", i+1, p, l), false
				}
			}
			if agreed == nil {
				agreed = ls
			} else if fmt.Sprint(agreed) != fmt.Sprint(ls) {
				last, ok = fmt.Sprintf("nodes disagree: %v vs %v", agreed, ls), false
			}
			if !ok {
				break
			}
		}
		if ok && agreed != nil {
			return agreed
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no agreed live leader for every partition of %s within %v: %s", topic, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startSubTool runs a subscriber tool (mosquitto_sub with -F) against the MQTT
// address until the test ends, and calls emit with each line it prints.
func startSubTool(t testing.TB, ctx context.Context, tool, addr string, emit func(string), args ...string) {
	t.Helper()
	h, p := SplitAddr(t, addr)
	cmd := exec.CommandContext(ctx, tool, append([]string{"-h", h, "-p", p}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			emit(sc.Text())
		}
	}()
}
