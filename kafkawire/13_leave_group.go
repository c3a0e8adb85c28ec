package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup: v0-5.
//
// Removes members and rebalances the rest. v0-2 name one member id; v3 batches members,
// each by member id or group.instance.id, with a per-member error; v4 is flexible, v5
// adds a reason.

func init() { register(13, 0, 5, handleLeaveGroup) }

func handleLeaveGroup(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().leaveGroup(kreq.(*kmsg.LeaveGroupRequest)), nil
}
