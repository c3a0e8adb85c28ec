package kafkawire

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster is what the Kafka broker asks of the cluster it belongs to: which nodes there
// are, who leads each partition and who coordinates each group. A server with no
// cluster uses singleNode (itself, node 0, leading and coordinating everything); the
// cluster package implements it from its Raft groups. Implementations answer from
// memory: these are called on every request.
type Cluster interface {
	// Self is this node's id.
	Self() int32
	// Brokers lists the live nodes (this one, and those it reaches or reached a moment
	// ago; Kafka lists live brokers only) with their advertised Kafka addresses, ordered
	// by id.
	Brokers() []Broker
	// Controller is the node named as controller in Metadata and DescribeCluster, -1
	// while unknown.
	Controller() int32
	// Partition describes one shard of a stream as its Raft group sees it.
	Partition(stream string, shard int32) PartitionState
	// Coordinator is the node coordinating a consumer group (keyType 0) or a
	// transactional id (keyType 1), -1 while unknown.
	Coordinator(keyType int8, key string) int32
}

// Broker is one node as Kafka clients see it.
type Broker struct {
	ID   int32
	Host string
	Port int32
}

// PartitionState is a partition's leader (-1 while it has none), its replicas and the
// replicas in sync with the leader.
type PartitionState struct {
	Leader   int32
	Replicas []int32
	ISR      []int32
}

// singleNode is the Cluster of a server alone: node 0 at the advertised address.
type singleNode struct{ s *Server }

func (n singleNode) Self() int32       { return nodeID }
func (n singleNode) Controller() int32 { return nodeID }
func (n singleNode) Brokers() []Broker {
	return []Broker{{ID: nodeID, Host: n.s.advHost, Port: n.s.advPort}}
}
func (n singleNode) Partition(string, int32) PartitionState {
	return PartitionState{Leader: nodeID, Replicas: []int32{nodeID}, ISR: []int32{nodeID}}
}
func (n singleNode) Coordinator(int8, string) int32 { return nodeID }

// brokers lists the cluster's nodes as Metadata and DescribeCluster give them, this
// node always included: it knows its own address before the cluster has spread it.
func (s *Server) brokers() []Broker {
	bs := s.cluster.Brokers()
	self := s.cluster.Self()
	for _, b := range bs {
		if b.ID == self {
			return bs
		}
	}
	bs = append(slices.Clone(bs), Broker{ID: self, Host: s.advHost, Port: s.advPort})
	slices.SortFunc(bs, func(a, b Broker) int { return cmp.Compare(a.ID, b.ID) })
	return bs
}

// broker finds a node's advertised address; ok is false for an unknown node.
func (s *Server) broker(id int32) (Broker, bool) {
	for _, b := range s.brokers() {
		if b.ID == id {
			return b, true
		}
	}
	return Broker{}, false
}

// leads tells whether this node leads a partition. An unknown topic or partition counts
// as led: the handler answers it in its own terms.
func (s *Server) leads(topic string, partition int32) bool {
	st := s.stream(topic)
	if st == nil || partition < 0 || partition >= st.Shards() {
		return true
	}
	return s.cluster.Partition(topic, partition).Leader == s.cluster.Self()
}

// coordinates tells whether this node coordinates a consumer group.
func (s *Server) coordinates(group string) bool {
	return s.cluster.Coordinator(0, group) == s.cluster.Self()
}

// placed wraps a handler so that, in a cluster, the partitions this node does not lead
// are answered NOT_LEADER_OR_FOLLOWER and the groups it does not coordinate
// NOT_COORDINATOR, which sends clients back to Metadata or FindCoordinator; the
// handler sees only the rest. Alone, a server leads and coordinates everything and h
// is returned as is.
func (s *Server) placed(h handler) handler {
	if !s.clustered {
		return h
	}
	return func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
		switch r := req.(type) {
		case *kmsg.ProduceRequest:
			return s.placeProduce(c, h, r)
		case *kmsg.FetchRequest:
			return s.placeFetch(c, h, r)
		case *kmsg.ListOffsetsRequest:
			return s.placeListOffsets(c, h, r)
		}
		return s.placeGroup(c, h, req)
	}
}

// notLed splits the partitions of a request's topics into those led here (kept in the
// request) and those not (returned by topic, in request order).
func notLed[T any](s *Server, topics *[]T, name func(*T) string, parts func(*T) []int32, keep func(*T, []int32)) map[string][]int32 {
	var out map[string][]int32
	kept := (*topics)[:0]
	for i := range *topics {
		t := &(*topics)[i]
		var here []int32
		for _, p := range parts(t) {
			if s.leads(name(t), p) {
				here = append(here, p)
				continue
			}
			if out == nil {
				out = map[string][]int32{}
			}
			out[name(t)] = append(out[name(t)], p)
		}
		if len(here) > 0 || len(parts(t)) == 0 {
			keep(t, here)
			kept = append(kept, *t)
		}
	}
	*topics = kept
	return out
}

func (s *Server) placeProduce(c *conn, h handler, r *kmsg.ProduceRequest) (kmsg.Response, error) {
	refused := notLed(s, &r.Topics,
		func(t *kmsg.ProduceRequestTopic) string { return t.Topic },
		func(t *kmsg.ProduceRequestTopic) []int32 { return partitionIDs(t.Partitions, produceID) },
		func(t *kmsg.ProduceRequestTopic, keep []int32) { t.Partitions = keepIDs(t.Partitions, keep, produceID) })
	if refused == nil {
		return h(s, c, r)
	}
	var resp *kmsg.ProduceResponse
	if len(r.Topics) > 0 {
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp, _ = kresp.(*kmsg.ProduceResponse)
	}
	if r.Acks == 0 {
		// As for any failed acks=0 produce: closing the connection is how Kafka tells
		// the producer to refresh its metadata.
		return nil, fmt.Errorf("acks=0 produce to partitions led elsewhere: %w", kerr.NotLeaderForPartition)
	}
	if resp == nil {
		resp = r.ResponseKind().(*kmsg.ProduceResponse)
	}
	for topic, parts := range refused {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, kerr.NotLeaderForPartition.Code
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) placeFetch(c *conn, h handler, r *kmsg.FetchRequest) (kmsg.Response, error) {
	refused := notLed(s, &r.Topics,
		func(t *kmsg.FetchRequestTopic) string { return t.Topic },
		func(t *kmsg.FetchRequestTopic) []int32 { return partitionIDs(t.Partitions, fetchID) },
		func(t *kmsg.FetchRequestTopic, keep []int32) { t.Partitions = keepIDs(t.Partitions, keep, fetchID) })
	if refused == nil {
		return h(s, c, r)
	}
	// An error goes out at once, as Kafka answers a fetch with a partition error.
	r.MaxWaitMillis, r.MinBytes = 0, 0
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 {
		return resp, nil
	}
	for topic, parts := range refused {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, kerr.NotLeaderForPartition.Code
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			rp.PreferredReadReplica = -1
			rp.RecordBatches = []byte{}
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) placeListOffsets(c *conn, h handler, r *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	refused := notLed(s, &r.Topics,
		func(t *kmsg.ListOffsetsRequestTopic) string { return t.Topic },
		func(t *kmsg.ListOffsetsRequestTopic) []int32 { return partitionIDs(t.Partitions, listOffsetsID) },
		func(t *kmsg.ListOffsetsRequestTopic, keep []int32) {
			t.Partitions = keepIDs(t.Partitions, keep, listOffsetsID)
		})
	kresp, err := h(s, c, r)
	if err != nil || refused == nil {
		return kresp, err
	}
	resp := kresp.(*kmsg.ListOffsetsResponse)
	for topic, parts := range refused {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, kerr.NotLeaderForPartition.Code
			rp.Offset, rp.Timestamp, rp.LeaderEpoch = -1, -1, -1
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func produceID(p *kmsg.ProduceRequestTopicPartition) int32         { return p.Partition }
func fetchID(p *kmsg.FetchRequestTopicPartition) int32             { return p.Partition }
func listOffsetsID(p *kmsg.ListOffsetsRequestTopicPartition) int32 { return p.Partition }

func partitionIDs[P any](ps []P, id func(*P) int32) []int32 {
	out := make([]int32, len(ps))
	for i := range ps {
		out[i] = id(&ps[i])
	}
	return out
}

// keepIDs keeps the partitions whose ids are in keep (request order is kept; an id
// named twice stays twice, as the handler answers it).
func keepIDs[P any](ps []P, keep []int32, id func(*P) int32) []P {
	out := ps[:0]
	for i := range ps {
		for _, k := range keep {
			if id(&ps[i]) == k {
				out = append(out, ps[i])
				break
			}
		}
	}
	return out
}

// placeGroup answers NOT_COORDINATOR for group requests about groups coordinated by
// another node; other requests go to h.
func (s *Server) placeGroup(c *conn, h handler, req kmsg.Request) (kmsg.Response, error) {
	code := kerr.NotCoordinator.Code
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, r.MemberID
			return resp, nil
		}
	case *kmsg.SyncGroupRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = code
			return resp, nil
		}
	case *kmsg.HeartbeatRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = code
			return resp, nil
		}
	case *kmsg.LeaveGroupRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
			resp.ErrorCode = code
			return resp, nil
		}
	case *kmsg.OffsetDeleteRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
			resp.ErrorCode = code
			return resp, nil
		}
	case *kmsg.OffsetCommitRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
			for _, rt := range r.Topics {
				t := kmsg.NewOffsetCommitResponseTopic()
				t.Topic = rt.Topic
				for _, rp := range rt.Partitions {
					p := kmsg.NewOffsetCommitResponseTopicPartition()
					p.Partition, p.ErrorCode = rp.Partition, code
					t.Partitions = append(t.Partitions, p)
				}
				resp.Topics = append(resp.Topics, t)
			}
			return resp, nil
		}
	case *kmsg.OffsetFetchRequest:
		return s.placeOffsetFetch(c, h, r)
	case *kmsg.TxnOffsetCommitRequest:
		if !s.coordinates(r.Group) {
			resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
			for _, rt := range r.Topics {
				t := kmsg.NewTxnOffsetCommitResponseTopic()
				t.Topic = rt.Topic
				for _, rp := range rt.Partitions {
					p := kmsg.NewTxnOffsetCommitResponseTopicPartition()
					p.Partition, p.ErrorCode = rp.Partition, code
					t.Partitions = append(t.Partitions, p)
				}
				resp.Topics = append(resp.Topics, t)
			}
			return resp, nil
		}
	case *kmsg.DescribeGroupsRequest:
		kept, refused := split(r.Groups, s.coordinates)
		if len(refused) == 0 {
			break
		}
		r.Groups = kept
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp := kresp.(*kmsg.DescribeGroupsResponse)
		for _, id := range refused {
			g := kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = id, code
			resp.Groups = append(resp.Groups, g)
		}
		return resp, nil
	case *kmsg.DeleteGroupsRequest:
		kept, refused := split(r.Groups, s.coordinates)
		if len(refused) == 0 {
			break
		}
		r.Groups = kept
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp := kresp.(*kmsg.DeleteGroupsResponse)
		for _, id := range refused {
			g := kmsg.NewDeleteGroupsResponseGroup()
			g.Group, g.ErrorCode = id, code
			resp.Groups = append(resp.Groups, g)
		}
		return resp, nil
	case *kmsg.ListGroupsRequest:
		// Each node lists the groups it coordinates, as each Kafka broker does; admin
		// clients ask every broker and merge.
		kresp, err := h(s, c, r)
		if lr, ok := kresp.(*kmsg.ListGroupsResponse); ok && err == nil {
			lr.Groups, _ = split(lr.Groups, func(g kmsg.ListGroupsResponseGroup) bool { return s.coordinates(g.Group) })
		}
		return kresp, err
	}
	return h(s, c, req)
}

func (s *Server) placeOffsetFetch(c *conn, h handler, r *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	code := kerr.NotCoordinator.Code
	if r.Version < 8 {
		if s.coordinates(r.Group) {
			return h(s, c, r)
		}
		resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = code
		for _, rt := range r.Topics {
			t := kmsg.NewOffsetFetchResponseTopic()
			t.Topic = rt.Topic
			for _, part := range rt.Partitions {
				p := kmsg.NewOffsetFetchResponseTopicPartition()
				p.Partition, p.Offset, p.LeaderEpoch, p.ErrorCode = part, -1, -1, code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil
	}
	kept, refused := split(r.Groups, func(g kmsg.OffsetFetchRequestGroup) bool { return s.coordinates(g.Group) })
	if len(refused) == 0 {
		return h(s, c, r)
	}
	var resp *kmsg.OffsetFetchResponse
	if len(kept) > 0 {
		r.Groups = kept
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp = kresp.(*kmsg.OffsetFetchResponse)
	} else {
		resp = r.ResponseKind().(*kmsg.OffsetFetchResponse)
	}
	for _, rg := range refused {
		g := kmsg.NewOffsetFetchResponseGroup()
		g.Group, g.ErrorCode = rg.Group, code
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
