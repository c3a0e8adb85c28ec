package kafkawire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Producer ids in a cluster. Every node gives out ids (InitProducerId goes to any
// node), and nodes start together, so ids drawn from each node's clock alone collide:
// two producers with one id make the partition leader answer one's batch with the
// other's offset (a retry, as far as it can tell), and an acknowledged record is not
// stored. So in a cluster an id is the node's own counter shifted left 16 bits with the
// node id in the low 16 bits: unique across nodes, and across restarts as the counter
// is reserved durably as alone (under its own entry name, since the counter now starts
// from the clock in milliseconds, not shifted, to leave room for the node bits).

// maxClusterProducerNode is the largest node id producer ids can carry.
const maxClusterProducerNode = 1<<16 - 1

// producerIDsClusterName is the entry holding the reserved counter in a cluster.
const producerIDsClusterName = "next-cluster"

// joinCluster switches the producers to cluster ids for node; called once, before
// the server starts.
func (p *producers) joinCluster(node int32) error {
	if node < 0 || node > maxClusterProducerNode {
		return fmt.Errorf("cluster node id %d: producer ids carry node ids up to %d", node, maxClusterProducerNode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seed := p.now().UnixMilli()
	if p.log != nil {
		ids, err := p.log.Entries(producerIDsKind)
		if err != nil {
			return fmt.Errorf("producer ids: %w", err)
		}
		for _, e := range ids {
			if e.Name == producerIDsClusterName && len(e.Value) == 8 {
				seed = max(seed, int64(binary.BigEndian.Uint64(e.Value)))
			}
		}
	}
	p.node, p.clustered = int64(node), true
	p.first, p.next, p.limit = seed, seed, seed
	if p.log == nil {
		p.limit = math.MaxInt64
	}
	return nil
}

// idsName is the entry the reserved counter is stored under.
func (p *producers) idsName() string {
	if p.clustered {
		return producerIDsClusterName
	}
	return producerIDsName
}

// external is the producer id clients see for counter value n.
func (p *producers) external(n int64) int64 {
	if !p.clustered {
		return n
	}
	return n<<16 | p.node
}

// internal is the counter value of a producer id given out here; ok is false for an
// id of another node.
func (p *producers) internal(id int64) (n int64, ok bool) {
	if !p.clustered {
		return id, true
	}
	if id < 0 || id&maxClusterProducerNode != p.node {
		return 0, false
	}
	return id >> 16, true
}

// ProducerSync is what a Cluster may offer so that idempotent producers stay exactly
// once across leader changes. A partition's producer state is replicated with its
// records (log.EntryOp.WithResult), so every replica stores it; a node keeps it in
// memory only for the leadership term it read it at, and reads it from its local
// log again, once settled, when it leads at another term or does not know the
// producer: a batch the old leader stored but never acknowledged is then answered,
// on retry, with its original offset.
type ProducerSync interface {
	// LeaderTerm is the term this node leads the shard's group at, 0 when it does not.
	LeaderTerm(stream string, shard int32) uint64
	// Settle waits until this node, as leader, has applied every entry of the
	// shard's group it holds, and returns its term.
	Settle(ctx context.Context, stream string, shard int32) (uint64, error)
}

// errNotSettled is a leader not (yet) able to answer for a producer's state.
var errNotSettled = errors.New("not the settled leader of the partition")

// sync makes the state of key current for this node's leadership of the shard: kept
// when read at the current term, otherwise read again from the local log once the
// node has applied all it holds.
func (p *producers) sync(ctx context.Context, cs ProducerSync, key producerKey, stream string, shard int32) error {
	if p.log == nil {
		return nil
	}
	term := cs.LeaderTerm(stream, shard)
	if term == 0 {
		return errNotSettled
	}
	p.mu.Lock()
	st := p.states[key]
	ok := st != nil && st.term == term
	p.mu.Unlock()
	if ok {
		return nil
	}
	term, err := cs.Settle(ctx, stream, shard)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotSettled, err)
	}
	es, err := p.log.EntriesPrefix(producerStateKind, producerStateName(key))
	if err != nil {
		return fmt.Errorf("producer state: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.states[key]; cur != nil && cur.term == term {
		return nil // read meanwhile by another request of this term
	}
	st = p.decodeStates(es)[key]
	if st != nil && p.now().Sub(st.used) > p.ttl {
		st = nil // expired: another leader dropped it from its memory and store
	}
	if st == nil {
		st = &producerState{fresh: true, used: p.now()}
	}
	st.term = term
	p.states[key] = st
	return nil
}

// syncProducer brings a producer's state up to date before its batch is checked, in
// a cluster that offers ProducerSync. Transactional batches alone are the local log's;
// in a cluster they are replicated like the others (txn_cluster.go).
func (s *Server) syncProducer(key producerKey, stream string, shard int32, transactional bool, deadline time.Time) error {
	cs, ok := s.cluster.(ProducerSync)
	if !ok || transactional && s.txns.cl == nil {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return s.producers.sync(ctx, cs, key, stream, shard)
}

// isNotLeader reports an append a cluster's writer refused because this node does not
// lead the partition (cluster.NotLeaderError): the client is told to move.
func isNotLeader(err error) bool {
	var nl interface{ NotLeader() bool }
	return errors.As(err, &nl) && nl.NotLeader()
}

// isProducerFenced reports a transactional append a cluster's shard leader refused
// because a marker of a newer epoch of the producer was written there
// (cluster.ProducerFencedError): INVALID_PRODUCER_EPOCH.
func isProducerFenced(err error) bool {
	var pf interface{ ProducerFenced() bool }
	return errors.As(err, &pf) && pf.ProducerFenced()
}
