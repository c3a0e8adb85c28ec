package kafkawire

import (
	"fmt"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// Metadata: v0-12.
//
// Every node of the cluster with its advertised host:port (alone: node 0, the controller
// too; cluster.go). Every stream is a topic and every shard a partition with its
// leader, replicas and in-sync replicas (alone: node 0 for all three), leader epoch -1
// (we do not serve OffsetForLeaderEpoch); a partition with no leader yet is
// LEADER_NOT_AVAILABLE, which clients retry. All topics are listed for v0's empty topic array and for v1+'s
// null one. An unknown topic is UNKNOWN_TOPIC_OR_PARTITION: Metadata never creates
// topics (CreateTopics does, through the catalog). Topics are also found by id (v10+), unknown
// ids answer UNKNOWN_TOPIC_ID. Version notes: v1 controller/internal/rack, v2 cluster
// id, v4 allow-auto-create (ignored), v5 offline replicas, v7 leader epoch, v8
// authorized operations (not computed), v9 flexible, v10 topic ids.

func init() { register(3, 0, 12, handleMetadata) }

func handleMetadata(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	if len(req.Topics) > s.cfg.MaxMetadataTopics {
		s.metrics.limitRefused("max_metadata_topics")
		// Metadata has no top-level error code: the request cannot be answered.
		return nil, fmt.Errorf("%w: metadata names %d topics (max %d)", errBadRequest, len(req.Topics), s.cfg.MaxMetadataTopics)
	}
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	for _, n := range s.brokers() {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = n.ID
		b.Host, b.Port = n.Host, n.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	resp.ClusterID = kmsg.StringPtr(s.clusterID)
	resp.ControllerID = s.cluster.Controller()

	all := req.Topics == nil || req.Version == 0 && len(req.Topics) == 0
	if all {
		for _, st := range s.log.Streams() {
			if !st.Deleted() {
				resp.Topics = append(resp.Topics, s.metadataTopic(st))
			}
		}
		return resp, nil
	}
	seen := map[string]bool{}
	for _, rt := range req.Topics {
		var st *log.Stream
		switch {
		case rt.Topic != nil:
			st = s.stream(*rt.Topic)
			if st == nil {
				t := kmsg.NewMetadataResponseTopic()
				t.Topic = rt.Topic
				t.ErrorCode = kerr.UnknownTopicOrPartition.Code
				resp.Topics = append(resp.Topics, t)
				continue
			}
		case rt.TopicID != [16]byte{}:
			st = s.streamByTopicID(rt.TopicID)
			if st == nil {
				t := kmsg.NewMetadataResponseTopic()
				t.TopicID = rt.TopicID
				t.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, t)
				continue
			}
		default:
			continue // neither name nor id: nothing to describe
		}
		if seen[st.Name()] {
			continue
		}
		seen[st.Name()] = true
		resp.Topics = append(resp.Topics, s.metadataTopic(st))
	}
	return resp, nil
}

func (s *Server) metadataTopic(st *log.Stream) kmsg.MetadataResponseTopic {
	t := kmsg.NewMetadataResponseTopic()
	t.Topic = kmsg.StringPtr(st.Name())
	t.TopicID = s.topicID(st)
	n := st.Shards()
	t.Partitions = make([]kmsg.MetadataResponseTopicPartition, 0, n)
	for i := int32(0); i < n; i++ {
		p := kmsg.NewMetadataResponseTopicPartition()
		ps := s.cluster.Partition(st.Name(), i)
		p.Partition = i
		p.Leader = ps.Leader
		p.LeaderEpoch = -1
		p.Replicas = ps.Replicas
		p.ISR = ps.ISR
		p.OfflineReplicas = []int32{}
		if ps.Leader < 0 {
			p.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		t.Partitions = append(t.Partitions, p)
	}
	return t
}
