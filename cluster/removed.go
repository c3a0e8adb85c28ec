package cluster

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A node removed from the cluster (RemoveNode) learns it in one of three ways: it
// applies the catalog group's conf change that removes it; the node that ran
// RemoveNode tells it over the link (methodRemoved) once the removal is committed; or,
// restarted later, it sends Raft messages to a member, which answers with the same
// call. It then stops its Raft groups, keeps a durable marker (so a restart stays
// removed), reports "removed" in Status and refuses client writes with ErrRemoved, and
// logs one line saying what to do. Its shard replicas were moved off before (RemoveNode
// moves them first), and their data deleted then (drop.go).

// ErrRemoved: this node was removed from the cluster and serves no writes.
var ErrRemoved = &RemovedError{}

// RemovedError is the error of writes to a removed node. Kafka's face answers it as
// "not the leader" (NotLeader), so clients refresh their metadata and move to a member;
// MQTT's disconnects the publisher with "Use another server" (UseAnotherServer).
type RemovedError struct{ Node uint64 }

func (e *RemovedError) Error() string {
	return fmt.Sprintf("node %d was removed from the cluster: connect to another node", e.Node)
}

// Is makes errors.Is(err, ErrRemoved) true for every node's.
func (e *RemovedError) Is(target error) bool { return target == ErrRemoved }

// NotLeader makes the Kafka face answer NOT_LEADER_OR_FOLLOWER.
func (e *RemovedError) NotLeader() bool { return true }

// UseAnotherServer makes the MQTT face disconnect the client with "Use another
// server" (MQTT 5) so it reconnects elsewhere.
func (e *RemovedError) UseAnotherServer() bool { return true }

const (
	// methodRemoved tells a node it was removed: request u64 the node's id.
	methodRemoved byte = 21
	// removedKind is the log entry kind of the durable marker (name "self", value
	// the node that said so, u64).
	removedKind = "cluster.removed"
)

type removal struct {
	on   atomic.Bool
	by   atomic.Uint64 // who said so (this node's own id: the catalog conf change)
	mu   sync.Mutex
	told map[uint64]time.Time // non-members told recently (answered at most once a second)
}

// Removed reports whether this node was removed from the cluster.
func (n *Node) Removed() bool { return n.removed.on.Load() }

// refuseRemoved is ErrRemoved once this node was removed.
func (n *Node) refuseRemoved() error {
	if n.removed.on.Load() {
		return &RemovedError{Node: n.Self()}
	}
	return nil
}

func (n *Node) registerRemoval() {
	n.tr.register(methodRemoved, n.onRemoved)
}

// loadRemoved restores the marker at start: a removed node stays removed, loads the
// catalog it had (for Status) and opens no group.
func (n *Node) loadRemoved() (bool, error) {
	es, err := n.l.Entries(removedKind)
	if err != nil {
		return false, err
	}
	for _, e := range es {
		if e.Name == "self" && len(e.Value) == 8 {
			n.removed.on.Store(true)
			n.removed.by.Store(binary.BigEndian.Uint64(e.Value))
		}
	}
	if !n.removed.on.Load() {
		return false, nil
	}
	cs, err := loadCatalog(n.l)
	if err != nil {
		return false, err
	}
	n.cat = cs
	n.logRemoved()
	return true, nil
}

func (n *Node) onRemoved(from uint64, body []byte, reply func([]byte, error)) {
	if len(body) != 8 || binary.BigEndian.Uint64(body) != n.Self() {
		reply(nil, errBadEntry)
		return
	}
	go func() {
		n.markRemoved(from)
		reply(nil, nil)
	}()
}

// markRemoved records the removal (by node by), stops every Raft group and logs it.
// Not on the Raft loop (it waits for it).
func (n *Node) markRemoved(by uint64) {
	if !n.removed.on.CompareAndSwap(false, true) {
		return
	}
	n.removed.by.Store(by)
	if err := n.l.PutEntry(removedKind, "self", binary.BigEndian.AppendUint64(nil, by)); err != nil {
		n.lg.Error().Err(err).Msg("save removed marker")
	}
	n.logRemoved()
	n.stopAllGroups()
}

func (n *Node) logRemoved() {
	n.lg.Error().Uint64("removed_by", n.removed.by.Load()).
		Msg("this node was removed from the cluster: it stopped replicating and refuses client writes; stop it " +
			"(to use it again, wipe its data directory and add it with `mqstreams cluster add-node`)")
}

// stopAllGroups takes every group off the Raft loop and closes it.
// The groups come back through a channel: do returns ErrClosed when the node closes
// meanwhile, possibly while the loop runs the task; then the loop's end tells whether
// it ran it (its groups are closed here) or never will (Close closes them).
func (n *Node) stopAllGroups() {
	ch := make(chan []*group, 1)
	if err := n.do(func() {
		var gs []*group
		n.mu.Lock()
		for id, g := range n.groups {
			gs = append(gs, g)
			delete(n.groups, id)
		}
		n.mu.Unlock()
		ch <- gs
	}); err != nil {
		n.wg.Wait()
	}
	select {
	case gs := <-ch:
		for _, g := range gs {
			g.close()
		}
	default:
	}
}

// tellRemoved tells node id it was removed, retrying while its link is down, for up
// to wait (it may be down for good).
func (n *Node) tellRemoved(id uint64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ch := make(chan error, 1)
		n.tr.call(id, methodRemoved, binary.BigEndian.AppendUint64(nil, id), 5*time.Second, func(_ []byte, err error) { ch <- err })
		err := <-ch
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-n.stop:
			return ErrClosed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// noticeSender answers Raft traffic from a node that is not a member of the cluster
// (removed while it was down) with methodRemoved, at most once a second per node.
func (n *Node) noticeSender(from uint64) {
	if n.removed.on.Load() || contains(n.memberIDs(), from) {
		return
	}
	n.mu.RLock()
	removed := contains(n.cat.Removed, from)
	n.mu.RUnlock()
	if !removed {
		return // a node joining, or one this node has not heard was removed
	}
	n.removed.mu.Lock()
	if n.removed.told == nil {
		n.removed.told = map[uint64]time.Time{}
	}
	if time.Since(n.removed.told[from]) < time.Second {
		n.removed.mu.Unlock()
		return
	}
	n.removed.told[from] = time.Now()
	n.removed.mu.Unlock()
	go func() { _ = n.tellRemoved(from, 0) }()
}

// noticeConfChange marks this node removed when a conf change of the catalog group
// it applied leaves it out (on the loop: the rest runs off it).
func (n *Node) noticeConfChange(g *group) {
	if g.id != catalogGroup || len(g.cs.GetVoters()) == 0 {
		return
	}
	if contains(g.cs.GetVoters(), n.Self()) || contains(g.cs.GetLearners(), n.Self()) {
		return
	}
	go n.markRemoved(n.Self())
}

// tellRemovedAfter tells a node RemoveNode removed, in the background (it may be down:
// then it is told when it calls again, noticeSender).
func (n *Node) tellRemovedAfter(id uint64) {
	wait := n.o.tellRemovedFor
	if wait < 0 {
		return
	}
	if wait == 0 {
		wait = 10 * time.Second
	}
	go func() {
		if err := n.tellRemoved(id, wait); err != nil {
			n.lg.Info().Err(err).Uint64("removed", id).Msg("removed node not told now (down?); it is told when it next calls")
		}
	}()
}
