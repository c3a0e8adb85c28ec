package kafkawire

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
)

// Authorization of every request with the connection's principal, kept apart from the
// handlers: what the principal may not touch is taken out of the request before the
// handler runs and answered here with Kafka's codes, or taken out of the answer after
// it. Streams: Fetch and ListOffsets need read, Produce write, Metadata and
// DescribeConfigs show only streams the principal may describe (any operation on
// them). Groups: FindCoordinator, DescribeGroups and ListGroups need describe (read or
// admin on the group), the membership APIs and OffsetCommit/OffsetFetch read (and read
// on the topics committed or fetched), DeleteGroups and OffsetDelete admin; groups under
// $mqtt/ are an administrator's only (auth.Principal.CanGroup). InitProducerId needs
// write on some stream. The ACL APIs need an administrator (29_describe_acls.go...).
// An API not listed here is served to administrators only, so a new API is never open
// by accident. Without a user store (Options.Auth nil) nothing is checked.

// authorized runs h for req if the principal may, trimming what it may not touch.
func (s *Server) authorized(c *conn, h handler, req kmsg.Request) (kmsg.Response, error) {
	if s.auth == nil {
		return h(s, c, req)
	}
	p := c.sec.principal
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest, *kmsg.SASLHandshakeRequest, *kmsg.SASLAuthenticateRequest,
		*kmsg.DescribeClusterRequest, *kmsg.DescribeACLsRequest, *kmsg.CreateACLsRequest, *kmsg.DeleteACLsRequest:
		return h(s, c, req)
	case *kmsg.ProduceRequest:
		return s.authorizeProduce(c, h, r)
	case *kmsg.FetchRequest:
		return s.authorizeFetch(c, h, r)
	case *kmsg.ListOffsetsRequest:
		return s.authorizeListOffsets(c, h, r)
	case *kmsg.MetadataRequest:
		return s.authorizeMetadata(c, h, r)
	case *kmsg.DescribeConfigsRequest:
		return s.authorizeDescribeConfigs(c, h, r)
	case *kmsg.InitProducerIDRequest:
		if !s.mayWriteSomewhere(p) {
			resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
			resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			resp.ProducerID, resp.ProducerEpoch = -1, -1
			return resp, nil
		}
		return h(s, c, req)
	case *kmsg.FindCoordinatorRequest:
		return s.authorizeFindCoordinator(c, h, r)
	case *kmsg.AddPartitionsToTxnRequest, *kmsg.AddOffsetsToTxnRequest, *kmsg.TxnOffsetCommitRequest, *kmsg.EndTxnRequest:
		return s.authorizeTxn(c, h, req) // txn_authz.go
	case *kmsg.JoinGroupRequest:
		if !p.CanGroup(r.Group, auth.OpRead) {
			resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Generation = -1
			resp.MemberID = r.MemberID
			return resp, nil
		}
		return h(s, c, req)
	case *kmsg.SyncGroupRequest:
		if !p.CanGroup(r.Group, auth.OpRead) {
			resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp, nil
		}
		return h(s, c, req)
	case *kmsg.HeartbeatRequest:
		if !p.CanGroup(r.Group, auth.OpRead) {
			resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp, nil
		}
		return h(s, c, req)
	case *kmsg.LeaveGroupRequest:
		if !p.CanGroup(r.Group, auth.OpRead) {
			resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
			resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
			return resp, nil
		}
		return h(s, c, req)
	case *kmsg.OffsetCommitRequest:
		return s.authorizeOffsetCommit(c, h, r)
	case *kmsg.OffsetFetchRequest:
		return s.authorizeOffsetFetch(c, h, r)
	case *kmsg.DescribeGroupsRequest:
		return s.authorizeDescribeGroups(c, h, r)
	case *kmsg.ListGroupsRequest:
		resp, err := h(s, c, req)
		if lr, ok := resp.(*kmsg.ListGroupsResponse); ok && err == nil {
			kept := lr.Groups[:0]
			for _, g := range lr.Groups {
				if canDescribeGroup(p, g.Group) {
					kept = append(kept, g)
				}
			}
			lr.Groups = kept
		}
		return resp, err
	case *kmsg.CreateTopicsRequest, *kmsg.DeleteTopicsRequest, *kmsg.CreatePartitionsRequest,
		*kmsg.AlterConfigsRequest, *kmsg.IncrementalAlterConfigsRequest, *kmsg.DeleteRecordsRequest,
		*kmsg.DescribeLogDirsRequest:
		// Per stream, in the handlers (admin_auth.go): admin on each topic changed,
		// TOPIC_AUTHORIZATION_FAILED for the others; log dirs list only what the
		// principal may describe.
		return h(s, c, req)
	case *kmsg.DeleteGroupsRequest:
		return s.authorizeDeleteGroups(c, h, r)
	case *kmsg.OffsetDeleteRequest:
		return s.authorizeOffsetDelete(c, h, r)
	}
	if p.Admin() {
		return h(s, c, req)
	}
	resp := req.ResponseKind()
	if !setTopLevelError(resp, kerr.ClusterAuthorizationFailed.Code) {
		return nil, fmt.Errorf("%s refused: not an administrator", kmsg.NameForKey(req.Key()))
	}
	return resp, nil
}

// canDescribe tells whether a principal may see a stream: any operation on it.
func canDescribe(p auth.Principal, stream string) bool {
	return p.CanStream(stream, auth.OpRead) || p.CanStream(stream, auth.OpWrite) || p.CanStream(stream, auth.OpAdmin)
}

// canDescribeGroup tells whether a principal may see a group: read or admin on it.
func canDescribeGroup(p auth.Principal, group string) bool {
	return p.CanGroup(group, auth.OpRead) || p.CanGroup(group, auth.OpAdmin)
}

// mayWriteSomewhere tells whether a principal may produce into some stream, which is
// what Kafka asks of an idempotent producer's InitProducerId (KIP-679).
func (s *Server) mayWriteSomewhere(p auth.Principal) bool {
	if p.Admin() {
		return true
	}
	for _, st := range s.log.Streams() {
		if p.CanStream(st.Name(), auth.OpWrite) {
			return true
		}
	}
	return false
}

func (s *Server) authorizeProduce(c *conn, h handler, r *kmsg.ProduceRequest) (kmsg.Response, error) {
	p := c.sec.principal
	kept, denied := split(r.Topics, func(t kmsg.ProduceRequestTopic) bool { return p.CanStream(t.Topic, auth.OpWrite) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	c.lg.Debug().Str("topic", denied[0].Topic).Msg("kafka produce refused: not authorized")
	if r.Acks == 0 {
		// No response to carry the error: close, as Kafka does for acks=0 failures.
		return nil, fmt.Errorf("acks=0 produce to %q: %w", denied[0].Topic, kerr.TopicAuthorizationFailed)
	}
	r.Topics = kept
	kresp, err := h(s, c, r)
	if err != nil || kresp == nil {
		return kresp, err
	}
	resp := kresp.(*kmsg.ProduceResponse)
	for _, dt := range denied {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = dt.Topic
		for _, dp := range dt.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = dp.Partition
			setProduceError(r.Version, &rp, refuse(kerr.TopicAuthorizationFailed, "not authorized to write to topic %q", dt.Topic))
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) authorizeFetch(c *conn, h handler, r *kmsg.FetchRequest) (kmsg.Response, error) {
	p := c.sec.principal
	kept, denied := split(r.Topics, func(t kmsg.FetchRequestTopic) bool { return p.CanStream(t.Topic, auth.OpRead) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	var resp *kmsg.FetchResponse
	if len(kept) == 0 {
		// Nothing left to wait for: answer at once, as Kafka does.
		resp = r.ResponseKind().(*kmsg.FetchResponse)
	} else {
		r.Topics = kept
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp = kresp.(*kmsg.FetchResponse)
	}
	for _, dt := range denied {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = dt.Topic
		for _, dp := range dt.Partitions {
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.Partition = dp.Partition
			rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			rp.PreferredReadReplica = -1
			rp.RecordBatches = []byte{}
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) authorizeListOffsets(c *conn, h handler, r *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	p := c.sec.principal
	kept, denied := split(r.Topics, func(t kmsg.ListOffsetsRequestTopic) bool { return p.CanStream(t.Topic, auth.OpRead) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	r.Topics = kept
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.ListOffsetsResponse)
	for _, dt := range denied {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = dt.Topic
		for _, dp := range dt.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = dp.Partition
			rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			rp.Offset, rp.Timestamp, rp.LeaderEpoch = -1, -1, -1
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// authorizeMetadata hides the streams the principal may not describe: left out of an
// "all topics" answer, TOPIC_AUTHORIZATION_FAILED when asked for by name (existing or
// not, so names cannot be probed) or by id (without the name).
func (s *Server) authorizeMetadata(c *conn, h handler, r *kmsg.MetadataRequest) (kmsg.Response, error) {
	p := c.sec.principal
	all := r.Topics == nil || r.Version == 0 && len(r.Topics) == 0
	byName := map[string]bool{}
	for _, t := range r.Topics {
		if t.Topic != nil {
			byName[*t.Topic] = true
		}
	}
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.MetadataResponse)
	kept := resp.Topics[:0]
	for _, t := range resp.Topics {
		if t.Topic == nil || canDescribe(p, *t.Topic) {
			kept = append(kept, t)
			continue
		}
		if all {
			continue
		}
		d := kmsg.NewMetadataResponseTopic()
		d.ErrorCode = kerr.TopicAuthorizationFailed.Code
		if byName[*t.Topic] {
			d.Topic = t.Topic
		} else {
			d.TopicID = t.TopicID
		}
		kept = append(kept, d)
	}
	resp.Topics = kept
	return resp, nil
}

func (s *Server) authorizeDescribeConfigs(c *conn, h handler, r *kmsg.DescribeConfigsRequest) (kmsg.Response, error) {
	p := c.sec.principal
	var denied []kmsg.DescribeConfigsRequestResource
	kept := make([]kmsg.DescribeConfigsRequestResource, 0, len(r.Resources))
	for _, rr := range r.Resources {
		switch {
		case rr.ResourceType == kmsg.ConfigResourceTypeTopic && !canDescribe(p, rr.ResourceName),
			rr.ResourceType != kmsg.ConfigResourceTypeTopic && !p.Valid():
			denied = append(denied, rr)
		default:
			kept = append(kept, rr)
		}
	}
	if len(denied) == 0 {
		return h(s, c, r)
	}
	r.Resources = kept
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.DescribeConfigsResponse)
	for _, d := range denied {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = d.ResourceType, d.ResourceName
		rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
		rr.ErrorMessage = kmsg.StringPtr("not authorized to describe topic " + d.ResourceName)
		if d.ResourceType != kmsg.ConfigResourceTypeTopic {
			// The broker's settings: any known user, not a refused anonymous client.
			rr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			rr.ErrorMessage = kmsg.StringPtr("not authorized to describe the broker")
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}

func (s *Server) authorizeFindCoordinator(c *conn, h handler, r *kmsg.FindCoordinatorRequest) (kmsg.Response, error) {
	kresp, err := h(s, c, r)
	if err != nil || r.CoordinatorType != 0 {
		return kresp, err
	}
	p := c.sec.principal
	resp := kresp.(*kmsg.FindCoordinatorResponse)
	msg := kmsg.StringPtr("not authorized to use this group")
	if r.Version >= 4 {
		for i := range resp.Coordinators {
			co := &resp.Coordinators[i]
			if !canDescribeGroup(p, co.Key) {
				co.ErrorCode, co.NodeID, co.Host, co.Port, co.ErrorMessage = kerr.GroupAuthorizationFailed.Code, -1, "", -1, msg
			}
		}
		return resp, nil
	}
	if !canDescribeGroup(p, r.CoordinatorKey) {
		resp.ErrorCode, resp.NodeID, resp.Host, resp.Port, resp.ErrorMessage = kerr.GroupAuthorizationFailed.Code, -1, "", -1, msg
	}
	return resp, nil
}

// authorizeOffsetCommit: without read on the group every partition is
// GROUP_AUTHORIZATION_FAILED; partitions of streams the principal may not read are
// TOPIC_AUTHORIZATION_FAILED and the rest is committed.
func (s *Server) authorizeOffsetCommit(c *conn, h handler, r *kmsg.OffsetCommitRequest) (kmsg.Response, error) {
	p := c.sec.principal
	groupOK := p.CanGroup(r.Group, auth.OpRead)
	kept, denied := split(r.Topics, func(t kmsg.OffsetCommitRequestTopic) bool { return groupOK && p.CanStream(t.Topic, auth.OpRead) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	var resp *kmsg.OffsetCommitResponse
	if len(kept) == 0 {
		resp = r.ResponseKind().(*kmsg.OffsetCommitResponse)
	} else {
		r.Topics = kept
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp = kresp.(*kmsg.OffsetCommitResponse)
	}
	code := kerr.TopicAuthorizationFailed.Code
	if !groupOK {
		code = kerr.GroupAuthorizationFailed.Code
	}
	for _, dt := range denied {
		t := kmsg.NewOffsetCommitResponseTopic()
		t.Topic = dt.Topic
		for _, dp := range dt.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = dp.Partition, code
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// split divides a request's items into those allowed and those refused, each in
// request order.
func split[T any](items []T, allowed func(T) bool) (kept, denied []T) {
	kept = make([]T, 0, len(items))
	for _, it := range items {
		if allowed(it) {
			kept = append(kept, it)
		} else {
			denied = append(denied, it)
		}
	}
	return kept, denied
}

// offsetFetchSplit splits a group's requested topics into those the principal may
// read and those it may not (nil topics, "all", stay nil).
func offsetFetchSplit[T any](p auth.Principal, topics []T, name func(T) string) (kept, denied []T) {
	if topics == nil {
		return nil, nil
	}
	return split(topics, func(t T) bool { return p.CanStream(name(t), auth.OpRead) })
}

// authorizeOffsetFetch: a group the principal may not read is
// GROUP_AUTHORIZATION_FAILED; requested streams it may not read are
// TOPIC_AUTHORIZATION_FAILED per partition, and left out of an "all offsets" answer.
func (s *Server) authorizeOffsetFetch(c *conn, h handler, r *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	p := c.sec.principal
	if r.Version >= 8 {
		return s.authorizeOffsetFetchGroups(c, h, r)
	}
	if !p.CanGroup(r.Group, auth.OpRead) {
		resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		for _, rt := range r.Topics {
			t := kmsg.NewOffsetFetchResponseTopic()
			t.Topic = rt.Topic
			for _, part := range rt.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = part, -1, -1, kerr.GroupAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil
	}
	wasNil := r.Topics == nil
	kept, denied := offsetFetchSplit(p, r.Topics, func(t kmsg.OffsetFetchRequestTopic) string { return t.Topic })
	if !wasNil {
		r.Topics = kept
	}
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.OffsetFetchResponse)
	if wasNil {
		out := resp.Topics[:0]
		for _, t := range resp.Topics {
			if p.CanStream(t.Topic, auth.OpRead) {
				out = append(out, t)
			}
		}
		resp.Topics = out
	}
	for _, dt := range denied {
		t := kmsg.NewOffsetFetchResponseTopic()
		t.Topic = dt.Topic
		for _, part := range dt.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = part, -1, -1, kerr.TopicAuthorizationFailed.Code
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func (s *Server) authorizeOffsetFetchGroups(c *conn, h handler, r *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	p := c.sec.principal
	type trimmed struct {
		all    bool
		denied []kmsg.OffsetFetchRequestGroupTopic
	}
	var deniedGroups []string
	info := map[string]trimmed{}
	keptGroups := make([]kmsg.OffsetFetchRequestGroup, 0, len(r.Groups))
	for _, g := range r.Groups {
		if !p.CanGroup(g.Group, auth.OpRead) {
			deniedGroups = append(deniedGroups, g.Group)
			continue
		}
		tr := trimmed{all: g.Topics == nil}
		if !tr.all {
			g.Topics, tr.denied = offsetFetchSplit(p, g.Topics, func(t kmsg.OffsetFetchRequestGroupTopic) string { return t.Topic })
		}
		info[g.Group] = tr
		keptGroups = append(keptGroups, g)
	}
	r.Groups = keptGroups
	var resp *kmsg.OffsetFetchResponse
	if len(keptGroups) == 0 {
		resp = r.ResponseKind().(*kmsg.OffsetFetchResponse)
	} else {
		kresp, err := h(s, c, r)
		if err != nil {
			return nil, err
		}
		resp = kresp.(*kmsg.OffsetFetchResponse)
	}
	for i := range resp.Groups {
		g := &resp.Groups[i]
		tr := info[g.Group]
		if tr.all {
			out := g.Topics[:0]
			for _, t := range g.Topics {
				if p.CanStream(t.Topic, auth.OpRead) {
					out = append(out, t)
				}
			}
			g.Topics = out
		}
		for _, dt := range tr.denied {
			t := kmsg.NewOffsetFetchResponseGroupTopic()
			t.Topic = dt.Topic
			for _, part := range dt.Partitions {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = part, -1, -1, kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, rp)
			}
			g.Topics = append(g.Topics, t)
		}
	}
	for _, id := range deniedGroups {
		g := kmsg.NewOffsetFetchResponseGroup()
		g.Group = id
		g.ErrorCode = kerr.GroupAuthorizationFailed.Code
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (s *Server) authorizeDescribeGroups(c *conn, h handler, r *kmsg.DescribeGroupsRequest) (kmsg.Response, error) {
	p := c.sec.principal
	kept, denied := split(r.Groups, func(g string) bool { return canDescribeGroup(p, g) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	r.Groups = kept
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.DescribeGroupsResponse)
	for _, id := range denied {
		g := kmsg.NewDescribeGroupsResponseGroup()
		g.Group = id
		g.ErrorCode = kerr.GroupAuthorizationFailed.Code
		g.AuthorizedOperations = -2147483648
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (s *Server) authorizeDeleteGroups(c *conn, h handler, r *kmsg.DeleteGroupsRequest) (kmsg.Response, error) {
	p := c.sec.principal
	kept, denied := split(r.Groups, func(g string) bool { return p.CanGroup(g, auth.OpAdmin) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	r.Groups = kept
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.DeleteGroupsResponse)
	for _, id := range denied {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group = id
		g.ErrorCode = kerr.GroupAuthorizationFailed.Code
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

// authorizeOffsetDelete: admin on the group (GROUP_AUTHORIZATION_FAILED), read on
// each topic (TOPIC_AUTHORIZATION_FAILED per partition), as Kafka asks delete and read.
func (s *Server) authorizeOffsetDelete(c *conn, h handler, r *kmsg.OffsetDeleteRequest) (kmsg.Response, error) {
	p := c.sec.principal
	if !p.CanGroup(r.Group, auth.OpAdmin) {
		resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	kept, denied := split(r.Topics, func(t kmsg.OffsetDeleteRequestTopic) bool { return p.CanStream(t.Topic, auth.OpRead) })
	if len(denied) == 0 {
		return h(s, c, r)
	}
	r.Topics = kept
	kresp, err := h(s, c, r)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.OffsetDeleteResponse)
	for _, dt := range denied {
		t := kmsg.NewOffsetDeleteResponseTopic()
		t.Topic = dt.Topic
		for _, dp := range dt.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition, rp.ErrorCode = dp.Partition, kerr.TopicAuthorizationFailed.Code
			t.Partitions = append(t.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
