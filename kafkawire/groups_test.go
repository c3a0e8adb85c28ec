package kafkawire

// Unit tests of the group coordinator's state machine, driven with kmsg requests
// directly (no server), over a real log in t.TempDir().

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

func newTestCoordinator(t *testing.T, delay time.Duration) *coordinator {
	t.Helper()
	l, err := log.Open(log.Options{Dir: t.TempDir(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureStream(log.StreamSpec{Name: grpTopic, Shards: 4}); err != nil {
		t.Fatal(err)
	}
	c := newCoordinator(l, zerolog.Nop(), coordinatorConfig{
		InitialRebalanceDelay: delay,
		MinSessionTimeout:     10 * time.Millisecond,
		MaxSessionTimeout:     time.Hour,
	})
	t.Cleanup(func() { c.close(); _ = l.Close() })
	return c
}

var testClient = clientInfo{ID: "cl", Host: "/127.0.0.1"}

// consumerMeta is consumer-protocol metadata subscribing to topics.
func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

type joinOpt func(*kmsg.JoinGroupRequest)

func joinReq(version int16, memberID string, opts ...joinOpt) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = version
	r.Group = "g"
	r.MemberID = memberID
	r.SessionTimeoutMillis = 30000
	r.RebalanceTimeoutMillis = 30000
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMeta(grpTopic)}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func protocols(names ...string) joinOpt {
	return func(r *kmsg.JoinGroupRequest) {
		r.Protocols = nil
		for _, n := range names {
			r.Protocols = append(r.Protocols, kmsg.JoinGroupRequestProtocol{Name: n, Metadata: consumerMeta(grpTopic, n)})
		}
	}
}

func instance(id string) joinOpt { return func(r *kmsg.JoinGroupRequest) { r.InstanceID = &id } }

func timeouts(session, rebalance time.Duration) joinOpt {
	return func(r *kmsg.JoinGroupRequest) {
		r.SessionTimeoutMillis = int32(session / time.Millisecond)
		r.RebalanceTimeoutMillis = int32(rebalance / time.Millisecond)
	}
}

func joinAsync(c *coordinator, r *kmsg.JoinGroupRequest) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- c.joinGroup(context.Background(), testClient, r) }()
	return ch
}

func syncAsync(c *coordinator, r *kmsg.SyncGroupRequest) <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { ch <- c.syncGroup(context.Background(), r) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("no response")
	}
	var zero T
	return zero
}

// noRecv checks that a waiting request has not been answered yet, for as long as the
// coordinator takes to handle the requests already made (they are synchronous).
func noRecv[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("answered too early: %+v", v)
	default:
	}
}

func syncReq(gen int32, memberID string, assign map[string][]byte) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.Generation, r.MemberID = "g", gen, memberID
	for id, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a})
	}
	return r
}

func heartbeat(c *coordinator, gen int32, memberID string, instanceID *string) int16 {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.Generation, r.MemberID, r.InstanceID = "g", gen, memberID, instanceID
	return c.heartbeat(r).ErrorCode
}

func groupState0(c *coordinator) string {
	s, found, _ := c.describe("g")
	if !found {
		return "Dead"
	}
	return s.state.String()
}

// joinStable brings one dynamic member (v5) into a Stable group and returns its id and
// generation.
func joinStable(t *testing.T, c *coordinator, opts ...joinOpt) (string, int32) {
	t.Helper()
	r := c.joinGroup(context.Background(), testClient, joinReq(5, "", opts...))
	if r.ErrorCode != kerr.MemberIDRequired.Code || r.MemberID == "" {
		t.Fatalf("first join: %v %q", kerr.ErrorForCode(r.ErrorCode), r.MemberID)
	}
	id := r.MemberID
	r = c.joinGroup(context.Background(), testClient, joinReq(5, id, opts...))
	if r.ErrorCode != 0 || r.LeaderID != id || r.MemberID != id || len(r.Members) != 1 {
		t.Fatalf("second join: %+v", r)
	}
	s := c.syncGroup(context.Background(), syncReq(r.Generation, id, map[string][]byte{id: []byte("A1")}))
	if s.ErrorCode != 0 || string(s.MemberAssignment) != "A1" {
		t.Fatalf("sync: %+v", s)
	}
	return id, r.Generation
}

func TestJoinValidation(t *testing.T) {
	c := newTestCoordinator(t, 0)
	joinStable(t, c)
	for _, tc := range []struct {
		name string
		req  *kmsg.JoinGroupRequest
		want *kerr.Error
	}{
		{"empty group", joinReq(5, "", func(r *kmsg.JoinGroupRequest) { r.Group = "" }), kerr.InvalidGroupID},
		{"session timeout too short", joinReq(5, "", timeouts(time.Millisecond, time.Second)), kerr.InvalidSessionTimeout},
		{"session timeout too long", joinReq(5, "", timeouts(2*time.Hour, time.Second)), kerr.InvalidSessionTimeout},
		{"no protocols", joinReq(5, "", protocols()), kerr.InconsistentGroupProtocol},
		{"other protocol type", joinReq(5, "", func(r *kmsg.JoinGroupRequest) { r.ProtocolType = "connect" }), kerr.InconsistentGroupProtocol},
		{"no common protocol", joinReq(5, "", protocols("roundrobin")), kerr.InconsistentGroupProtocol},
		{"unknown member", joinReq(5, "nobody"), kerr.UnknownMemberID},
		{"unknown static member", joinReq(5, "nobody", instance("i")), kerr.UnknownMemberID},
	} {
		if r := c.joinGroup(context.Background(), testClient, tc.req); r.ErrorCode != tc.want.Code {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(r.ErrorCode), tc.want)
		}
	}
	if s := groupState0(c); s != "Stable" {
		t.Fatalf("rejected joins moved the group to %s", s)
	}
}

func TestProtocolSelection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members [][]string // first is the leader
		want    string
	}{
		{"one member takes its first", [][]string{{"cooperative-sticky", "range"}}, "cooperative-sticky"},
		{"tie goes to the leader's order", [][]string{{"range", "roundrobin"}, {"roundrobin", "range"}}, "range"},
		{"majority vote", [][]string{{"range", "roundrobin"}, {"roundrobin", "range"}, {"roundrobin", "range"}}, "roundrobin"},
		{"only the common one", [][]string{{"sticky", "range"}, {"range"}}, "range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCoordinator(t, 0)
			// Old-version joins (v3) enter at once; the rebalance waits for all of them
			// only because each joins before the first completes: use the initial delay
			// instead, by joining all in a fresh coordinator with a long delay.
			c.cfg.InitialRebalanceDelay = time.Hour
			var chans []<-chan *kmsg.JoinGroupResponse
			for _, ps := range tc.members {
				chans = append(chans, joinAsync(c, joinReq(3, "", protocols(ps...))))
			}
			// Wait until all are members, then end the delay.
			waitFor(t, 10*time.Second, "all members to join", func() bool {
				g, _ := c.lookup("g", false)
				if g == nil {
					return false
				}
				g.mu.Lock()
				defer g.mu.Unlock()
				return g.nJoining == len(tc.members)
			})
			g, _ := c.lookup("g", false)
			g.mu.Lock()
			// Make the first joiner the leader, as the table says.
			for _, m := range g.members {
				if m.protocols[0].Name == tc.members[0][0] && len(m.protocols) == len(tc.members[0]) {
					g.leader = m.id
				}
			}
			g.initialUntil = time.Now()
			g.tryCompleteJoin()
			g.mu.Unlock()
			for _, ch := range chans {
				r := recv(t, ch)
				if r.ErrorCode != 0 || *r.Protocol != tc.want {
					t.Fatalf("protocol %v (%v), want %s", *r.Protocol, kerr.ErrorForCode(r.ErrorCode), tc.want)
				}
			}
		})
	}
}

// TestRebalanceTwoMembers walks the classic protocol: a second member's join moves a
// Stable group to PreparingRebalance, the first learns it by heartbeat, rejoins, the
// leader assigns in SyncGroup and the follower's sync waits for it.
func TestRebalanceTwoMembers(t *testing.T) {
	c := newTestCoordinator(t, 0)
	a, gen := joinStable(t, c)

	r := c.joinGroup(context.Background(), testClient, joinReq(5, ""))
	b := r.MemberID
	bJoin := joinAsync(c, joinReq(5, b))
	waitFor(t, 10*time.Second, "PreparingRebalance", func() bool { return groupState0(c) == "PreparingRebalance" })
	noRecv(t, bJoin)
	if code := heartbeat(c, gen, a, nil); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat during rebalance: %v", kerr.ErrorForCode(code))
	}
	if code := c.offsetCommit(commitReq(gen, a, 1)).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit of the previous generation during PreparingRebalance: %v", kerr.ErrorForCode(code))
	}
	ra := c.joinGroup(context.Background(), testClient, joinReq(5, a))
	rb := recv(t, bJoin)
	if ra.ErrorCode != 0 || rb.ErrorCode != 0 || ra.Generation != gen+1 || rb.Generation != gen+1 {
		t.Fatalf("joins: %+v / %+v", ra, rb)
	}
	if ra.LeaderID != a || len(ra.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("leader %s (a=%s) members %d/%d", ra.LeaderID, a, len(ra.Members), len(rb.Members))
	}
	if code := c.offsetCommit(commitReq(ra.Generation, a, 1)).Topics[0].Partitions[0].ErrorCode; code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit while CompletingRebalance: %v", kerr.ErrorForCode(code))
	}
	if code := heartbeat(c, ra.Generation, b, nil); code != 0 {
		t.Fatalf("heartbeat while CompletingRebalance: %v", kerr.ErrorForCode(code))
	}
	bSync := syncAsync(c, syncReq(rb.Generation, b, nil))
	waitFor(t, 10*time.Second, "the follower to wait in sync", func() bool {
		g, _ := c.lookup("g", false)
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.members[b].syncWait != nil
	})
	if s := c.syncGroup(context.Background(), syncReq(gen, a, nil)); s.ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("sync of the old generation: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	sa := c.syncGroup(context.Background(), syncReq(ra.Generation, a, map[string][]byte{a: []byte("for-a"), b: []byte("for-b")}))
	sb := recv(t, bSync)
	if string(sa.MemberAssignment) != "for-a" || string(sb.MemberAssignment) != "for-b" {
		t.Fatalf("assignments %q %q", sa.MemberAssignment, sb.MemberAssignment)
	}
	if groupState0(c) != "Stable" || heartbeat(c, ra.Generation, a, nil) != 0 || heartbeat(c, gen, a, nil) != kerr.IllegalGeneration.Code {
		t.Fatal("group not Stable after sync, or heartbeats wrong")
	}
	s, _, _ := c.describe("g")
	if len(s.members) != 2 || s.protocol != "range" {
		t.Fatalf("describe: %+v", s)
	}
	for _, m := range s.members {
		if want := map[string]string{a: "for-a", b: "for-b"}[m.MemberID]; string(m.MemberAssignment) != want || m.ClientHost != "/127.0.0.1" || m.ClientID != "cl" {
			t.Fatalf("described member %+v", m)
		}
	}

	// A v3 batch leave of b and an unknown member.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 3, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b}, {MemberID: "ghost"}}
	resp := c.leaveGroup(lr)
	if resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave: %+v", resp)
	}
	if heartbeat(c, ra.Generation, a, nil) != kerr.RebalanceInProgress.Code {
		t.Fatal("leave did not start a rebalance")
	}
	r = c.joinGroup(context.Background(), testClient, joinReq(5, a))
	if r.ErrorCode != 0 || r.Generation != ra.Generation+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin after leave: %+v", r)
	}
}

func commitReq(gen int32, member string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 7
	req.Group, req.Generation, req.MemberID = "g", gen, member
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = grpTopic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// TestRebalanceTimeoutDropsSilentMember: a member that does not rejoin within the
// rebalance timeout is removed and the rebalance completes without it.
func TestRebalanceTimeoutDropsSilentMember(t *testing.T) {
	c := newTestCoordinator(t, 0)
	short := timeouts(30*time.Second, 200*time.Millisecond)
	a, gen := joinStable(t, c, short)
	r := c.joinGroup(context.Background(), testClient, joinReq(5, "", short))
	rb := recv(t, joinAsync(c, joinReq(5, r.MemberID, short)))
	if rb.ErrorCode != 0 || rb.Generation != gen+1 || rb.LeaderID != r.MemberID || len(rb.Members) != 1 {
		t.Fatalf("join after timeout: %+v", rb)
	}
	if code := heartbeat(c, gen, a, nil); code != kerr.UnknownMemberID.Code {
		t.Fatalf("silent member's heartbeat: %v", kerr.ErrorForCode(code))
	}
}

// TestSessionExpiry: members that stop heartbeating are removed after their session
// timeout; the last one leaves the group Empty, with its generation advanced.
func TestSessionExpiry(t *testing.T) {
	c := newTestCoordinator(t, 0)
	a, gen := joinStable(t, c, timeouts(150*time.Millisecond, time.Second))
	waitFor(t, 10*time.Second, "the member to expire", func() bool { return groupState0(c) == "Empty" })
	if code := heartbeat(c, gen, a, nil); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member's heartbeat: %v", kerr.ErrorForCode(code))
	}
	// A pending (MEMBER_ID_REQUIRED) id expires too.
	r := c.joinGroup(context.Background(), testClient, joinReq(5, "", timeouts(100*time.Millisecond, time.Second)))
	waitFor(t, 10*time.Second, "the pending id to expire", func() bool {
		g, _ := c.lookup("g", false)
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending) == 0
	})
	if rr := c.joinGroup(context.Background(), testClient, joinReq(5, r.MemberID)); rr.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("join with an expired pending id: %v", kerr.ErrorForCode(rr.ErrorCode))
	}
}

// TestInitialDelayGathersMembers: members joining an empty group during the initial
// delay (here capped by the 2s rebalance timeout) all land in the first generation.
func TestInitialDelayGathersMembers(t *testing.T) {
	c := newTestCoordinator(t, time.Hour)
	slow := timeouts(30*time.Second, 2*time.Second)
	j1 := joinAsync(c, joinReq(3, "", slow))
	j2 := joinAsync(c, joinReq(3, "", slow))
	r1, r2 := recv(t, j1), recv(t, j2)
	if r1.Generation != 1 || r2.Generation != 1 || r1.LeaderID != r2.LeaderID {
		t.Fatalf("joins: %+v / %+v", r1, r2)
	}
}

// TestStaticMembership: a static member rejoining with an unchanged subscription gets a
// new member id in the same generation (no rebalance); the old id is fenced. A changed
// subscription rebalances.
func TestStaticMembership(t *testing.T) {
	c := newTestCoordinator(t, 0)
	r := c.joinGroup(context.Background(), testClient, joinReq(5, "", instance("i1")))
	if r.ErrorCode != 0 || !strings.HasPrefix(r.MemberID, "i1-") {
		t.Fatalf("static first join (no MEMBER_ID_REQUIRED): %+v", r)
	}
	old, gen := r.MemberID, r.Generation
	if s := c.syncGroup(context.Background(), syncReq(gen, old, map[string][]byte{old: []byte("A")})); s.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(s.ErrorCode))
	}

	req := joinReq(9, "", instance("i1"))
	r = c.joinGroup(context.Background(), testClient, req)
	if r.ErrorCode != 0 || r.MemberID == old || r.Generation != gen || r.LeaderID != r.MemberID || !r.SkipAssignment {
		t.Fatalf("static rejoin: %+v", r)
	}
	newID := r.MemberID
	i1 := "i1"
	if code := heartbeat(c, gen, old, &i1); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old id's heartbeat: %v", kerr.ErrorForCode(code))
	}
	s := c.syncGroup(context.Background(), syncReq(gen, newID, nil))
	if s.ErrorCode != 0 || string(s.MemberAssignment) != "A" {
		t.Fatalf("sync after static rejoin keeps the assignment: %+v", s)
	}
	if code := heartbeat(c, gen, newID, &i1); code != 0 || groupState0(c) != "Stable" {
		t.Fatalf("heartbeat %v, state %s", kerr.ErrorForCode(code), groupState0(c))
	}

	r = c.joinGroup(context.Background(), testClient, joinReq(5, "", instance("i1"), protocols("roundrobin", "range")))
	if r.ErrorCode != 0 || r.Generation != gen+1 {
		t.Fatalf("static rejoin with a new subscription: %+v", r)
	}

	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 4, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: &i1}, {InstanceID: kmsg.StringPtr("i2")}}
	resp := c.leaveGroup(lr)
	if resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave by instance id: %+v", resp)
	}
	waitFor(t, 10*time.Second, "Empty", func() bool { return groupState0(c) == "Empty" })
}

// TestStaticRestartDuringRebalance: a static member that restarts while its previous
// incarnation waits in a rebalance replaces it (the old join is fenced) and the
// rebalance completes as soon as everyone is in, not at the (hour-long) timeout.
func TestStaticRestartDuringRebalance(t *testing.T) {
	c := newTestCoordinator(t, 0)
	long := timeouts(time.Hour, time.Hour)
	a, gen := joinStable(t, c, long)
	oldB := joinAsync(c, joinReq(5, "", instance("b"), long))
	waitFor(t, 10*time.Second, "PreparingRebalance", func() bool { return groupState0(c) == "PreparingRebalance" })
	newB := joinAsync(c, joinReq(5, "", instance("b"), long))
	if r := recv(t, oldB); r.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("old incarnation: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	ra := c.joinGroup(context.Background(), testClient, joinReq(5, a, long))
	rb := recv(t, newB)
	if ra.ErrorCode != 0 || rb.ErrorCode != 0 || ra.Generation != gen+1 || rb.Generation != gen+1 {
		t.Fatalf("joins: %+v / %+v", ra, rb)
	}
}

// TestCommitRules: Kafka's generation/member gate for commits, table-driven over group
// states.
func TestCommitRules(t *testing.T) {
	c := newTestCoordinator(t, 0)
	code := func(gen int32, member string) int16 {
		return c.offsetCommit(commitReq(gen, member, 3)).Topics[0].Partitions[0].ErrorCode
	}
	// Empty (unknown) group.
	for _, tc := range []struct {
		gen    int32
		member string
		want   int16
	}{
		{-1, "", 0},
		{1, "", kerr.IllegalGeneration.Code},
		{1, "x", kerr.IllegalGeneration.Code},
	} {
		if got := code(tc.gen, tc.member); got != tc.want {
			t.Errorf("empty group gen %d member %q: %v, want %v", tc.gen, tc.member, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
		}
	}
	a, gen := joinStable(t, c)
	for _, tc := range []struct {
		gen    int32
		member string
		want   int16
	}{
		{-1, "", kerr.UnknownMemberID.Code},
		{gen, "x", kerr.UnknownMemberID.Code},
		{gen + 1, a, kerr.IllegalGeneration.Code},
		{gen, a, 0},
	} {
		if got := code(tc.gen, tc.member); got != tc.want {
			t.Errorf("stable group gen %d member %q: %v, want %v", tc.gen, tc.member, kerr.ErrorForCode(got), kerr.ErrorForCode(tc.want))
		}
	}
	// v0 commits carry no generation: a simple commit, refused while members exist.
	v0 := commitReq(gen, a, 3)
	v0.Version = 0
	if got := c.offsetCommit(v0).Topics[0].Partitions[0].ErrorCode; got != kerr.UnknownMemberID.Code {
		t.Errorf("v0 commit to an active group: %v", kerr.ErrorForCode(got))
	}

	// Mixed request: valid partitions are stored, invalid ones are not.
	req := commitReq(gen, a, 7)
	req.Topics[0].Partitions = append(req.Topics[0].Partitions,
		kmsg.OffsetCommitRequestTopicPartition{Partition: 1, Offset: 9, Metadata: kmsg.StringPtr(strings.Repeat("x", 5000))},
		kmsg.OffsetCommitRequestTopicPartition{Partition: 9, Offset: 9})
	ps := c.offsetCommit(req).Topics[0].Partitions
	if ps[0].ErrorCode != 0 || ps[1].ErrorCode != kerr.OffsetMetadataTooLarge.Code || ps[2].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("mixed commit: %+v", ps)
	}
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version, f.Group = 1, "g"
	f.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: grpTopic, Partitions: []int32{0, 1, 9}}}
	fr := c.offsetFetch(f)
	got := fr.Topics[0].Partitions
	if got[0].Offset != 7 || got[1].Offset != -1 || got[2].Offset != -1 {
		t.Fatalf("offsets after mixed commit: %+v", got)
	}
}

// TestOffsetFetchMultiGroup: v8 fetches several groups at once; a null topic list
// returns everything committed.
func TestOffsetFetchMultiGroup(t *testing.T) {
	c := newTestCoordinator(t, 0)
	for i, g := range []string{"g1", "g2"} {
		req := commitReq(-1, "", int64(10+i))
		req.Group = g
		if code := c.offsetCommit(req).Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
	}
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version = 8
	f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g1"}, {Group: "g2", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: grpTopic, Partitions: []int32{0, 1}}}}, {Group: "none"}}
	r := c.offsetFetch(f)
	if len(r.Groups) != 3 {
		t.Fatalf("groups: %+v", r.Groups)
	}
	if p := r.Groups[0].Topics[0].Partitions; len(p) != 1 || p[0].Offset != 10 {
		t.Fatalf("g1: %+v", r.Groups[0])
	}
	if p := r.Groups[1].Topics[0].Partitions; p[0].Offset != 11 || p[1].Offset != -1 {
		t.Fatalf("g2: %+v", r.Groups[1])
	}
	if len(r.Groups[2].Topics) != 0 || r.Groups[2].ErrorCode != 0 {
		t.Fatalf("none: %+v", r.Groups[2])
	}
}

// TestGroupAdminRules: OffsetDelete and DeleteGroups refuse what an active group uses.
func TestGroupAdminRules(t *testing.T) {
	c := newTestCoordinator(t, 0)
	del := func(group, topic string) (int16, int16) {
		r := kmsg.NewPtrOffsetDeleteRequest()
		r.Group = group
		r.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
		resp := c.offsetDelete(r)
		if resp.ErrorCode != 0 {
			return resp.ErrorCode, 0
		}
		return 0, resp.Topics[0].Partitions[0].ErrorCode
	}
	if top, _ := del("g", grpTopic); top != kerr.GroupIDNotFound.Code {
		t.Fatalf("offset delete of an unknown group: %v", kerr.ErrorForCode(top))
	}
	_, gen := joinStable(t, c)
	_ = gen
	if _, p := del("g", grpTopic); p != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("offset delete of a subscribed topic: %v", kerr.ErrorForCode(p))
	}
	if _, p := del("g", "other"); p != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("offset delete of an unknown topic: %v", kerr.ErrorForCode(p))
	}
	dr := kmsg.NewPtrDeleteGroupsRequest()
	dr.Groups = []string{"g", "ghost"}
	resp := c.deleteGroups(dr)
	if resp.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code || resp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete groups: %+v", resp.Groups)
	}
	d := kmsg.NewPtrDescribeGroupsRequest()
	d.Groups = []string{"ghost"}
	if g := c.describeGroups(d).Groups[0]; g.State != "Dead" || g.ErrorCode != 0 {
		t.Fatalf("describe unknown: %+v", g)
	}
	// Failed commits to unknown groups leave no group behind.
	bad := commitReq(-1, "", 1)
	bad.Group, bad.Topics[0].Topic = "phantom", "nope"
	if code := c.offsetCommit(bad).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("phantom commit: %v", kerr.ErrorForCode(code))
	}
	if _, found, _ := c.describe("phantom"); found {
		t.Fatal("a failed commit created a group")
	}
	lr := kmsg.NewPtrListGroupsRequest()
	lr.Version = 4
	lr.StatesFilter = []string{"Empty"}
	if l := c.listGroups(lr); len(l.Groups) != 0 {
		t.Fatalf("state filter: %+v", l.Groups)
	}
}
