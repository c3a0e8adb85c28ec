// Package cluster replicates the stream log across nodes with Raft (go.etcd.io/raft/v3):
// one group for the cluster catalog (nodes, streams, replica placement), one group per
// shard, all sharing one TCP connection per node pair and the node's Pebble database.
// It implements log.Writer so the protocol servers write through it unchanged.
package cluster

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/mqstreams/mqstreams/conf"
)

// Config is the `cluster:` section of the config file.
type Config struct {
	// NodeID identifies this node for the life of the cluster: 1..MaxNodeID (it is the
	// node's Kafka broker id too).
	NodeID uint64 `yaml:"node_id" json:"node_id"`
	// RaftAddr is where this node listens for its peers.
	RaftAddr string `yaml:"raft_addr" json:"raft_addr"`
	// Peers are the other nodes and where this node dials them; an entry with this
	// node's own id is ignored, so one list can serve every node's config.
	Peers []Peer `yaml:"peers" json:"peers"`
	// Join: this node joins a running cluster (`mqstreams cluster add-node` on a node
	// of it adds it) instead of forming a new one with its peers. Only its first start
	// needs it; once it holds the catalog it is ignored.
	Join bool `yaml:"join,omitempty" json:"join,omitempty"`
}

// MaxNodeID bounds node ids: Kafka broker ids, and kafkawire puts the node id in the low
// 16 bits of the producer ids it hands out in a cluster.
const MaxNodeID = 65535

// ClusterID is the Kafka cluster id every node of this cluster reports: derived from
// the member ids, so every node knows it before the others answer.
func (c Config) ClusterID() string {
	h := sha256.New()
	fmt.Fprint(h, "mqstreams cluster")
	for _, id := range c.members() {
		fmt.Fprintf(h, " %d", id)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// Peer is one other node.
type Peer struct {
	ID       uint64 `yaml:"id" json:"id"`
	RaftAddr string `yaml:"raft_addr" json:"raft_addr"`
}

// Validate checks ids and addresses.
func (c Config) Validate() error {
	if c.NodeID == 0 || c.NodeID > MaxNodeID {
		return conf.Fieldf("node_id", "must be 1..%d, got %d", MaxNodeID, c.NodeID)
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return conf.Fieldf("raft_addr", "%q: %v", c.RaftAddr, err)
	}
	seen := map[uint64]bool{}
	for i, p := range c.Peers {
		if p.ID == 0 || p.ID > MaxNodeID {
			return conf.Fieldf(fmt.Sprintf("peers[%d].id", i), "must be 1..%d, got %d", MaxNodeID, p.ID)
		}
		if seen[p.ID] {
			return conf.Fieldf(fmt.Sprintf("peers[%d].id", i), "node %d listed twice", p.ID)
		}
		seen[p.ID] = true
		if p.ID == c.NodeID {
			continue
		}
		if _, _, err := net.SplitHostPort(p.RaftAddr); err != nil {
			return conf.Fieldf(fmt.Sprintf("peers[%d].raft_addr", i), "%q: %v", p.RaftAddr, err)
		}
	}
	if len(c.others()) == 0 {
		return conf.Fieldf("peers", "names no other node")
	}
	return nil
}

// others maps every other node's id to the address this node dials it at.
func (c Config) others() map[uint64]string {
	m := map[uint64]string{}
	for _, p := range c.Peers {
		if p.ID != c.NodeID {
			m[p.ID] = p.RaftAddr
		}
	}
	return m
}

// members is every node id, sorted.
func (c Config) members() []uint64 {
	ids := []uint64{c.NodeID}
	for id := range c.others() {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// DefaultReplicationFactor is a stream's replica count in a cluster when it names none
// (capped at the number of nodes); a single node keeps one copy.
const DefaultReplicationFactor = 3

// Tuning of the Raft groups; zero values of Options take these.
const (
	DefaultTickInterval  = 50 * time.Millisecond
	DefaultElectionTicks = 15 // 0.75–1.5 s randomised: a dead leader is replaced within ~2 s
	heartbeatTicks       = 2
	defaultAppendTimeout = 10 * time.Second
	// raftLogKeep is how many applied entries a group keeps behind its applied index
	// for followers that lag a little; one further behind gets a snapshot.
	raftLogKeep = 1000
	// isrLag: a follower whose log is within this many entries of the leader's is in sync.
	isrLag = 1000
)
