package kafkawire

import (
	"encoding/binary"
	"fmt"
	"math"
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
