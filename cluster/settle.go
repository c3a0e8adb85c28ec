package cluster

import (
	"context"
	"fmt"

	"go.etcd.io/raft/v3"
)

// Settle waits until this node leads the shard's group and has applied every entry
// in its Raft log when called: those committed before its term (Raft's read index)
// and those it proposed itself, so that state replicated with the records (an
// idempotent producer's, log.EntryOp.WithResult) is complete in the local log. It
// returns the leader's term, which a caller keeping that state in memory compares
// to know when to read it again. A node that does not lead gets a *NotLeaderError.
func (n *Node) Settle(ctx context.Context, stream string, shard int32) (uint64, error) {
	if _, err := n.HighWatermark(ctx, stream, shard); err != nil {
		return 0, err
	}
	g, err := n.localReplica(stream, shard)
	if err != nil {
		return 0, err
	}
	var last, term uint64
	var lerr error
	if err := n.do(func() {
		bs := g.rn.BasicStatus()
		if bs.RaftState != raft.StateLeader {
			lerr = &NotLeaderError{Leader: bs.Lead}
			return
		}
		term = bs.HardState.GetTerm()
		last = g.logEnd()
	}); err != nil {
		return 0, err
	}
	if lerr != nil {
		return 0, lerr
	}
	for {
		applied, _, ch := g.appliedState()
		if applied >= last {
			return term, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("settle %s/%d: %w", stream, shard, ctx.Err())
		case <-n.stop:
			return 0, ErrClosed
		}
	}
}

// LeaderTerm is the term of the shard group's leadership when this node leads it,
// 0 otherwise (from memory, for every request).
func (n *Node) LeaderTerm(stream string, shard int32) uint64 {
	sp, err := n.placement(stream, shard)
	if err != nil {
		return 0
	}
	g := n.group(sp.Group)
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.isLeader {
		return 0
	}
	return g.term
}

// NotLeader tells callers that cannot import this package (kafkawire) that an append
// was refused because this node does not lead the shard: nothing was proposed.
func (e *NotLeaderError) NotLeader() bool { return true }
