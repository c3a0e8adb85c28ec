package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddOffsetsToTxn: v0-3.
//
// Adds a consumer group to the producer's transaction: the offsets TxnOffsetCommit
// then stages for it are committed with the transaction, or dropped if it aborts
// (txn.go). Errors as AddPartitionsToTxn's; an empty group is INVALID_GROUP_ID. v3 is
// flexible.

func init() { register(25, 0, 3, handleAddOffsetsToTxn) }

func handleAddOffsetsToTxn(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	owner, check := c.txnOwner()
	t, code := s.txns.lookup(req.TransactionalID, req.ProducerID, req.ProducerEpoch, owner, check)
	if code == nil {
		code = s.txns.addOffsets(t, req.Group)
	}
	if code != nil {
		resp.ErrorCode = code.Code
	}
	return resp, nil
}
