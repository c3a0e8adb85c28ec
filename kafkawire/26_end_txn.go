package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-3.
//
// Commits or aborts the producer's transaction: one log write holds a control batch
// (commit or abort marker) on every partition of the transaction, on commit the group
// offsets TxnOffsetCommit staged, and the coordinator's ended state (txn.go,
// log/txn.go); the answer goes once it is durable. Records of a committed transaction
// are then handed to MQTT delivery (read back from the log, so a commit after a
// restart delivers too); an aborted one's never are. An unknown transactional id or
// producer id is INVALID_PRODUCER_ID_MAPPING, an older epoch PRODUCER_FENCED, ending
// a transaction that is not ongoing INVALID_TXN_STATE (a retry of the EndTxn that
// ended it is answered as it was), one being ended CONCURRENT_TRANSACTIONS. v3 is
// flexible; v4+ (KIP-890) are not served.

func init() { register(26, 0, 3, handleEndTxn) }

func handleEndTxn(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	owner, check := c.txnOwner()
	t, code := s.txns.lookup(req.TransactionalID, req.ProducerID, req.ProducerEpoch, owner, check)
	var parts []endedPart
	if code == nil {
		parts, code = s.txns.endTxnRequest(t, req.Commit)
	}
	if code != nil {
		c.lg.Debug().Str("transactional_id", req.TransactionalID).Bool("commit", req.Commit).Str("error", code.Message).Msg("kafka EndTxn refused")
		resp.ErrorCode = code.Code
		return resp, nil
	}
	if req.Commit {
		var mayPublish func(string) bool
		if s.auth != nil {
			mayPublish = c.sec.principal.CanPublish
		}
		s.deliverCommitted(parts, mayPublish)
	}
	return resp, nil
}
