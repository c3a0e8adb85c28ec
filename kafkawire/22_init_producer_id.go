package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-4.
//
// Gives idempotent producers an id and epoch (see producers): a new id with epoch 0,
// or, when a v3+ client re-initialises an id we know (given out by this run or with
// stored state), the same id with the epoch bumped. Ids are unique across restarts. A transactional id (transactions are not served) is INVALID_REQUEST,
// which every client treats as fatal instead of retrying, with a log line saying why;
// a retriable code such as COORDINATOR_NOT_AVAILABLE would keep a transactional
// producer retrying until its timeout. v2 is flexible; v3 adds the last id and epoch.

func init() { register(22, 0, 4, handleInitProducerID) }

func handleInitProducerID(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil {
		c.lg.Warn().Str("transactional_id", *req.TransactionalID).Str("client_id", c.clientID).
			Msg("kafka transactions are not supported; refusing InitProducerId")
		resp.ErrorCode = kerr.InvalidRequest.Code
		resp.ProducerEpoch = -1
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
