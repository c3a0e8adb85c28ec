package kafkawire

// The group coordinator of the classic consumer-group protocol (JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup) and the committed offsets of groups (OffsetCommit,
// OffsetFetch, OffsetDelete), modelled on Kafka's GroupCoordinator. Membership lives in
// memory, as in Kafka a restart makes every member rejoin; committed offsets are
// stored durably through the log, so a group with offsets survives a restart as an
// Empty group.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// groupState is a classic group's state, named as Kafka names it in DescribeGroups
// and ListGroups.
type groupState int8

const (
	stateEmpty groupState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

func (s groupState) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	default:
		return "Dead"
	}
}

// consumerProtocolType is the protocol type of Kafka consumers; groups known only from
// their committed offsets are reported with it.
const consumerProtocolType = "consumer"

// maxOffsetMetadata is Kafka's offset.metadata.max.bytes default.
const maxOffsetMetadata = 4096

// coordinatorConfig bounds what members may ask for.
type coordinatorConfig struct {
	// InitialRebalanceDelay is how long the first rebalance of an empty group waits for
	// more members (Kafka's group.initial.rebalance.delay.ms), extended by each join up to
	// the rebalance timeout.
	InitialRebalanceDelay time.Duration
	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a member asks
	// for (group.min/max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
}

func defaultCoordinatorConfig() coordinatorConfig {
	return coordinatorConfig{
		InitialRebalanceDelay: 100 * time.Millisecond,
		MinSessionTimeout:     time.Second,
		MaxSessionTimeout:     30 * time.Minute,
	}
}

// clientInfo identifies the connection a group request came on.
type clientInfo struct {
	ID   string // the request header's client id
	Host string // Kafka's form: "/" + remote IP
}

// coordinator owns every group of one broker.
type coordinator struct {
	log *log.Log
	lg  zerolog.Logger
	cfg coordinatorConfig

	// commits stores offset commits: the log, or a cluster that replicates them.
	commits OffsetStore

	mu     sync.Mutex
	groups map[string]*group
	closed bool
}

func newCoordinator(l *log.Log, lg zerolog.Logger, cfg coordinatorConfig) *coordinator {
	return &coordinator{log: l, commits: l, lg: lg, cfg: cfg, groups: map[string]*group{}}
}

// group is one classic group; every field below mu is guarded by it.
type group struct {
	c  *coordinator
	id string

	mu           sync.Mutex
	state        groupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	pending      map[string]*member // ids handed out with MEMBER_ID_REQUIRED, not joined yet
	static       map[string]string  // group.instance.id → member id
	nJoining     int                // members awaiting a join response
	pendingSync  map[string]bool    // members yet to send SyncGroup this generation

	// One timer drives both the rebalance (PreparingRebalance) and the pending-sync
	// deadline (CompletingRebalance); timerSeq makes a stale firing a no-op.
	timer          *time.Timer
	timerSeq       uint64
	initialUntil   time.Time // end of the initial rebalance delay, zero when not in it
	rebalanceUntil time.Time
}

// member is one member of a group.
type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte

	joinVersion int16
	joinWait    chan *kmsg.JoinGroupResponse // set while awaiting a join response
	syncVersion int16
	syncWait    chan *kmsg.SyncGroupResponse // set while awaiting a sync response

	deadline time.Time // session expiry
	timer    *time.Timer
}

// errCoordinatorClosed ends waits when the server shuts down.
var errCoordinatorClosed = errors.New("group coordinator closed")

// close ends every timer and answers every waiting member, so handlers return.
func (c *coordinator) close() {
	c.mu.Lock()
	c.closed = true
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	c.mu.Unlock()
	for _, g := range gs {
		g.mu.Lock()
		g.stopTimer()
		for _, m := range g.members {
			if m.timer != nil {
				m.timer.Stop()
			}
			g.replyJoinErr(m, kerr.CoordinatorNotAvailable.Code)
			g.replySyncErr(m, kerr.CoordinatorNotAvailable.Code)
		}
		for _, m := range g.pending {
			if m.timer != nil {
				m.timer.Stop()
			}
		}
		g.mu.Unlock()
	}
}

// lookup returns the live group id, creating it (Empty) when create is set. The caller
// locks the group and must retry if it finds it Dead (deleted meanwhile).
func (c *coordinator) lookup(id string, create bool) (*group, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errCoordinatorClosed
	}
	g := c.groups[id]
	if g == nil && create {
		g = &group{
			c:       c,
			id:      id,
			members: map[string]*member{},
			pending: map[string]*member{},
			static:  map[string]string{},
		}
		c.groups[id] = g
	}
	return g, nil
}

// lockGroup returns the live group id locked, or nil when it does not exist (and
// create is false).
func (c *coordinator) lockGroup(id string, create bool) (*group, error) {
	for {
		g, err := c.lookup(id, create)
		if err != nil || g == nil {
			return nil, err
		}
		g.mu.Lock()
		if g.state != stateDead {
			return g, nil
		}
		g.mu.Unlock()
	}
}

func newMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s-%s", prefix, h[0:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// groups returns the server's group coordinator.
func (s *Server) groups() *coordinator { return s.coord }

// doneContext is cancelled when the server closes, ending waits in JoinGroup and
// SyncGroup.
func (s *Server) doneContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// clientInfo is the connection's identity as DescribeGroups shows it.
func (c *conn) clientInfo() clientInfo {
	host := c.remote
	if h, _, err := net.SplitHostPort(c.remote); err == nil {
		host = h
	}
	return clientInfo{ID: c.clientID, Host: "/" + host}
}

// GroupLags returns every group's committed offset, high watermark and lag per
// partition, sorted by group, topic and partition (for /metrics and the groups API).
func (s *Server) GroupLags() []GroupLag {
	lags, err := s.groups().groupLags()
	if err != nil {
		s.lg.Error().Err(err).Msg("group lags")
	}
	return lags
}

// --- JoinGroup ---

func (c *coordinator) joinGroup(ctx context.Context, cl clientInfo, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = req.MemberID
	fail := func(code int16) *kmsg.JoinGroupResponse { resp.ErrorCode = code; return resp }

	if req.Group == "" {
		return fail(kerr.InvalidGroupID.Code)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		return fail(kerr.InvalidSessionTimeout.Code)
	}
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 || rebalance <= 0 {
		rebalance = session
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}

	g, err := c.lockGroup(req.Group, true)
	if err != nil {
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
	wait, immediate := g.join(cl, req, session, rebalance)
	g.mu.Unlock()
	if immediate != nil {
		return immediate
	}
	select {
	case r := <-wait:
		return r
	case <-ctx.Done():
		g.mu.Lock()
		for _, m := range g.members {
			if m.joinWait == wait {
				m.joinWait = nil
				g.nJoining--
			}
		}
		g.mu.Unlock()
		select {
		case r := <-wait:
			return r
		default:
		}
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
}

// join runs a JoinGroup under g.mu: either an immediate response or a channel the
// response will come on once the rebalance completes.
func (g *group) join(cl clientInfo, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = req.MemberID
	fail := func(code int16) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
		resp.ErrorCode = code
		return nil, resp
	}
	if !g.supports(req.ProtocolType, req.Protocols) {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	fill := func(m *member) {
		m.clientID, m.clientHost = cl.ID, cl.Host
		m.sessionTimeout, m.rebalanceTimeout = session, rebalance
		m.instanceID = req.InstanceID
	}

	if req.MemberID == "" {
		if req.InstanceID != nil {
			if old, ok := g.static[*req.InstanceID]; ok {
				if om := g.members[old]; om != nil {
					return g.replaceStatic(om, cl, req, session, rebalance)
				}
			}
		}
		prefix := cl.ID
		if req.InstanceID != nil {
			prefix = *req.InstanceID
		}
		m := &member{id: newMemberID(prefix)}
		fill(m)
		m.protocolType, m.protocols = req.ProtocolType, req.Protocols
		// Dynamic members of v4+ must come back with the id (KIP-394), so a client that
		// never rejoins leaves no member behind.
		if req.Version >= 4 && req.InstanceID == nil {
			g.pending[m.id] = m
			g.touch(m)
			resp.MemberID = m.id
			return fail(kerr.MemberIDRequired.Code)
		}
		if req.InstanceID != nil {
			g.static[*req.InstanceID] = m.id
		}
		return g.addMember(m, req.Version), nil
	}

	if req.InstanceID != nil {
		if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
			return fail(code)
		}
	}
	if m := g.pending[req.MemberID]; m != nil {
		delete(g.pending, m.id)
		fill(m)
		m.protocolType, m.protocols = req.ProtocolType, req.Protocols
		return g.addMember(m, req.Version), nil
	}
	m := g.members[req.MemberID]
	if m == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	fill(m)
	switch g.state {
	case statePreparingRebalance:
		return g.rejoin(m, req), nil
	case stateCompletingRebalance:
		if m.sameProtocols(req.Protocols) {
			// A join response was lost: answer it again.
			g.fillJoin(m, resp)
			g.touch(m)
			return nil, resp
		}
		return g.rejoin(m, req), nil
	case stateStable:
		if m.id != g.leader && m.sameProtocols(req.Protocols) {
			g.fillJoin(m, resp)
			g.touch(m)
			return nil, resp
		}
		return g.rejoin(m, req), nil
	default:
		return fail(kerr.UnknownMemberID.Code)
	}
}

// supports is Kafka's check that a joining member can be part of the group: same
// protocol type, and at least one protocol every current member supports.
func (g *group) supports(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(g.members) == 0 {
		return true
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		n := 0
		for _, m := range g.members {
			if m.supports(p.Name) {
				n++
			}
		}
		if n == len(g.members) {
			return true
		}
	}
	return false
}

func (m *member) supports(name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (m *member) sameProtocols(ps []kmsg.JoinGroupRequestProtocol) bool {
	if len(ps) != len(m.protocols) {
		return false
	}
	for i := range ps {
		if ps[i].Name != m.protocols[i].Name || !bytes.Equal(ps[i].Metadata, m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// checkInstance validates a static member's (instance id, member id) pair.
func (g *group) checkInstance(instanceID *string, memberID string) int16 {
	if instanceID == nil {
		return 0
	}
	known, ok := g.static[*instanceID]
	if !ok {
		return kerr.UnknownMemberID.Code
	}
	if known != memberID {
		return kerr.FencedInstanceID.Code
	}
	return 0
}

func (g *group) addMember(m *member, version int16) chan *kmsg.JoinGroupResponse {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	g.members[m.id] = m
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinWait, m.joinVersion = ch, version
	g.nJoining++
	g.touch(m)
	g.prepareRebalance()
	return ch
}

func (g *group) rejoin(m *member, req *kmsg.JoinGroupRequest) chan *kmsg.JoinGroupResponse {
	m.protocolType, m.protocols = req.ProtocolType, req.Protocols
	if m.joinWait != nil {
		// A second join from the same member replaces the first, as in Kafka.
		r := kmsg.NewPtrJoinGroupResponse()
		r.Version = m.joinVersion
		r.ErrorCode = kerr.RebalanceInProgress.Code
		r.Generation = -1
		r.MemberID = m.id
		m.joinWait <- r
	} else {
		g.nJoining++
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinWait, m.joinVersion = ch, req.Version
	g.touch(m)
	g.prepareRebalance()
	return ch
}

// replaceStatic gives a static member that rejoined without its member id a new id in
// place of the old one (KIP-345); the old id is fenced. Nothing is rebalanced when the
// group is Stable and the member's protocols are unchanged.
func (g *group) replaceStatic(old *member, cl clientInfo, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	m := &member{
		id:               newMemberID(*req.InstanceID),
		instanceID:       req.InstanceID,
		clientID:         cl.ID,
		clientHost:       cl.Host,
		sessionTimeout:   session,
		rebalanceTimeout: rebalance,
		protocolType:     old.protocolType,
		protocols:        old.protocols,
		assignment:       old.assignment,
	}
	if old.joinWait != nil {
		g.nJoining-- // the new member's join takes its place below
	}
	g.replyJoinErr(old, kerr.FencedInstanceID.Code)
	g.replySyncErr(old, kerr.FencedInstanceID.Code)
	if old.timer != nil {
		old.timer.Stop()
	}
	delete(g.members, old.id)
	g.members[m.id] = m
	g.static[*req.InstanceID] = m.id
	if g.leader == old.id {
		g.leader = m.id
	}
	if g.pendingSync[old.id] {
		delete(g.pendingSync, old.id)
		g.pendingSync[m.id] = true
	}
	g.touch(m)

	if g.state == stateStable && old.sameProtocols(req.Protocols) {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		g.fillJoin(m, resp)
		// The leader keeps the current assignment (KIP-814); older clients see the member
		// list and sync the same generation, which returns the assignment unchanged.
		resp.SkipAssignment = m.id == g.leader
		return nil, resp
	}
	m.protocolType, m.protocols = req.ProtocolType, req.Protocols
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinWait, m.joinVersion = ch, req.Version
	g.nJoining++
	g.prepareRebalance()
	return ch, nil
}

func (g *group) fillJoin(m *member, resp *kmsg.JoinGroupResponse) {
	resp.ErrorCode = 0
	resp.Generation = g.generation
	resp.ProtocolType = kmsg.StringPtr(g.protocolType)
	resp.Protocol = kmsg.StringPtr(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	resp.Members = nil
	if m.id == g.leader {
		for _, id := range g.memberIDs() {
			o := g.members[id]
			resp.Members = append(resp.Members, kmsg.JoinGroupResponseMember{
				MemberID:         o.id,
				InstanceID:       o.instanceID,
				ProtocolMetadata: o.metadata(g.protocol),
			})
		}
	}
}

// memberIDs returns the member ids sorted, so responses are deterministic.
func (g *group) memberIDs() []string {
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// prepareRebalance moves the group to PreparingRebalance (if not already there) and
// completes the join at once if every member is in.
func (g *group) prepareRebalance() {
	switch g.state {
	case statePreparingRebalance:
		if !g.initialUntil.IsZero() {
			// Each join during the initial delay extends it, bounded by the rebalance timeout.
			g.initialUntil = minTime(time.Now().Add(g.c.cfg.InitialRebalanceDelay), g.rebalanceUntil)
		}
		g.tryCompleteJoin()
		return
	case stateCompletingRebalance:
		for _, m := range g.members {
			m.assignment = nil
			g.replySyncErr(m, kerr.RebalanceInProgress.Code)
		}
	case stateStable:
		for _, m := range g.members {
			m.assignment = nil
		}
	}
	now := time.Now()
	wasEmpty := g.state == stateEmpty
	g.state = statePreparingRebalance
	g.pendingSync = nil
	g.rebalanceUntil = now.Add(g.maxRebalanceTimeout())
	g.initialUntil = time.Time{}
	if wasEmpty && g.c.cfg.InitialRebalanceDelay > 0 {
		g.initialUntil = minTime(now.Add(g.c.cfg.InitialRebalanceDelay), g.rebalanceUntil)
	}
	g.tryCompleteJoin()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tryCompleteJoin completes the join phase when every member (and no pending one) has
// joined and the initial delay is over, or when the rebalance timeout has passed;
// otherwise it arms the timer for the next moment that can change the answer.
func (g *group) tryCompleteJoin() {
	if g.state != statePreparingRebalance {
		return
	}
	now := time.Now()
	if !g.initialUntil.IsZero() {
		if now.Before(g.initialUntil) {
			g.armTimer(g.initialUntil.Sub(now), g.tryCompleteJoin)
			return
		}
		g.initialUntil = time.Time{}
	}
	allIn := g.nJoining == len(g.members) && len(g.pending) == 0
	if allIn || !now.Before(g.rebalanceUntil) {
		g.completeJoin()
		return
	}
	g.armTimer(g.rebalanceUntil.Sub(now), g.tryCompleteJoin)
}

// armTimer runs fn under g.mu after d, unless another armTimer or stopTimer comes first.
func (g *group) armTimer(d time.Duration, fn func()) {
	g.stopTimer()
	seq := g.timerSeq
	g.timer = time.AfterFunc(d, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.timerSeq == seq && g.state != stateDead {
			fn()
		}
	})
}

func (g *group) stopTimer() {
	g.timerSeq++
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
}

// completeJoin ends the join phase: members that did not rejoin are removed, the
// generation advances, a protocol is chosen and every joined member gets its response
// (the leader with the members' metadata).
func (g *group) completeJoin() {
	g.stopTimer()
	for _, m := range g.members {
		if m.joinWait == nil {
			g.removeMember(m, kerr.UnknownMemberID.Code)
		}
	}
	g.nJoining = 0
	g.generation++
	if len(g.members) == 0 {
		g.state = stateEmpty
		g.protocol, g.leader = "", ""
		return
	}
	if g.members[g.leader] == nil {
		g.leader = g.memberIDs()[0]
	}
	g.protocol = g.selectProtocol()
	g.state = stateCompletingRebalance
	g.pendingSync = map[string]bool{}
	for _, m := range g.members {
		g.pendingSync[m.id] = true
		resp := kmsg.NewPtrJoinGroupResponse()
		resp.Version = m.joinVersion
		g.fillJoin(m, resp)
		m.joinWait <- resp
		m.joinWait = nil
		g.touch(m)
	}
	// Members that never sync are removed after the rebalance timeout (as Kafka's
	// pending-sync timeout does), so one dead member cannot stall the group.
	gen := g.generation
	g.armTimer(g.maxRebalanceTimeout(), func() {
		if g.state != stateCompletingRebalance || g.generation != gen || len(g.pendingSync) == 0 {
			return
		}
		for id := range g.pendingSync {
			if m := g.members[id]; m != nil {
				g.removeMember(m, kerr.UnknownMemberID.Code)
			}
		}
		g.prepareRebalance()
	})
}

// selectProtocol is Kafka's vote: among the protocols every member supports, each
// member votes for the first in its own preference order; most votes wins, and a tie
// goes to the leader's preference.
func (g *group) selectProtocol() string {
	votes := map[string]int{}
	var candidates []string
	leader := g.members[g.leader]
	for _, p := range leader.protocols {
		all := true
		for _, m := range g.members {
			if !m.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best, bestVotes := "", -1
	for _, p := range candidates {
		if votes[p] > bestVotes {
			best, bestVotes = p, votes[p]
		}
	}
	return best
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// removeMember drops m from the group without rebalancing, answering a wait it has
// with code.
func (g *group) removeMember(m *member, code int16) {
	if m.joinWait != nil {
		g.nJoining--
	}
	g.replyJoinErr(m, code)
	g.replySyncErr(m, code)
	if m.timer != nil {
		m.timer.Stop()
	}
	delete(g.members, m.id)
	delete(g.pendingSync, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		if ids := g.memberIDs(); len(ids) > 0 {
			g.leader = ids[0]
		}
	}
}

func (g *group) replyJoinErr(m *member, code int16) {
	if m.joinWait == nil {
		return
	}
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = m.joinVersion
	r.ErrorCode = code
	r.Generation = -1
	r.MemberID = m.id
	m.joinWait <- r
	m.joinWait = nil
}

func (g *group) replySyncErr(m *member, code int16) {
	if m.syncWait == nil {
		return
	}
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = m.syncVersion
	r.ErrorCode = code
	m.syncWait <- r
	m.syncWait = nil
}

// touch restarts m's session timeout.
func (g *group) touch(m *member) {
	m.deadline = time.Now().Add(m.sessionTimeout)
	if m.timer != nil {
		return // the running timer rechecks the deadline when it fires
	}
	m.timer = time.AfterFunc(m.sessionTimeout, func() { g.expire(m) })
}

// expire runs when m's session timer fires: a member that heartbeated since, or is
// waiting for a join or sync response, is kept; otherwise it is removed as Kafka does.
func (g *group) expire(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == stateDead {
		return
	}
	if g.pending[m.id] == m {
		if d := time.Until(m.deadline); d > 0 {
			m.timer.Reset(d)
			return
		}
		delete(g.pending, m.id)
		g.tryCompleteJoin()
		return
	}
	if g.members[m.id] != m {
		return
	}
	if m.joinWait != nil || m.syncWait != nil {
		m.timer.Reset(m.sessionTimeout)
		return
	}
	if d := time.Until(m.deadline); d > 0 {
		m.timer.Reset(d)
		return
	}
	g.c.lg.Info().Str("group", g.id).Str("member", m.id).Msg("group member session expired")
	g.removeMember(m, kerr.UnknownMemberID.Code)
	g.afterRemoval()
}

// afterRemoval is what Kafka does once members left or expired: rebalance a group that
// had a settled assignment, or see whether a rebalance in progress can now complete.
func (g *group) afterRemoval() {
	switch g.state {
	case stateStable, stateCompletingRebalance:
		g.prepareRebalance()
	case statePreparingRebalance:
		g.tryCompleteJoin()
	}
}

// --- SyncGroup ---

func (c *coordinator) syncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	fail := func(code int16) *kmsg.SyncGroupResponse { resp.ErrorCode = code; return resp }
	if req.Group == "" {
		return fail(kerr.InvalidGroupID.Code)
	}
	g, err := c.lockGroup(req.Group, false)
	if err != nil {
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
	if g == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	wait, code := g.sync(req, resp)
	g.mu.Unlock()
	if wait == nil {
		return fail(code)
	}
	select {
	case r := <-wait:
		return r
	case <-ctx.Done():
		g.mu.Lock()
		if m := g.members[req.MemberID]; m != nil && m.syncWait == wait {
			m.syncWait = nil
		}
		g.mu.Unlock()
		select {
		case r := <-wait:
			return r
		default:
		}
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
}

// sync runs a SyncGroup under g.mu: a channel to wait on for the assignment, or an
// error code (0 with resp filled when the answer is immediate).
func (g *group) sync(req *kmsg.SyncGroupRequest, resp *kmsg.SyncGroupResponse) (chan *kmsg.SyncGroupResponse, int16) {
	if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
		return nil, code
	}
	m := g.members[req.MemberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	if req.Generation != g.generation {
		return nil, kerr.IllegalGeneration.Code
	}
	if req.ProtocolType != nil && *req.ProtocolType != g.protocolType ||
		req.Protocol != nil && *req.Protocol != g.protocol {
		return nil, kerr.InconsistentGroupProtocol.Code
	}
	switch g.state {
	case statePreparingRebalance:
		return nil, kerr.RebalanceInProgress.Code
	case stateCompletingRebalance:
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		g.replySyncErr(m, kerr.RebalanceInProgress.Code) // a duplicate sync replaces the first
		m.syncWait, m.syncVersion = ch, req.Version
		delete(g.pendingSync, m.id)
		g.touch(m)
		if m.id == g.leader {
			g.completeSync(req.GroupAssignment)
		}
		return ch, 0
	case stateStable:
		g.touch(m)
		resp.ProtocolType = kmsg.StringPtr(g.protocolType)
		resp.Protocol = kmsg.StringPtr(g.protocol)
		resp.MemberAssignment = m.assignment
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		ch <- resp
		return ch, 0
	default:
		return nil, kerr.UnknownMemberID.Code
	}
}

// emptyConsumerAssignment is what a consumer-protocol member the leader left out gets:
// some clients cannot decode zero bytes.
var emptyConsumerAssignment = new(kmsg.ConsumerMemberAssignment).AppendTo(nil)

// completeSync stores the leader's assignments, makes the group Stable and answers
// every member waiting in SyncGroup.
func (g *group) completeSync(assignments []kmsg.SyncGroupRequestGroupAssignment) {
	for _, m := range g.members {
		m.assignment = nil
	}
	for _, a := range assignments {
		if m := g.members[a.MemberID]; m != nil {
			m.assignment = a.MemberAssignment
		}
	}
	for _, m := range g.members {
		if len(m.assignment) == 0 && g.protocolType == consumerProtocolType {
			m.assignment = emptyConsumerAssignment
		}
	}
	g.state = stateStable
	g.stopTimer()
	for _, m := range g.members {
		if m.syncWait == nil {
			continue
		}
		r := kmsg.NewPtrSyncGroupResponse()
		r.Version = m.syncVersion
		r.ProtocolType = kmsg.StringPtr(g.protocolType)
		r.Protocol = kmsg.StringPtr(g.protocol)
		r.MemberAssignment = m.assignment
		m.syncWait <- r
		m.syncWait = nil
	}
}

// --- Heartbeat ---

func (c *coordinator) heartbeat(req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	g, err := c.lockGroup(req.Group, false)
	if err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	defer g.mu.Unlock()
	resp.ErrorCode = g.heartbeat(req)
	return resp
}

func (g *group) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	if code := g.checkInstance(req.InstanceID, req.MemberID); code != 0 {
		return code
	}
	m := g.members[req.MemberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	g.touch(m)
	if g.state == statePreparingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// --- LeaveGroup ---

func (c *coordinator) leaveGroup(req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	codes := make([]int16, len(leaving))
	top := int16(0)
	switch g, err := c.lockGroup(req.Group, false); {
	case req.Group == "":
		top = kerr.InvalidGroupID.Code
	case err != nil:
		top = kerr.CoordinatorNotAvailable.Code
	case g == nil:
		for i := range codes {
			codes[i] = kerr.UnknownMemberID.Code
		}
	default:
		removed := false
		for i, lm := range leaving {
			codes[i] = g.leave(lm)
			removed = removed || codes[i] == 0
		}
		if removed {
			g.afterRemoval()
		}
		g.mu.Unlock()
	}
	if req.Version < 3 {
		resp.ErrorCode = top
		if top == 0 {
			resp.ErrorCode = codes[0]
		}
		return resp
	}
	resp.ErrorCode = top
	if top != 0 {
		return resp
	}
	for i, lm := range leaving {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID, r.InstanceID, r.ErrorCode = lm.MemberID, lm.InstanceID, codes[i]
		resp.Members = append(resp.Members, r)
	}
	return resp
}

func (g *group) leave(lm kmsg.LeaveGroupRequestMember) int16 {
	id := lm.MemberID
	if lm.InstanceID != nil {
		known, ok := g.static[*lm.InstanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if id != "" && id != known {
			return kerr.FencedInstanceID.Code
		}
		id = known
	}
	if p := g.pending[id]; p != nil {
		delete(g.pending, id)
		if p.timer != nil {
			p.timer.Stop()
		}
		return 0
	}
	m := g.members[id]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	g.c.lg.Debug().Str("group", g.id).Str("member", id).Msg("group member left")
	g.removeMember(m, kerr.UnknownMemberID.Code)
	return 0
}

// --- OffsetCommit ---

func (c *coordinator) offsetCommit(req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	all := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				codes[i][j] = code
			}
		}
	}
	generation, memberID := req.Generation, req.MemberID
	if req.Version == 0 {
		generation, memberID = -1, ""
	}
	// A group that does not exist takes only simple commits (Kafka: a commit with a
	// generation is from a past incarnation); it exists in memory only while the commit
	// runs, as its offsets are all there is of it.
	if req.Group == "" {
		all(kerr.InvalidGroupID.Code)
	} else if g, err := c.lockGroup(req.Group, generation < 0); err != nil {
		all(kerr.CoordinatorNotAvailable.Code)
	} else if g == nil {
		all(kerr.IllegalGeneration.Code)
	} else {
		if code := g.checkCommit(generation, memberID, req.InstanceID); code != 0 {
			all(code)
		} else {
			c.storeCommit(g.id, req, codes)
			if m := g.members[memberID]; m != nil {
				g.touch(m)
			}
		}
		g.dropIfUnused()
		g.mu.Unlock()
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// dropIfUnused forgets a group that never had members, so simple committers leave no
// group in memory.
func (g *group) dropIfUnused() {
	if g.state != stateEmpty || g.generation != 0 || len(g.members) > 0 || len(g.pending) > 0 {
		return
	}
	g.state = stateDead
	g.stopTimer()
	g.c.mu.Lock()
	if g.c.groups[g.id] == g {
		delete(g.c.groups, g.id)
	}
	g.c.mu.Unlock()
}

// checkCommit is Kafka's doCommitOffsets gate: simple commits (generation < 0) only to
// an Empty group, otherwise a current member of the current generation.
func (g *group) checkCommit(generation int32, memberID string, instanceID *string) int16 {
	if code := g.checkInstance(instanceID, memberID); code != 0 {
		return code
	}
	if generation < 0 && g.state == stateEmpty {
		return 0
	}
	if g.state == stateCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	if g.members[memberID] == nil {
		if g.state == stateEmpty && generation >= 0 {
			return kerr.IllegalGeneration.Code
		}
		return kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	return 0
}

// storeCommit validates each partition and durably stores the valid ones in one batch;
// codes gets each partition's result.
func (c *coordinator) storeCommit(group string, req *kmsg.OffsetCommitRequest, codes [][]int16) {
	for attempt := 0; ; attempt++ {
		var offs []log.CommittedOffset
		var where [][2]int
		for i, t := range req.Topics {
			st := c.log.Stream(t.Topic)
			for j, p := range t.Partitions {
				switch {
				case st == nil || st.Deleted() || p.Partition < 0 || p.Partition >= st.Shards():
					codes[i][j] = kerr.UnknownTopicOrPartition.Code
				case p.Metadata != nil && len(*p.Metadata) > maxOffsetMetadata:
					codes[i][j] = kerr.OffsetMetadataTooLarge.Code
				default:
					codes[i][j] = 0
					co := log.CommittedOffset{Stream: t.Topic, Shard: p.Partition, Offset: p.Offset, LeaderEpoch: -1}
					if req.Version >= 6 {
						co.LeaderEpoch = p.LeaderEpoch
					}
					if p.Metadata != nil {
						co.Metadata = *p.Metadata
					}
					offs = append(offs, co)
					where = append(where, [2]int{i, j})
				}
			}
		}
		if len(offs) == 0 {
			return
		}
		err := c.commits.CommitOffsets(group, offs)
		if err == nil {
			return
		}
		// A stream deleted since the check: look again, once.
		if attempt == 0 && (errors.Is(err, log.ErrUnknownStream) || errors.Is(err, log.ErrUnknownShard)) {
			continue
		}
		c.lg.Error().Err(err).Str("group", group).Msg("offset commit")
		code := kerr.CoordinatorNotAvailable.Code
		if errors.Is(err, log.ErrDiskFull) || errors.Is(err, log.ErrStorageFailed) {
			code = kerr.KafkaStorageError.Code // as Kafka passes a storage error through
		}
		for _, w := range where {
			codes[w[0]][w[1]] = code
		}
		return
	}
}

// --- OffsetFetch ---

func (c *coordinator) offsetFetch(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			var topics []offsetFetchTopic
			if rg.Topics != nil {
				topics = make([]offsetFetchTopic, 0, len(rg.Topics))
				for _, t := range rg.Topics {
					topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
				}
			}
			res, code := c.fetchOffsets(rg.Group, topics)
			g.ErrorCode = code
			for _, t := range res {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic = t.topic
				for _, p := range t.parts {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.partition, p.offset, p.epoch, kmsg.StringPtr(p.metadata), p.code
					rt.Partitions = append(rt.Partitions, rp)
				}
				g.Topics = append(g.Topics, rt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	var topics []offsetFetchTopic
	// Before v2 the topic list cannot be null; from v2 null means every committed offset.
	if req.Topics != nil || req.Version < 2 {
		topics = make([]offsetFetchTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
		}
	}
	res, code := c.fetchOffsets(req.Group, topics)
	resp.ErrorCode = code
	for _, t := range res {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.topic
		for _, p := range t.parts {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.partition, p.offset, p.epoch, kmsg.StringPtr(p.metadata), p.code
			if req.Version < 2 && code != 0 {
				rp.ErrorCode = code // v0/v1 have no group-level error
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

type offsetFetchTopic struct {
	topic string
	parts []int32
}

type fetchedPartition struct {
	partition int32
	offset    int64
	epoch     int32
	metadata  string
	code      int16
}

type fetchedTopic struct {
	topic string
	parts []fetchedPartition
}

// fetchOffsets reads the group's committed offsets from the log: for the listed
// partitions (-1 where none is committed) or, with topics nil, all of them.
func (c *coordinator) fetchOffsets(group string, topics []offsetFetchTopic) ([]fetchedTopic, int16) {
	offs, err := c.log.GroupOffsets(group)
	if err != nil {
		c.lg.Error().Err(err).Str("group", group).Msg("offset fetch")
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	type tp struct {
		topic string
		part  int32
	}
	byTP := make(map[tp]log.CommittedOffset, len(offs))
	for _, o := range offs {
		byTP[tp{o.Stream, o.Shard}] = o
	}
	var out []fetchedTopic
	if topics == nil {
		idx := map[string]int{}
		for _, o := range offs {
			i, ok := idx[o.Stream]
			if !ok {
				i = len(out)
				idx[o.Stream] = i
				out = append(out, fetchedTopic{topic: o.Stream})
			}
			out[i].parts = append(out[i].parts, fetchedPartition{o.Shard, o.Offset, o.LeaderEpoch, o.Metadata, 0})
		}
		return out, 0
	}
	for _, t := range topics {
		ft := fetchedTopic{topic: t.topic}
		for _, p := range t.parts {
			if o, ok := byTP[tp{t.topic, p}]; ok {
				ft.parts = append(ft.parts, fetchedPartition{p, o.Offset, o.LeaderEpoch, o.Metadata, 0})
			} else {
				ft.parts = append(ft.parts, fetchedPartition{p, -1, -1, "", 0})
			}
		}
		out = append(out, ft)
	}
	return out, 0
}

// --- OffsetDelete ---

func (c *coordinator) offsetDelete(req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	g, err := c.lockGroup(req.Group, false)
	if err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	var subscribed map[string]bool // topics of active members
	subscribedAll := false
	if g != nil {
		defer g.mu.Unlock()
		if g.state != stateEmpty {
			if g.protocolType != consumerProtocolType {
				resp.ErrorCode = kerr.NonEmptyGroup.Code
				return resp
			}
			subscribed, subscribedAll = g.subscribedTopics()
		}
	} else if known, err := c.hasOffsets(req.Group); err != nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	} else if !known {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		st := c.log.Stream(t.Topic)
		var del []int32
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			switch {
			case st == nil || st.Deleted() || p.Partition < 0 || p.Partition >= st.Shards():
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case subscribedAll || subscribed[t.Topic]:
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				del = append(del, p.Partition)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(del) > 0 {
			if err := c.log.DeleteGroupOffsets(req.Group, t.Topic, del); err != nil {
				c.lg.Error().Err(err).Str("group", req.Group).Msg("offset delete")
				code := kerr.UnknownServerError.Code
				if errors.Is(err, log.ErrUnknownStream) {
					code = kerr.UnknownTopicOrPartition.Code
				}
				for i := range rt.Partitions {
					if rt.Partitions[i].ErrorCode == 0 {
						rt.Partitions[i].ErrorCode = code
					}
				}
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// subscribedTopics returns the topics the members subscribe to, from their consumer
// protocol metadata; all is set when a member's metadata cannot be read, which counts
// as subscribed to everything, as in Kafka.
func (g *group) subscribedTopics() (topics map[string]bool, all bool) {
	topics = map[string]bool{}
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		proto := g.protocol
		if proto == "" && len(m.protocols) > 0 {
			proto = m.protocols[0].Name
		}
		if err := md.ReadFrom(m.metadata(proto)); err != nil {
			return nil, true
		}
		for _, t := range md.Topics {
			topics[t] = true
		}
	}
	return topics, false
}

func (c *coordinator) hasOffsets(group string) (bool, error) {
	offs, err := c.log.GroupOffsets(group)
	return len(offs) > 0, err
}

// --- ListGroups, DescribeGroups, DeleteGroups ---

// groupSummary is a group as ListGroups and DescribeGroups show it.
type groupSummary struct {
	id           string
	state        groupState
	protocolType string
	protocol     string
	members      []kmsg.DescribeGroupsResponseGroupMember
}

// summaries returns every group: those in memory (not Dead) and those known only from
// committed offsets (Empty), sorted by id.
func (c *coordinator) summaries() ([]groupSummary, error) {
	stored, err := c.log.Groups()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	c.mu.Unlock()
	seen := map[string]bool{}
	var out []groupSummary
	for _, g := range gs {
		g.mu.Lock()
		if g.state != stateDead {
			out = append(out, g.summary())
			seen[g.id] = true
		}
		g.mu.Unlock()
	}
	for _, id := range stored {
		if !seen[id] {
			out = append(out, groupSummary{id: id, state: stateEmpty, protocolType: consumerProtocolType})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// summary is Kafka's group summary: metadata and assignments only when Stable.
func (g *group) summary() groupSummary {
	s := groupSummary{id: g.id, state: g.state, protocolType: g.protocolType}
	if s.protocolType == "" {
		s.protocolType = consumerProtocolType
	}
	if g.state == stateStable {
		s.protocol = g.protocol
	}
	for _, id := range g.memberIDs() {
		m := g.members[id]
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		if g.state == stateStable {
			dm.ProtocolMetadata = m.metadata(g.protocol)
			dm.MemberAssignment = m.assignment
		}
		s.members = append(s.members, dm)
	}
	return s
}

func (c *coordinator) listGroups(req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	all, err := c.summaries()
	if err != nil {
		c.lg.Error().Err(err).Msg("list groups")
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	for _, s := range all {
		if len(req.StatesFilter) > 0 && !containsFold(req.StatesFilter, s.state.String()) {
			continue
		}
		if len(req.TypesFilter) > 0 && !containsFold(req.TypesFilter, "classic") {
			continue
		}
		g := kmsg.NewListGroupsResponseGroup()
		g.Group, g.ProtocolType, g.GroupState, g.GroupType = s.id, s.protocolType, s.state.String(), "classic"
		resp.Groups = append(resp.Groups, g)
	}
	return resp
}

func containsFold(ss []string, s string) bool {
	for _, x := range ss {
		if len(x) == len(s) && bytes.EqualFold([]byte(x), []byte(s)) {
			return true
		}
	}
	return false
}

func (c *coordinator) describeGroups(req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = id
		rg.AuthorizedOperations = -2147483648 // not requested / not computed, as Kafka
		s, found, err := c.describe(id)
		switch {
		case err != nil:
			rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case !found:
			rg.State = stateDead.String()
			if req.Version >= 6 {
				rg.ErrorCode = kerr.GroupIDNotFound.Code
			}
		default:
			rg.State, rg.ProtocolType, rg.Protocol, rg.Members = s.state.String(), s.protocolType, s.protocol, s.members
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *coordinator) describe(id string) (groupSummary, bool, error) {
	g, err := c.lockGroup(id, false)
	if err != nil {
		return groupSummary{}, false, err
	}
	if g != nil {
		defer g.mu.Unlock()
		return g.summary(), true, nil
	}
	known, err := c.hasOffsets(id)
	if err != nil || !known {
		return groupSummary{}, false, err
	}
	return groupSummary{id: id, state: stateEmpty, protocolType: consumerProtocolType}, true, nil
}

func (c *coordinator) deleteGroups(req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		rg.ErrorCode = c.deleteGroup(id)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// deleteGroup removes an Empty group and its committed offsets.
func (c *coordinator) deleteGroup(id string) int16 {
	if id == "" {
		return kerr.InvalidGroupID.Code
	}
	g, err := c.lockGroup(id, false)
	if err != nil {
		return kerr.CoordinatorNotAvailable.Code
	}
	if g != nil {
		defer g.mu.Unlock()
		if g.state != stateEmpty || len(g.members) > 0 {
			return kerr.NonEmptyGroup.Code
		}
	} else if known, err := c.hasOffsets(id); err != nil {
		return kerr.CoordinatorNotAvailable.Code
	} else if !known {
		return kerr.GroupIDNotFound.Code
	}
	if err := c.log.DeleteGroup(id); err != nil {
		c.lg.Error().Err(err).Str("group", id).Msg("delete group")
		return kerr.CoordinatorNotAvailable.Code
	}
	if g != nil {
		g.state = stateDead
		g.stopTimer()
		for _, m := range g.pending {
			if m.timer != nil {
				m.timer.Stop()
			}
		}
		c.mu.Lock()
		if c.groups[id] == g {
			delete(c.groups, id)
		}
		c.mu.Unlock()
	}
	return 0
}

// --- Lag ---

// GroupLag is a group's committed position and lag in one partition.
type GroupLag struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	HWM       int64  `json:"hwm"`
	Lag       int64  `json:"lag"`
}

// groupLags returns the lag of every committed offset, sorted by group, topic and
// partition; the lag is the high watermark minus the committed offset, never negative.
func (c *coordinator) groupLags() ([]GroupLag, error) {
	groups, err := c.log.Groups()
	if err != nil {
		return nil, err
	}
	var out []GroupLag
	for _, g := range groups {
		offs, err := c.log.GroupOffsets(g)
		if err != nil {
			return nil, err
		}
		for _, o := range offs {
			st := c.log.Stream(o.Stream)
			if st == nil {
				continue
			}
			_, hwm, err := st.Offsets(o.Shard)
			if err != nil {
				continue
			}
			out = append(out, GroupLag{Group: g, Topic: o.Stream, Partition: o.Shard, Committed: o.Offset, HWM: hwm, Lag: max(hwm-o.Offset, 0)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return out, nil
}
