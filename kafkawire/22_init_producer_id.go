package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-4.
//
// Without a transactional id it gives idempotent producers an id and epoch (see
// producers): a new id with epoch 0, or, when a v3+ client re-initialises an id we know
// (given out by this run or with stored state), the same id with the epoch bumped. Ids
// are unique across restarts. With a transactional id (txn.go) the id's producer id is
// kept and its epoch bumped, which fences every older instance of the producer; an
// ongoing transaction of the id is aborted first. The transaction timeout must be
// within kafka.transaction_max_timeout_ms (INVALID_TRANSACTION_TIMEOUT); an empty
// transactional id is INVALID_REQUEST; with a user store, a transactional id belongs to
// the principal that first initialised it (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
// others). In a cluster the catalog group's leader coordinates transactional ids
// (txn_cluster.go); another node answers NOT_COORDINATOR. v2 is flexible; v3 adds the
// last id and epoch (KIP-360).

func init() { register(22, 0, 4, handleInitProducerID) }

func handleInitProducerID(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil {
		owner, check := c.txnOwner()
		id, epoch, code := s.txns.initProducerID(*req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch, owner, check)
		if code != nil {
			c.lg.Debug().Str("transactional_id", *req.TransactionalID).Str("error", code.Message).Msg("kafka InitProducerId refused")
			resp.ErrorCode = code.Code
			resp.ProducerID, resp.ProducerEpoch = -1, -1
			return resp, nil
		}
		resp.ProducerID, resp.ProducerEpoch = id, epoch
		return resp, nil
	}
	id, epoch, err := s.producers.initID(req.ProducerID, req.ProducerEpoch)
	if err != nil {
		c.lg.Warn().Err(err).Msg("kafka InitProducerId")
		resp.ErrorCode = kerr.KafkaStorageError.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, epoch
	return resp, nil
}

// txnOwner is the name transactional ids of this connection belong to, and whether
// ownership is checked (only with a user store).
func (c *conn) txnOwner() (string, bool) {
	if c.s.auth == nil {
		return "", false
	}
	return c.sec.principal.Name(), true
}
