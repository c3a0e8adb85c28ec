package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddPartitionsToTxn: v0-3.
//
// Adds partitions to the producer's transaction, which begins with the first, and
// stores the transaction's state before answering (txn.go). A partition must be added
// before the producer writes to it (Produce answers INVALID_TXN_STATE otherwise).
// Errors are per request, as Kafka gives them: an unknown transactional id or a
// producer id it does not hold INVALID_PRODUCER_ID_MAPPING, another epoch
// PRODUCER_FENCED, an EndTxn under way CONCURRENT_TRANSACTIONS; an unknown partition
// is UNKNOWN_TOPIC_OR_PARTITION and the others of the request OPERATION_NOT_ATTEMPTED.
// v3 is flexible; v4 (KIP-890 batching, broker-to-broker) is not served.

func init() { register(24, 0, 3, handleAddPartitionsToTxn) }

func handleAddPartitionsToTxn(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	codes := func(code func(topic string, p int32) int16) {
		for _, rt := range req.Topics {
			t := kmsg.NewAddPartitionsToTxnResponseTopic()
			t.Topic = rt.Topic
			for _, p := range rt.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code(rt.Topic, p)
				t.Partitions = append(t.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, t)
		}
	}
	var parts []txnPart
	unknown := map[txnPart]bool{}
	for _, rt := range req.Topics {
		st := s.stream(rt.Topic)
		for _, p := range rt.Partitions {
			tp := txnPart{Stream: rt.Topic, Shard: p}
			if st == nil || p < 0 || p >= st.Shards() {
				unknown[tp] = true
				continue
			}
			parts = append(parts, tp)
		}
	}
	if len(unknown) > 0 {
		codes(func(topic string, p int32) int16 {
			if unknown[txnPart{Stream: topic, Shard: p}] {
				return kerr.UnknownTopicOrPartition.Code
			}
			return kerr.OperationNotAttempted.Code
		})
		return resp, nil
	}
	owner, check := c.txnOwner()
	t, code := s.txns.lookup(req.TransactionalID, req.ProducerID, req.ProducerEpoch, owner, check)
	if code == nil {
		code = s.txns.addPartitions(t, parts)
	}
	codes(func(string, int32) int16 {
		if code != nil {
			return code.Code
		}
		return 0
	})
	return resp, nil
}
