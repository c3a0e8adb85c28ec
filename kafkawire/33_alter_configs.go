package kafkawire

import "github.com/twmb/franz-go/pkg/kmsg"

// AlterConfigs: v0-2.
//
// Replaces a topic's configs: retention.ms, retention.bytes and cleanup.policy not named
// return to their defaults; mqtt.topic.filter and mqtt.key stay unless named (they are
// the stream's mapping, not tuning). Broker configs are read-only (INVALID_REQUEST).
// validate_only checks without changing. v2 is flexible.

func init() { register(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		changes := make([]configChange, 0, len(rr.Configs))
		for _, cfg := range rr.Configs {
			changes = append(changes, configChange{name: cfg.Name, op: kmsg.IncrementalAlterConfigOpSet, value: cfg.Value})
		}
		r.ErrorCode, r.ErrorMessage = s.alterConfigsResource(c, rr.ResourceType, rr.ResourceName, changes, true, req.ValidateOnly)
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}
