package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// authorizeTxn checks the transactional APIs (authz.go lists the others). There is no
// transactional-id resource in our ACL model: a transactional id belongs to the
// principal that first initialised it (txn.go, TRANSACTIONAL_ID_AUTHORIZATION_FAILED
// for others), and InitProducerId needs write on some stream. AddPartitionsToTxn needs
// write on each topic (TOPIC_AUTHORIZATION_FAILED, the request is refused whole, as
// Kafka does), AddOffsetsToTxn read on the group, TxnOffsetCommit read on the group
// (GROUP_AUTHORIZATION_FAILED) and on each topic (TOPIC_AUTHORIZATION_FAILED).
func (s *Server) authorizeTxn(c *conn, h handler, req kmsg.Request) (kmsg.Response, error) {
	p := c.sec.principal
	switch r := req.(type) {
	case *kmsg.AddPartitionsToTxnRequest:
		denied := false
		for _, t := range r.Topics {
			denied = denied || !p.CanStream(t.Topic, auth.OpWrite)
		}
		if !denied {
			return h(s, c, req)
		}
		resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, t := range r.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			code := kerr.OperationNotAttempted.Code
			if !p.CanStream(t.Topic, auth.OpWrite) {
				code = kerr.TopicAuthorizationFailed.Code
			}
			for _, part := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = part, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil
	case *kmsg.AddOffsetsToTxnRequest:
		if !p.CanGroup(r.Group, auth.OpRead) {
			resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp, nil
		}
	case *kmsg.TxnOffsetCommitRequest:
		groupOK := p.CanGroup(r.Group, auth.OpRead)
		denied := !groupOK
		for _, t := range r.Topics {
			denied = denied || !p.CanStream(t.Topic, auth.OpRead)
		}
		if denied {
			resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
			for _, t := range r.Topics {
				rt := kmsg.NewTxnOffsetCommitResponseTopic()
				rt.Topic = t.Topic
				// Nothing is staged: the request is refused whole.
				code := kerr.TopicAuthorizationFailed.Code
				if !groupOK {
					code = kerr.GroupAuthorizationFailed.Code
				}
				for _, part := range t.Partitions {
					rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
					rp.Partition, rp.ErrorCode = part.Partition, code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp, nil
		}
	}
	return h(s, c, req)
}
