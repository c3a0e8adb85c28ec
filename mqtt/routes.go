package mqtt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Peers is the cluster's node transport as the MQTT broker uses it: to tell the other
// nodes which topic filters have subscribers here, and to forward them the publishes
// that match theirs. The cluster package implements it over its one connection per
// node pair and hands every message of the MQTT kind to Server.HandlePeerMessage. A
// server alone has none (Options.Peers nil) and behaves as a single broker.
type Peers interface {
	// Self is this node's id.
	Self() uint64
	// Nodes lists the other nodes of the cluster.
	Nodes() []uint64
	// Send queues msg for node; it must not block for long. An error means the message
	// was not sent (no link, queue full): routes resynchronise by themselves, and a
	// publish forward is best effort, as EMQX's asynchronous forwarding is.
	Send(node uint64, msg []byte) error
}

// Route messages between nodes; the first byte is the kind.
const (
	routeDelta   byte = 1 // epoch, seq, then (op, filter)...: the change to seq from seq-1
	routeFull    byte = 2 // epoch, seq, then filters...: the whole set at seq
	routeDigest  byte = 3 // epoch, seq: what the sender is at, sent every digestInterval
	routeSyncReq byte = 4 // please send a routeFull
	routePublish byte = 5 // one PUBLISH, MQTT 5 encoded, for local subscribers
	// a retained PUBLISH with its stamp (time i64, node u64; routes_retained.go):
	// live, or on a resync (stored, not delivered)
	routeRetained     byte = 6
	routeRetainedSync byte = 7
	// a PUBLISH for the shared-subscription groups the sender picked this node for,
	// and for plain subscribers unless flagged otherwise (routes_shared.go)
	routeShared   byte = 8
	routeNop      byte = 14 // a kept QoS 1/2 forward withdrawn (routes_reliable.go)
	routeOpAdd    byte = 1
	routeOpRemove byte = 0
	routeOpShare  byte = 2 // a shared-subscription group and its member count here
)

// Timing of the route exchange: how long filter changes are gathered into one delta,
// how often each node says where it is (a lost delta or a restarted node is noticed
// within this), and the least time between two resync requests to one node.
const (
	routeDebounce   = 20 * time.Millisecond
	digestInterval  = time.Second
	resyncMinPeriod = 500 * time.Millisecond
	// silenceResync: a node heard again after this long without a digest was cut off
	// (or this one was): resync with it even if its routes did not change, for the
	// retained changes either side missed.
	silenceResync = 3 * digestInterval
)

// peerClientID is the id of the inline client through which publishes forwarded by
// other nodes are handed to mochi here; publishes it makes are never forwarded again.
const peerClientID = "mqstreams-peer"

// routes keeps the cluster's route table: the topic filters subscribed on this node
// (computed from mochi's clients, sent to the others as numbered deltas) and those of
// every other node (applied from theirs), and forwards each publish delivered here to
// the nodes with a matching filter. Remote filters are kept in a mochi TopicsIndex
// whose "clients" are node ids, so matching a topic is the broker's own trie walk.
//
// Consistency: each node numbers its changes (seq) under a random epoch drawn at start.
// A receiver applies a delta only on top of the one before it; anything else (a lost
// message, a restarted node, a new link) is repaired by asking for the full set, which
// the sender's periodic digest triggers too. Routes are a cache of live state, not
// data: a publish forwarded while routes converge may miss a node, as in EMQX.
type routes struct {
	broker *mochi.Server
	peers  Peers
	lg     zerolog.Logger
	peer   *mochi.Client // the inline client of forwarded publishes

	forwarded *prometheus.CounterVec // by result: sent, failed
	received  prometheus.Counter

	dirty   chan struct{}
	recheck atomic.Bool // a change since the last tick
	stop    chan struct{}
	done    chan struct{}

	mu     sync.Mutex
	epoch  uint64
	seq    uint64
	local  map[string]uint32      // filters announced at seq: 0, or a group's members
	remote map[uint64]*remoteNode // by node id
	// index holds the remote filters, "client" = node id as text; a shared group's
	// entry carries the node's member count as its subscription identifier.
	index *mochi.TopicsIndex
	// remoteGroups counts the shared groups in index: while none, a publish needs no
	// group pick (routes_shared.go).
	remoteGroups atomic.Int64
	shared       *prometheus.CounterVec // group deliveries sent elsewhere, by result

	// reliable QoS 1/2 forwarding (routes_reliable.go)
	relMu    sync.Mutex
	outboxes map[uint64]*outbox
	inboxes  map[uint64]*inbox
	reliable *prometheus.CounterVec

	// retained-message reconciliation (routes_retained.go)
	retMu     sync.Mutex
	stamps    map[string]retStamp // by topic: the last retained change applied here
	lastStamp int64
	retain    func(pk packets.Packet) // stores a retained message without delivering it
}

// remoteNode is what this node knows of another node's filters.
type remoteNode struct {
	epoch, seq uint64
	filters    map[string]uint32 // 0, or a shared group's member count
	lastResync time.Time
	lastDigest time.Time // when its last digest arrived
}

func newRoutes(broker *mochi.Server, peers Peers, lg zerolog.Logger) *routes {
	var e [8]byte
	_, _ = rand.Read(e[:])
	return &routes{
		broker: broker,
		peers:  peers,
		lg:     lg,
		peer:   broker.NewClient(nil, mochi.LocalListener, peerClientID, true),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_cluster_forwarded_total",
			Help: "Publishes forwarded to other cluster nodes with a matching subscription, by result (sent, failed).",
		}, []string{"result"}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_cluster_received_total",
			Help: "Publishes forwarded by other cluster nodes and delivered to subscribers here.",
		}),
		shared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_cluster_shared_redirected_total",
			Help: "Shared-subscription deliveries sent to another member node because the picked node could not take them, by result (sent, lost: no other member).",
		}, []string{"result"}),
		reliable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_cluster_reliable_forwards_total",
			Help: "QoS 1/2 forwards between nodes by event: resent after a loss, given_up (outbox full), skipped (asked for after being given up).",
		}, []string{"event"}),
		outboxes: map[uint64]*outbox{},
		inboxes:  map[uint64]*inbox{},
		dirty:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		epoch:    binary.BigEndian.Uint64(e[:]) | 1,
		local:    map[string]uint32{},
		remote:   map[uint64]*remoteNode{},
		index:    mochi.NewTopicsIndex(),
		stamps:   map[string]retStamp{},
	}
}

// changed notes that local subscriptions may have changed; run recomputes them.
func (r *routes) changed() {
	r.recheck.Store(true)
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

func (r *routes) run() {
	defer close(r.done)
	tick := time.NewTicker(digestInterval)
	defer tick.Stop()
	var last time.Duration // how long the last recomputation took
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			// Once more after changes: catches one whose hook ran before mochi updated
			// its clients. Idle, nothing is recomputed.
			if r.recheck.Swap(false) {
				r.announce()
			}
			r.mu.Lock()
			msg := appendHeader(nil, routeDigest, r.epoch, r.seq)
			r.mu.Unlock()
			r.broadcast(msg)
			r.reliableTick()
		case <-r.dirty:
			// Gather a burst of (un)subscriptions into one delta, and keep recomputing
			// to at most a tenth of the time: it walks every client's subscriptions.
			select {
			case <-r.stop:
				return
			case <-time.After(max(routeDebounce, 10*last)):
			}
			start := time.Now()
			r.announce()
			last = time.Since(start)
		}
	}
}

func (r *routes) close() {
	close(r.stop)
	<-r.done
}

// localFilters lists the filters with a subscriber here: every client's, offline
// persistent sessions included (their messages are queued here). $stream replay
// subscriptions are served from the log, not from live publishes. A shared
// subscription ($share/group/filter) is listed whole, with its number of members
// here, so that a publish anywhere goes to one member node per group
// (routes_shared.go).
func (r *routes) localFilters() map[string]uint32 {
	out := map[string]uint32{}
	for _, cl := range r.broker.Clients.GetAll() {
		for f := range cl.State.Subscriptions.GetAll() {
			if isStreamFilter(f) {
				continue
			}
			if mochi.IsSharedFilter(f) {
				out[f]++
				continue
			}
			out[f] = 0
		}
	}
	return out
}

// appendEntry appends one route table entry: op, a group's member count, filter.
func appendEntry(b []byte, f string, members uint32) []byte {
	if members == 0 {
		return appendFilter(append(b, routeOpAdd), f)
	}
	b = binary.BigEndian.AppendUint32(append(b, routeOpShare), members)
	return appendFilter(b, f)
}

// readEntry reads one entry written by appendEntry (or a removal).
func readEntry(b []byte) (op byte, f string, members uint32, rest []byte, err error) {
	if len(b) < 1 {
		return 0, "", 0, nil, io.ErrUnexpectedEOF
	}
	op, b = b[0], b[1:]
	if op == routeOpShare {
		if len(b) < 4 {
			return 0, "", 0, nil, io.ErrUnexpectedEOF
		}
		members, b = binary.BigEndian.Uint32(b), b[4:]
	}
	f, rest, err = readFilter(b)
	return op, f, members, rest, err
}

// announce sends the change of local filters since the last announcement, if any.
func (r *routes) announce() {
	now := r.localFilters()
	r.mu.Lock()
	msg := appendHeader(nil, routeDelta, r.epoch, r.seq+1)
	n := 0
	for f, m := range now {
		if old, ok := r.local[f]; !ok || old != m {
			msg = appendEntry(msg, f, m)
			n++
		}
	}
	for f := range r.local {
		if _, ok := now[f]; !ok {
			msg = appendFilter(append(msg, routeOpRemove), f)
			n++
		}
	}
	if n == 0 {
		r.mu.Unlock()
		return
	}
	r.seq++
	r.local = now
	r.mu.Unlock()
	r.broadcast(msg)
}

func (r *routes) broadcast(msg []byte) {
	for _, n := range r.peers.Nodes() {
		if err := r.peers.Send(n, msg); err != nil {
			r.lg.Debug().Err(err).Uint64("node", n).Msg("route message not sent")
		}
	}
}

// handle applies one message from another node.
func (r *routes) handle(from uint64, msg []byte) error {
	if len(msg) == 0 {
		return errors.New("empty route message")
	}
	switch msg[0] {
	case routePublish:
		return r.deliver(msg[1:])
	case routeNop:
		return nil
	case routeReliable, routeSeq, routeAck, routeResend, routeSkip:
		return r.handleReliable(from, msg)
	case routeShared:
		return r.handleShared(from, msg[1:])
	case routeRetained, routeRetainedSync:
		return r.handleRetained(msg, msg[0] == routeRetained)
	case routeSyncReq:
		r.mu.Lock()
		full := appendHeader(nil, routeFull, r.epoch, r.seq)
		for f, m := range r.local {
			full = appendEntry(full, f, m)
		}
		r.mu.Unlock()
		if err := r.peers.Send(from, full); err != nil {
			return err
		}
		// The peer restarted or missed something: its retained messages may be stale too.
		for _, m := range r.retainedSync() {
			if err := r.peers.Send(from, m); err != nil {
				return err
			}
		}
		return nil
	}
	if len(msg) < 17 {
		return fmt.Errorf("route message of kind %d: %d bytes", msg[0], len(msg))
	}
	epoch, seq, body := binary.BigEndian.Uint64(msg[1:]), binary.BigEndian.Uint64(msg[9:]), msg[17:]
	r.mu.Lock()
	defer r.mu.Unlock()
	rn := r.remote[from]
	if rn == nil {
		rn = &remoteNode{filters: map[string]uint32{}}
		r.remote[from] = rn
	}
	switch msg[0] {
	case routeFull:
		filters := map[string]uint32{}
		for len(body) > 0 {
			_, f, m, rest, err := readEntry(body)
			if err != nil {
				return err
			}
			filters[f], body = m, rest
		}
		for f := range rn.filters {
			r.removeRemoteLocked(from, rn, f)
		}
		for f, m := range filters {
			r.addRemoteLocked(from, rn, f, m)
		}
		rn.epoch, rn.seq = epoch, seq
	case routeDelta:
		if epoch != rn.epoch || seq != rn.seq+1 {
			return r.resyncLocked(from, rn)
		}
		for len(body) > 0 {
			op, f, m, rest, err := readEntry(body)
			if err != nil {
				return err
			}
			body = rest
			if op == routeOpRemove {
				r.removeRemoteLocked(from, rn, f)
			} else {
				r.addRemoteLocked(from, rn, f, m)
			}
		}
		rn.seq = seq
	case routeDigest:
		silent := !rn.lastDigest.IsZero() && time.Since(rn.lastDigest) > silenceResync
		rn.lastDigest = time.Now()
		if epoch != rn.epoch || seq != rn.seq || silent {
			return r.resyncLocked(from, rn)
		}
	default:
		return fmt.Errorf("unknown route message kind %d", msg[0])
	}
	return nil
}

// addRemoteLocked records (or updates) a filter of node from: plain (members 0) or a
// shared group with its member count there.
func (r *routes) addRemoteLocked(from uint64, rn *remoteNode, f string, members uint32) {
	if _, ok := rn.filters[f]; !ok && mochi.IsSharedFilter(f) {
		r.remoteGroups.Add(1)
	}
	rn.filters[f] = members
	r.index.Subscribe(nodeKey(from), packets.Subscription{Filter: f, Identifier: int(members)})
}

// removeRemoteLocked forgets a filter of node from.
func (r *routes) removeRemoteLocked(from uint64, rn *remoteNode, f string) {
	if _, ok := rn.filters[f]; !ok {
		return
	}
	if mochi.IsSharedFilter(f) {
		r.remoteGroups.Add(-1)
	}
	delete(rn.filters, f)
	r.index.Unsubscribe(f, nodeKey(from))
}

// resyncLocked asks a node for its whole filter set, at most once per resyncMinPeriod.
func (r *routes) resyncLocked(from uint64, rn *remoteNode) error {
	if time.Since(rn.lastResync) < resyncMinPeriod {
		return nil
	}
	rn.lastResync = time.Now()
	return r.peers.Send(from, []byte{routeSyncReq})
}

// forward sends a publish delivered here to every other node with a matching filter
// (a retained publish to every node, so each has it for later subscribers), in one
// message per node: the nodes picked for shared-subscription groups are told which
// groups to serve (routes_shared.go). A node picked for a group that cannot be sent to
// is replaced by another member node.
func (r *routes) forward(cl *mochi.Client, pk packets.Packet) {
	if cl == r.peer || pk.Ignore || pk.FixedHeader.Type != packets.Publish || strings.HasPrefix(pk.TopicName, "$") {
		return
	}
	subs := r.index.Subscribers(pk.TopicName)
	var nodes []uint64
	if pk.FixedHeader.Retain {
		nodes = r.peers.Nodes()
	} else {
		for key := range subs.Subscriptions {
			nodes = append(nodes, nodeFromKey(key))
		}
	}
	groups := r.remotePicks(pk, subs.Shared)
	for n := range groups {
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return
	}
	var st retStamp
	if pk.FixedHeader.Retain {
		if note, _ := noteOf(pk); note.stamped {
			st = note.stamp
		} else {
			st = r.stampLocal(pk.TopicName) // a will: no OnPublish
		}
	}
	// plain is the message of a node picked for no group.
	prefix := []byte{routePublish}
	if pk.FixedHeader.Retain {
		prefix = appendStamp(nil, routeRetained, st)
	}
	plain, err := encodeForward(prefix, pk)
	if err != nil {
		r.lg.Warn().Err(err).Str("topic", pk.TopicName).Msg("encode publish for other nodes")
		return
	}
	seen := map[uint64]bool{}
	var failed map[uint64]bool
	for _, n := range nodes {
		if seen[n] || n == r.peers.Self() {
			continue
		}
		seen[n] = true
		msg := plain
		if len(groups[n]) > 0 {
			if msg, err = encodeShared(shareHeader{stamped: pk.FixedHeader.Retain, stamp: st, groups: groups[n]}, pk); err != nil {
				r.lg.Warn().Err(err).Str("topic", pk.TopicName).Msg("encode publish for other nodes")
				return
			}
		}
		seq, err := r.sendForward(n, msg, pk.FixedHeader.Qos)
		if err != nil {
			r.forwarded.WithLabelValues("failed").Inc()
			r.lg.Debug().Err(err).Uint64("node", n).Str("topic", pk.TopicName).Msg("publish not forwarded (QoS 1/2: kept for a resend)")
			if len(groups[n]) > 0 {
				// The groups go to other member nodes now; the kept forward serves
				// only the plain subscribers there.
				if seq > 0 {
					r.replaceForward(n, seq, plain)
				}
				if failed == nil {
					failed = map[uint64]bool{}
				}
				failed[n] = true
			}
			continue
		}
		r.forwarded.WithLabelValues("sent").Inc()
	}
	for n := range failed {
		r.redirect(pk, groups[n], failed)
	}
}

// deliver hands a publish forwarded by another node to the subscribers here, as the
// inline client does for records produced over Kafka (mochi_inline.go): never stored
// again (it was stored, if at all, by the node it was published to), never forwarded
// again.
func (r *routes) deliver(b []byte) error {
	pk, err := decodeForwarded(b)
	if err != nil {
		return err
	}
	return r.inject(pk)
}

// inject hands a decoded forwarded publish to mochi through the peer client.
func (r *routes) inject(pk packets.Packet) error {
	if err := r.broker.InjectPacket(r.peer, pk); err != nil {
		return fmt.Errorf("deliver forwarded publish to %s: %w", pk.TopicName, err)
	}
	r.received.Inc()
	return nil
}

// decodeForwarded decodes a publish encoded by encodeForward.
func decodeForwarded(b []byte) (packets.Packet, error) {
	var pk packets.Packet
	if len(b) == 0 {
		return pk, errors.New("empty forwarded publish")
	}
	if err := pk.FixedHeader.Decode(b[0]); err != nil {
		return pk, fmt.Errorf("forwarded publish: %w", err)
	}
	rd := bytes.NewReader(b[1:])
	n, _, err := packets.DecodeLength(rd)
	if err != nil {
		return pk, fmt.Errorf("forwarded publish: %w", err)
	}
	body := b[len(b)-rd.Len():]
	if pk.FixedHeader.Type != packets.Publish || n != len(body) {
		return pk, fmt.Errorf("forwarded publish: type %d, %d of %d bytes", pk.FixedHeader.Type, len(body), n)
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = 5
	if err := pk.PublishDecode(body); err != nil {
		return pk, fmt.Errorf("forwarded publish: %w", err)
	}
	return pk, nil
}

func nodeKey(n uint64) string { return fmt.Sprint(n) }

func nodeFromKey(k string) uint64 {
	var n uint64
	_, _ = fmt.Sscan(k, &n)
	return n
}

func appendHeader(b []byte, kind byte, epoch, seq uint64) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return binary.BigEndian.AppendUint64(b, seq)
}

func appendFilter(b []byte, f string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
	return append(b, f...)
}

func readFilter(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, io.ErrUnexpectedEOF
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, io.ErrUnexpectedEOF
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// routeHook tells routes when local subscriptions may have changed and hands it every
// publish delivered here.
type routeHook struct {
	mochi.HookBase
	r *routes
}

// ID names the hook in mochi's logs.
func (h *routeHook) ID() string { return "mqstreams-routes" }

// Provides lists the mochi events the hook handles.
func (h *routeHook) Provides(b byte) bool {
	switch b {
	case mochi.OnPublish, mochi.OnSelectSubscribers, mochi.OnPublished, mochi.OnWillSent,
		mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnDisconnect,
		mochi.OnClientExpired, mochi.OnSessionEstablished, mochi.OnRetainMessage:
		return true
	}
	return false
}

// OnPublish picks the member node of each shared group the publish goes to
// (routes_shared.go).
func (h *routeHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	return h.r.pick(cl, pk), nil
}

// OnSelectSubscribers leaves out of the local delivery the shared groups served by
// other nodes.
func (h *routeHook) OnSelectSubscribers(subs *mochi.Subscribers, pk packets.Packet) *mochi.Subscribers {
	return h.r.selectLocal(subs, pk)
}

// OnPublished forwards a publish delivered here to the nodes subscribed to it.
func (h *routeHook) OnPublished(cl *mochi.Client, pk packets.Packet) { h.r.forward(cl, pk) }

// OnRetainMessage records the stamp of a retained change published here once mochi
// holds it (routes_retained.go).
func (h *routeHook) OnRetainMessage(cl *mochi.Client, pk packets.Packet, _ int64) {
	h.r.retained(cl, pk)
}

// OnWillSent forwards a will message as a publish: subscribers on other nodes get it.
func (h *routeHook) OnWillSent(cl *mochi.Client, pk packets.Packet) { h.r.forward(cl, pk) }

// OnSubscribed notes a possible new filter.
func (h *routeHook) OnSubscribed(*mochi.Client, packets.Packet, []byte) { h.r.changed() }

// OnUnsubscribed notes a possibly removed filter.
func (h *routeHook) OnUnsubscribed(*mochi.Client, packets.Packet) { h.r.changed() }

// OnDisconnect notes that a clean session's filters may be gone.
func (h *routeHook) OnDisconnect(*mochi.Client, error, bool) { h.r.changed() }

// OnClientExpired notes that an expired session's filters are gone.
func (h *routeHook) OnClientExpired(*mochi.Client) { h.r.changed() }

// OnSessionEstablished notes a resumed session's filters.
func (h *routeHook) OnSessionEstablished(*mochi.Client, packets.Packet) { h.r.changed() }

// addRoutes joins the broker to the cluster's route table; alone (peers nil) it does
// nothing.
func addRoutes(broker *mochi.Server, peers Peers, reg prometheus.Registerer, lg zerolog.Logger) (*routes, error) {
	if peers == nil {
		return nil, nil
	}
	r := newRoutes(broker, peers, lg)
	if reg != nil {
		for _, c := range []prometheus.Collector{r.forwarded, r.received, r.shared, r.reliable} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("mqtt metrics: %w", err)
			}
		}
	}
	if err := broker.AddHook(&routeHook{r: r}, nil); err != nil {
		return nil, fmt.Errorf("mqtt route hook: %w", err)
	}
	go r.run()
	return r, nil
}

// HandlePeerMessage takes one MQTT message from another node of the cluster (routes.go);
// the cluster's transport calls it for every message of that kind, in the order the
// node sent them. A server alone ignores it.
func (s *Server) HandlePeerMessage(from uint64, msg []byte) {
	if s.routes == nil {
		return
	}
	if err := s.routes.handle(from, msg); err != nil {
		s.lg.Warn().Err(err).Uint64("node", from).Msg("message from another node")
	}
}
