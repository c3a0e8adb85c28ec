package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-8.
//
// Stores a group's offsets durably in the log (fsynced before the answer). Group members
// must name the current generation and their member id (ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS otherwise); commits without a generation
// (v0, or generation -1) are accepted for an Empty group, as Kafka's simple consumers.
// Per partition: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE (over 4096 bytes).
// Errors change nothing. v1 adds generation/member and a timestamp (ignored), v2-4 a
// retention time (ignored: offsets are kept until deleted), v6 the leader epoch, v7
// group.instance.id, v8 flexible.

func init() { register(8, 0, 8, handleOffsetCommit) }

func handleOffsetCommit(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().offsetCommit(kreq.(*kmsg.OffsetCommitRequest)), nil
}
