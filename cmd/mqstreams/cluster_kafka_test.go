package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// raftPort finds a port free now for a raft_addr the other node must know before
// this one binds it, below Linux's ephemeral range so no outgoing connection takes it
// meanwhile, and never the same one twice (both are picked before either is bound).
func raftPort(t *testing.T) string {
	t.Helper()
	raftPortsMu.Lock()
	defer raftPortsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if raftPortsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			addr := ln.Addr().String()
			_ = ln.Close()
			raftPortsGiven[port] = true
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

var (
	raftPortsMu    sync.Mutex
	raftPortsGiven = map[int]bool{}
)

// TestKafkaMetadataListsReachableNodes: Kafka Metadata lists the live nodes (reached,
// or down for less than a few seconds) and names no partition leader that is not, as
// Kafka lists live brokers only. A client forgets a node (and what it cached about it: franz-go a
// transaction coordinator) only once Metadata stops listing it.
func TestKafkaMetadataListsReachableNodes(t *testing.T) {
	raft := []string{raftPort(t), raftPort(t)}
	var nodes []*server
	for i := range raft {
		other := 1 - i
		c := testConfig(t, fmt.Sprintf("cluster:\n  node_id: %d\n  raft_addr: %s\n  peers:\n    - {id: %d, raft_addr: %q}\n"+
			"streams:\n  - {name: md, filter: \"md/#\", shards: 2, replication_factor: 2}\n", i+1, raft[i], other+1, raft[other]))
		s, err := startServer(c, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, s)
	}
	closed := make([]bool, len(nodes))
	closeNode := func(i int) {
		if !closed[i] {
			closed[i] = true
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := nodes[i].Close(ctx); err != nil {
				t.Errorf("close node %d: %v", i+1, err)
			}
		}
	}
	defer func() {
		for i := range nodes {
			closeNode(i)
		}
	}()

	cl, err := kgo.NewClient(kgo.SeedBrokers(nodes[0].kafka.Addr().String()), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// metadata is node 1's answer: the brokers listed, and the partitions' leaders.
	metadata := func(ctx context.Context) (brokers, leaders []int32, err error) {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("md")
		req.Topics = append(req.Topics, rt)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := req.RequestWith(rctx, cl)
		if err != nil {
			return nil, nil, err
		}
		for _, b := range resp.Brokers {
			brokers = append(brokers, b.NodeID)
		}
		for _, tp := range resp.Topics {
			for _, p := range tp.Partitions {
				leaders = append(leaders, p.Leader)
			}
		}
		slices.Sort(brokers)
		return brokers, leaders, nil
	}
	await := func(what string, ok func(brokers, leaders []int32) bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		for {
			brokers, leaders, err := metadata(ctx)
			if err == nil && ok(brokers, leaders) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("node 1's Metadata: %s: brokers %v, leaders %v, %v", what, brokers, leaders, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	await("both nodes listed, every partition led", func(brokers, leaders []int32) bool {
		return slices.Equal(brokers, []int32{1, 2}) && len(leaders) == 2 && !slices.Contains(leaders, -1)
	})
	closeNode(1)
	await("node 2, closed, neither listed nor named leader", func(brokers, leaders []int32) bool {
		return slices.Equal(brokers, []int32{1}) && len(leaders) == 2 && !slices.Contains(leaders, 2)
	})
}
