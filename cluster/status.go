package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/mqstreams/mqstreams/log"
)

// Status is the cluster as this node sees it (`mqstreams cluster status`).
type Status struct {
	NodeID uint64 `json:"node_id"`
	// State is "member", or "removed" once this node was removed from the cluster
	// (removed.go): it then has no groups and refuses client writes.
	State  string        `json:"state"`
	Nodes  []NodeStatus  `json:"nodes"`
	Groups []GroupStatus `json:"groups"`
}

// NodeStatus is one node.
type NodeStatus struct {
	ID        uint64 `json:"id"`
	RaftAddr  string `json:"raft_addr"`
	KafkaAddr string `json:"kafka_addr,omitempty"`
	MQTTAddr  string `json:"mqtt_addr,omitempty"`
	HTTPAddr  string `json:"http_addr,omitempty"`
	Reachable bool   `json:"reachable"`
}

// GroupStatus is one Raft group this node has a replica of.
type GroupStatus struct {
	Group    string          `json:"group"` // "catalog" or "<stream>/<shard>"
	ID       uint64          `json:"id"`
	Leader   uint64          `json:"leader"`
	Term     uint64          `json:"term"`
	Commit   uint64          `json:"commit"`
	Applied  uint64          `json:"applied"`
	Replicas []ReplicaStatus `json:"replicas"`
	// Error is set when this replica stopped applying (it then needs a restart).
	Error string `json:"error,omitempty"`
}

// ReplicaStatus is one replica of a group; Match and Lag are known on the leader only.
type ReplicaStatus struct {
	Node  uint64 `json:"node"`
	Match uint64 `json:"match"`
	Lag   uint64 `json:"lag"`
	State string `json:"state"`
}

// publishStatus copies each group's Raft view where readers can take it (on the loop).
func (n *Node) publishStatus(withProgress bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, g := range n.groups {
		if g.quiesced && g.published {
			continue // nothing moves in a quiesced group
		}
		g.published = true
		bs := g.rn.BasicStatus()
		var prog map[uint64]ReplicaStatus
		if withProgress && bs.RaftState == raft.StateLeader {
			last, _ := g.st.LastIndex()
			prog = map[uint64]ReplicaStatus{}
			g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
				st := pr.State.String()
				if id != n.Self() && !n.tr.reachable(id) {
					st = "unreachable"
				}
				prog[id] = ReplicaStatus{Node: id, Match: pr.Match, Lag: last - min(pr.Match, last), State: st}
			})
		}
		g.mu.Lock()
		g.leader, g.isLeader = bs.Lead, bs.RaftState == raft.StateLeader
		g.term, g.commit = bs.HardState.GetTerm(), bs.HardState.GetCommit()
		if prog != nil {
			g.progress = prog
		} else if !g.isLeader {
			g.progress = nil
		}
		g.mu.Unlock()
	}
}

// Status reports nodes and every group this node has a replica of.
func (n *Node) Status() Status {
	s := Status{NodeID: n.Self(), State: "member"}
	if n.Removed() {
		s.State = "removed"
	}
	for _, ni := range n.Nodes() {
		s.Nodes = append(s.Nodes, NodeStatus{ID: ni.ID, RaftAddr: ni.RaftAddr, KafkaAddr: ni.Addrs.Kafka,
			MQTTAddr: ni.Addrs.MQTT, HTTPAddr: ni.Addrs.HTTP, Reachable: ni.Reachable})
	}
	n.mu.RLock()
	gs := make([]*group, 0, len(n.groups))
	for _, g := range n.groups {
		gs = append(gs, g)
	}
	n.mu.RUnlock()
	sort.Slice(gs, func(i, j int) bool { return gs[i].id < gs[j].id })
	for _, g := range gs {
		name := "catalog"
		if g.id != catalogGroup {
			name = g.stream + "/" + strconv.Itoa(int(g.shard))
		}
		g.mu.Lock()
		gst := GroupStatus{Group: name, ID: g.id, Leader: g.leader, Term: g.term, Commit: g.commit, Applied: g.applied}
		for _, id := range g.replicas {
			rs, ok := g.progress[id]
			if !ok {
				rs = ReplicaStatus{Node: id, State: "unknown"}
			}
			gst.Replicas = append(gst.Replicas, rs)
		}
		g.mu.Unlock()
		if e := g.failed.Load(); e != nil {
			gst.Error = (*e).Error()
		}
		s.Groups = append(s.Groups, gst)
	}
	return s
}

// PartitionState is a shard's replication state for Kafka Metadata.
type PartitionState struct {
	// Leader is the node leading the shard's group, 0 while there is none known (a
	// node without a replica knows it from the leaders' announcements, leaders.go).
	Leader   uint64
	Replicas []uint64
	// ISR are the replicas in sync: on the leader, those whose log is within isrLag
	// entries and whose link is up; elsewhere the replicas this node can reach.
	ISR []uint64
	// Epoch is the group's Raft term (the Kafka leader epoch).
	Epoch uint64
}

// Partition reports a shard's leader, replicas and in-sync replicas.
func (n *Node) Partition(stream string, shard int32) (PartitionState, bool) {
	sp, err := n.placement(stream, shard)
	if err != nil {
		return PartitionState{}, false
	}
	ps := PartitionState{Replicas: append([]uint64(nil), sp.Replicas...)}
	g := n.group(sp.Group)
	if g == nil {
		// No replica here: the leader the others announce, and the replicas this
		// node can reach as in sync.
		ps.Leader = n.hints.get(sp.Group)
		for _, id := range sp.Replicas {
			if id == ps.Leader || n.tr.reachable(id) {
				ps.ISR = append(ps.ISR, id)
			}
		}
		return ps, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ps.Leader, ps.Epoch = g.leader, g.term
	for _, id := range sp.Replicas {
		if g.isLeader && g.progress != nil {
			pr, ok := g.progress[id]
			if id == n.Self() || (ok && pr.State != "unreachable" && pr.Lag <= isrLag) {
				ps.ISR = append(ps.ISR, id)
			}
		} else if id == n.Self() || id == g.leader || n.tr.reachable(id) {
			ps.ISR = append(ps.ISR, id)
		}
	}
	return ps, true
}

// readWait is a lease read waiting for its ReadState.
type readWait struct {
	g  *group
	ch chan uint64
}

// localReplica returns this node's replica of a shard's group: a *NotLeaderError where
// the node holds none, the placement's error for an unknown shard.
func (n *Node) localReplica(stream string, shard int32) (*group, error) {
	sp, err := n.placement(stream, shard)
	if err != nil {
		return nil, err
	}
	g := n.group(sp.Group)
	if g == nil {
		return nil, &NotLeaderError{}
	}
	return g, nil
}

// HighWatermark is the shard's high watermark read on its leader under Raft's leader
// lease (ReadOnlyLeaseBased with CheckQuorum): the leader confirms it still leads and
// waits until it applied everything committed before the read, so the answer is never
// behind an acknowledged append. ErrNotLeader elsewhere.
func (n *Node) HighWatermark(ctx context.Context, stream string, shard int32) (int64, error) {
	g, err := n.localReplica(stream, shard)
	if err != nil {
		return 0, err
	}
	id := n.propSeq.Add(1)
	rctx := binary.BigEndian.AppendUint64(nil, id)
	rw := &readWait{g: g, ch: make(chan uint64, 1)}
	n.waitMu.Lock()
	n.reads[id] = rw
	n.waitMu.Unlock()
	defer func() {
		n.waitMu.Lock()
		delete(n.reads, id)
		n.waitMu.Unlock()
	}()
	var lerr error
	if err := n.do(func() {
		g.wake() // a quiesced leader resumes its heartbeats and quorum checks
		bs := g.rn.BasicStatus()
		if bs.RaftState != raft.StateLeader {
			lerr = &NotLeaderError{Leader: bs.Lead}
			return
		}
		g.rn.ReadIndex(rctx)
	}); err != nil {
		return 0, err
	}
	if lerr != nil {
		return 0, lerr
	}
	var index uint64
	select {
	case index = <-rw.ch:
	case <-ctx.Done():
		return 0, fmt.Errorf("high watermark %s/%d: %w", stream, shard, ctx.Err())
	case <-time.After(n.o.AppendTimeout):
		return 0, fmt.Errorf("high watermark %s/%d: %w", stream, shard, ErrTimeout)
	}
	for {
		applied, _, ch := g.appliedState()
		if applied >= index {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("high watermark %s/%d: %w", stream, shard, ctx.Err())
		}
	}
	st := n.l.Stream(stream)
	if st == nil {
		return 0, fmt.Errorf("high watermark %s: %w", stream, log.ErrUnknownStream)
	}
	_, hwm, err := st.Offsets(shard)
	return hwm, err
}

// readReady hands a ReadState to its waiter (on the loop).
func (n *Node) readReady(_ *group, rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 {
		return
	}
	id := binary.BigEndian.Uint64(rs.RequestCtx)
	n.waitMu.Lock()
	rw := n.reads[id]
	n.waitMu.Unlock()
	if rw != nil {
		select {
		case rw.ch <- rs.Index:
		default:
		}
	}
}

// Coordinator is the node that coordinates a consumer group (or transactional id):
// key hashed over the nodes, or the next reachable one after it in id order when that
// node cannot be reached from here. Committed offsets are replicated to every node
// (CommitOffsets), so a new coordinator has them.
func (n *Node) Coordinator(key string) uint64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	members := n.memberIDs()
	start := int(h.Sum32() % uint32(len(members)))
	for i := range members {
		id := members[(start+i)%len(members)]
		if id == n.Self() || n.tr.reachable(id) {
			return id
		}
	}
	return n.Self()
}
