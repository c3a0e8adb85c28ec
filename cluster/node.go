package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mqstreams/mqstreams/log"
)

// Addrs are the addresses a node advertises to clients (host:port each).
type Addrs struct {
	Kafka string `json:"kafka,omitempty"`
	MQTT  string `json:"mqtt,omitempty"`
	HTTP  string `json:"http,omitempty"`
}

// StreamApplier applies replicated stream definitions to this node's local state. The
// catalog group calls it, in the same order on every node, for every change; both
// calls must be idempotent (a change is applied again after a crash before its
// catalog state was saved).
type StreamApplier interface {
	// ApplyStream creates the stream with the cluster-wide id, or updates it.
	ApplyStream(spec log.StreamSpec, id uint32) error
	// ApplyStreamDelete removes it (nothing if it is gone).
	ApplyStreamDelete(name string) error
}

// Options are what Open needs besides the Config.
type Options struct {
	Log    *log.Log
	Logger zerolog.Logger
	// Advertise is what this node tells the others (and they their clients).
	Advertise Addrs
	// Streams applies stream definitions locally; nil creates and deletes log streams.
	Streams StreamApplier
	// Durability decides whether Raft log writes are fsynced (fsync, the default) or
	// only written (write), as the log's own appends are.
	Durability log.Durability
	// TickInterval and ElectionTicks tune failure detection (defaults in config.go).
	TickInterval  time.Duration
	ElectionTicks int
	// AppendTimeout bounds an append that names no deadline (default 10s).
	AppendTimeout time.Duration
	// LogKeep is how many applied entries a group keeps for lagging followers
	// before it snapshots (default raftLogKeep).
	LogKeep uint64
	// RetentionInterval is how often shard leaders apply retention (retention.go;
	// default 10s).
	RetentionInterval time.Duration

	// listener, when set, is the transport's listener (tests: ports picked up front).
	listener net.Listener
	// tellRemovedFor bounds how long RemoveNode keeps telling a removed node that is
	// down (default 10s; negative: it does not tell, tests of the other ways; removed.go).
	tellRemovedFor time.Duration
	// noQuiesce keeps idle groups ticking (benchmarks compare).
	noQuiesce bool
	// testHoldMarkers, when set and true, makes WriteMarker on this node fail (a
	// coordinator that dies between PrepareCommit and its markers).
	testHoldMarkers func() bool
	// testFailApply, when set and true for an index, fails that entry's apply once.
	testFailApply func(group, index uint64) bool
	// testSkipApply, when set and true for an index, makes a shard replica drop that
	// entry unapplied, as a crash between the Raft write and the apply would.
	testSkipApply func(group, index uint64) bool
	// testSnapshotPull, when set, runs before each pull of a snapshot's records.
	testSnapshotPull func(group uint64)
	// testTrace, when set, gets every shard entry's round timeline (trace.go).
	testTrace tracer
	// testForwardArrived, when set, sees each forwarded append reaching this leader;
	// true drops it unanswered (write_test.go: the leader dies with it in flight).
	testForwardArrived func() bool
	// testBeforeWrite, when set, runs before each Raft write (a stalled disk).
	testBeforeWrite func()
	// testBeforeInstall, when set, runs before a shard replica installs a snapshot
	// (a slow pull of its records).
	testBeforeInstall func(group uint64)
}

// Errors callers branch on.
var (
	// ErrNotLeader: this node is not the leader of the shard's group; errors.As finds a
	// *NotLeaderError naming the leader it knows.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: the group has no leader this node knows of (election under way,
	// or no quorum).
	ErrNoLeader = errors.New("no leader")
	// ErrTimeout: the append was not committed in time; it may still be committed.
	ErrTimeout = errors.New("replication timed out")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("cluster node closed")
)

// NotLeaderError names the leader a request should go to (0 if unknown).
type NotLeaderError struct{ Leader uint64 }

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader (leader is node %d)", e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// UncertainError is an append whose outcome is unknown: sent to the shard's leader,
// which then died, was cut off or did not answer in time. It may still be committed.
// Timeout makes the protocol faces answer it as a timed-out request.
type UncertainError struct{ Err error }

func (e *UncertainError) Error() string { return e.Err.Error() + " (outcome unknown)" }
func (e *UncertainError) Unwrap() error { return e.Err }

// Timeout reports true: the request timed out as far as the client can tell.
func (e *UncertainError) Timeout() bool { return true }

// Node is this process's member of the cluster.
type Node struct {
	cfg Config
	o   Options
	lg  zerolog.Logger
	l   *log.Log
	tr  *transport
	// membersP: every node of the cluster, sorted: the config's until the catalog
	// holds a member list (members.go), then the catalog's.
	membersP atomic.Pointer[[]uint64]
	streams  StreamApplier
	sm       smHolder // replicated state machine (state.go)
	// markerHook: commit markers proposed here (txn.go).
	markerHook atomic.Pointer[MarkerHook]
	fences     markerFences // producers' epochs fenced by markers (txn.go)

	mu     sync.RWMutex
	groups map[uint64]*group // the groups this node has a replica of
	cat    *catalogState     // as last applied; replaced, never changed in place

	// storageFailed: a Raft write failed; the loop stops acting on Readys until the
	// groups are reopened (recover.go). lastRecover paces that (loop only).
	storageFailed atomic.Bool
	lastRecover   time.Time

	inbox   chan []inbound
	persist *persister // the local append thread (persist.go)
	local   localQueue // its responses for the loop
	props   chan *proposal
	tasks   chan func()
	stop    chan struct{}
	closed  atomic.Bool
	wg      sync.WaitGroup

	advMu   sync.Mutex
	adv     Addrs
	advKick chan struct{}

	hints leaderHints // leaders of groups without a replica here (leaders.go)

	propSeq atomic.Uint64 // starts random: ids of an earlier run never match
	waitMu  sync.Mutex
	waiters map[uint64]*proposal
	catWait map[uint64]chan error
	reads   map[uint64]*readWait

	// Reads served to other nodes (read.go): ctx ends at Close, which waits for them.
	ctx       context.Context
	cancelCtx context.CancelFunc
	readMu    sync.Mutex
	readers   sync.WaitGroup
	// readsServed counts reads served to other nodes (tests).
	readsServed atomic.Int64

	maint   maintWaits // DeleteRecords and retention proposals (retention.go)
	removed removal    // this node was removed from the cluster (removed.go)
}

type inbound struct {
	group uint64
	m     *pb.Message
}

// Open starts the node: loads every group this node has a replica of, starts the
// transport and the Raft loop. A node with no Raft state joins the initial cluster of
// its config (every node is a voter of the catalog group).
func Open(cfg Config, o Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		return nil, errors.New("cluster: Options.Log is required")
	}
	if o.TickInterval <= 0 {
		o.TickInterval = DefaultTickInterval
	}
	if o.ElectionTicks <= heartbeatTicks {
		o.ElectionTicks = DefaultElectionTicks
	}
	if o.AppendTimeout <= 0 {
		o.AppendTimeout = defaultAppendTimeout
	}
	if o.LogKeep == 0 {
		o.LogKeep = raftLogKeep
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = defaultRetentionInterval
	}
	n := &Node{
		cfg:     cfg,
		o:       o,
		lg:      o.Logger.With().Uint64("node", cfg.NodeID).Logger(),
		l:       o.Log,
		streams: o.Streams,
		groups:  map[uint64]*group{},
		inbox:   make(chan []inbound, 1024),
		props:   make(chan *proposal, 4096),
		tasks:   make(chan func(), 256),
		stop:    make(chan struct{}),
		waiters: map[uint64]*proposal{},
		catWait: map[uint64]chan error{},
		reads:   map[uint64]*readWait{},
		adv:     o.Advertise,
		advKick: make(chan struct{}, 1),
	}
	n.local.kick = make(chan struct{}, 1)
	n.persist = newPersister(n)
	if n.streams == nil {
		n.streams = logStreams{o.Log}
	}
	n.ctx, n.cancelCtx = context.WithCancel(context.Background())
	ms := cfg.members()
	n.membersP.Store(&ms)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	n.propSeq.Store(binary.BigEndian.Uint64(seed[:]) >> 1)

	tr, err := newTransport(cfg.NodeID, cfg.RaftAddr, o.listener, cfg.others(), n.lg)
	if err != nil {
		return nil, err
	}
	n.tr = tr
	tr.handle(kindRaft, n.onRaft)
	tr.handle(kindLeaders, n.onLeaders)
	tr.register(methodAppend, n.onForwardedAppend)
	tr.register(methodCatalog, n.onForwardedCatalog)
	tr.register(methodReadShard, n.onReadShard)
	tr.register(methodReplicas, n.onReplicasChange)
	tr.register(methodShardOps, n.onShardOps)
	tr.register(methodMarker, n.onForwardedMarker)
	tr.register(methodStreamRead, n.onStreamRead)
	n.registerMaintenance()
	n.registerRemoval()

	removed, err := n.loadRemoved()
	if err == nil && !removed {
		err = n.loadGroups()
	}
	if err != nil {
		tr.close()
		return nil, err
	}
	tr.start()
	go n.persist.run()
	n.wg.Add(1)
	go n.run()
	n.wg.Add(1)
	go n.register()
	n.startMaintenance()
	return n, nil
}

// Close stops the Raft loop, every applier and the transport. Appends waiting for a
// commit fail with ErrClosed.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(n.stop)
	n.cancelCtx()
	n.readMu.Lock() // startRead adds no reader after this
	n.readMu.Unlock()
	n.readers.Wait()
	n.wg.Wait()
	n.persist.close()
	n.tr.close()
	n.mu.Lock()
	gs := n.groups
	n.mu.Unlock()
	for _, g := range gs {
		g.close()
	}
	n.waitMu.Lock()
	ws := n.waiters
	n.waiters = map[uint64]*proposal{}
	n.waitMu.Unlock()
	for _, p := range ws {
		p.finish(log.AppendResult{}, ErrClosed)
	}
	return nil
}

// Handle registers the handler of a message kind (KindMQTT and up); it runs on the
// receiving link's goroutine, in the order the peer sent, and must not block long.
func (n *Node) Handle(k Kind, h func(from uint64, msg []byte)) {
	if k < KindMQTT {
		panic(fmt.Sprintf("cluster: message kind %d is reserved", k))
	}
	n.tr.handle(k, h)
}

// Send queues msg for node to, best effort: it never blocks, and an error means it was
// not queued (unknown node, link down, queue full). Messages to one node arrive in the
// order sent while its link stays up.
func (n *Node) Send(to uint64, k Kind, msg []byte) error {
	if k < KindMQTT {
		return fmt.Errorf("cluster: message kind %d is reserved", k)
	}
	return n.tr.send(to, k, msg)
}

// Done is closed when the node closes.
func (n *Node) Done() <-chan struct{} { return n.stop }

// Self is this node's id.
func (n *Node) Self() uint64 { return n.cfg.NodeID }

// RaftAddr is where the node's transport listens (its real address with port 0).
func (n *Node) RaftAddr() net.Addr { return n.tr.addr() }

// loadGroups opens the catalog group and the groups of the shards this node holds
// according to the catalog state saved at its last apply.
func (n *Node) loadGroups() error {
	cs, err := loadCatalog(n.l)
	if err != nil {
		return err
	}
	n.cat = cs
	n.setMembers(cs)
	cg, err := n.openGroup(catalogGroup, "", 0, n.catalogVoters(), cs.Applied)
	if err != nil {
		return err
	}
	n.groups[catalogGroup] = cg
	n.sweepDropped(cs)
	for _, name := range cs.streamNames() {
		sp := cs.Streams[name]
		for i, sh := range sp.Shards {
			if !contains(sh.Replicas, n.Self()) {
				continue
			}
			if _, err := n.startShard(name, int32(i), sh); err != nil {
				return err
			}
		}
	}
	return nil
}

// run is the Raft loop: every group's ticks, messages, proposals and Ready handling
// happen on it, and every Ready of one round is written in one Pebble batch and sent in
// one frame per node.
func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.o.TickInterval)
	defer t.Stop()
	ticks := 0
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			ticks++
			n.tick()
			n.publishStatus(ticks%10 == 0)
			if ticks%20 == 0 {
				n.compactLogs()
			}
			if ticks%leadersEvery == 0 {
				n.announceLeaders()
			}
			n.recover()
		case in := <-n.inbox:
			n.step(in)
		case <-n.local.kick:
			n.stepLocal()
		case p := <-n.props:
			n.propose(p)
		case f := <-n.tasks:
			f()
		}
		// Take whatever else is waiting, so one round handles it together.
		for more := true; more; {
			select {
			case in := <-n.inbox:
				n.step(in)
			case <-n.local.kick:
				n.stepLocal()
			case p := <-n.props:
				n.propose(p)
			case f := <-n.tasks:
				f()
			default:
				more = false
			}
		}
		if n.storageFailed.Load() {
			continue
		}
		n.flushProposals()
		for i := 0; i < 4 && n.handleReady(); i++ {
		}
	}
}

// do runs f on the Raft loop and waits for it.
func (n *Node) do(f func()) error {
	done := make(chan struct{})
	select {
	case n.tasks <- func() { f(); close(done) }:
	case <-n.stop:
		return ErrClosed
	}
	select {
	case <-done:
		return nil
	case <-n.stop:
		return ErrClosed
	}
}

func (n *Node) step(in []inbound) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, m := range in {
		g := n.groups[m.group]
		if g == nil {
			continue // a group this node does not have (yet): raft retries
		}
		if g.quiesced && wakes(m.m) {
			g.wake()
		}
		n.traceAck(g, m.m)
		if m.m.GetType() == pb.MsgTimeoutNow && g.installs.Load() > 0 {
			// A leadership transfer to a replica still pulling a snapshot's records from
			// the leader (shard.go, install): as leader it would wait on itself for them
			// and neither apply nor answer a write. It stays a follower; the leader
			// aborts the transfer after an election timeout and the mover retries it.
			n.lg.Debug().Uint64("group", m.group).Msg("leadership transfer refused: snapshot being installed")
			continue
		}
		if err := g.rn.Step(m.m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			n.lg.Debug().Err(err).Uint64("group", m.group).Msg("raft step")
		}
		if isQuiesce(m.m) {
			g.quiesceFollower(m.m)
		}
	}
}

// handleReady takes every group's Ready (raft with AsyncStorageWrites, persist.go):
// messages to other nodes go out at once, one frame per node (a leader's entries
// before its own write); log writes go to the persister, all of the round in one
// batch; committed entries are applied (configuration and catalog here, a shard's
// records by its applier) and raft told so. It reports whether any group had a Ready.
func (n *Node) handleReady() bool {
	n.mu.RLock()
	var gs []*group
	var rds []raft.Ready
	for _, g := range n.groups {
		if g.rn.HasReady() {
			gs = append(gs, g)
			rds = append(rds, g.rn.Ready())
		}
	}
	n.mu.RUnlock()
	if len(rds) == 0 {
		return false
	}
	readyAt := n.traceNow()
	out := frames{}
	type snapSent struct {
		g  *group
		to uint64
	}
	var snaps []snapSent
	var appends []appendWork
	var applies []appendWork
	for i, g := range gs {
		rd := &rds[i]
		if rd.SoftState != nil {
			g.setLeader(rd.SoftState.Lead, rd.SoftState.RaftState == raft.StateLeader)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			g.setHardState(rd.HardState)
		}
		if !raft.IsEmptySnap(rd.Snapshot) {
			g.lastIndex = rd.Snapshot.GetMetadata().GetIndex()
		}
		if k := len(rd.Entries); k > 0 {
			g.lastIndex = rd.Entries[k-1].GetIndex()
			if g.isLeaderNow() {
				n.traceEntries(g, rd.Entries, traceProposed, time.Time{})
			}
		}
		for _, rs := range rd.ReadStates {
			n.readReady(g, rs)
		}
		for _, m := range rd.Messages {
			switch m.GetTo() {
			case raft.LocalAppendThread:
				if !raft.IsEmptySnap(m.GetSnapshot()) {
					// Written here, before the snapshot is applied below.
					n.writeInline(g, m)
					n.applySnapshot(g, m.GetSnapshot())
					continue
				}
				appends = append(appends, appendWork{g: g, m: m})
			case raft.LocalApplyThread:
				applies = append(applies, appendWork{g: g, m: m})
			default:
				out.add(g.id, m)
				if m.GetType() == pb.MsgSnap {
					snaps = append(snaps, snapSent{g, m.GetTo()})
				}
			}
		}
	}
	out.flush(n, func(to uint64) {
		for _, g := range gs {
			g.rn.ReportUnreachable(to)
		}
	})
	if n.o.testTrace != nil {
		sent := time.Now()
		for i, g := range gs {
			if g.isLeaderNow() {
				n.traceEntries(g, rds[i].Entries, traceSent, sent)
			}
		}
	}
	n.persist.push(appends)
	if n.o.testTrace != nil {
		queued := time.Now()
		for _, a := range appends {
			n.traceEntries(a.g, a.m.GetEntries(), traceQueued, queued)
		}
	}
	for _, s := range snaps {
		// The snapshot is a small summary; the receiver pulls the data (shard.go).
		s.g.rn.ReportSnapshot(s.to, raft.SnapshotFinish)
	}
	for _, a := range applies {
		n.traceEntries(a.g, a.m.GetEntries(), traceCommitted, readyAt)
		n.apply(a.g, a.m.GetEntries())
		for _, r := range a.m.GetResponses() {
			if err := a.g.rn.Step(r); err != nil {
				n.lg.Debug().Err(err).Uint64("group", a.g.id).Msg("raft step apply")
			}
		}
	}
	n.stepLocal()
	return true
}

// onRaft decodes a batch of Raft messages from a peer for the loop.
func (n *Node) onRaft(from uint64, msg []byte) {
	n.noticeSender(from)
	var in []inbound
	for len(msg) > 0 {
		gid, k := binary.Uvarint(msg)
		if k <= 0 {
			return
		}
		msg = msg[k:]
		l, k := binary.Uvarint(msg)
		if k <= 0 || uint64(len(msg)-k) < l {
			return
		}
		m := &pb.Message{}
		if err := proto.Unmarshal(msg[k:k+int(l)], m); err != nil {
			n.lg.Warn().Err(err).Uint64("from", from).Msg("bad raft message")
			return
		}
		if raft.IsLocalMsg(m.GetType()) {
			n.lg.Warn().Uint64("from", from).Stringer("type", m.GetType()).Msg("local raft message from the network dropped")
			return
		}
		msg = msg[k+int(l):]
		in = append(in, inbound{group: gid, m: m})
	}
	select {
	case n.inbox <- in:
	case <-n.stop:
	}
}

func (n *Node) group(id uint64) *group {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.groups[id]
}

// Nodes is every configured node, by id, with what it advertised once it registered.
func (n *Node) Nodes() []NodeInfo {
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	addrs := map[uint64]string{n.Self(): n.cfg.RaftAddr}
	for id, a := range cat.Members {
		addrs[id] = a
	}
	for id, a := range n.cfg.others() {
		addrs[id] = a
	}
	members := n.memberIDs()
	out := make([]NodeInfo, 0, len(members))
	for _, id := range members {
		ni := NodeInfo{ID: id, RaftAddr: addrs[id], Addrs: cat.Nodes[id], Reachable: id == n.Self() || n.tr.reachable(id),
			Live: id == n.Self() || n.tr.live(id)}
		if id == n.Self() {
			n.advMu.Lock()
			ni.Addrs = n.adv // its own, even before the catalog has it
			n.advMu.Unlock()
		}
		out = append(out, ni)
	}
	return out
}

// NodeInfo is one node of the cluster as this node sees it.
type NodeInfo struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Addrs    Addrs  `json:"addrs"`
	// Reachable: this node's link to it is up (always true for itself).
	Reachable bool `json:"reachable"`
	// Live: reachable, or its link went down less than a few seconds ago (transport.go
	// liveGrace): what clients are told is a live node, steady while a link flaps.
	Live bool `json:"live"`
}

// Controller is the catalog group's leader as this node knows it (0: none).
func (n *Node) Controller() uint64 {
	if g := n.group(catalogGroup); g != nil {
		return g.leaderID()
	}
	return 0
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func sortedIDs(ids []uint64) []uint64 {
	out := append([]uint64(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
