package kafkawire

import "github.com/twmb/franz-go/pkg/kmsg"

// IncrementalAlterConfigs: v0-1.
//
// SET and DELETE (back to the default) any topic config the definition maps; APPEND and
// SUBTRACT the list mqtt.topic.filter. Broker configs are read-only. v1 is flexible.

func init() { register(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewIncrementalAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		changes := make([]configChange, 0, len(rr.Configs))
		for _, cfg := range rr.Configs {
			changes = append(changes, configChange{name: cfg.Name, op: cfg.Op, value: cfg.Value})
		}
		r.ErrorCode, r.ErrorMessage = s.alterConfigsResource(c, rr.ResourceType, rr.ResourceName, changes, false, req.ValidateOnly)
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}
