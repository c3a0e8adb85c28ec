package kafkawire

// Real-client tests of consumer groups: franz-go (kgo; kmsg admin requests) against a real Server on an
// ephemeral port over a log in t.TempDir().

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/mqstreams/mqstreams/log"
)

const grpTopic = "events"

// grpEnv is a log and a started server over it.
type grpEnv struct {
	t    testing.TB
	dir  string
	log  *log.Log
	srv  *Server
	addr string
}

func grpStart(t testing.TB, dir string) *grpEnv {
	t.Helper()
	l, err := log.Open(log.Options{Dir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnsureStream(log.StreamSpec{Name: grpTopic, Shards: 4}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Log: l, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	e := &grpEnv{t: t, dir: dir, log: l, srv: s, addr: s.Addr().String()}
	t.Cleanup(e.stop)
	return e
}

func (e *grpEnv) stop() {
	if e.srv != nil {
		_ = e.srv.Close()
		e.srv = nil
	}
	if e.log != nil {
		_ = e.log.Close()
		e.log = nil
	}
}

// appendN appends n records to every shard, values "<tag>-<shard>-<i>".
func (e *grpEnv) appendN(tag string, n int) {
	e.t.Helper()
	st := e.log.Stream(grpTopic)
	for sh := int32(0); sh < st.Shards(); sh++ {
		var recs []log.Record
		for i := 0; i < n; i++ {
			recs = append(recs, log.Record{Value: []byte(fmt.Sprintf("%s-%d-%d", tag, sh, i))})
		}
		if _, err := st.Append(sh, recs); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *grpEnv) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

func groupOpts(group string, extra ...kgo.Opt) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(grpTopic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, extra...)
}

// consumeN polls until n records arrived (failing on more within the poll that
// delivers the n-th) and returns their values sorted.
func consumeN(t *testing.T, cl *kgo.Client, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(got), n)
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	sort.Strings(got)
	return got
}

func wantValues(tag string, shards int32, n int) []string {
	var out []string
	for sh := int32(0); sh < shards; sh++ {
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("%s-%d-%d", tag, sh, i))
		}
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// consumeCommitClose runs one group consumer: it reads exactly want, commits, leaves.
func consumeCommitClose(t *testing.T, e *grpEnv, group string, want []string, opts ...kgo.Opt) {
	t.Helper()
	cl := e.client(groupOpts(group, opts...)...)
	defer cl.Close()
	got := consumeN(t, cl, len(want))
	if !equalStrings(got, want) {
		t.Fatalf("consumed %v\nwant %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// TestGroupResumeAcrossRestart: a group consumer reads and commits; a new consumer in
// the group gets only what came after; so does one after the log and server restart.
func TestGroupResumeAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"latest versions", nil},
		// kafka-python 2.0.2's fixed versions: JoinGroup v2, SyncGroup/Heartbeat/LeaveGroup
		// v1, OffsetCommit v2, OffsetFetch v1, FindCoordinator v0.
		{"kafka-python versions", []kgo.Opt{kgo.MaxVersions(kafkaPythonVersions())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := grpStart(t, dir)
			e.appendN("a", 5)
			consumeCommitClose(t, e, "g", wantValues("a", 4, 5), tc.opts...)
			e.appendN("b", 3)
			consumeCommitClose(t, e, "g", wantValues("b", 4, 3), tc.opts...)
			e.appendN("c", 2)
			e.stop()

			e = grpStart(t, dir)
			cl := e.client()
			defer cl.Close()
			lgs := listGroups(t, context.Background(), cl)
			if g, ok := lgs["g"]; !ok || g.GroupState != "Empty" {
				t.Fatalf("after restart ListGroups = %+v, want g Empty", lgs)
			}
			consumeCommitClose(t, e, "g", wantValues("c", 4, 2), tc.opts...)
		})
	}
}

func kafkaPythonVersions() *kversion.Versions {
	v := kversion.V2_0_0()
	for key, max := range map[int16]int16{11: 2, 14: 1, 12: 1, 13: 1, 8: 2, 9: 1, 10: 0} {
		v.SetMaxKeyVersion(key, max)
	}
	return v
}

// assignmentTracker follows one member's partitions through kgo's callbacks.
type assignmentTracker struct {
	mu    sync.Mutex
	parts map[int32]bool
}

func (a *assignmentTracker) opts() []kgo.Opt {
	a.parts = map[int32]bool{}
	set := func(m map[string][]int32, v bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range m[grpTopic] {
			if v {
				a.parts[p] = true
			} else {
				delete(a.parts, p)
			}
		}
	}
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { set(m, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { set(m, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { set(m, false) }),
	}
}

func (a *assignmentTracker) get() []int32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int32
	for p := range a.parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// pollLoop keeps a consumer polling (so it fetches, and kgo runs its group) until
// stopped.
func pollLoop(cl *kgo.Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	return func() { cancel(); <-done }
}

func disjointCover(a, b []int32, n int32) bool {
	if len(a) == 0 || len(b) == 0 || int32(len(a)+len(b)) != n {
		return false
	}
	seen := map[int32]bool{}
	for _, p := range append(append([]int32{}, a...), b...) {
		seen[p] = true
	}
	return int32(len(seen)) == n
}

// TestGroupSplitAndLeave: two members split the 4 partitions; when one leaves, the
// other takes them all. kadm's view matches what the members hold.
func TestGroupSplitAndLeave(t *testing.T) {
	for _, bal := range []struct {
		name string
		b    kgo.GroupBalancer
	}{
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
		{"range", kgo.RangeBalancer()},
		{"roundrobin", kgo.RoundRobinBalancer()},
		{"sticky", kgo.StickyBalancer()},
	} {
		t.Run(bal.name, func(t *testing.T) {
			e := grpStart(t, t.TempDir())
			e.appendN("a", 2)
			var ta, tb assignmentTracker
			a := e.client(groupOpts("split", append(ta.opts(), kgo.Balancers(bal.b), kgo.ClientID("member-a"))...)...)
			stopA := pollLoop(a)
			defer func() { stopA(); a.Close() }()
			b := e.client(groupOpts("split", append(tb.opts(), kgo.Balancers(bal.b), kgo.ClientID("member-b"))...)...)
			stopB := pollLoop(b)
			waitFor(t, 30*time.Second, "the two members to split the partitions", func() bool {
				return disjointCover(ta.get(), tb.get(), 4)
			})

			cl := e.client()
			defer cl.Close()
			waitFor(t, 30*time.Second, "DescribeGroups to show both members Stable", func() bool {
				g, err := describeGroup(t, context.Background(), cl, "split")
				if err != nil || g.State != "Stable" || len(g.Members) != 2 || g.Protocol != bal.b.ProtocolName() {
					return false
				}
				held := map[string][]int32{}
				for _, m := range g.Members {
					ca := kmsg.NewConsumerMemberAssignment()
					if err := ca.ReadFrom(m.MemberAssignment); err != nil {
						return false
					}
					for _, tp := range ca.Topics {
						held[m.ClientID] = append(held[m.ClientID], tp.Partitions...)
					}
					if m.ClientHost != "/127.0.0.1" {
						t.Errorf("client host %q", m.ClientHost)
					}
				}
				for _, ps := range held {
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				}
				return fmt.Sprint(held["member-a"]) == fmt.Sprint(ta.get()) && fmt.Sprint(held["member-b"]) == fmt.Sprint(tb.get())
			})
			if lgs := listGroups(t, context.Background(), cl); lgs["split"].GroupState != "Stable" || lgs["split"].ProtocolType != "consumer" {
				t.Fatalf("ListGroups = %+v", lgs)
			}

			stopB()
			b.Close() // leaves the group
			waitFor(t, 30*time.Second, "the remaining member to hold all partitions", func() bool {
				return len(ta.get()) == 4
			})
		})
	}
}

// killableDialer lets a test cut a client off the network as if its process died:
// every connection is closed and no new one can be made, so it cannot leave the group.
type killableDialer struct {
	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

func (k *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		k.conns = append(k.conns, c)
	}
	return c, err
}

func (k *killableDialer) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.killed = true
	for _, c := range k.conns {
		_ = c.Close()
	}
}

// TestGroupKilledMemberEvicted: a member that vanishes without LeaveGroup is evicted
// after its session timeout and the survivor takes its partitions.
func TestGroupKilledMemberEvicted(t *testing.T) {
	e := grpStart(t, t.TempDir())
	e.appendN("a", 1)
	session := []kgo.Opt{kgo.SessionTimeout(1500 * time.Millisecond), kgo.HeartbeatInterval(200 * time.Millisecond)}
	var ta, tb assignmentTracker
	a := e.client(groupOpts("kill", append(ta.opts(), session...)...)...)
	stopA := pollLoop(a)
	defer func() { stopA(); a.Close() }()
	var kd killableDialer
	b := e.client(append(groupOpts("kill", append(tb.opts(), session...)...), kgo.Dialer(kd.dial))...)
	stopB := pollLoop(b)
	waitFor(t, 30*time.Second, "the two members to split the partitions", func() bool {
		return disjointCover(ta.get(), tb.get(), 4)
	})
	kd.kill()
	waitFor(t, 30*time.Second, "the killed member's partitions to move", func() bool {
		return len(ta.get()) == 4
	})
	cl := e.client()
	defer cl.Close()
	if g, err := describeGroup(t, context.Background(), cl, "kill"); err != nil || len(g.Members) != 1 {
		t.Fatalf("DescribeGroups after eviction: %+v %v", g, err)
	}
	stopB()
	b.Close()
}

// TestGroupAdminOffsetsAndLag: OffsetFetch, and the lag computed from it and ListOffsets
// as admin tools do, match what was committed and the log's high watermarks, as does
// Server.GroupLags.
func TestGroupAdminOffsetsAndLag(t *testing.T) {
	e := grpStart(t, t.TempDir())
	e.appendN("a", 5)
	consumeCommitClose(t, e, "lag", wantValues("a", 4, 5))
	e.appendN("b", 3)

	cl := e.client()
	defer cl.Close()
	ctx := context.Background()
	offs, err := fetchOffsets(t, ctx, cl, "lag")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := listOffsets(t, ctx, cl, grpTopic, atEnd)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 4; p++ {
		o, ok := offs[grpTopic][p]
		if !ok || o.err != nil || o.at != 5 {
			t.Fatalf("FetchOffsets %d = %+v (%v)", p, o, ok)
		}
		if end := ends[p]; end.err != nil || end.offset != 8 || end.offset-o.at != 3 {
			t.Fatalf("lag %d: end %+v, committed %d", p, end, o.at)
		}
	}
	if g, err := describeGroup(t, ctx, cl, "lag"); err != nil || g.State != "Empty" {
		t.Fatalf("DescribeGroups: %+v %v", g, err)
	}
	got := e.srv.GroupLags()
	if len(got) != 4 {
		t.Fatalf("GroupLags = %+v", got)
	}
	for i, l := range got {
		want := GroupLag{Group: "lag", Topic: grpTopic, Partition: int32(i), Committed: 5, HWM: 8, Lag: 3}
		if l != want {
			t.Fatalf("GroupLags[%d] = %+v, want %+v", i, l, want)
		}
	}

	// Offsets of an empty group can be deleted, then the group itself.
	if err := deleteOffsets(t, ctx, cl, "lag", grpTopic, 0); err != nil {
		t.Fatalf("DeleteOffsets: %v", err)
	}
	offs, _ = fetchOffsets(t, ctx, cl, "lag")
	if o, ok := offs[grpTopic][0]; ok && o.at >= 0 {
		t.Fatalf("offset of partition 0 still there: %+v", o)
	}
	if o := offs[grpTopic][1]; o.at != 5 {
		t.Fatalf("offset of partition 1 after deleting partition 0's: %+v", o)
	}
	if err := deleteGroup(t, ctx, cl, "lag"); err != nil {
		t.Fatalf("DeleteGroups: %v", err)
	}
	if err := deleteGroup(t, ctx, cl, "lag"); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("second DeleteGroups: %v", err)
	}
	if l := e.srv.GroupLags(); len(l) != 0 {
		t.Fatalf("GroupLags after delete = %+v", l)
	}
}

// TestGroupBadCommits: each bad commit gets Kafka's error and changes nothing.
func TestGroupBadCommits(t *testing.T) {
	e := grpStart(t, t.TempDir())
	e.appendN("a", 3)
	var ta assignmentTracker
	member := e.client(groupOpts("bad", ta.opts()...)...)
	stop := pollLoop(member)
	defer func() { stop(); member.Close() }()
	waitFor(t, 30*time.Second, "the member to be assigned", func() bool { return len(ta.get()) == 4 })
	memberID, generation := member.GroupMetadata()
	cl := e.client()
	defer cl.Close()
	ctx := context.Background()

	commit := func(gen int32, member, topic string, part int32, meta string) int16 {
		t.Helper()
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation, req.MemberID = "bad", gen, member
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = part, 2, kmsg.StringPtr(meta)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	for _, tc := range []struct {
		name    string
		gen     int32
		member  string
		topic   string
		part    int32
		meta    string
		wantErr *kerr.Error
	}{
		{"unknown topic", generation, memberID, "nope", 0, "", kerr.UnknownTopicOrPartition},
		{"unknown partition", generation, memberID, grpTopic, 4, "", kerr.UnknownTopicOrPartition},
		{"stale generation", generation - 1, memberID, grpTopic, 0, "", kerr.IllegalGeneration},
		{"unknown member", generation, "someone-else", grpTopic, 0, "", kerr.UnknownMemberID},
		{"simple commit to active group", -1, "", grpTopic, 0, "", kerr.UnknownMemberID},
		{"oversized metadata", generation, memberID, grpTopic, 0, strings.Repeat("m", 4097), kerr.OffsetMetadataTooLarge},
	} {
		if code := commit(tc.gen, tc.member, tc.topic, tc.part, tc.meta); code != tc.wantErr.Code {
			t.Errorf("%s: error %v, want %v", tc.name, kerr.ErrorForCode(code), tc.wantErr)
		}
	}
	offs, err := fetchOffsets(t, ctx, cl, "bad")
	if err != nil {
		t.Fatal(err)
	}
	for topic, ps := range offs {
		for p, o := range ps {
			if o.at >= 0 {
				t.Fatalf("a rejected commit was stored: %s/%d %+v", topic, p, o)
			}
		}
	}
	if code := commit(generation, memberID, grpTopic, 0, strings.Repeat("m", 4096)); code != 0 {
		t.Fatalf("valid commit: %v", kerr.ErrorForCode(code))
	}
	offs, _ = fetchOffsets(t, ctx, cl, "bad")
	if o := offs[grpTopic][0]; o.at != 2 || len(o.metadata) != 4096 {
		t.Fatalf("valid commit stored as %+v", o)
	}
}
