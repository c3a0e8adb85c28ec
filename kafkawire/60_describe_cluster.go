package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-2.
//
// This broker, node 0, is the whole cluster and its controller. v1 adds the endpoint
// type: brokers (1) are described, controllers (2) are UNSUPPORTED_ENDPOINT_TYPE as
// on a Kafka broker. v2 adds fenced brokers (never). Authorized operations are not
// computed.

func init() { register(60, 0, 2, handleDescribeCluster) }

func handleDescribeCluster(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = req.EndpointType
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		resp.ErrorMessage = kmsg.StringPtr("only broker endpoints are described")
		return resp, nil
	}
	resp.ClusterID = s.clusterID
	resp.ControllerID = nodeID
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID = nodeID
	b.Host, b.Port = s.advHost, s.advPort
	resp.Brokers = append(resp.Brokers, b)
	return resp, nil
}
