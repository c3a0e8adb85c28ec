package cluster

import (
	"bytes"
	"encoding/binary"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Quiescence (as CockroachDB does it): a group with nothing to do stops ticking, so an
// idle shard costs no heartbeats, no elections and no CPU. A leader whose followers all
// hold and have applied its whole log, with no proposal for quiesceTicks, sends each
// follower one last heartbeat marked quiesceCtx and stops ticking; a follower that
// gets it, and has the leader's whole log, stops ticking too. Any proposal, lease
// read or Raft message (other than answers to the leader) wakes the group. Without
// Raft heartbeats, failure detection falls to the transport: a quiesced follower
// wakes when its leader's node goes silent (no frame for three transport heartbeats,
// 1.5 s) and elects a new leader as usual; a quiesced leader wakes when a follower's
// node goes silent, so its quorum check runs again.
const quiesceTicks = 20 // 1 s at the default tick

var quiesceCtx = []byte("mqstreams-quiesce")

func isQuiesce(m *pb.Message) bool {
	return m.GetType() == pb.MsgHeartbeat && bytes.Equal(m.GetContext(), quiesceCtx)
}

// wakes tells whether a message for a quiesced group wakes it: anything but the
// quiesce heartbeat itself and the followers' answers to the leader.
func wakes(m *pb.Message) bool {
	switch m.GetType() {
	case pb.MsgHeartbeatResp, pb.MsgAppResp:
		return false
	case pb.MsgHeartbeat:
		return !isQuiesce(m)
	}
	return true
}

func (g *group) wake() {
	g.quiesced, g.published = false, false
	g.idleTicks = 0
}

// tick advances every group that is not quiesced, wakes the quiesced ones whose peers
// went silent, and quiesces idle leaders (on the Raft loop).
func (n *Node) tick() {
	members := n.memberIDs()
	alive := make(map[uint64]bool, len(members))
	for _, id := range members {
		alive[id] = id == n.Self() || n.tr.alive(id)
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, g := range n.groups {
		if g.quiesced {
			if !g.peersAlive(alive) {
				g.wake()
			} else {
				continue
			}
		}
		if g.isLeaderNow() {
			if len(g.pending) > 0 {
				g.idleTicks = 0
			} else if g.idleTicks++; g.idleTicks >= quiesceTicks && !n.o.noQuiesce && n.canQuiesce(g) {
				// Before this tick's heartbeats: the marked one must be the last
				// message the followers get.
				n.quiesce(g)
				continue
			}
		}
		g.rn.Tick()
	}
}

// peersAlive: for a quiesced leader, every follower's node is alive; for a follower,
// its leader's (a quiesced group's leader does not change, so the published one is
// current).
func (g *group) peersAlive(alive map[uint64]bool) bool {
	g.mu.Lock()
	lead, leads := g.leader, g.isLeader
	g.mu.Unlock()
	if !leads {
		return lead != 0 && alive[lead]
	}
	for _, id := range g.replicas {
		if !alive[id] {
			return false
		}
	}
	return true
}

// canQuiesce: the leader's whole log is committed, applied here and held by every
// follower, whose nodes are alive, and no leadership transfer is under way.
func (n *Node) canQuiesce(g *group) bool {
	if g.rn.HasReady() {
		return false // messages or entries still to go out
	}
	st := g.rn.Status()
	last := g.logEnd()
	if stable, err := g.st.LastIndex(); err != nil || stable != last || st.LeadTransferee != 0 || st.HardState.GetCommit() != last || st.Applied != last {
		return false
	}
	if applied, _, _ := g.appliedState(); applied != last {
		return false
	}
	for id, pr := range st.Progress {
		if id != n.Self() && (pr.Match != last || !n.tr.alive(id)) {
			return false
		}
	}
	return len(st.Progress) == len(g.replicas)
}

// quiesce sends every follower the marked heartbeat and stops ticking the group.
func (n *Node) quiesce(g *group) {
	bs := g.rn.BasicStatus()
	for _, id := range g.replicas {
		if id == n.Self() {
			continue
		}
		m := &pb.Message{Type: pb.MsgHeartbeat.Enum(), To: new(id), From: new(n.Self()), Term: new(bs.HardState.GetTerm()),
			Commit: new(bs.HardState.GetCommit()), Context: quiesceCtx}
		n.sendRaft(g.id, m)
	}
	g.quiesced, g.published = true, false
}

// quiesceFollower quiesces a follower on its leader's marked heartbeat when it holds
// and has applied everything the leader has committed.
func (g *group) quiesceFollower(m *pb.Message) {
	bs := g.rn.BasicStatus()
	last := g.logEnd()
	if stable, err := g.st.LastIndex(); err != nil || stable != last || bs.RaftState != raft.StateFollower || bs.Lead != m.GetFrom() || bs.HardState.GetTerm() != m.GetTerm() ||
		last != m.GetCommit() || bs.HardState.GetCommit() != last {
		return
	}
	g.quiesced, g.published = true, false
}

// sendRaft sends one Raft message of a group outside a Ready round.
func (n *Node) sendRaft(group uint64, m *pb.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		return
	}
	f := binary.AppendUvarint(nil, group)
	f = binary.AppendUvarint(f, uint64(len(b)))
	_ = n.tr.send(m.GetTo(), kindRaft, append(f, b...))
}
