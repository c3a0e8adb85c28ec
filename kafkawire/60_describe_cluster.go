package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-2.
//
// Every node of the cluster (alone: this broker, node 0, also the controller). v1 adds the endpoint
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
	resp.ControllerID = s.cluster.Controller()
	for _, n := range s.brokers() {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID = n.ID
		b.Host, b.Port = n.Host, n.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	return resp, nil
}
