package kafkawire

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// DescribeConfigs: v0-4.
//
// A read-only view: a topic's configs come from its stream (retention.ms,
// retention.bytes, cleanup.policy delete or compact for last-value streams,
// message.timestamp.type LogAppendTime, and the MQTT mapping as mqtt.topic.filter and
// mqtt.key); the broker (name "" or "0") lists a few fixed broker settings. Requested
// names filter the list (unknown names are left out, as Kafka does); an unknown topic is
// UNKNOWN_TOPIC_OR_PARTITION, other resource types INVALID_REQUEST. v1 adds sources and
// synonyms (none), v3 types and documentation, v4 is flexible.

func init() { register(32, 0, 4, handleDescribeConfigs) }

// configEntry is one config as described.
type configEntry struct {
	name, value string
	isDefault   bool
	typ         kmsg.ConfigType
	doc         string
}

func handleDescribeConfigs(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var entries []configEntry
		source := kmsg.ConfigSourceDynamicTopicConfig
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			st := s.stream(rr.ResourceName)
			if st == nil {
				r.ErrorCode = kerr.UnknownTopicOrPartition.Code
				r.ErrorMessage = kmsg.StringPtr("unknown topic " + rr.ResourceName)
				break
			}
			entries = topicConfigs(st.Spec())
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(nodeID)) {
				r.ErrorCode = kerr.InvalidRequest.Code
				r.ErrorMessage = kmsg.StringPtr("unknown broker " + rr.ResourceName)
				break
			}
			entries = s.brokerConfigs()
			source = kmsg.ConfigSourceStaticBrokerConfig
		default:
			r.ErrorCode = kerr.InvalidRequest.Code
			r.ErrorMessage = kmsg.StringPtr("unsupported resource type " + rr.ResourceType.String())
		}
		for _, e := range entries {
			if rr.ConfigNames != nil && !slices.Contains(rr.ConfigNames, e.name) {
				continue
			}
			c := kmsg.NewDescribeConfigsResponseResourceConfig()
			c.Name = e.name
			c.Value = kmsg.StringPtr(e.value)
			c.ReadOnly = true
			c.IsDefault = e.isDefault
			c.Source = source
			if e.isDefault {
				c.Source = kmsg.ConfigSourceDefaultConfig
			}
			c.ConfigType = e.typ
			if req.IncludeDocumentation {
				c.Documentation = kmsg.StringPtr(e.doc)
			}
			r.Configs = append(r.Configs, c)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

// streamMeta is the part of StreamSpec.Meta the mapping package stores that Kafka
// clients are shown: the MQTT topic filters feeding the stream and its key template.
type streamMeta struct {
	Filters []string `json:"filters"`
	Key     string   `json:"key"`
}

func topicConfigs(spec log.StreamSpec) []configEntry {
	retMS, retBytes := int64(-1), int64(-1)
	if spec.Retention.MaxAge > 0 {
		retMS = spec.Retention.MaxAge.Milliseconds()
	}
	if spec.Retention.MaxBytes > 0 {
		retBytes = spec.Retention.MaxBytes
	}
	policy := "delete"
	if spec.LastValue {
		policy = "compact"
	}
	var meta streamMeta
	if len(spec.Meta) > 0 {
		_ = json.Unmarshal(spec.Meta, &meta) // an unparsable Meta shows as empty mapping
	}
	return []configEntry{
		{"cleanup.policy", policy, !spec.LastValue, kmsg.ConfigTypeList, "delete, or compact for a last-value stream."},
		{"message.timestamp.type", "LogAppendTime", false, kmsg.ConfigTypeString, "Records carry the time they were appended."},
		{"mqtt.key", meta.Key, meta.Key == "", kmsg.ConfigTypeString, "The stream key template: the Kafka record key."},
		{"mqtt.topic.filter", strings.Join(meta.Filters, ","), len(meta.Filters) == 0, kmsg.ConfigTypeList, "MQTT topic filters whose publishes are appended to the stream."},
		{"retention.bytes", strconv.FormatInt(retBytes, 10), retBytes < 0, kmsg.ConfigTypeLong, "Bytes kept per partition (shard); -1 is unbounded."},
		{"retention.ms", strconv.FormatInt(retMS, 10), retMS < 0, kmsg.ConfigTypeLong, "Age after which records are deleted; -1 is unbounded."},
	}
}

func (s *Server) brokerConfigs() []configEntry {
	return []configEntry{
		{"advertised.listeners", strings.ToUpper(s.proto) + "://" + s.advertised(), false, kmsg.ConfigTypeString, "The address given to clients."},
		{"auto.create.topics.enable", "false", false, kmsg.ConfigTypeBoolean, "Topics are streams, defined in the configuration."},
		{"broker.id", strconv.Itoa(int(nodeID)), false, kmsg.ConfigTypeInt, "This broker's node id."},
		{"log.message.timestamp.type", "LogAppendTime", false, kmsg.ConfigTypeString, "Records carry the time they were appended."},
		{"socket.request.max.bytes", strconv.Itoa(int(s.cfg.MaxRequestBytes)), false, kmsg.ConfigTypeInt, "The largest request accepted."},
	}
}
