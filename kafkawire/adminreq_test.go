package kafkawire

// Admin requests for the in-package tests, sent as kmsg requests through a kgo client.
// kadm is a thin wrapper over these requests and is not a dependency of the product's
// module; compat-tests/ drives kadm itself against the binary.

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// request issues req through cl (kgo routes it to the right broker or coordinator and
// picks the version) and fails the test on a transport error.
func request[R kmsg.Response](t testing.TB, ctx context.Context, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return resp.(R)
}

// try is request for requests whose routing can fail with a Kafka error (a group's
// FindCoordinator refused, for one): that error is returned, any other fails the test.
func try[R kmsg.Response](t testing.TB, ctx context.Context, cl *kgo.Client, req kmsg.Request) (R, error) {
	t.Helper()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) {
			var zero R
			return zero, ke
		}
		t.Fatalf("%T: %v", req, err)
	}
	return resp.(R), nil
}

// createTopic sends CreateTopics for one topic and returns its answer and error.
func createTopic(t testing.TB, ctx context.Context, cl *kgo.Client, validateOnly bool, partitions int32, rf int16, configs map[string]string, topic string) (kmsg.CreateTopicsResponseTopic, error) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.ValidateOnly, req.TimeoutMillis = validateOnly, 30_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, rf
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp := request[*kmsg.CreateTopicsResponse](t, ctx, cl, req)
	if len(resp.Topics) != 1 {
		t.Fatalf("CreateTopics answered %d topics", len(resp.Topics))
	}
	return resp.Topics[0], kerr.ErrorForCode(resp.Topics[0].ErrorCode)
}

// deleteTopics sends DeleteTopics and returns each topic's error.
func deleteTopics(t testing.TB, ctx context.Context, cl *kgo.Client, topics ...string) map[string]error {
	t.Helper()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = 30_000
	for _, name := range topics {
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
		req.TopicNames = append(req.TopicNames, name)
	}
	out := map[string]error{}
	for _, rt := range request[*kmsg.DeleteTopicsResponse](t, ctx, cl, req).Topics {
		if rt.Topic != nil {
			out[*rt.Topic] = kerr.ErrorForCode(rt.ErrorCode)
		}
	}
	return out
}

// createPartitions grows topic to count partitions.
func createPartitions(t testing.TB, ctx context.Context, cl *kgo.Client, count int32, topic string) error {
	t.Helper()
	req := kmsg.NewPtrCreatePartitionsRequest()
	req.TimeoutMillis = 30_000
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = topic, count
	req.Topics = append(req.Topics, rt)
	resp := request[*kmsg.CreatePartitionsResponse](t, ctx, cl, req)
	if len(resp.Topics) != 1 {
		t.Fatalf("CreatePartitions answered %d topics", len(resp.Topics))
	}
	return kerr.ErrorForCode(resp.Topics[0].ErrorCode)
}

// describedConfigs is one resource of a DescribeConfigs answer.
type describedConfigs struct {
	err     error
	configs map[string]kmsg.DescribeConfigsResponseResourceConfig
}

// value returns a config's value, "" for none (null).
func (d describedConfigs) value(key string) string {
	if v := d.configs[key].Value; v != nil {
		return *v
	}
	return ""
}

// describeConfigs sends DescribeConfigs (with synonyms) for resources of one type.
func describeConfigs(t testing.TB, ctx context.Context, cl *kgo.Client, typ kmsg.ConfigResourceType, names ...string) map[string]describedConfigs {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.IncludeSynonyms = true
	for _, name := range names {
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = typ, name
		req.Resources = append(req.Resources, r)
	}
	out := map[string]describedConfigs{}
	for _, r := range request[*kmsg.DescribeConfigsResponse](t, ctx, cl, req).Resources {
		d := describedConfigs{err: kerr.ErrorForCode(r.ErrorCode), configs: map[string]kmsg.DescribeConfigsResponseResourceConfig{}}
		for _, c := range r.Configs {
			d.configs[c.Name] = c
		}
		out[r.ResourceName] = d
	}
	return out
}

// describeTopic describes one topic's configs and fails the test on an error.
func describeTopic(t testing.TB, ctx context.Context, cl *kgo.Client, topic string) describedConfigs {
	t.Helper()
	d, ok := describeConfigs(t, ctx, cl, kmsg.ConfigResourceTypeTopic, topic)[topic]
	if !ok || d.err != nil {
		t.Fatalf("describe %s: %v (answered: %v)", topic, d.err, ok)
	}
	return d
}

// alterOp is one IncrementalAlterConfigs change.
type alterOp struct {
	op          kmsg.IncrementalAlterConfigOp
	name, value string
}

// alterIncremental sends IncrementalAlterConfigs for one topic.
func alterIncremental(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, ops ...alterOp) error {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	for _, o := range ops {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = o.name, o.op, kmsg.StringPtr(o.value)
		r.Configs = append(r.Configs, c)
	}
	req.Resources = append(req.Resources, r)
	resp := request[*kmsg.IncrementalAlterConfigsResponse](t, ctx, cl, req)
	if len(resp.Resources) != 1 {
		t.Fatalf("IncrementalAlterConfigs answered %d resources", len(resp.Resources))
	}
	return kerr.ErrorForCode(resp.Resources[0].ErrorCode)
}

// alterState sends AlterConfigs (the topic's whole state) for one topic.
func alterState(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, configs map[string]string) error {
	t.Helper()
	req := kmsg.NewPtrAlterConfigsRequest()
	r := kmsg.NewAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	for k, v := range configs {
		c := kmsg.NewAlterConfigsRequestResourceConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		r.Configs = append(r.Configs, c)
	}
	req.Resources = append(req.Resources, r)
	resp := request[*kmsg.AlterConfigsResponse](t, ctx, cl, req)
	if len(resp.Resources) != 1 {
		t.Fatalf("AlterConfigs answered %d resources", len(resp.Resources))
	}
	return kerr.ErrorForCode(resp.Resources[0].ErrorCode)
}

// topicPartitions returns a topic's partition count from Metadata, or its error.
func topicPartitions(t testing.TB, ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	for _, mt := range request[*kmsg.MetadataResponse](t, ctx, cl, req).Topics {
		if mt.Topic != nil && *mt.Topic == topic {
			return len(mt.Partitions), kerr.ErrorForCode(mt.ErrorCode)
		}
	}
	t.Fatalf("metadata does not answer for %s", topic)
	return 0, nil
}

// Special ListOffsets timestamps.
const (
	atEnd          int64 = -1
	atStart        int64 = -2
	atMaxTimestamp int64 = -3
)

// listed is one partition's ListOffsets answer.
type listed struct {
	offset, timestamp int64
	err               error
}

// listOffsets sends ListOffsets for every partition of topic at ts (a time in ms or
// atEnd, atStart, atMaxTimestamp); the error is the topic's metadata error.
func listOffsets(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, ts int64) (map[int32]listed, error) {
	t.Helper()
	n, err := topicPartitions(t, ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < int32(n); p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	out := map[int32]listed{}
	for _, rt := range request[*kmsg.ListOffsetsResponse](t, ctx, cl, req).Topics {
		for _, rp := range rt.Partitions {
			out[rp.Partition] = listed{rp.Offset, rp.Timestamp, kerr.ErrorForCode(rp.ErrorCode)}
		}
	}
	return out, nil
}

// deleted is one partition's DeleteRecords answer.
type deleted struct {
	lowWatermark int64
	err          error
}

// deleteRecords deletes the records of topic below each partition's offset.
func deleteRecords(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, before map[int32]int64) map[int32]deleted {
	t.Helper()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 30_000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	for p, off := range before {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Partition, rp.Offset = p, off
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	out := map[int32]deleted{}
	for _, rt := range request[*kmsg.DeleteRecordsResponse](t, ctx, cl, req).Topics {
		for _, rp := range rt.Partitions {
			out[rp.Partition] = deleted{rp.LowWatermark, kerr.ErrorForCode(rp.ErrorCode)}
		}
	}
	return out
}

// logDirSizes describes every log dir and returns the size of each topic's partitions.
func logDirSizes(t testing.TB, ctx context.Context, cl *kgo.Client) map[string]map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrDescribeLogDirsRequest() // no topics: all of them
	resp := request[*kmsg.DescribeLogDirsResponse](t, ctx, cl, req)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("DescribeLogDirs: %v", err)
	}
	out := map[string]map[int32]int64{}
	for _, d := range resp.Dirs {
		if err := kerr.ErrorForCode(d.ErrorCode); err != nil {
			t.Fatalf("log dir %s: %v", d.Dir, err)
		}
		for _, dt := range d.Topics {
			if out[dt.Topic] == nil {
				out[dt.Topic] = map[int32]int64{}
			}
			for _, dp := range dt.Partitions {
				out[dt.Topic][dp.Partition] = dp.Size
			}
		}
	}
	return out
}

// listGroups returns every group the principal may see, by name.
func listGroups(t testing.TB, ctx context.Context, cl *kgo.Client) map[string]kmsg.ListGroupsResponseGroup {
	t.Helper()
	resp := request[*kmsg.ListGroupsResponse](t, ctx, cl, kmsg.NewPtrListGroupsRequest())
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("ListGroups: %v", err)
	}
	out := map[string]kmsg.ListGroupsResponseGroup{}
	for _, g := range resp.Groups {
		out[g.Group] = g
	}
	return out
}

// describeGroup sends DescribeGroups for one group.
func describeGroup(t testing.TB, ctx context.Context, cl *kgo.Client, group string) (kmsg.DescribeGroupsResponseGroup, error) {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp := request[*kmsg.DescribeGroupsResponse](t, ctx, cl, req)
	if len(resp.Groups) != 1 {
		t.Fatalf("DescribeGroups answered %d groups", len(resp.Groups))
	}
	return resp.Groups[0], kerr.ErrorForCode(resp.Groups[0].ErrorCode)
}

// committed is one partition's OffsetFetch answer.
type committed struct {
	at       int64
	metadata string
	err      error
}

// fetchOffsets returns a group's committed offsets of every topic; the error is the
// group's.
func fetchOffsets(t testing.TB, ctx context.Context, cl *kgo.Client, group string) (map[string]map[int32]committed, error) {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group // no topics: all of them
	resp, err := try[*kmsg.OffsetFetchResponse](t, ctx, cl, req)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	out := map[string]map[int32]committed{}
	for _, rt := range resp.Topics {
		out[rt.Topic] = map[int32]committed{}
		for _, rp := range rt.Partitions {
			c := committed{at: rp.Offset, err: kerr.ErrorForCode(rp.ErrorCode)}
			if rp.Metadata != nil {
				c.metadata = *rp.Metadata
			}
			out[rt.Topic][rp.Partition] = c
		}
	}
	return out, nil
}

// commitOffsets commits offsets of topic as a simple (generation -1) commit and returns
// the first error, the group's or a partition's.
func commitOffsets(t testing.TB, ctx context.Context, cl *kgo.Client, group, topic string, offsets map[int32]int64) error {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, off := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, off, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := try[*kmsg.OffsetCommitResponse](t, ctx, cl, req)
	if err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteGroup sends DeleteGroups for one group.
func deleteGroup(t testing.TB, ctx context.Context, cl *kgo.Client, group string) error {
	t.Helper()
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Groups = []string{group}
	resp, err := try[*kmsg.DeleteGroupsResponse](t, ctx, cl, req)
	if err != nil {
		return err
	}
	if len(resp.Groups) != 1 {
		t.Fatalf("DeleteGroups answered %d groups", len(resp.Groups))
	}
	return kerr.ErrorForCode(resp.Groups[0].ErrorCode)
}

// deleteOffsets sends OffsetDelete for some partitions of one topic and returns the
// first error, the group's or a partition's.
func deleteOffsets(t testing.TB, ctx context.Context, cl *kgo.Client, group, topic string, partitions ...int32) error {
	t.Helper()
	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = group
	rt := kmsg.NewOffsetDeleteRequestTopic()
	rt.Topic = topic
	for _, p := range partitions {
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rp.Partition = p
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp := request[*kmsg.OffsetDeleteResponse](t, ctx, cl, req)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}
