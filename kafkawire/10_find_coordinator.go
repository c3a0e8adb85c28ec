package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4.
//
// The node the cluster names for the key (cluster.go; alone, this broker coordinates
// every group and every transactional id; in a cluster groups are spread by id and
// transactional ids go to the catalog group's leader, txn_cluster.go);
// COORDINATOR_NOT_AVAILABLE while it names none. v1 adds the key type (0 group, 1 transaction; others are
// INVALID_REQUEST) and an error message, v3 is flexible, v4 batches keys
// (CoordinatorKeys, answered in Coordinators). An empty group key is INVALID_REQUEST.

func init() { register(10, 0, 4, handleFindCoordinator) }

func handleFindCoordinator(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) (code int16, node int32, host string, port int32) {
		switch {
		case req.CoordinatorType != 0 && req.CoordinatorType != 1:
			return kerr.InvalidRequest.Code, -1, "", -1
		case key == "" && req.CoordinatorType == 0:
			return kerr.InvalidRequest.Code, -1, "", -1
		}
		b, ok := s.broker(s.cluster.Coordinator(req.CoordinatorType, key))
		if !ok {
			return kerr.CoordinatorNotAvailable.Code, -1, "", -1
		}
		return 0, b.ID, b.Host, b.Port
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.ErrorCode, c.NodeID, c.Host, c.Port = answer(key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp, nil
	}
	resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = answer(req.CoordinatorKey)
	return resp, nil
}
