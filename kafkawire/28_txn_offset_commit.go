package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// TxnOffsetCommit: v0-3.
//
// Stages a group's offsets in the producer's transaction (after AddOffsetsToTxn for
// the group, else INVALID_TXN_STATE): they become the group's committed offsets only
// when EndTxn commits, in the same log write as the markers, and are dropped on abort
// (txn.go). Until then OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT
// for them. v3 adds the member id, generation and instance id: when given, they are
// checked against the group as OffsetCommit checks them (ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, ...), which fences a member that lost its partitions in a
// rebalance. Per partition: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE.
// Transaction errors as AddPartitionsToTxn's. v3 is flexible.

func init() { register(28, 0, 3, handleTxnOffsetCommit) }

func handleTxnOffsetCommit(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	perPart := make([][]int16, len(req.Topics))
	var offs []log.CommittedOffset
	for i, rt := range req.Topics {
		perPart[i] = make([]int16, len(rt.Partitions))
		st := s.stream(rt.Topic)
		for j, p := range rt.Partitions {
			switch {
			case st == nil || p.Partition < 0 || p.Partition >= st.Shards():
				perPart[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxOffsetMetadata:
				perPart[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				co := log.CommittedOffset{Stream: rt.Topic, Shard: p.Partition, Offset: p.Offset, LeaderEpoch: -1}
				if req.Version >= 2 {
					co.LeaderEpoch = p.LeaderEpoch
				}
				if p.Metadata != nil {
					co.Metadata = *p.Metadata
				}
				offs = append(offs, co)
			}
		}
	}
	var code *kerr.Error
	if req.Group == "" {
		code = kerr.InvalidGroupID
	} else if req.Version >= 3 && (req.MemberID != "" || req.Generation >= 0) {
		code = s.groups().checkTxnMember(req.Group, req.Generation, req.MemberID, req.InstanceID)
	}
	if code == nil && s.txns.cl != nil {
		// In a cluster this node is the group's coordinator, not the transaction's:
		// the offsets are staged in the replicated state (txn_cluster.go).
		code = s.txns.stageOffsetsCluster(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group, offs)
	} else if code == nil {
		owner, check := c.txnOwner()
		var t *txn
		t, code = s.txns.lookup(req.TransactionalID, req.ProducerID, req.ProducerEpoch, owner, check)
		if code == nil {
			code = s.txns.stageOffsets(t, req.Group, offs)
		}
	}
	for i, rt := range req.Topics {
		t := kmsg.NewTxnOffsetCommitResponseTopic()
		t.Topic = rt.Topic
		for j, p := range rt.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = perPart[i][j]
			if code != nil && rp.ErrorCode == 0 {
				rp.ErrorCode = code.Code
			}
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// checkTxnMember checks a TxnOffsetCommit's member and generation against the group
// as OffsetCommit does; a group that does not exist takes only generation -1.
func (c *coordinator) checkTxnMember(group string, generation int32, memberID string, instanceID *string) *kerr.Error {
	g, err := c.lockGroup(group, false)
	if err != nil {
		return kerr.CoordinatorNotAvailable
	}
	if g == nil {
		if generation >= 0 {
			return kerr.IllegalGeneration
		}
		return nil
	}
	defer g.mu.Unlock()
	if code := g.checkCommit(generation, memberID, instanceID); code != 0 {
		return kerr.ErrorForCode(code).(*kerr.Error)
	}
	return nil
}
