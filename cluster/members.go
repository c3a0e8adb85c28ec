package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Moving a shard's replica from one node to another, in four steps each safe to repeat
// (MoveReplica runs them again from the start after any failure):
//
//  1. catalog: the shard's placement gains the new node, marked Joined; that node
//     starts a replica with no Raft state.
//  2. on the shard's leader: a conf change makes the new node a learner; the leader
//     snapshots at once so the snapshot it sends names the learner; the learner pulls
//     the records (as any lagging replica does) and takes the entries after it.
//  3. on the leader, once the learner's log matches the leader's commit: a conf change
//     makes it a voter, then one removes the old node (a leader removed steps down).
//  4. catalog: the placement drops the old node, which stops its replica and drops its
//     Raft state.
//
// Kafka Metadata and `cluster status` follow the catalog's placement and the leader's
// progress, so replicas and ISR show the move as it happens.

// methodReplicas asks a shard group's leader to change the group's members (step 2–3).
const methodReplicas byte = 4

// moveCmd is a catalog change of a shard's placement: Add joins a node, Remove drops one.
type moveCmd struct {
	Stream string `json:"stream"`
	Shard  int32  `json:"shard"`
	Add    uint64 `json:"add,omitempty"`
	Remove uint64 `json:"remove,omitempty"`
}

func checkMove(cs *catalogState, m *moveCmd) error {
	sp := cs.Streams[m.Stream]
	if sp == nil || m.Shard < 0 || int(m.Shard) >= len(sp.Shards) {
		return fmt.Errorf("stream %q shard %d: %w", m.Stream, m.Shard, ErrUnknownShard)
	}
	return nil
}

// ErrUnknownShard: no such stream or shard in the catalog.
var ErrUnknownShard = errors.New("unknown stream or shard")

// applyMove changes a shard's placement (catalog apply, on the loop) and starts or
// stops this node's replica.
func (n *Node) applyMove(cs *catalogState, m *moveCmd) {
	sh := &cs.Streams[m.Stream].Shards[m.Shard]
	if m.Add != 0 && !contains(sh.Replicas, m.Add) {
		sh.Replicas = append(sh.Replicas, m.Add)
		sh.Joined = append(sh.Joined, m.Add)
		if m.Add == n.Self() {
			if _, err := n.startShard(m.Stream, m.Shard, *sh); err != nil {
				n.lg.Error().Err(err).Str("stream", m.Stream).Int32("shard", m.Shard).Msg("start added replica")
			}
		}
	}
	if m.Remove != 0 && contains(sh.Replicas, m.Remove) {
		sh.Replicas = slices.DeleteFunc(slices.Clone(sh.Replicas), func(id uint64) bool { return id == m.Remove })
		sh.Joined = slices.DeleteFunc(slices.Clone(sh.Joined), func(id uint64) bool { return id == m.Remove })
		if m.Remove == n.Self() {
			n.dropReplica(m.Stream, m.Shard, sh.Group) // drop.go
		}
	}
}

// applyConfChange applies a committed conf change once (on the loop) and saves the
// resulting configuration: raft is restarted at the applied index and does not hand
// out older entries again, so the configuration must be on disk by itself.
func (n *Node) applyConfChange(g *group, index uint64, cc pb.ConfChangeI) {
	if index <= g.csIndex {
		return // applied before a restart: the saved configuration has it
	}
	g.cs = g.rn.ApplyConfChange(cc)
	g.csIndex = index
	n.noticeConfChange(g)
	g.mu.Lock()
	g.replicas = sortedIDs(append(slices.Clone(g.cs.GetVoters()), g.cs.GetLearners()...))
	g.mu.Unlock()
	b, err := proto.Marshal(g.cs)
	if err == nil {
		rb := n.l.NewRaftBatch()
		rb.Set(groupKey(g.id, keyConfState), append(binary.BigEndian.AppendUint64(nil, index), b...))
		err = rb.Commit(true)
	}
	if err != nil {
		n.lg.Error().Err(err).Uint64("group", g.id).Msg("save raft configuration")
	}
	g.st.cs, g.st.csIndex = g.cs, index
}

// loadConfState reads the configuration saved by applyConfChange, when it is newer
// than the snapshot's.
func (st *storage) loadConfState() error {
	v, err := st.l.RaftGet(groupKey(st.group, keyConfState))
	if err != nil || len(v) < 8 {
		return err
	}
	cs := &pb.ConfState{}
	if err := proto.Unmarshal(v[8:], cs); err != nil {
		return fmt.Errorf("group %d configuration: %w", st.group, err)
	}
	st.cs, st.csIndex = cs, binary.BigEndian.Uint64(v)
	return nil
}

// InitialState is raft's, with the configuration saved after the last conf change
// when it is newer than the snapshot.
func (st *storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	hs, cs, err := st.MemoryStorage.InitialState()
	if err != nil || st.cs == nil {
		return hs, cs, err
	}
	snap, err := st.MemoryStorage.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	if st.csIndex > snap.GetMetadata().GetIndex() {
		cs = st.cs
	}
	return hs, cs, nil
}

// MoveReplica moves stream/shard's replica on node from to node to (a node of the
// cluster without a replica of that shard): to catches up as a learner, becomes a
// voter, then from is removed. It returns once the catalog shows the new placement.
// It is safe to run again after an error (each step checks what is done already).
func (n *Node) MoveReplica(ctx context.Context, stream string, shard int32, from, to uint64) error {
	sp, err := n.placement(stream, shard)
	if err != nil {
		return err
	}
	if !contains(n.memberIDs(), to) {
		return fmt.Errorf("node %d is not a member of the cluster", to)
	}
	if from == to {
		return fmt.Errorf("move replica: from and to are the same node %d", from)
	}
	if !contains(sp.Replicas, from) && !contains(sp.Replicas, to) {
		return fmt.Errorf("stream %q shard %d has no replica on node %d (replicas %v)", stream, shard, from, sp.Replicas)
	}
	if contains(sp.Replicas, from) {
		if err := n.changeCatalog(ctx, &catalogCmd{Move: &moveCmd{Stream: stream, Shard: shard, Add: to}}); err != nil {
			return err
		}
		if err := n.changeReplicas(ctx, sp.Group, to, from); err != nil {
			return err
		}
	}
	return n.changeCatalog(ctx, &catalogCmd{Move: &moveCmd{Stream: stream, Shard: shard, Remove: from}})
}

type replicasReq struct {
	Group  uint64 `json:"group"`
	Add    uint64 `json:"add"`
	Remove uint64 `json:"remove"`
}

// changeReplicas has group's leader add (learner first) and remove members, retrying
// on another leader until ctx ends.
func (n *Node) changeReplicas(ctx context.Context, gid, add, remove uint64) error {
	body, _ := json.Marshal(replicasReq{Group: gid, Add: add, Remove: remove})
	for {
		var err error
		switch lead := n.leaderOf(gid); lead {
		case 0:
			err = ErrNoLeader
		case n.Self():
			err = n.leadReplicaChange(ctx, gid, add, remove)
		default:
			ch := make(chan error, 1)
			timeout := 30 * time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = time.Until(d)
			}
			n.tr.call(lead, methodReplicas, body, timeout, func(_ []byte, err error) { ch <- err })
			err = <-ch
		}
		if err == nil {
			return nil
		}
		n.lg.Debug().Err(err).Uint64("group", gid).Msg("replica change, retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("change replicas of group %d: %w (last: %v)", gid, ctx.Err(), err)
		case <-n.stop:
			return ErrClosed
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) onReplicasChange(_ uint64, body []byte, reply func([]byte, error)) {
	var req replicasReq
	if err := json.Unmarshal(body, &req); err != nil {
		reply(nil, err)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		reply(nil, n.leadReplicaChange(ctx, req.Group, req.Add, req.Remove))
	}()
}

// groupView is what leadReplicaChange reads of a group on the loop.
type groupView struct {
	leader           bool
	voters, learners []uint64
	csIndex, commit  uint64
	match            map[uint64]uint64
}

func (n *Node) viewGroup(gid uint64) (groupView, error) {
	var v groupView
	err := n.do(func() {
		g := n.groups[gid]
		if g == nil {
			return
		}
		st := g.rn.Status()
		v.leader = st.RaftState == raft.StateLeader
		v.voters, v.learners = g.cs.GetVoters(), g.cs.GetLearners()
		v.csIndex, v.commit = g.csIndex, st.HardState.GetCommit()
		v.match = map[uint64]uint64{}
		for id, pr := range st.Progress {
			v.match[id] = pr.Match
		}
	})
	return v, err
}

// leadReplicaChange runs on the group's leader: add joins as a learner, is promoted
// once caught up; remove leaves. Each step is skipped when done already.
func (n *Node) leadReplicaChange(ctx context.Context, gid, add, remove uint64) error {
	propose := func(cc *pb.ConfChange, done func(v groupView) bool) error {
		for {
			v, err := n.viewGroup(gid)
			if err != nil {
				return err
			}
			if done(v) {
				return nil
			}
			if !v.leader {
				return &NotLeaderError{}
			}
			var perr error
			if err := n.do(func() {
				g := n.groups[gid]
				g.wake()
				perr = g.rn.ProposeConfChange(cc)
			}); err != nil {
				return err
			}
			// A conf change is refused while another is pending: wait and look again.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if v, err := n.viewGroup(gid); err != nil {
					return err
				} else if done(v) {
					return nil
				} else if !v.leader {
					return &NotLeaderError{}
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%v (propose: %v)", ctx.Err(), perr)
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}
	if add != 0 {
		// First a snapshot whose configuration lacks the new node: raft sends a new
		// learner the latest snapshot at once, and an older one might name it (it held
		// a replica before and still holds those records): its records would then be
		// ahead of that snapshot. This one it refuses; the one after the conf change
		// is newer than anything it holds.
		if v, err := n.viewGroup(gid); err != nil {
			return err
		} else if !contains(v.learners, add) && !contains(v.voters, add) {
			if err := n.snapshotNow(ctx, gid); err != nil {
				return err
			}
		}
		err := propose(&pb.ConfChange{Type: pb.ConfChangeAddLearnerNode.Enum(), NodeId: new(add)}, func(v groupView) bool {
			return contains(v.learners, add) || contains(v.voters, add)
		})
		if err != nil {
			return fmt.Errorf("add learner %d: %w", add, err)
		}
		if err := n.snapshotNow(ctx, gid); err != nil {
			return err
		}
		// Promote once the learner has everything committed so far.
		for {
			v, err := n.viewGroup(gid)
			if err != nil {
				return err
			}
			if !v.leader {
				return &NotLeaderError{}
			}
			if contains(v.voters, add) || v.match[add] >= v.commit {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("learner %d catching up (match %d of %d): %w", add, v.match[add], v.commit, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		err = propose(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: new(add)}, func(v groupView) bool {
			return contains(v.voters, add)
		})
		if err != nil {
			return fmt.Errorf("promote %d: %w", add, err)
		}
	}
	if remove != 0 && remove == n.Self() {
		// The leader leaves: it hands leadership to another voter first (a leader that
		// removed itself would leave followers that may be quiesced waiting for it),
		// and the new leader removes it when the caller retries.
		v, err := n.viewGroup(gid)
		if err != nil {
			return err
		}
		// To a voter that held the shard before (its records are applied); the node
		// just promoted last: its Raft log matches, but it may still be pulling the
		// records of its snapshot, and a leader cannot pull them from itself.
		to := uint64(0)
		for _, id := range v.voters {
			if id != remove && id != add && v.match[id] >= v.commit && to == 0 {
				to = id
			}
		}
		if to == 0 && contains(v.voters, add) {
			to = add
		}
		if contains(v.voters, remove) && to != 0 {
			if err := n.do(func() {
				g := n.groups[gid]
				g.wake()
				g.rn.TransferLeader(to)
			}); err != nil {
				return err
			}
			return &NotLeaderError{Leader: to}
		}
	}
	if remove != 0 {
		err := propose(&pb.ConfChange{Type: pb.ConfChangeRemoveNode.Enum(), NodeId: new(remove)}, func(v groupView) bool {
			return !contains(v.voters, remove) && !contains(v.learners, remove)
		})
		if err != nil {
			return fmt.Errorf("remove %d: %w", remove, err)
		}
	}
	return nil
}

// snapshotNow snapshots a shard group at its applied index once that covers the
// latest conf change, so the snapshot a new learner gets names it (raft refuses a
// snapshot whose configuration lacks the receiver).
func (n *Node) snapshotNow(ctx context.Context, gid uint64) error {
	for {
		var done bool
		var cerr error
		if err := n.do(func() {
			g := n.groups[gid]
			if g == nil {
				cerr = fmt.Errorf("group %d: no replica here", gid)
				return
			}
			applied, end, _ := g.appliedState()
			data := appliedValue(applied, end)
			if gid == catalogGroup {
				applied, data = n.cat.Applied, n.cat.encode() // the catalog applies on this loop
			}
			if applied < g.csIndex {
				return
			}
			first, _ := g.st.FirstIndex()
			through := min(applied, max(first, applied-min(applied, n.o.LogKeep)))
			cerr = g.st.compact(applied, through, g.cs, data)
			if errors.Is(cerr, raft.ErrSnapOutOfDate) || errors.Is(cerr, raft.ErrCompacted) {
				cerr = nil
			}
			done = true
		}); err != nil {
			return err
		}
		if done || cerr != nil {
			return cerr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Adding and removing nodes. The catalog is the authority on membership once the
// cluster exists: its member list (node id → Raft address) starts as the founding
// nodes' configs and changes only through AddNode and RemoveNode; a restart loads it
// from the catalog, never from the config. A config's peers give where this node dials
// a peer (a configured address wins over the catalog's, so a proxy or NAT address in
// the config keeps working); a node the config does not name is dialled at the
// address the catalog has for it.

// memberCmd adds (or, Remove, drops) a node of the cluster; Base is the proposer's
// member list, taken when the catalog has none yet (the founding nodes).
type memberCmd struct {
	ID       uint64   `json:"id"`
	RaftAddr string   `json:"raft_addr,omitempty"`
	Remove   bool     `json:"remove,omitempty"`
	Base     []uint64 `json:"base,omitempty"`
}

func (n *Node) applyMember(cs *catalogState, m *memberCmd) {
	if len(cs.Members) == 0 {
		cs.Members = map[uint64]string{}
		for _, id := range m.Base {
			cs.Members[id] = ""
		}
	}
	if m.Remove {
		delete(cs.Members, m.ID)
		delete(cs.Nodes, m.ID)
		if !contains(cs.Removed, m.ID) {
			cs.Removed = append(slices.Clone(cs.Removed), m.ID)
		}
		return
	}
	cs.Members[m.ID] = m.RaftAddr
	cs.Removed = slices.DeleteFunc(slices.Clone(cs.Removed), func(id uint64) bool { return id == m.ID })
}

// setMembers takes the catalog's member list (when it has one) and starts links to
// the nodes this node does not know yet.
func (n *Node) setMembers(cs *catalogState) {
	if len(cs.Members) == 0 {
		return
	}
	ids := make([]uint64, 0, len(cs.Members))
	for id, addr := range cs.Members {
		ids = append(ids, id)
		n.tr.addPeer(id, addr)
	}
	ids = sortedIDs(ids)
	n.membersP.Store(&ids)
}

// memberIDs is every node of the cluster, sorted.
func (n *Node) memberIDs() []uint64 { return *n.membersP.Load() }

// catalogVoters is the catalog group's first configuration when this node has no
// Raft state yet: the founding nodes, or none for a node joining a running cluster
// (the catalog leader sends it a snapshot once AddNode made it a learner).
func (n *Node) catalogVoters() []uint64 {
	if n.cfg.Join {
		return nil
	}
	return n.memberIDs()
}

// AddNode adds node id, listening for its peers at raftAddr, to the cluster: every node
// starts a link to it, it joins the catalog group as a learner, catches up from a
// snapshot and becomes a voter. The node must be running with `join: true` in its
// cluster config. Shards are not moved onto it: MoveReplica does that.
func (n *Node) AddNode(ctx context.Context, id uint64, raftAddr string) error {
	if id == 0 || id > MaxNodeID {
		return fmt.Errorf("node id must be 1..%d, got %d", MaxNodeID, id)
	}
	if _, _, err := net.SplitHostPort(raftAddr); err != nil {
		return fmt.Errorf("raft address %q: %w", raftAddr, err)
	}
	if err := n.changeCatalog(ctx, &catalogCmd{Member: &memberCmd{ID: id, RaftAddr: raftAddr, Base: n.memberIDs()}}); err != nil {
		return err
	}
	return n.changeReplicas(ctx, catalogGroup, id, 0)
}

// RemoveNode removes node id from the cluster: each of its shard replicas first moves
// to the member holding the fewest replicas without one of that shard, then it leaves
// the catalog group and the member list. Ask another node than id itself.
func (n *Node) RemoveNode(ctx context.Context, id uint64) error {
	if id == n.Self() {
		return errors.New("a node cannot remove itself: ask another node of the cluster")
	}
	if !contains(n.memberIDs(), id) {
		return fmt.Errorf("node %d is not a member of the cluster", id)
	}
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	load := map[uint64]int{}
	for _, sp := range cat.Streams {
		for _, sh := range sp.Shards {
			for _, r := range sh.Replicas {
				load[r]++
			}
		}
	}
	for _, name := range cat.streamNames() {
		for i, sh := range cat.Streams[name].Shards {
			if !contains(sh.Replicas, id) {
				continue
			}
			to := uint64(0)
			for _, m := range n.memberIDs() {
				if m != id && !contains(sh.Replicas, m) && (to == 0 || load[m] < load[to]) {
					to = m
				}
			}
			if to == 0 {
				return fmt.Errorf("node %d holds a replica of %s/%d and every other node has one: add a node first", id, name, i)
			}
			if err := n.MoveReplica(ctx, name, int32(i), id, to); err != nil {
				return fmt.Errorf("move %s/%d off node %d: %w", name, i, id, err)
			}
			load[to]++
		}
	}
	if err := n.changeReplicas(ctx, catalogGroup, 0, id); err != nil {
		return err
	}
	if err := n.changeCatalog(ctx, &catalogCmd{Member: &memberCmd{ID: id, Remove: true, Base: n.memberIDs()}}); err != nil {
		return err
	}
	n.tellRemovedAfter(id)
	return nil
}

// KnownClusterID is the catalog's cluster id as this node holds it now ("" before it
// has the catalog).
func (n *Node) KnownClusterID() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cat.ClusterID
}
