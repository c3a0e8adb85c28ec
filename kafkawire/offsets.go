package kafkawire

import "github.com/mqstreams/mqstreams/log"

// OffsetStore keeps consumer groups' committed offsets: the log on a single node, the
// cluster (which stores them on every node) in a cluster.
type OffsetStore interface {
	CommitOffsets(group string, offsets []log.CommittedOffset) error
}

// storing makes the coordinator commit offsets to st (nil: keep the log).
func (c *coordinator) storing(st OffsetStore) *coordinator {
	if st != nil {
		c.commits = st
	}
	return c
}
