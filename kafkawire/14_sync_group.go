package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup: v0-5.
//
// The leader hands in the assignments and every member waits for its own (groups.go);
// assignment bytes pass through untouched. v3 adds group.instance.id, v4 is flexible,
// v5 carries the protocol type and name, checked against the group's.

func init() { register(14, 0, 5, handleSyncGroup) }

func handleSyncGroup(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SyncGroupRequest)
	ctx, cancel := s.doneContext()
	defer cancel()
	return s.groups().syncGroup(ctx, req), nil
}
