package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups: v0-5.
//
// Groups with members and groups known only from committed offsets (Empty, as after a
// restart). v3 is flexible, v4 filters and reports states, v5 filters and reports the
// group type (always "classic").

func init() { register(16, 0, 5, handleListGroups) }

func handleListGroups(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().listGroups(kreq.(*kmsg.ListGroupsRequest)), nil
}
