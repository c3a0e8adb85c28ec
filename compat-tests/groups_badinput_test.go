package compattests

// Bad OffsetCommits against the real binary: each gets Kafka's error code and leaves
// the committed offsets as they were.

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestGroupsBadCommits(t *testing.T) {
	t.Parallel()
	fx := startGroupFixture(t)
	fx.publishBatch(t, 1)
	ctx := Deadline(t, 60*time.Second)
	adm := newAdmin(t, fx.srv.KafkaAddr)

	// An empty group takes simple commits (no generation); a live member's group only
	// those of its current generation.
	const simple, live = "compat-bad-simple", "compat-bad-live"
	base := kadm.Offsets{}
	base.AddOffset(kafkaTopic, 0, 3, -1)
	base.AddOffset(kafkaTopic, 1, 5, -1)
	if resp, err := adm.CommitOffsets(ctx, simple, base); err != nil || resp.Error() != nil {
		t.Fatalf("simple commit: %v %v", err, resp.Error())
	}
	m := startKgoMember(t, ctx, fx.srv.KafkaAddr, live, "member-bad")
	waitFor(t, ctx, "the member to hold every partition", func() (bool, string) {
		return len(m.owned()) == kafkaPartitions, ""
	})
	m.stopPolling()
	memberID, generation := m.cl.GroupMetadata()
	commitReq := func(group, member string, gen int32, topic string, p int32, metadata string) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = group, member, gen
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = p, 9, &metadata
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			t.Fatalf("OffsetCommit: %v", err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("OffsetCommit answered %+v, want one topic with one partition", resp.Topics)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	// The live group's offsets before the bad commits: a good one from the member.
	if code := commitReq(live, memberID, generation, kafkaTopic, 2, "ok"); code != 0 {
		t.Fatalf("member's own commit: %v", kerr.ErrorForCode(code))
	}
	before := map[string]map[int32]int64{}
	for _, g := range []string{simple, live} {
		offs, err := committedOffsets(ctx, adm, g)
		if err != nil {
			t.Fatal(err)
		}
		before[g] = offs
	}
	for _, c := range []struct {
		name     string
		group    string
		member   string
		gen      int32
		topic    string
		p        int32
		metadata string
		want     *kerr.Error
	}{
		{"unknown topic", simple, "", -1, "no-such-topic", 0, "", kerr.UnknownTopicOrPartition},
		{"unknown partition", simple, "", -1, kafkaTopic, kafkaPartitions, "", kerr.UnknownTopicOrPartition},
		{"oversized metadata", simple, "", -1, kafkaTopic, 0, strings.Repeat("m", 4097), kerr.OffsetMetadataTooLarge},
		{"stale generation", live, memberID, generation - 1, kafkaTopic, 0, "", kerr.IllegalGeneration},
		{"unknown member id", live, "compat-no-such-member", generation, kafkaTopic, 0, "", kerr.UnknownMemberID},
		{"simple commit to a live group", live, "", -1, kafkaTopic, 0, "", kerr.UnknownMemberID},
	} {
		code := commitReq(c.group, c.member, c.gen, c.topic, c.p, c.metadata)
		if code != c.want.Code {
			t.Errorf("%s: error %v (%d), want %v (%d)", c.name, kerr.ErrorForCode(code), code, c.want, c.want.Code)
		}
	}
	for _, g := range []string{simple, live} {
		after, err := committedOffsets(ctx, adm, g)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(after, before[g]) {
			t.Errorf("group %s: committed offsets %v after the bad commits, were %v", g, after, before[g])
		}
	}
}
