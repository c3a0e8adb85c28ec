package kafkawire

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// CreatePartitions: v0-3.
//
// Grows a stream's shards to the requested count through the catalog: stored records
// keep their shard, new publishes follow the new count. Fewer or as many partitions as
// today is INVALID_PARTITIONS, manual assignments INVALID_REQUEST. validate_only checks
// without changing. v2 is flexible.

func init() { register(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewCreatePartitionsResponseTopic()
		t.Topic = rt.Topic
		fail := func(code int16, msg string) {
			t.ErrorCode = code
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		switch {
		case !s.authorizeStream(c, rt.Topic, auth.OpAdmin):
			fail(kerr.TopicAuthorizationFailed.Code, "not authorized to alter topic "+rt.Topic)
		case len(rt.Assignment) > 0:
			fail(kerr.InvalidReplicaAssignment.Code, "manual replica assignment is not supported: one broker holds every partition")
		case rt.Count > mapping.MaxShards:
			fail(kerr.InvalidPartitions.Code, fmt.Sprintf("partitions: %d over the limit %d", rt.Count, mapping.MaxShards))
		default:
			grow := func(d mapping.Definition) (mapping.Definition, error) {
				if rt.Count <= d.Shards {
					return d, fmt.Errorf("%w: topic %s has %d partitions; it can only grow, not to %d", errShrink, rt.Topic, d.Shards, rt.Count)
				}
				d.Shards = rt.Count
				if req.ValidateOnly {
					return d, errValidated
				}
				return d, nil
			}
			d, err := s.cat.Update(rt.Topic, grow)
			switch {
			case errors.Is(err, errValidated):
			case err != nil && isShrink(err):
				fail(kerr.InvalidPartitions.Code, err.Error())
			case err != nil:
				fail(catalogError(err))
			default:
				s.lg.Info().Str("stream", d.Name).Int32("shards", d.Shards).Msg("stream grown by CreatePartitions")
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
