package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup: v0-9.
//
// The classic protocol's join (groups.go). The request waits until the rebalance
// completes (every known member rejoined, or the rebalance timeout), holding this
// connection as Kafka does. v1 adds the rebalance timeout (v0 uses the session
// timeout), v4 the MEMBER_ID_REQUIRED round trip for dynamic members, v5 static
// membership (group.instance.id), v6 flexible, v7 the protocol type in the response, v8
// a reason (logged nowhere), v9 SkipAssignment for a static leader that rejoined.

func init() { register(11, 0, 9, handleJoinGroup) }

func handleJoinGroup(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.JoinGroupRequest)
	ctx, cancel := s.doneContext()
	defer cancel()
	return s.groups().joinGroup(ctx, c.clientInfo(), req), nil
}
