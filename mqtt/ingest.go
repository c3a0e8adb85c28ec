package mqtt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// ingestHook appends every publish that matches a stream to the log and acknowledges
// QoS 1/2 publishes only once all their appends are durable.
//
// mochi acknowledges a publish inside the client's read loop right after OnPublish
// returns, so waiting for the fsync there would serialise each publisher on its syncs.
// Instead OnPublish starts the appends and returns packets.ErrRejectPacket (mochi then
// sends nothing and fans nothing out); when a publish and every publish before it on the
// same connection are durable, a per-connection drainer completes it with the rest of
// mochi's processPublish (completePublish, mochi_adapter.go) on the publisher's own
// client: the PUBACK/PUBREC (in publish order), the QoS 2 inflight state that makes the
// later PUBREL valid, retained messages, the fan-out with the publisher as origin
// (no-local subscriptions keep working) and the OnPublished hooks. Validation, ACL
// and the OnPublish hooks ran once, when the publish was read.
type ingestHook struct {
	mochi.HookBase

	broker *mochi.Server
	hooks  *mochi.Hooks // the broker's hook chain, for completePublish
	w      log.Writer   // the log alone, or the cluster
	// queueFull, when set, tells a QoS 0 publish of at least n bytes it would be
	// dropped at the append queue, before its records are built.
	queueFull  func(n int64) bool
	router     *mapping.Router
	lg         zerolog.Logger
	met        *metrics
	maxPending int
	// storeRetained, when set, writes a retained publish's retained message in the same
	// commit as its stream appends (see storeHook).
	storeRetained bool
	// complete, when set, is the route hook's OnPublish (routes_shared.go) for a held
	// publish, which mochi's OnPublish chain left when this hook held it back.
	complete func(cl *mochi.Client, pk packets.Packet) packets.Packet
	// batched: the writer calls kickGroup after each durable group's callbacks
	// (log.Log.AfterAcks), so a connection whose publishes that group completed is
	// answered once, all of them in one write, instead of from the first callback on
	// while the rest of the group is still being acknowledged.
	batched    bool
	kickMu     sync.Mutex
	kicks      []*item // publishes the group completed, released at its end
	kicksSpare []*item // kickGroup's other buffer (syncer only)

	// conns holds each network client's *conn: read on every publish by every
	// connection's read loop, so a sync.Map (reads share no lock) rather than a map
	// under mu.
	conns sync.Map

	mu       sync.RWMutex
	sessions map[string]*session // QoS 2 exactly-once state, by client id

	// npending counts queued publishes not yet answered (read loops add, drainers take
	// away a batch at a time, neither under a lock); closing, set under pendMu, stops
	// new ones, and Close waits on pendCond for the count to reach zero.
	npending atomic.Int64
	closing  atomic.Bool
	pendMu   sync.Mutex
	pendCond *sync.Cond
	closed   chan struct{}
}

// conn is the ordered acknowledgement queue of one network connection.
type conn struct {
	h          *ingestHook
	cl         *mochi.Client
	seq        atomic.Uint64        // publishes seen, for key `none` round robin
	slots      chan struct{}        // bounds the queued publishes of one connection
	kickQueued atomic.Bool          // has publishes in h.kicks
	route      []mapping.Target     // Route scratch, used only on the read loop
	inj        atomic.Pointer[item] // the publish being completed (completePublish), if any
	answered   []answered           // the drainer's scratch (one drainer at a time)

	mu       sync.Mutex
	queue    []*item // queue[head:] is waiting; the array is reused once drained
	head     int
	draining bool // a drainer goroutine owns the head of the queue
	gone     bool // the connection ended; forget it once the queue is empty
}

// session is what a client id keeps across connections for QoS 2 exactly-once: every
// QoS 2 publish appended (or being appended) and not yet released by PUBREL.
type session struct {
	qos2 map[uint16]*item
}

// item is one queued QoS 1/2 publish.
type item struct {
	c         *conn
	pk        heldPublish
	remaining atomic.Int32 // appends (or, for a redelivery, the original) outstanding
	// held keeps a publish whose appends all succeeded from the drainer until the
	// group that completed it has run every callback (kickGroup): a drainer still
	// answering the previous group would otherwise take part of this one and leave
	// the rest to another write.
	held atomic.Bool

	errMu sync.Mutex
	err   error

	sess *session // set on a QoS 2 original tracked for exactly-once
	// retainStored: the retained message was written with the appends.
	retainStored bool
	orig         *item // set on a QoS 2 redelivery: no append, the original's outcome decides

	// Set while the drainer completes the publish (drainer goroutine only).
	publishedNow bool

	// QoS 2 original state shared with its redeliveries.
	mu        sync.Mutex
	processed bool
	published bool // fanned out to subscribers (by it or a redelivery)
	failed    error
	dups      []*item
}

func newIngestHook(broker *mochi.Server, w log.Writer, r *mapping.Router, lg zerolog.Logger, met *metrics, maxPending int) *ingestHook {
	if maxPending <= 0 {
		maxPending = 1024
	}
	h := &ingestHook{
		broker:     broker,
		hooks:      serverHooks(broker),
		w:          w,
		router:     r,
		lg:         lg,
		met:        met,
		maxPending: maxPending,
		sessions:   map[string]*session{},
		closed:     make(chan struct{}),
	}
	h.pendCond = sync.NewCond(&h.pendMu)
	if q, ok := w.(interface{ QueueFull(int64) bool }); ok {
		h.queueFull = q.QueueFull // the local log's; a cluster writer has none
	}
	if b, ok := w.(interface{ AfterAcks(func()) }); ok {
		h.batched = true // the local log's; a cluster writer answers each append
		b.AfterAcks(h.kickGroup)
	}
	return h
}

// ID names the hook in mochi's logs.
func (h *ingestHook) ID() string { return "mqstreams-ingest" }

// Provides lists the mochi events the hook handles.
func (h *ingestHook) Provides(b byte) bool {
	switch b {
	case mochi.OnPublish, mochi.OnPublished, mochi.OnPacketRead, mochi.OnSessionEstablished,
		mochi.OnDisconnect, mochi.OnClientExpired, mochi.OnWillSent:
		return true
	}
	return false
}

// close stops queueing stream publishes and waits until every queued one is answered.
func (h *ingestHook) close() {
	h.pendMu.Lock()
	if !h.closing.Load() {
		h.closing.Store(true)
		close(h.closed)
	}
	for h.npending.Load() > 0 {
		h.pendCond.Wait()
	}
	h.pendMu.Unlock()
}

func (h *ingestHook) conn(cl *mochi.Client) *conn {
	if c, ok := h.conns.Load(cl); ok {
		return c.(*conn)
	}
	c, _ := h.conns.LoadOrStore(cl, &conn{h: h, cl: cl, slots: make(chan struct{}, h.maxPending)})
	return c.(*conn)
}

func (h *ingestHook) lookup(cl *mochi.Client) *conn {
	if c, ok := h.conns.Load(cl); ok {
		return c.(*conn)
	}
	return nil
}

func (h *ingestHook) forget(c *conn) {
	h.conns.CompareAndDelete(c.cl, c)
}

// errReject is packets.ErrRejectPacket converted to an error once: the conversion of
// that struct value at each return allocated a copy per publish.
var errReject error = packets.ErrRejectPacket

// OnPublish routes a publish to its streams. See the type comment for the flow.
func (h *ingestHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	c := h.conn(cl)

	// A QoS 0 publish the full queue would drop is counted before any message or record
	// is built: a flood far faster than the disk is mostly dropped, and the garbage of
	// each attempt is what sizes the heap then. Payload and topic: never more than the
	// queue counts for its record, so nothing is dropped here that would fit. Live
	// subscribers still get it from mochi.
	if pk.FixedHeader.Qos == 0 && h.queueFull != nil && h.queueFull(int64(len(pk.Payload)+len(pk.TopicName))) {
		if n := h.router.Streams(pk.TopicName); n > 0 {
			h.met.ingestDropped.WithLabelValues("queue_full").Add(float64(n))
			return pk, nil
		}
	}
	msg := toMessage(cl.ID, string(cl.Properties.Username), &pk, c.seq.Add(1)-1)
	c.route = h.router.Route(&msg, c.route[:0])
	targets := c.route
	if len(targets) == 0 {
		h.met.unmatched.Inc()
	}
	h.met.countFallbacks(targets)
	qos := pk.FixedHeader.Qos
	if qos == 0 {
		// At most once: appended without anyone waiting, fanned out at once (one
		// the full queue would drop was counted above).
		for _, t := range targets {
			h.appendOne(t, nil)
		}
		return pk, nil
	}

	// A QoS 2 publish whose packet id is appended and not yet released is a
	// redelivery: it must not be appended again.
	var orig *item
	if qos == 2 {
		h.mu.RLock()
		if s := h.sessions[cl.ID]; s != nil {
			orig = s.qos2[pk.PacketID]
		}
		h.mu.RUnlock()
	}
	if orig == nil && len(targets) == 0 && c.idle() {
		return pk, nil // plain pub/sub: mochi's own path, nothing to wait for
	}

	// Back-pressure: a connection with too many publishes awaiting the log stops
	// being read until some complete.
	select {
	case c.slots <- struct{}{}:
	case <-h.closed:
		return pk, errReject // no ack: the client resends after reconnecting
	}
	if !h.startPending() {
		<-c.slots
		return pk, errReject
	}

	it := &item{c: c, pk: holdPublish(&pk)}
	if cap(it.pk.Payload) == 0 {
		it.pk.Payload = make([]byte, 0, 1) // gives the packet an identity (see matches)
	}

	switch {
	case orig != nil:
		it.orig = orig
		it.remaining.Store(1)
		c.enqueue(it)
		orig.mu.Lock()
		if orig.processed {
			orig.mu.Unlock()
			it.complete(nil)
		} else {
			orig.dups = append(orig.dups, it)
			orig.mu.Unlock()
		}
	case len(targets) == 0:
		// Matches no stream but must be acked after the ones queued before it.
		c.enqueue(it)
		c.kick()
	default:
		if qos == 2 {
			h.mu.Lock()
			s := h.sessions[cl.ID]
			if s == nil {
				s = &session{qos2: map[uint16]*item{}}
				h.sessions[cl.ID] = s
			}
			s.qos2[pk.PacketID] = it
			h.mu.Unlock()
			it.sess = s
		}
		var ops []log.EntryOp
		if pk.FixedHeader.Retain && h.storeRetained && h.broker.Options.Capabilities.RetainAvailable != 0 {
			ops = []log.EntryOp{retainedOp(cl, pk)}
			it.retainStored = true
		}
		it.remaining.Store(int32(len(targets)))
		it.held.Store(h.batched)
		c.enqueue(it)
		for i, t := range targets {
			if i == 0 {
				h.appendWith(t, it, ops)
			} else {
				h.appendOne(t, it)
			}
		}
	}
	return pk, errReject
}

// appendOne appends one routed record; it (nil for QoS 0 and wills) completes when
// the append is durable or failed.
func (h *ingestHook) appendOne(t mapping.Target, it *item) { h.appendWith(t, it, nil) }

// appendWith is appendOne that also commits the entry changes ops with the record.
func (h *ingestHook) appendWith(t mapping.Target, it *item, ops []log.EntryOp) {
	stream := t.Stream // the callback captures only what it needs, not the whole target
	done := func(_ log.AppendResult, err error) {
		if it == nil && errors.Is(err, log.ErrQueueFull) {
			h.met.ingestDropped.WithLabelValues("queue_full").Inc()
			return
		}
		if err != nil {
			h.met.failed.WithLabelValues(stream).Inc()
			if it == nil {
				h.lg.Warn().Err(err).Str("stream", stream).Msg("unacknowledged publish not appended")
			}
		} else {
			h.met.appended.WithLabelValues(stream).Inc()
		}
		if it != nil {
			it.appended(err)
		}
	}
	// Back-pressure when the append queue is full: a QoS 1/2 publish blocks mochi's read
	// loop for this connection (TCP then slows the publisher, and nothing is acked
	// before it is stored); a QoS 0 publish or a will, which nobody waits for, is
	// dropped and counted, already once its share of the queue is full (log/queue.go),
	// so a QoS 0 flood never makes a QoS 1/2 publish wait behind more than that share.
	mode := log.AppendBlock
	if it == nil {
		mode = log.AppendDrop
	}
	h.w.Append(context.Background(), mode, t.Stream, t.Shard, []log.Record{t.Record}, ops, done)
}

// retainedStored reports whether pk is a publish being completed whose retained
// message was already written with its stream appends.
func (h *ingestHook) retainedStored(cl *mochi.Client, pk packets.Packet) bool {
	c := h.lookup(cl)
	if c == nil {
		return false
	}
	it := c.inj.Load()
	return it != nil && it.retainStored && it.matches(pk)
}

// OnPublished notes that a publish being completed was fanned out to subscribers.
func (h *ingestHook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if pk.Ignore {
		return
	}
	if c := h.lookup(cl); c != nil {
		if it := c.inj.Load(); it != nil && it.matches(pk) {
			it.publishedNow = true
		}
	}
}

// OnPacketRead releases a QoS 2 packet id at PUBREL: a later publish with the same id is
// a new message again.
func (h *ingestHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Pubrel {
		return pk, nil
	}
	// Lock order is item before hook (finish holds an item while mochi calls back into
	// the hook), so the item is checked with h.mu released.
	h.mu.RLock()
	s := h.sessions[cl.ID]
	var it *item
	if s != nil {
		it = s.qos2[pk.PacketID]
	}
	h.mu.RUnlock()
	if it == nil || !it.isProcessed() {
		return pk, nil
	}
	h.mu.Lock()
	if s.qos2[pk.PacketID] == it {
		delete(s.qos2, pk.PacketID)
	}
	h.mu.Unlock()
	return pk, nil
}

// OnSessionEstablished drops the exactly-once state of a client starting clean.
func (h *ingestHook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		h.mu.Lock()
		delete(h.sessions, cl.ID)
		h.mu.Unlock()
	}
}

// OnDisconnect forgets the connection once its queue is empty, and the session if it
// ends with the connection.
func (h *ingestHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if c := h.lookup(cl); c != nil {
		c.mu.Lock()
		c.gone = true
		idle := c.head == len(c.queue) && !c.draining
		c.mu.Unlock()
		if idle {
			h.forget(c)
		}
	}
	if expire && !cl.IsTakenOver() {
		h.mu.Lock()
		delete(h.sessions, cl.ID)
		h.mu.Unlock()
	}
}

// OnClientExpired drops the session state of an expired client.
func (h *ingestHook) OnClientExpired(cl *mochi.Client) {
	h.mu.Lock()
	delete(h.sessions, cl.ID)
	h.mu.Unlock()
}

// OnWillSent appends a will message that matches a stream, like a QoS 0 publish: no
// one is waiting for an acknowledgement.
func (h *ingestHook) OnWillSent(cl *mochi.Client, pk packets.Packet) {
	msg := toMessage(cl.ID, string(cl.Properties.Username), &pk, 0)
	targets := h.router.Route(&msg, nil)
	h.met.countFallbacks(targets)
	for _, t := range targets {
		h.appendOne(t, nil)
	}
}

func (h *ingestHook) startPending() bool {
	if h.closing.Load() {
		return false
	}
	h.npending.Add(1)
	if h.closing.Load() {
		// Close may have seen the count before this publish: it is not queued.
		h.endPending(1)
		return false
	}
	return true
}

// endPending takes n answered publishes off the count and wakes Close at zero. Close
// holds pendMu from its check of the count to its wait, so the wake is not lost.
func (h *ingestHook) endPending(n int) {
	if h.npending.Add(int64(-n)) == 0 && h.closing.Load() {
		h.pendMu.Lock()
		h.pendCond.Broadcast()
		h.pendMu.Unlock()
	}
}

// matches reports whether pk, seen by a hook mochi calls back from completePublish, is
// this item's own packet: same packet id and the very same payload array (a packet read
// from the network has its own).
func (it *item) matches(pk packets.Packet) bool {
	return pk.PacketID == it.pk.PacketID && cap(pk.Payload) > 0 &&
		&pk.Payload[:1][0] == &it.pk.Payload[:1][0]
}

// appended completes one of the item's appends. A success comes from the log's syncer
// while it acknowledges a durable group: with a batched writer the connection is
// kicked once, after the whole group (kickGroup).
func (it *item) appended(err error) {
	if err != nil || !it.c.h.batched {
		it.complete(err)
		return
	}
	if it.remaining.Add(-1) == 0 {
		it.c.h.releaseLater(it)
	}
}

func (h *ingestHook) releaseLater(it *item) {
	it.c.kickQueued.Store(true)
	h.kickMu.Lock()
	h.kicks = append(h.kicks, it)
	h.kickMu.Unlock()
}

// kickGroup releases the publishes the group just completed, then kicks their
// connections, each once. It runs on the log's syncer (log.Log.AfterAcks), so it must
// not block.
func (h *ingestHook) kickGroup() {
	h.kickMu.Lock()
	its := h.kicks
	h.kicks = h.kicksSpare[:0]
	h.kickMu.Unlock()
	for _, it := range its {
		it.held.Store(false)
	}
	for i, it := range its {
		if it.c.kickQueued.Swap(false) {
			it.c.kick()
		}
		its[i] = nil
	}
	h.kicksSpare = its[:0]
}

func (it *item) complete(err error) {
	if err != nil {
		it.errMu.Lock()
		if it.err == nil {
			it.err = err
		}
		it.errMu.Unlock()
	}
	if it.remaining.Add(-1) == 0 {
		it.held.Store(false)
		it.c.kick()
	}
}

// ready reports whether the publish can be answered: its appends are done and, for a
// batched writer, the group that completed them was released.
func (it *item) ready() bool { return it.remaining.Load() == 0 && !it.held.Load() }

func (it *item) error() error {
	it.errMu.Lock()
	defer it.errMu.Unlock()
	return it.err
}

func (it *item) isProcessed() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.processed
}

func (c *conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head == len(c.queue) && !c.draining
}

func (c *conn) enqueue(it *item) {
	c.mu.Lock()
	c.queue = append(c.queue, it)
	c.mu.Unlock()
}

// kick starts a drainer when the head of the queue is ready and none runs. It is
// called on the log's committer goroutine, so it must not block.
func (c *conn) kick() {
	c.mu.Lock()
	if c.draining || c.head == len(c.queue) || !c.queue[c.head].ready() {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	go c.drain()
}

// drain answers the ready publishes at the head of the queue, in order, until the head
// is still waiting for the log.
func (c *conn) drain() {
	var ready []*item
	for {
		c.mu.Lock()
		n := c.head
		for n < len(c.queue) && c.queue[n].ready() {
			n++
		}
		if n == c.head {
			c.draining = false
			forget := c.gone && c.head == len(c.queue)
			c.mu.Unlock()
			if forget {
				c.h.forget(c)
			}
			return
		}
		ready = append(ready[:0], c.queue[c.head:n]...)
		clear(c.queue[c.head:n])
		c.head = n
		if c.head == len(c.queue) {
			c.queue, c.head = c.queue[:0], 0
		}
		c.mu.Unlock()
		// The acknowledgements of publishes made durable together leave in one write,
		// before any of them is delivered to subscribers (answer, then conclude; a
		// batch with a QoS 2 redelivery is finished one publish at a time).
		lc, cork := c.cl.Net.Conn.(*limitConn)
		cork = cork && len(ready) > 1
		if cork {
			lc.cork()
		}
		split := true
		for _, it := range ready {
			if it.orig != nil {
				split = false
				break
			}
		}
		if split {
			if cap(c.answered) < len(ready) {
				c.answered = make([]answered, len(ready))
			}
			as := c.answered[:len(ready)]
			for i, it := range ready {
				as[i].deliver = c.h.answer(it, &as[i].pk)
			}
			if cork {
				lc.uncork()
				cork = false
			}
			for i, it := range ready {
				c.h.conclude(it, &as[i].pk, as[i].deliver)
			}
			clear(as) // drop the payloads
		} else {
			for _, it := range ready {
				c.h.finish(it)
			}
		}
		if cork {
			lc.uncork()
		}
		c.h.endPending(len(ready))
	}
}

// answered is a publish of the drainer's batch between answer and conclude.
type answered struct {
	pk      packets.Packet
	deliver bool
}

// writerOf is where o's publishes are appended: o.Writer, or the local log.
func writerOf(o Options) log.Writer {
	if o.Writer != nil {
		return o.Writer
	}
	return o.Log
}

// heldPublish is what a queued publish keeps of its packets.Packet: the fields a
// PUBLISH uses, without the CONNECT and SUBSCRIBE ones, which would double the size of
// every queued item. Properties are kept behind a pointer, nil when the publish has
// none (every MQTT 3.1.1 publish, most MQTT 5 ones): they are a third of the Packet,
// and half of every queued item's size.
type heldPublish struct {
	props           *packets.Properties
	Payload         []byte
	TopicName       string
	Origin          string
	FixedHeader     packets.FixedHeader
	Created         int64
	Expiry          int64
	Mods            packets.Mods
	PacketID        uint16
	ProtocolVersion byte
	ReservedBit     byte
}

// holdPublish keeps pk's fields; the topic alias is dropped, since the topic name is
// already resolved and completing the publish must not carry the publisher's inbound
// alias to subscribers.
func holdPublish(pk *packets.Packet) heldPublish {
	h := heldPublish{
		Payload: pk.Payload, TopicName: pk.TopicName, Origin: pk.Origin,
		FixedHeader: pk.FixedHeader, Created: pk.Created, Expiry: pk.Expiry, Mods: pk.Mods,
		PacketID: pk.PacketID, ProtocolVersion: pk.ProtocolVersion, ReservedBit: pk.ReservedBit,
	}
	if !noProperties(&pk.Properties) {
		props := new(packets.Properties) // only here: a copy on the stack would escape
		*props = pk.Properties
		props.TopicAlias, props.TopicAliasFlag = 0, false
		if !noProperties(props) {
			h.props = props
		}
	}
	return h
}

// packet is the publish as mochi's hooks saw it.
func (h *heldPublish) packet() packets.Packet {
	pk := packets.Packet{
		Payload: h.Payload, TopicName: h.TopicName, Origin: h.Origin,
		FixedHeader: h.FixedHeader, Created: h.Created, Expiry: h.Expiry, Mods: h.Mods,
		PacketID: h.PacketID, ProtocolVersion: h.ProtocolVersion, ReservedBit: h.ReservedBit,
	}
	if h.props != nil {
		pk.Properties = *h.props
	}
	return pk
}

// noProperties reports whether p is the zero Properties (mochi v2.7.9's fields;
// TestNoPropertiesSeesEveryField fails when a mochi upgrade adds one).
func noProperties(p *packets.Properties) bool {
	return p.CorrelationData == nil && p.SubscriptionIdentifier == nil && p.AuthenticationData == nil && p.User == nil &&
		p.ContentType == "" && p.ResponseTopic == "" && p.AssignedClientID == "" && p.AuthenticationMethod == "" &&
		p.ResponseInfo == "" && p.ServerReference == "" && p.ReasonString == "" &&
		p.MessageExpiryInterval == 0 && p.SessionExpiryInterval == 0 && p.WillDelayInterval == 0 && p.MaximumPacketSize == 0 &&
		p.ServerKeepAlive == 0 && p.ReceiveMaximum == 0 && p.TopicAliasMaximum == 0 && p.TopicAlias == 0 &&
		p.PayloadFormat == 0 && !p.PayloadFormatFlag && !p.SessionExpiryIntervalFlag && !p.ServerKeepAliveFlag &&
		p.RequestProblemInfo == 0 && !p.RequestProblemInfoFlag && p.RequestResponseInfo == 0 && !p.TopicAliasFlag &&
		p.MaximumQos == 0 && !p.MaximumQosFlag && p.RetainAvailable == 0 && !p.RetainAvailableFlag &&
		p.WildcardSubAvailable == 0 && !p.WildcardSubAvailableFlag && p.SubIDAvailable == 0 && !p.SubIDAvailableFlag &&
		p.SharedSubAvailable == 0 && !p.SharedSubAvailableFlag
}

// pending is the number of queued publishes not yet answered.
func (h *ingestHook) pending() int { return int(h.npending.Load()) }
