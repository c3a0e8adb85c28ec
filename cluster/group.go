package cluster

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mqstreams/mqstreams/log"
)

// group is this node's replica of one Raft group: the catalog or one shard. Its
// RawNode is only touched on the node's Raft loop; the published fields (leader, term,
// applied) are read by anyone.
type group struct {
	n        *Node
	id       uint64
	stream   string // shard groups: the stream and shard they replicate
	shard    int32
	replicas []uint64
	rn       *raft.RawNode
	st       *storage
	cs       *pb.ConfState
	csIndex  uint64 // the entry index cs is the configuration after (loop only)

	// loop only
	pending []*proposal
	lastTS  int64
	// traced benchmarks only (trace.go)
	traceProps []traceProp
	traceAcked uint64
	// lastIndex is the last entry raft handed out to be written (loop only): the
	// Raft log's end, with the writes still under way.
	lastIndex uint64
	// quiesced: the group is idle and neither ticks nor heartbeats (quiesce.go);
	// idleTicks counts a leader's ticks without a proposal; published: the status
	// copy reflects the quiesced state.
	quiesced  bool
	idleTicks int
	published bool

	mu        sync.Mutex
	leader    uint64
	isLeader  bool
	term      uint64
	commit    uint64
	progress  map[uint64]ReplicaStatus
	appliedCh chan struct{} // closed and replaced when applied moves

	// applied is the last index whose effects are durable on this node, end the
	// stream offset after it (shard groups); both move together under mu.
	applied uint64
	end     int64

	ap     *applier // shard groups
	failed atomic.Pointer[error]
	// installs counts the snapshots handed to the applier and not installed yet: while
	// one is, the replica's records are still being pulled from the leader, and it
	// must not take the lead (step, node.go).
	installs atomic.Int32
}

const catalogGroup uint64 = 1

// appliedKind is the log entry kind under which a shard replica keeps its applied
// index (name: the group id), written in the Pebble batch of the records applied.
const appliedKind = "raft.applied"

func groupName(id uint64) string {
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(id)
		id >>= 8
	}
	return string(b[:])
}

func appliedValue(index uint64, end int64) []byte {
	v := make([]byte, 16)
	for i := 0; i < 8; i++ {
		v[i] = byte(index >> (56 - 8*i))
		v[8+i] = byte(uint64(end) >> (56 - 8*i))
	}
	return v
}

func parseApplied(v []byte) (index uint64, end int64) {
	if len(v) != 16 {
		return 0, 0
	}
	for i := 0; i < 8; i++ {
		index = index<<8 | uint64(v[i])
		end = end<<8 | int64(v[8+i])
	}
	return index, end
}

// openGroup loads (or creates, with voters) a group's Raft state and its RawNode.
// applied is the index the state machine has durably applied.
func (n *Node) openGroup(id uint64, stream string, shard int32, voters []uint64, applied uint64) (*group, error) {
	st, fresh, err := openStorage(n.l, id, voters)
	if err != nil {
		return nil, err
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	snapIdx := snap.GetMetadata().GetIndex()
	if applied < snapIdx {
		applied = snapIdx // a snapshot not yet installed: the applier installs it first
	}
	if last, _ := st.LastIndex(); applied > hs.GetCommit() && applied <= last {
		// The state machine applied entries whose commit index was not saved: the
		// persister writes the hard state and the applier the records, neither
		// waiting for the other. Applied means committed, and raft hands out only
		// entries written here first, so the log on disk holds them (one WAL, in
		// order): the commit index moves up to them, rather than the applied index
		// down (which would store those records again).
		hs = proto.Clone(hs).(*pb.HardState)
		hs.Commit = new(applied)
		if err := st.SetHardState(hs); err != nil {
			return nil, err
		}
		st.saved = hs
	}
	applied = min(applied, max(hs.GetCommit(), snapIdx))
	c := &raft.Config{
		ID:              n.Self(),
		ElectionTick:    n.o.ElectionTicks,
		HeartbeatTick:   heartbeatTicks,
		Storage:         st,
		Applied:         applied,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		// Writes and applies leave the loop (persist.go).
		AsyncStorageWrites: true,
		CheckQuorum:        true,
		// A leader removed by a conf change (members.go) hands over at once.
		StepDownOnRemoval: true,
		PreVote:           true,
		ReadOnlyOption:    raft.ReadOnlyLeaseBased,
		Logger:            raftLogger{n.lg.With().Uint64("group", id).Logger()},
	}
	rn, err := raft.NewRawNode(c)
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", id, err)
	}
	g := &group{n: n, id: id, stream: stream, shard: shard, replicas: sortedIDs(append(slices.Clone(cs.GetVoters()), cs.GetLearners()...)), rn: rn, st: st,
		cs: proto.Clone(cs).(*pb.ConfState), csIndex: max(st.csIndex, snapIdx), appliedCh: make(chan struct{}), applied: applied}
	g.lastIndex, _ = st.LastIndex()
	if fresh && len(voters) > 0 && voters[0] == n.Self() {
		// The first replica of a new group campaigns at once, which spreads leaders
		// the way placement spreads first replicas.
		_ = rn.Campaign()
	}
	return g, nil
}

// startShard opens this node's replica of a shard group and its applier.
func (n *Node) startShard(stream string, shard int32, sp shardPlacement) (*group, error) {
	if g := n.group(sp.Group); g != nil {
		return g, nil
	}
	index, end := uint64(0), int64(0)
	v, err := n.appliedEntry(sp.Group)
	if err != nil {
		return nil, err
	}
	if v != nil {
		index, end = parseApplied(v)
	}
	// A replica added to an existing group (members.go) starts with no Raft state and
	// gets a snapshot from the leader; the group's first replicas start from the
	// initial state naming them.
	voters, joining := sp.Replicas, contains(sp.Joined, n.Self())
	if joining {
		voters = nil
	}
	g, err := n.openGroup(sp.Group, stream, shard, voters, index)
	if err != nil {
		return nil, err
	}
	if v == nil && !joining {
		// A new replica: the state machine is the empty shard at the initial index.
		g.applied, end = initialIndex, 0
	}
	g.end = end
	g.ap = newApplier(g, end)
	snap, _ := g.st.Snapshot()
	if index < snap.GetMetadata().GetIndex() && v != nil {
		g.ap.push(applyTask{snap: snap})
	}
	n.mu.Lock()
	n.groups[g.id] = g
	n.mu.Unlock()
	go g.ap.run()
	return g, nil
}

func (n *Node) appliedEntry(group uint64) ([]byte, error) {
	es, err := n.l.Entries(appliedKind)
	if err != nil {
		return nil, err
	}
	name := groupName(group)
	for _, e := range es {
		if e.Name == name {
			return e.Value, nil
		}
	}
	return nil, nil
}

// stopShard stops and forgets a shard replica (its stream was deleted).
func (n *Node) stopShard(id uint64) {
	n.persist.drain() // no write of its Raft state may follow the removal
	n.mu.Lock()
	g := n.groups[id]
	delete(n.groups, id)
	n.mu.Unlock()
	if g != nil {
		g.close()
	}
	if err := destroyGroup(n.l, id); err != nil {
		n.lg.Warn().Err(err).Uint64("group", id).Msg("remove raft state")
	}
	if err := n.l.DeleteEntry(appliedKind, groupName(id)); err != nil {
		n.lg.Warn().Err(err).Uint64("group", id).Msg("remove applied index")
	}
}

func (g *group) close() {
	if g.ap != nil {
		g.ap.close()
	}
}

// fsync reports whether this group's Raft writes are fsynced under the node's
// durability: the catalog's always, a shard's as its stream's durability says.
func (g *group) fsync(def log.Durability) bool {
	if g.id == catalogGroup {
		return true
	}
	if s := g.n.l.Stream(g.stream); s != nil {
		if d := s.Spec().Durability; d != "" {
			return d == log.DurabilityFsync
		}
	}
	return def == "" || def == log.DurabilityFsync
}

func (g *group) setLeader(lead uint64, isLeader bool) {
	g.mu.Lock()
	g.leader, g.isLeader = lead, isLeader
	if !isLeader {
		g.progress = nil
	}
	g.mu.Unlock()
}

func (g *group) setHardState(hs *pb.HardState) {
	g.mu.Lock()
	g.term, g.commit = hs.GetTerm(), hs.GetCommit()
	g.mu.Unlock()
}

func (g *group) leaderID() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leader
}

// setApplied publishes a durable apply and wakes the reads waiting for it.
func (g *group) setApplied(index uint64, end int64) {
	g.mu.Lock()
	if index > g.applied {
		g.applied, g.end = index, end
		close(g.appliedCh)
		g.appliedCh = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *group) appliedState() (uint64, int64, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applied, g.end, g.appliedCh
}

// applySnapshot applies a snapshot this replica just wrote (on the Raft loop): its
// configuration here, the catalog here, a shard's records by its applier.
func (n *Node) applySnapshot(g *group, snap *pb.Snapshot) {
	if snap.GetMetadata().GetIndex() > g.csIndex {
		cs := snap.GetMetadata().GetConfState()
		g.cs, g.csIndex = proto.Clone(cs).(*pb.ConfState), snap.GetMetadata().GetIndex()
		g.mu.Lock()
		g.replicas = sortedIDs(append(slices.Clone(cs.GetVoters()), cs.GetLearners()...))
		g.mu.Unlock()
	}
	if g.id == catalogGroup {
		n.applyCatalog(g, snap, nil)
		return
	}
	g.installs.Add(1)
	g.ap.push(applyTask{snap: snap})
}

// apply hands committed entries to the state machine, on the Raft loop:
// configuration changes are applied here, the catalog is applied here, a shard's
// records go to its applier. Raft hands out only entries this node holds durably, so
// an apply never gets ahead of the Raft log on disk.
func (n *Node) apply(g *group, ents []*pb.Entry) {
	for _, e := range ents {
		switch e.GetType() {
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err == nil {
				n.applyConfChange(g, e.GetIndex(), &cc)
			}
		case pb.EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := proto.Unmarshal(e.GetData(), &cc); err == nil {
				n.applyConfChange(g, e.GetIndex(), &cc)
			}
		}
	}
	if g.id == catalogGroup {
		n.applyCatalog(g, nil, ents)
		return
	}
	if len(ents) > 0 {
		g.ap.push(applyTask{ents: ents})
	}
}

// compactLogs snapshots and truncates the Raft log of every group that applied more
// than raftLogKeep entries beyond its first kept one (on the Raft loop).
func (n *Node) compactLogs() {
	n.mu.RLock()
	gs := make([]*group, 0, len(n.groups))
	for _, g := range n.groups {
		gs = append(gs, g)
	}
	cat := n.cat
	n.mu.RUnlock()
	for _, g := range gs {
		applied, end, _ := g.appliedState()
		first, err := g.st.FirstIndex()
		keep := n.o.LogKeep
		if err != nil || applied < first+2*keep {
			continue
		}
		var data []byte
		if g.id == catalogGroup {
			if cat.Applied != applied {
				continue
			}
			data = cat.encode()
		} else {
			data = appliedValue(applied, end)
		}
		if err := g.st.compact(applied, applied-keep, g.cs, data); err != nil {
			n.lg.Warn().Err(err).Uint64("group", g.id).Msg("raft log compaction")
		}
	}
}

// logEnd is the last index of the Raft log including the entries still being written
// (loop only).
func (g *group) logEnd() uint64 {
	last, _ := g.st.LastIndex()
	return max(last, g.lastIndex)
}

// writing tells whether entries raft handed out are still being written here (loop
// only).
func (g *group) writing() bool {
	last, _ := g.st.LastIndex()
	return g.lastIndex > last
}

func (g *group) isLeaderNow() bool {
	return g.rn.BasicStatus().RaftState == raft.StateLeader
}
