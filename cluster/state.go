package cluster

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/mqstreams/mqstreams/log"
)

// Replicated state of a protocol server (Kafka's transaction coordinator,
// docs/transactions.md "Cluster"): keys and values held in the catalog state, so that
// every node applies the same commands in the same order and a node catching up from a
// catalog snapshot gets the state with it. The cluster does not interpret commands:
// the StateMachine set with SetStateMachine applies them, on every node, on the Raft
// loop.

// StateMachine applies replicated commands to the state held in the catalog.
type StateMachine interface {
	// Apply applies cmd to st, deterministically (the same result on every node from
	// the same state), and returns the consumer groups' offsets to commit with it.
	// Its error goes back to the proposer (ProposeState) and changes nothing.
	Apply(cmd []byte, st *StateView) ([]log.GroupOffsets, error)
}

// StateView is the replicated state as one command applies to it.
type StateView struct {
	m       map[string][]byte
	changed bool
}

// Get returns a key's value, nil if absent.
func (v *StateView) Get(key string) []byte { return v.m[key] }

// Put sets a key's value; nil deletes it.
func (v *StateView) Put(key string, val []byte) {
	if val == nil {
		if _, ok := v.m[key]; ok {
			delete(v.m, key)
			v.changed = true
		}
		return
	}
	v.m[key] = append([]byte(nil), val...)
	v.changed = true
}

// Keys lists the keys starting with prefix, sorted.
func (v *StateView) Keys(prefix string) []string {
	var out []string
	for k := range v.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// smHolder keeps the state machine for the Raft loop.
type smHolder struct{ atomic.Pointer[StateMachine] }

// SetStateMachine sets what applies ProposeState's commands (once, before any is
// proposed; commands applied before it is set fail on this node's apply alone, which
// answers only this node's proposals).
func (n *Node) SetStateMachine(sm StateMachine) { n.sm.Store(&sm) }

// errNoStateMachine is a command applied on a node with no state machine set.
var errNoStateMachine = errors.New("no replicated state machine on this node")

// applyState applies one command to the next catalog state (own() done by the caller).
func (n *Node) applyState(cs *catalogState, cmd []byte) (changed bool, err error) {
	smp := n.sm.Load()
	if smp == nil {
		return false, errNoStateMachine
	}
	if cs.State == nil {
		cs.State = map[string][]byte{}
	}
	v := &StateView{m: cs.State}
	offs, err := (*smp).Apply(cmd, v)
	if err != nil {
		return false, err
	}
	for _, g := range offs {
		if len(g.Offsets) == 0 {
			continue
		}
		if err := n.l.CommitOffsets(g.Group, g.Offsets); err != nil {
			n.lg.Error().Err(err).Str("group", g.Group).Msg("apply transaction offsets")
		}
	}
	return v.changed, nil
}

// ProposeState replicates a state machine command through the catalog group and
// returns once this node applied it, with the state machine's error for it.
func (n *Node) ProposeState(ctx context.Context, cmd []byte) error {
	return n.changeCatalog(ctx, &catalogCmd{State: cmd})
}

// SyncState returns once this node has applied every catalog change committed before
// the call (a no-op change goes through the catalog group).
func (n *Node) SyncState(ctx context.Context) error {
	return n.changeCatalog(ctx, &catalogCmd{})
}

// StateGet reads a key of the replicated state as applied on this node.
func (n *Node) StateGet(key string) []byte {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cat.State[key]
}

// StateScan calls f for each key with prefix as applied on this node, in key order.
func (n *Node) StateScan(prefix string, f func(key string, val []byte)) {
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	v := &StateView{m: cat.State}
	for _, k := range v.Keys(prefix) {
		f(k, cat.State[k])
	}
}

// CoordinatorTerm is the catalog group's term when this node leads it, else 0: the
// node coordinating transactions (FindCoordinator key type 1) is the catalog leader.
func (n *Node) CoordinatorTerm() uint64 {
	g := n.group(catalogGroup)
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
