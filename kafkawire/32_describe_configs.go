package kafkawire

import (
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/mapping"
)

// DescribeConfigs: v0-4.
//
// A topic's configs come from its typed definition in the catalog: retention.ms,
// retention.bytes, cleanup.policy (compact for last-value streams), the MQTT mapping as
// mqtt.topic.filter and mqtt.key (all alterable), and message.timestamp.type
// LogAppendTime (read-only). A value set on the stream has source DYNAMIC_TOPIC_CONFIG
// and, as synonyms (v1+), itself and the broker default it overrides; a default has
// source DEFAULT_CONFIG. The broker (name "" or "0") lists a few fixed settings.
// Requested names filter the list (unknown names are left out, as Kafka does); an
// unknown topic is UNKNOWN_TOPIC_OR_PARTITION, one the principal may not describe
// TOPIC_AUTHORIZATION_FAILED, other resource types INVALID_REQUEST. v3 adds types and
// documentation, v4 is flexible.

func init() { register(32, 0, 4, handleDescribeConfigs) }

// configEntry is one config as described.
type configEntry struct {
	name, value string
	isDefault   bool
	readOnly    bool
	typ         kmsg.ConfigType
	doc         string
	// defaultValue is the broker default a topic value overrides ("" for none).
	brokerName, defaultValue string
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
			// Topics the principal may not describe were answered by authz.go.
			d, ok := s.cat.Definition(rr.ResourceName)
			if !ok {
				r.ErrorCode = kerr.UnknownTopicOrPartition.Code
				r.ErrorMessage = kmsg.StringPtr("unknown topic " + rr.ResourceName)
				break
			}
			entries = topicConfigs(d)
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.cluster.Self())) {
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
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name = e.name
			rc.Value = kmsg.StringPtr(e.value)
			rc.ReadOnly = e.readOnly
			rc.IsDefault = e.isDefault
			rc.Source = source
			if e.isDefault {
				rc.Source = kmsg.ConfigSourceDefaultConfig
			}
			if req.IncludeSynonyms {
				if !e.isDefault {
					syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
					syn.Name, syn.Value, syn.Source = e.name, kmsg.StringPtr(e.value), rc.Source
					rc.ConfigSynonyms = append(rc.ConfigSynonyms, syn)
				}
				if e.brokerName != "" {
					syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
					syn.Name, syn.Value, syn.Source = e.brokerName, kmsg.StringPtr(e.defaultValue), kmsg.ConfigSourceDefaultConfig
					rc.ConfigSynonyms = append(rc.ConfigSynonyms, syn)
				}
			}
			rc.ConfigType = e.typ
			if req.IncludeDocumentation {
				rc.Documentation = kmsg.StringPtr(e.doc)
			}
			r.Configs = append(r.Configs, rc)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

// topicConfig describes each Kafka config of a definition: its type, its doc and the
// broker default it overrides.
var topicConfig = map[string]configEntry{
	mapping.KafkaCleanupPolicy:  {typ: kmsg.ConfigTypeList, doc: "delete, or compact for a last-value stream.", brokerName: "log.cleanup.policy", defaultValue: "delete"},
	mapping.KafkaCompression:    {typ: kmsg.ConfigTypeString, doc: "Compression of stored batches once merged: uncompressed, lz4 or zstd.", brokerName: "compression.type", defaultValue: "uncompressed"},
	mapping.KafkaKey:            {typ: kmsg.ConfigTypeString, doc: "The stream key template: the Kafka record key.", defaultValue: mapping.DefaultKey},
	mapping.KafkaTopicFilter:    {typ: kmsg.ConfigTypeList, doc: "MQTT topic filters whose publishes are appended to the stream; empty for a stream only Kafka producers write."},
	mapping.KafkaRetentionBytes: {typ: kmsg.ConfigTypeLong, doc: "Bytes kept per partition (shard); -1 is unbounded.", brokerName: "log.retention.bytes", defaultValue: "-1"},
	mapping.KafkaRetentionMS:    {typ: kmsg.ConfigTypeLong, doc: "Age after which records are deleted; -1 is unbounded.", brokerName: "log.retention.ms", defaultValue: strconv.FormatInt(mapping.DefaultMaxAge.Milliseconds(), 10)},
}

func topicConfigs(d mapping.Definition) []configEntry {
	var out []configEntry
	for _, kc := range d.KafkaConfigs() {
		e := topicConfig[kc.Name]
		e.name, e.value, e.isDefault = kc.Name, kc.Value, kc.IsDefault
		out = append(out, e)
	}
	out = append(out, configEntry{name: "message.timestamp.type", value: "LogAppendTime", readOnly: true, typ: kmsg.ConfigTypeString, doc: "Records carry the time they were appended."})
	slices.SortFunc(out, func(a, b configEntry) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Server) brokerConfigs() []configEntry {
	return []configEntry{
		{name: "advertised.listeners", value: strings.ToUpper(s.proto) + "://" + s.advertised(), readOnly: true, typ: kmsg.ConfigTypeString, doc: "The address given to clients."},
		{name: "auto.create.topics.enable", value: "false", readOnly: true, typ: kmsg.ConfigTypeBoolean, doc: "Topics are streams: defined in the configuration, or created with CreateTopics."},
		{name: "broker.id", value: strconv.Itoa(int(s.cluster.Self())), readOnly: true, typ: kmsg.ConfigTypeInt, doc: "This broker's node id."},
		{name: "log.message.timestamp.type", value: "LogAppendTime", readOnly: true, typ: kmsg.ConfigTypeString, doc: "Records carry the time they were appended."},
		{name: "socket.request.max.bytes", value: strconv.Itoa(int(s.cfg.MaxRequestBytes)), readOnly: true, typ: kmsg.ConfigTypeInt, doc: "The largest request accepted."},
	}
}
