package main

import (
	"strings"
	"testing"
)

func TestClusterConfig(t *testing.T) {
	const ok = "cluster:\n  node_id: 2\n  raft_addr: 127.0.0.1:7002\n  peers:\n    - {id: 1, raft_addr: 127.0.0.1:7001}\n    - {id: 2, raft_addr: 127.0.0.1:7002}\n"
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster == nil || c.Cluster.NodeID != 2 || len(c.Cluster.Peers) != 2 {
		t.Fatalf("cluster: %+v", c.Cluster)
	}
	if c, err := ParseConfig([]byte("data_dir: x\n")); err != nil || c.Cluster != nil {
		t.Fatalf("no cluster section: %+v, %v", c.Cluster, err)
	}
	bad := []struct{ src, want string }{
		{"cluster:\n  node_id: 0\n  raft_addr: 127.0.0.1:7002\n  peers: [{id: 1, raft_addr: 127.0.0.1:7001}]\n", "node_id"},
		{"cluster:\n  node_id: 65536\n  raft_addr: 127.0.0.1:7002\n  peers: [{id: 1, raft_addr: 127.0.0.1:7001}]\n", "node_id"},
		{"cluster:\n  node_id: 2\n  raft_addr: nope\n  peers: [{id: 1, raft_addr: 127.0.0.1:7001}]\n", "raft_addr"},
		{"cluster:\n  node_id: 2\n  raft_addr: 127.0.0.1:7002\n  peers: []\n", "peers"},
		{"cluster:\n  node_id: 2\n  raft_addr: 127.0.0.1:7002\n  peer: []\n", "peer"},
	}
	for _, tc := range bad {
		if _, err := ParseConfig([]byte(tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.src, err, tc.want)
		}
	}
}

func TestClusterFlags(t *testing.T) {
	c := DefaultConfig()
	o := Overrides{Cluster: clusterFlags{NodeID: 3, RaftAddr: "127.0.0.1:7003", Peers: "1=127.0.0.1:7001, 2=127.0.0.1:7002"}}
	if err := o.Apply(&c); err != nil {
		t.Fatal(err)
	}
	if c.Cluster == nil || c.Cluster.NodeID != 3 || len(c.Cluster.Peers) != 2 || c.Cluster.Peers[1].RaftAddr != "127.0.0.1:7002" {
		t.Fatalf("cluster from flags: %+v", c.Cluster)
	}
	c = DefaultConfig()
	if err := (Overrides{Cluster: clusterFlags{Peers: "x"}}).Apply(&c); err == nil || !strings.Contains(err.Error(), "--peers") {
		t.Fatalf("bad --peers: %v", err)
	}
}
