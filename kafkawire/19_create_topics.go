package kafkawire

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// CreateTopics: v0-7.
//
// A topic is a stream created through the catalog: partitions become shards (-1 is the
// default, 4), a replication factor of 1 or -1 is accepted (one broker), manual replica
// assignments are refused. Configs mqtt.topic.filter, mqtt.key, retention.ms,
// retention.bytes and cleanup.policy set the definition; other names are
// INVALID_CONFIG. With no mqtt.topic.filter the stream is written by Kafka producers
// only (Kafka Connect's internal topics). validate_only checks without creating. v1
// adds error messages, v5 the created topic's configs, v7 its topic id.

func init() { register(19, 0, 7, handleCreateTopics) }

func handleCreateTopics(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = rt.Topic
		t.NumPartitions, t.ReplicationFactor = -1, -1
		fail := func(code int16, msg string) {
			t.ErrorCode = code
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		d, code, msg := createDefinition(rt)
		switch {
		case seen[rt.Topic] > 1:
			fail(kerr.InvalidRequest.Code, "topic "+rt.Topic+" is given more than once")
		case !s.authorizeStream(c, rt.Topic, auth.OpAdmin):
			fail(kerr.TopicAuthorizationFailed.Code, "not authorized to create topic "+rt.Topic)
		case code != 0:
			fail(code, msg)
		default:
			var err error
			if req.ValidateOnly {
				err = validateNew(s, d)
			} else {
				d, err = s.cat.Create(d, false)
			}
			if err != nil {
				fail(catalogError(err))
				break
			}
			if !req.ValidateOnly {
				s.lg.Info().Str("stream", d.Name).Int32("shards", d.Shards).Strs("filters", d.Filters).Msg("stream created by CreateTopics")
			}
			if err := d.ValidateKafkaOnly(); err == nil { // fills defaults for the answer
				t.NumPartitions, t.ReplicationFactor = d.Shards, 1
				for _, kc := range d.KafkaConfigs() {
					rc := kmsg.NewCreateTopicsResponseTopicConfig()
					rc.Name, rc.Value = kc.Name, kmsg.StringPtr(kc.Value)
					rc.Source = int8(kmsg.ConfigSourceDynamicTopicConfig)
					if kc.IsDefault {
						rc.Source = int8(kmsg.ConfigSourceDefaultConfig)
					}
					t.Configs = append(t.Configs, rc)
				}
			}
			if st := s.stream(d.Name); st != nil {
				t.TopicID = s.topicID(st)
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// validateNew checks d as CreateTopics would create it, without creating it.
func validateNew(s *Server, d mapping.Definition) error {
	if _, ok := s.cat.Definition(d.Name); ok {
		return fmt.Errorf("stream %q: %w", d.Name, mapping.ErrStreamExists)
	}
	if err := d.ValidateKafkaOnly(); err != nil {
		return mapping.Invalid(err)
	}
	return nil
}

// createDefinition builds the definition a CreateTopics entry asks for; a non-zero code
// says why it cannot.
func createDefinition(rt kmsg.CreateTopicsRequestTopic) (mapping.Definition, int16, string) {
	d := mapping.Definition{Name: rt.Topic}
	if err := mapping.ValidName(rt.Topic); err != nil {
		return d, kerr.InvalidTopicException.Code, fmt.Sprintf("topic name %q: %v", rt.Topic, err)
	}
	if len(rt.ReplicaAssignment) > 0 {
		return d, kerr.InvalidReplicaAssignment.Code, "manual replica assignment is not supported: one broker holds every partition"
	}
	switch {
	case rt.NumPartitions == -1:
	case rt.NumPartitions < 1 || rt.NumPartitions > mapping.MaxShards:
		return d, kerr.InvalidPartitions.Code, fmt.Sprintf("partitions: %d out of range 1..%d", rt.NumPartitions, mapping.MaxShards)
	default:
		d.Shards = rt.NumPartitions
	}
	if rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 {
		return d, kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d: this broker is alone, use 1 or -1", rt.ReplicationFactor)
	}
	for _, cfg := range rt.Configs {
		if err := d.SetKafkaConfig(cfg.Name, cfg.Value); err != nil {
			return d, kerr.InvalidConfig.Code, err.Error()
		}
	}
	return d, 0, ""
}
