package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-5.
//
// State, protocol type, members with client id and host; when Stable also the protocol
// and each member's metadata and assignment bytes. An unknown group is state "Dead" with
// no error, as Kafka before v6. v3 adds authorized operations (not computed), v4 the
// instance id, v5 flexible.

func init() { register(15, 0, 5, handleDescribeGroups) }

func handleDescribeGroups(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.groups().describeGroups(kreq.(*kmsg.DescribeGroupsRequest)), nil
}
