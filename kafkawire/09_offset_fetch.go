package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v0-8.
//
// A group's committed offsets from the log; -1 (leader epoch -1, empty metadata) where
// none is committed. v2 adds the group error code and a null topic list for "all", v3
// throttle, v5 leader epochs, v6 flexible, v7 require-stable: a partition whose offset
// an ongoing transaction will commit (TxnOffsetCommit) answers UNSTABLE_OFFSET_COMMIT,
// which the client retries, so a new group member does not start from an offset about
// to change (KIP-447); v8 several groups per request.

func init() { register(9, 0, 8, handleOffsetFetch) }

func handleOffsetFetch(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := s.groups().offsetFetch(req)
	if !req.RequireStable {
		return resp, nil
	}
	unstable := kerr.UnstableOffsetCommit.Code
	for i := range resp.Topics {
		t := &resp.Topics[i]
		for j := range t.Partitions {
			if s.txns.pendingOffsets(req.Group, t.Topic, t.Partitions[j].Partition) {
				t.Partitions[j].ErrorCode = unstable
			}
		}
	}
	for gi := range resp.Groups {
		g := &resp.Groups[gi]
		for i := range g.Topics {
			t := &g.Topics[i]
			for j := range t.Partitions {
				if s.txns.pendingOffsets(g.Group, t.Topic, t.Partitions[j].Partition) {
					t.Partitions[j].ErrorCode = unstable
				}
			}
		}
	}
	return resp, nil
}
