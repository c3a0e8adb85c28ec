package kafkawire

import (
	"errors"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// ListOffsets: v0-7.
//
// Timestamp -2 is the log start, -1 the high watermark (only durable records), or with
// isolation_level read_committed (v2+) the last stable offset, -3 (v7) the newest record with its
// time. T >= 0 is the first offset whose append time is >= T ms with that real time
// (v1+), or offset -1 with timestamp -1 when no record is that new, as Kafka answers
// (kafka-python's offsets_for_times then returns None). Other negative timestamps are
// treated as 0. v0 answers in OldStyleOffsets (at most MaxNumOffsets, which is one
// offset here; the high watermark when no record is that new). v4+ leader epochs are -1.

func init() { register(2, 0, 7, handleListOffsets) }

func handleListOffsets(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = rt.Topic
		st := s.stream(rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			p.LeaderEpoch = -1
			if st == nil {
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				off, ts, err := listOffset(st, rp.Partition, rp.Timestamp, req.IsolationLevel == 1)
				switch {
				case err != nil:
					p.ErrorCode = offsetsErrorCode(err)
				case req.Version == 0:
					if off < 0 && rp.Timestamp >= 0 {
						_, off, _ = st.Offsets(rp.Partition)
					}
					if rp.MaxNumOffsets > 0 {
						p.OldStyleOffsets = []int64{off}
					}
				default:
					p.Offset, p.Timestamp = off, ts
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// listOffset resolves one ListOffsets timestamp to an offset and a timestamp in ms.
func listOffset(st *log.Stream, shard int32, ts int64, committed bool) (offset, tsMS int64, err error) {
	switch ts {
	case -2, -1:
		start, hwm, err := st.Offsets(shard)
		if err != nil {
			return 0, 0, err
		}
		if ts == -2 {
			return start, -1, nil
		}
		if committed {
			lso, err := st.LastStable(shard)
			return min(lso, hwm), -1, err
		}
		return hwm, -1, nil
	case -3:
		off, us, err := st.MaxTimestamp(shard)
		if err != nil || off < 0 {
			return off, -1, err
		}
		return off, us / 1000, nil
	}
	if ts < 0 {
		ts = 0
	}
	if ts > math.MaxInt64/1000 {
		// Beyond any append time (and µs would overflow): no record is that new.
		_, _, err := st.Offsets(shard)
		return -1, -1, err
	}
	off, us, err := st.OffsetForTime(shard, ts*1000)
	if err != nil {
		return off, -1, err
	}
	if us < 0 {
		return -1, -1, nil
	}
	return off, us / 1000, nil
}

// offsetsErrorCode maps a log error on a partition to Kafka's code.
func offsetsErrorCode(err error) int16 {
	switch {
	case errors.Is(err, log.ErrUnknownShard), errors.Is(err, log.ErrUnknownStream):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, log.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	default:
		return kerr.UnknownServerError.Code
	}
}
