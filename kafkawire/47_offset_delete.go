package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete: v0.
//
// Deletes a group's committed offsets for some partitions. GROUP_ID_NOT_FOUND for a group
// with neither members nor offsets; with active consumer members, partitions of topics
// they subscribe to get GROUP_SUBSCRIBED_TO_TOPIC; a non-consumer group with members is
// NON_EMPTY_GROUP.

func init() { register(47, 0, 0, handleOffsetDelete) }

func handleOffsetDelete(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().offsetDelete(kreq.(*kmsg.OffsetDeleteRequest)), nil
}
