package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v0-8.
//
// A group's committed offsets from the log; -1 (leader epoch -1, empty metadata) where
// none is committed. v2 adds the group error code and a null topic list for "all", v3
// throttle, v5 leader epochs, v6 flexible, v7 require-stable (always stable: there are
// no transactions), v8 several groups per request.

func init() { register(9, 0, 8, handleOffsetFetch) }

func handleOffsetFetch(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().offsetFetch(kreq.(*kmsg.OffsetFetchRequest)), nil
}
