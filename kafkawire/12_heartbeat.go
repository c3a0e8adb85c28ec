package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Heartbeat: v0-4.
//
// Keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin. v3 adds
// group.instance.id, v4 is flexible.

func init() { register(12, 0, 4, handleHeartbeat) }

func handleHeartbeat(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().heartbeat(kreq.(*kmsg.HeartbeatRequest)), nil
}
