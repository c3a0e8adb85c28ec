package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4.
//
// This broker (node 0, the advertised host:port) coordinates every group and every
// transactional id. v1 adds the key type (0 group, 1 transaction; others are
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
		return 0, nodeID, s.advHost, s.advPort
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
