package kafkawire

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/log"
)

// DeleteRecords: v0-2.
//
// Advances a partition's log start offset to the given offset (-1: the high
// watermark), deleting the records below it; the answer is the new low watermark. An
// offset past the high watermark is OFFSET_OUT_OF_RANGE. v2 is flexible.
//
// In a cluster any node takes it: the writer (log.RecordDeleter) forwards it to the
// partition's leader, which replicates the new log start; the answer comes once that
// is committed, with the low watermark every replica then has.

func init() { register(21, 0, 2, handleDeleteRecords) }

func handleDeleteRecords(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewDeleteRecordsResponseTopic()
		t.Topic = rt.Topic
		st := s.stream(rt.Topic)
		allowed := s.authorizeStream(c, rt.Topic, auth.OpAdmin)
		for _, rp := range rt.Partitions {
			p := kmsg.NewDeleteRecordsResponseTopicPartition()
			p.Partition, p.LowWatermark = rp.Partition, -1
			switch {
			case !allowed:
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case st == nil:
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				low, err := s.deleteRecords(rt.Topic, rp.Partition, rp.Offset, req.TimeoutMillis)
				switch {
				case err == nil:
					p.LowWatermark = low
				case errors.Is(err, log.ErrOffsetOutOfRange):
					p.ErrorCode = kerr.OffsetOutOfRange.Code
				case errors.Is(err, log.ErrUnknownShard), errors.Is(err, log.ErrUnknownStream):
					p.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case isNotLeader(err):
					p.ErrorCode = kerr.NotLeaderForPartition.Code
				case isTimeout(err):
					p.ErrorCode = kerr.RequestTimedOut.Code
				default:
					s.lg.Warn().Err(err).Str("topic", rt.Topic).Int32("partition", rp.Partition).Msg("delete records")
					p.ErrorCode = kerr.KafkaStorageError.Code
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// deleteRecords moves the log start through the writer when it replicates it (a
// cluster), on the local log otherwise.
func (s *Server) deleteRecords(topic string, partition int32, offset int64, timeoutMS int32) (int64, error) {
	d, ok := s.writer.(log.RecordDeleter)
	if !ok {
		d = s.log
	}
	ctx := context.Background()
	if timeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeoutMS)*time.Millisecond)
		defer cancel()
	}
	return d.DeleteRecords(ctx, topic, partition, offset)
}

// isTimeout reports a replicated change not committed in time (it may still be).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
