package cluster

import (
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Round timeline events (Options.testTrace): what happens to a shard entry from its
// proposal to the acknowledgement, on the node named.
const (
	traceEnqueued  = iota // the oldest append in it reached the leader's node
	traceProposed         // the leader proposed it
	traceSent             // the leader sent it to the followers
	traceDurable          // this node's Raft write holding it returned
	traceReceived         // a follower's loop stepped the MsgApp carrying it
	traceQueued           // this node's loop handed its write to the persister
	traceAcked            // the leader heard a follower has it
	traceCommitted        // this node learnt it is committed
	traceApplied          // this node's log applied it (the proposer's appends answered)
	traceEvents
)

// tracer records round timelines (benchmarks only; nil in production).
type tracer func(node, group, index uint64, ev int, at time.Time)

// traceProp is a proposal's entry until its index is known (the next Ready).
type traceProp struct{ enq, at time.Time }

func (n *Node) trace(g *group, index uint64, ev int, at time.Time) {
	if t := n.o.testTrace; t != nil && g.id != catalogGroup {
		t(n.Self(), g.id, index, ev, at)
	}
}

func (n *Node) traceNow() time.Time {
	if n.o.testTrace == nil {
		return time.Time{}
	}
	return time.Now()
}

// traceEntries records ev for every shard entry with records among ents.
func (n *Node) traceEntries(g *group, ents []*pb.Entry, ev int, at time.Time) {
	if n.o.testTrace == nil {
		return
	}
	for _, e := range ents {
		if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
			if ev == traceProposed {
				if len(g.traceProps) == 0 {
					continue
				}
				tp := g.traceProps[0]
				g.traceProps = g.traceProps[1:]
				n.trace(g, e.GetIndex(), traceEnqueued, tp.enq)
				n.trace(g, e.GetIndex(), traceProposed, tp.at)
				continue
			}
			n.trace(g, e.GetIndex(), ev, at)
		}
	}
}

// traceAck records the entries a follower's answer acknowledges.
func (n *Node) traceAck(g *group, m *pb.Message) {
	if n.o.testTrace == nil {
		return
	}
	if m.GetType() == pb.MsgApp {
		n.traceEntries(g, m.GetEntries(), traceReceived, time.Now())
		return
	}
	if m.GetType() != pb.MsgAppResp || m.GetReject() || m.GetFrom() == n.Self() {
		return
	}
	now := time.Now()
	for i := max(g.traceAcked, m.GetIndex()-64) + 1; i <= m.GetIndex(); i++ {
		n.trace(g, i, traceAcked, now)
	}
	g.traceAcked = max(g.traceAcked, m.GetIndex())
}
