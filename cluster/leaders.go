package cluster

import (
	"encoding/binary"
	"sync"
)

// A node keeps Raft state only for the groups it has a replica of, yet any node may
// take a write for any shard (and Kafka Metadata on any node names every partition's
// leader). So every node tells the others, every leadersEvery ticks, which groups it
// leads and in which term (kindLeaders: uvarint group, uvarint term, repeated); a node
// without a replica routes by the newest term it heard.
const (
	kindLeaders  Kind = 5
	leadersEvery      = 10 // ticks: 0.5 s at the default tick
)

type leaderHints struct {
	mu sync.Mutex
	m  map[uint64]leaderHint
}

type leaderHint struct{ node, term uint64 }

func (h *leaderHints) get(group uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[group].node
}

func (h *leaderHints) put(group, node, term uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[uint64]leaderHint{}
	}
	if cur, ok := h.m[group]; !ok || term >= cur.term {
		h.m[group] = leaderHint{node: node, term: term}
	}
}

// announceLeaders sends the groups this node leads to every peer (on the Raft loop).
func (n *Node) announceLeaders() {
	var msg []byte
	n.mu.RLock()
	for _, g := range n.groups {
		g.mu.Lock()
		if g.isLeader {
			msg = binary.AppendUvarint(msg, g.id)
			msg = binary.AppendUvarint(msg, g.term)
		}
		g.mu.Unlock()
	}
	n.mu.RUnlock()
	if len(msg) == 0 {
		return
	}
	for _, id := range n.memberIDs() {
		if id != n.Self() {
			_ = n.tr.send(id, kindLeaders, msg)
		}
	}
}

func (n *Node) onLeaders(from uint64, msg []byte) {
	for len(msg) > 0 {
		g, k := binary.Uvarint(msg)
		if k <= 0 {
			return
		}
		msg = msg[k:]
		term, k := binary.Uvarint(msg)
		if k <= 0 {
			return
		}
		msg = msg[k:]
		n.hints.put(g, from, term)
	}
}

// leaderOf is the group's leader: from this node's replica, else the newest hint.
func (n *Node) leaderOf(group uint64) uint64 {
	if g := n.group(group); g != nil {
		if lead := g.leaderID(); lead != 0 {
			return lead
		}
		// A replica just added (members.go) knows no leader until it hears from it.
	}
	return n.hints.get(group)
}
