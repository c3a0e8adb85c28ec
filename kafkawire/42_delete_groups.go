package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-2.
//
// Deletes Empty groups and their committed offsets: NON_EMPTY_GROUP while members remain,
// GROUP_ID_NOT_FOUND for a group with neither members nor offsets. v2 is flexible.

func init() { register(42, 0, 2, handleDeleteGroups) }

func handleDeleteGroups(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().deleteGroups(kreq.(*kmsg.DeleteGroupsRequest)), nil
}
