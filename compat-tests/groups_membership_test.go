package compattests

// Group membership against the real binary: two members split the partitions, a member
// that leaves hands its partitions over at once, a killed member is evicted after its
// session timeout, and kadm's ListGroups/DescribeGroups report what the members hold.
// In both tests the members' records together are the data set exactly once.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGroupsSplitAndLeave(t *testing.T) {
	t.Parallel()
	fx := startGroupFixture(t)
	ctx := Deadline(t, 80*time.Second)
	const group = "compat-split"
	adm := newAdmin(t, fx.srv.KafkaAddr)
	a := startKgoMember(t, ctx, fx.srv.KafkaAddr, group, "member-a")
	b := startKgoMember(t, ctx, fx.srv.KafkaAddr, group, "member-b")

	waitFor(t, ctx, "two members holding two partitions each, as DescribeGroups reports", func() (bool, string) {
		ao, bo := a.owned(), b.owned()
		if len(ao) != 2 || len(bo) != 2 {
			return false, fmt.Sprintf("member-a holds %v, member-b %v", ao, bo)
		}
		return describeMatches(ctx, adm, group, "cooperative-sticky", map[string][]int32{"member-a": ao, "member-b": bo})
	})
	checkListed(t, ctx, adm, group)

	fx.publishBatch(t, 1)
	all1 := fx.batchLen(1)
	waitFor(t, ctx, "the members to read batch 1", func() (bool, string) {
		n := len(a.records()) + len(b.records())
		return n >= all1, fmt.Sprintf("%d of %d records", n, all1)
	})
	// b commits what it read and stops reading: what is published next on its
	// partitions is for a to read once b has left.
	b.stopPolling()
	if err := b.cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("member-b commit: %v", err)
	}
	bOwned := b.owned()
	bCommitted := map[int32]int64{}
	for _, p := range bOwned {
		bCommitted[p] = fx.hwm[p]
	}
	waitCommitted(t, ctx, fx.srv.KafkaAddr, group, bCommitted)
	fx.publishBatch(t, 2)
	checkGroupLag(t, fx.srv, group, bCommitted, fx.hwm)

	left := time.Now()
	b.close() // LeaveGroup
	waitFor(t, ctx, "member-a to hold all partitions alone, as DescribeGroups reports", func() (bool, string) {
		ao := a.owned()
		if len(ao) != kafkaPartitions {
			return false, fmt.Sprintf("member-a holds %v", ao)
		}
		return describeMatches(ctx, adm, group, "cooperative-sticky", map[string][]int32{"member-a": ao})
	})
	took := time.Since(left)
	t.Logf("member-a took over member-b's partitions %v after member-b left", took.Round(time.Millisecond))
	if took > groupSessionTimeout {
		t.Errorf("member-a took %v to get member-b's partitions, more than the session timeout %v", took, groupSessionTimeout)
	}

	all := len(fx.msgs)
	waitFor(t, ctx, "member-a to read the rest", func() (bool, string) {
		n := len(a.records()) + len(b.records())
		return n >= all, fmt.Sprintf("%d of %d records", n, all)
	})
	a.stopPolling()
	if err := a.cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("member-a commit: %v", err)
	}
	for _, r := range b.records() {
		if !slices.Contains(bOwned, r.Partition) {
			t.Errorf("member-b read %d/%d, not one of its partitions %v", r.Partition, r.Offset, bOwned)
		}
	}
	fx.checkRecords(t, franzClient{}, append(a.records(), b.records()...), func(*kafkaMsg) bool { return true })
	waitCommitted(t, ctx, fx.srv.KafkaAddr, group, fx.hwm)
	checkGroupLag(t, fx.srv, group, fx.hwm, fx.hwm)
	a.close()
}

func TestGroupsKilledMemberEvicted(t *testing.T) {
	t.Parallel()
	script := pythonScript(t, "kafka", "kafkapython_group.py")
	fx := startGroupFixture(t)
	ctx := Deadline(t, 80*time.Second)
	const group = "compat-evict"
	const pyID = "compat-kafkapython-group" // the script's client.id
	adm := newAdmin(t, fx.srv.KafkaAddr)
	// kafka-python 2.0.2 knows only the eager range and roundrobin assignors.
	a := startKgoMember(t, ctx, fx.srv.KafkaAddr, group, "member-a", kgo.Balancers(kgo.RangeBalancer(), kgo.RoundRobinBalancer()))
	py := startScriptMember(t, ctx, script, fx.srv.KafkaAddr, group)

	waitFor(t, ctx, "the franz-go and kafka-python members holding two partitions each, as DescribeGroups reports", func() (bool, string) {
		ao, po := a.owned(), py.owned()
		if len(ao) != 2 || len(po) != 2 {
			return false, fmt.Sprintf("member-a holds %v, kafka-python %v", ao, po)
		}
		return describeMatches(ctx, adm, group, "range", map[string][]int32{"member-a": ao, pyID: po})
	})
	checkListed(t, ctx, adm, group)

	fx.publishBatch(t, 1)
	pyOwned := py.owned()
	pyCommitted := map[int32]int64{}
	for _, p := range pyOwned {
		pyCommitted[p] = fx.hwm[p]
	}
	all1 := fx.batchLen(1)
	waitFor(t, ctx, "the members to read batch 1, kafka-python to commit it", func() (bool, string) {
		n := len(a.records()) + len(py.records())
		if n < all1 {
			return false, fmt.Sprintf("%d of %d records", n, all1)
		}
		got, err := committedOffsets(ctx, adm, group)
		return err == nil && maps.Equal(got, pyCommitted), fmt.Sprintf("committed %v (error %v), want %v", got, err, pyCommitted)
	})

	killed := time.Now()
	py.kill()
	waitFor(t, ctx, "member-a to hold all partitions alone after kafka-python's eviction", func() (bool, string) {
		ao := a.owned()
		if len(ao) != kafkaPartitions {
			return false, fmt.Sprintf("member-a holds %v", ao)
		}
		return describeMatches(ctx, adm, group, "range", map[string][]int32{"member-a": ao})
	})
	took := time.Since(killed)
	t.Logf("the killed kafka-python member was evicted and its partitions reassigned %v after SIGKILL (session timeout %v)", took.Round(time.Millisecond), groupSessionTimeout)
	// Its last heartbeat was at most a heartbeat interval (1 s) before the kill; a
	// closed connection alone must not evict a member.
	if took < groupSessionTimeout-2*time.Second {
		t.Errorf("the killed member was evicted %v after the kill, before its session timeout %v could expire", took, groupSessionTimeout)
	}

	fx.publishBatch(t, 2)
	all := len(fx.msgs)
	waitFor(t, ctx, "member-a to read the rest", func() (bool, string) {
		n := len(a.records()) + len(py.records())
		return n >= all, fmt.Sprintf("%d of %d records", n, all)
	})
	a.stopPolling()
	if err := a.cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("member-a commit: %v", err)
	}
	fx.checkRecords(t, scriptClient{}, append(a.records(), py.records()...), func(*kafkaMsg) bool { return true })
	waitCommitted(t, ctx, fx.srv.KafkaAddr, group, fx.hwm)
	checkGroupLag(t, fx.srv, group, fx.hwm, fx.hwm)
	a.close()
}

// kgoMember is a franz-go group member that tracks the partitions it holds and keeps
// every record it polls; it commits when told to and when partitions are revoked.
type kgoMember struct {
	cl        *kgo.Client
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	held map[int32]bool
	recs []kafkaRecord
}

func startKgoMember(t *testing.T, ctx context.Context, addr, group, clientID string, opts ...kgo.Opt) *kgoMember {
	t.Helper()
	m := &kgoMember{held: map[int32]bool{}, done: make(chan struct{})}
	change := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range ps[kafkaTopic] {
				if add {
					m.held[p] = true
				} else {
					delete(m.held, p)
				}
			}
		}
	}
	// What a member read is committed before it gives partitions up, as consumers with
	// manual commits do: an eager rebalance revokes every partition, and the member
	// (or another) resumes each from its committed offset.
	revoked := func(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: commit on revoke: %v", clientID, err)
		}
		change(false)(ctx, cl, ps)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID(clientID),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(kafkaTopic), kgo.DisableAutoCommit(),
		kgo.SessionTimeout(groupSessionTimeout), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.OnPartitionsAssigned(change(true)), kgo.OnPartitionsRevoked(revoked), kgo.OnPartitionsLost(change(false)),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	pollCtx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	t.Cleanup(m.close)
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(pollCtx)
			if pollCtx.Err() != nil || fs.IsClientClosed() {
				return
			}
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s fetch %s/%d: %v", clientID, topic, p, err)
				}
			})
			m.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { m.recs = append(m.recs, franzRecord(r)) })
			m.mu.Unlock()
		}
	}()
	return m
}

// close stops reading and leaves the group.
func (m *kgoMember) close() {
	m.stopPolling()
	m.closeOnce.Do(m.cl.Close)
}

// stopPolling stops reading; the member stays in the group.
func (m *kgoMember) stopPolling() {
	m.cancel()
	<-m.done
}

func (m *kgoMember) owned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.held))
}

func (m *kgoMember) records() []kafkaRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs)
}

// scriptMember is a client script in member mode: it prints its assignments and
// records, and commits after each poll, until killed.
type scriptMember struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	held []int32
	recs []kafkaRecord
	errs strings.Builder
}

func startScriptMember(t *testing.T, ctx context.Context, argv []string, addr, group string) *scriptMember {
	t.Helper()
	m := &scriptMember{done: make(chan struct{})}
	args := append(append(slices.Clone(argv[1:]), addr), "member", group, kafkaTopic)
	m.cmd = exec.CommandContext(ctx, argv[0], args...)
	m.cmd.WaitDelay = 5 * time.Second
	m.cmd.Stderr = &lockedWriter{mu: &m.mu, b: &m.errs}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-m.done
		if t.Failed() {
			m.mu.Lock()
			t.Logf("%s stderr:\n%s", argv[1], m.errs.String())
			m.mu.Unlock()
		}
	})
	go func() {
		defer close(m.done)
		defer func() { _ = m.cmd.Wait() }()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l scriptLine
			var ps struct {
				Partitions []int32 `json:"partitions"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || json.Unmarshal(sc.Bytes(), &ps) != nil {
				t.Errorf("%s: bad output line %q", argv[1], sc.Text())
				continue
			}
			m.mu.Lock()
			switch l.Type {
			case "assigned": // eager: the whole assignment
				m.held = slices.Sorted(slices.Values(ps.Partitions))
			case "revoked":
				m.held = nil
			case "record":
				m.recs = append(m.recs, l.record(t))
			}
			m.mu.Unlock()
		}
	}()
	return m
}

// kill sends SIGKILL: the member never leaves the group.
func (m *scriptMember) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

func (m *scriptMember) owned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.held)
}

func (m *scriptMember) records() []kafkaRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs)
}

// lockedWriter appends to a builder under the owner's mutex.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newAdmin(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// waitFor polls cond until it holds, failing with its last report at the deadline.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last: %s", what, ctx.Err(), state)
		}
	}
}

// describeMatches reports whether kadm's DescribeGroups shows the group Stable with
// the consumer protocol type, the given assignor, and exactly the given members (by
// client id) each assigned the given partitions of kafkaTopic.
func describeMatches(ctx context.Context, adm *kadm.Client, group, protocol string, held map[string][]int32) (bool, string) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return false, fmt.Sprintf("DescribeGroups: %v", err)
	}
	g, ok := described[group]
	if !ok || g.Err != nil {
		return false, fmt.Sprintf("DescribeGroups: group missing or failed: %+v", g)
	}
	got := map[string][]int32{}
	for _, m := range g.Members {
		as, ok := m.Assigned.AsConsumer()
		if !ok {
			return false, fmt.Sprintf("member %s (%s): assignment is not a consumer assignment", m.MemberID, m.ClientID)
		}
		var ps []int32
		for _, tp := range as.Topics {
			if tp.Topic == kafkaTopic {
				ps = append(ps, tp.Partitions...)
			}
		}
		got[m.ClientID] = slices.Sorted(slices.Values(ps))
	}
	state := fmt.Sprintf("state %s, protocol %s/%s, members %v; the members hold %v", g.State, g.ProtocolType, g.Protocol, got, held)
	if g.State != "Stable" || g.ProtocolType != "consumer" || g.Protocol != protocol || len(g.Members) != len(held) {
		return false, state
	}
	return maps.EqualFunc(got, held, slices.Equal), state
}

// checkListed checks that kadm's ListGroups lists the group as a Stable consumer group.
func checkListed(t *testing.T, ctx context.Context, adm *kadm.Client, group string) {
	t.Helper()
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatalf("ListGroups: %v", err)
	}
	g, ok := listed[group]
	if !ok || g.ProtocolType != "consumer" || g.State != "Stable" {
		t.Errorf("ListGroups: group %s is %+v (listed %v), want a Stable consumer group; all: %v", group, g, ok, listed.Groups())
	}
}
