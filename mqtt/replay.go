package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// AutoCreate configures creating a missing stream on a `$stream/<name>/<topic_filter>`
// subscription (config `auto_create`).
type AutoCreate struct {
	Enabled bool
	// Shards of an auto-created stream (default mapping.DefaultShards).
	Shards int32
}

// Replay defaults.
const (
	// DefaultReplayMaxInflight caps QoS 1/2 replay messages in flight to one client.
	DefaultReplayMaxInflight = 1024
	// DefaultReplayInflight is the window for clients that announce no receive maximum
	// (MQTT 3.1.1).
	DefaultReplayInflight = 256
	// DefaultReplayReadBytes is how much one log read of a shard reader asks for.
	DefaultReplayReadBytes = 64 << 10
	// DefaultReplayCommitInterval is how often persistent sessions' positions are stored.
	DefaultReplayCommitInterval = 5 * time.Second
)

// ReplayOptions configure the stream replay hook.
type ReplayOptions struct {
	Log *log.Log
	// Reader is where shards are read from: nil means Log (a single node); a cluster
	// node reads there the shards it holds no replica of from another node.
	Reader log.ShardReader
	// Catalog gives the streams' typed definitions and creates auto-created streams.
	Catalog    *mapping.Catalog
	AutoCreate AutoCreate
	Logger     zerolog.Logger
	// MaxInflight caps QoS 1/2 replay messages in flight to one client; the client's
	// receive maximum applies when lower (default DefaultReplayMaxInflight).
	MaxInflight int
	// ReadBytes is the size of one log read per shard, which bounds what a stalled
	// subscription holds besides its in-flight window (default DefaultReplayReadBytes).
	ReadBytes int
	// Broker, when set, has its in-flight statistic kept right for replay messages.
	Broker *mochi.Server
	// CommitInterval is how often the positions of persistent sessions are stored in the
	// log (default DefaultReplayCommitInterval); they are also stored at disconnect.
	CommitInterval time.Duration
	// Authorize decides a stream subscription on the stream it reads (filter is the
	// topic filter an auto-created stream would capture, create whether it would be
	// created); nil allows every one. A refused subscription gets SUBACK 0x87 (0x80
	// on MQTT 3.1.1).
	Authorize func(cl *mochi.Client, stream, filter string, create bool) bool
	// InvalidTopic, when set, counts records replayed under the stream's name because
	// their mqtt.topic header is not a valid MQTT topic name (a Kafka producer's).
	InvalidTopic func()
	// OnRefusedPublish counts a PUBLISH to a `$stream/` topic refused (may be nil).
	OnRefusedPublish func()
}

// ReplayHook is the mochi hook that serves `$stream/...` and `$s/...` subscriptions by
// reading the stream log, one reader per shard, paced by the client's in-flight window.
//
// mochi keeps the literal `$stream/...` filter as an ordinary subscription, so sessions,
// takeover, UNSUBSCRIBE and expiry work as for any filter, while publishes to `$stream/`
// and `$s/` topics are refused, so nothing but the replay reaches it.
type ReplayHook struct {
	mochi.HookBase
	opts ReplayOptions
	lg   zerolog.Logger

	mu       sync.RWMutex
	sessions map[string]*replaySession // by client id
	closed   bool

	windows  sync.Map     // *mochi.Client -> *sendWindow, for clients with stream subscriptions
	nwindows atomic.Int64 // entries in windows

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewReplayHook returns the replay hook; add it to the broker before the ingest hook.
func NewReplayHook(o ReplayOptions) (*ReplayHook, error) {
	if o.Log == nil || o.Catalog == nil {
		return nil, errors.New("replay hook: Log and Catalog are required")
	}
	if o.Reader == nil {
		o.Reader = o.Log
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultReplayMaxInflight
	}
	if o.ReadBytes <= 0 {
		o.ReadBytes = DefaultReplayReadBytes
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = DefaultReplayCommitInterval
	}
	if o.AutoCreate.Shards <= 0 {
		o.AutoCreate.Shards = mapping.DefaultShards
	}
	h := &ReplayHook{
		opts:     o,
		lg:       o.Logger.With().Str("hook", "replay").Logger(),
		sessions: map[string]*replaySession{},
		stop:     make(chan struct{}),
	}
	h.wg.Add(1)
	go h.commitLoop()
	return h, nil
}

// ID names the hook in mochi's logs.
func (h *ReplayHook) ID() string { return "stream-replay" }

// Provides lists the events the hook handles.
func (h *ReplayHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnDisconnect,
		mochi.OnClientExpired, mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed,
		mochi.OnPacketEncode, mochi.OnPacketSent, mochi.OnQosComplete, mochi.OnQosDropped,
		mochi.OnPublish:
		return true
	}
	return false
}

// Stop ends every reader and stores the positions of persistent sessions.
func (h *ReplayHook) Stop() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	sessions := make([]*replaySession, 0, len(h.sessions))
	for _, s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	close(h.stop)
	h.wg.Wait()
	for _, s := range sessions {
		s.stopReaders()
		s.commit()
	}
	return nil
}

func (h *ReplayHook) session(id string) *replaySession {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.sessions[id]
}

// sessionFor returns the client's session, creating it; nil after Stop.
func (h *ReplayHook) sessionFor(cl *mochi.Client) *replaySession {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	s := h.sessions[cl.ID]
	if s == nil {
		s = newReplaySession(h, cl)
		h.sessions[cl.ID] = s
	}
	return s
}

// dropSession forgets a session whose MQTT session ended, with its stored positions.
func (h *ReplayHook) dropSession(s *replaySession) {
	h.mu.Lock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
	h.mu.Unlock()
	s.stopReaders()
	s.mu.Lock()
	subs := s.subs
	s.subs = map[string]*replaySub{}
	s.inflight = map[uint16]inflightRef{}
	s.mu.Unlock()
	for _, sub := range subs {
		h.deleteGroup(sub.group)
	}
}

func (h *ReplayHook) deleteGroup(group string) {
	if err := h.opts.Log.DeleteGroup(group); err != nil {
		h.lg.Warn().Err(err).Str("group", group).Msg("delete replay position")
	}
}

// persistentSession reports whether the client's session outlives its connection.
func persistentSession(cl *mochi.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnSessionEstablish runs before mochi takes over an existing session: the readers
// bound to the old connection stop here, so none of them adds to its in-flight
// messages after mochi has copied them to the new connection.
func (h *ReplayHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	s := h.session(cl.ID)
	if s == nil {
		return
	}
	if pk.Connect.Clean {
		h.dropSession(s) // clean start discards the session and its positions
		return
	}
	s.signalStop()
}

// OnSessionEstablished resumes the stream subscriptions of a persistent session that
// mochi carried over: each continues after the last message it sent; the messages
// still unacknowledged are resent by mochi from the in-flight store it copied.
func (h *ReplayHook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	s := h.session(cl.ID)
	if s == nil {
		if !pk.Connect.Clean {
			h.restore(cl)
		}
		return
	}
	s.stopReaders()
	s.resume(cl)
}

// restore resumes the stream subscriptions of a persistent session that mochi loaded
// from the broker state store (a server restart) and that this hook has no session for:
// each continues from its stored position, as a SUBSCRIBE again would.
func (h *ReplayHook) restore(cl *mochi.Client) {
	var s *replaySession
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if !isStreamFilter(filter) {
			continue
		}
		r := h.prepare(filter, nil)
		if r.err != nil || r.create {
			h.lg.Warn().Str("client", cl.ID).Str("remote", cl.Net.Remote).Str("filter", filter).
				Msg("stored stream subscription not resumed: its stream is gone")
			continue
		}
		if s == nil {
			if s = h.sessionFor(cl); s == nil {
				return
			}
			h.openWindow(cl)
		}
		rs, fresh, err := s.subscribe(cl, r, sub, sub.Qos)
		if err != nil {
			continue
		}
		if fresh {
			s.startSub(cl, rs)
		}
	}
}

// OnDisconnect stops the connection's readers; a session that ends with the connection
// is forgotten, a persistent one keeps its positions (in memory and in the log).
func (h *ReplayHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	h.closeWindow(cl)
	s := h.session(cl.ID)
	if s == nil || !s.isClient(cl) {
		return // no stream subscriptions, or the session was taken over
	}
	if expire {
		h.dropSession(s)
		return
	}
	s.detach(cl)
	s.commit()
}

// OnClientExpired forgets an offline persistent session mochi expired.
func (h *ReplayHook) OnClientExpired(cl *mochi.Client) {
	if s := h.session(cl.ID); s != nil && s.isClient(nil) {
		h.dropSession(s)
	}
}

// OnPublish refuses publishes to `$stream/` and `$s/` topics, so the literal stream
// subscriptions mochi holds never match a publish: MQTT 5 gets PUBACK (QoS 1) or
// PUBREC (QoS 2) 0x90 Topic Name invalid, 3.1.1, which has no refusal for a publish,
// is disconnected, and every refusal is logged and counted.
func (h *ReplayHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !isStreamFilter(pk.TopicName) || cl.Net.Inline {
		return pk, nil
	}
	h.lg.Warn().Str("client", cl.ID).Str("remote", cl.Net.Remote).Str("topic", pk.TopicName).Uint8("qos", pk.FixedHeader.Qos).
		Msg("publish to a $stream/ topic refused")
	if h.opts.OnRefusedPublish != nil {
		h.opts.OnRefusedPublish()
	}
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(packets.ErrTopicNameInvalid)
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 0 {
		return pk, packets.ErrRejectPacket
	}
	// mochi v2.7.9 answers a refused QoS 2 publish with a PUBACK; the flow needs PUBREC.
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    pk.PacketID,
		ReasonCode:  packets.ErrTopicNameInvalid.Code,
		Properties:  packets.Properties{ReasonString: "publishing to $stream/ topics is not allowed"},
	}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if err := cl.WritePacket(ack); err != nil {
		h.lg.Debug().Err(err).Str("client", cl.ID).Msg("publish refusal not delivered")
	}
	return pk, packets.ErrRejectPacket
}

// pendingSubscribe carries a SUBSCRIBE's stream filters from OnSubscribe to its SUBACK.
type pendingSubscribe struct {
	results []*subResult // by filter index; nil for ordinary filters
	reason  []string
}

type subResult struct {
	filter string
	topic  streamTopic
	start  startPoint
	stream *log.Stream
	create bool // auto-create the stream once the subscription is authorized
	err    *subError
	sub    *replaySub // set when granted
	fresh  bool       // sub is new and its readers start after the SUBACK
}

// OnSubscribe validates the packet's stream filters. A failing one is replaced by an
// invalid filter so mochi refuses it without subscribing; its real reason code and
// reason string are put into the SUBACK by OnPacketEncode.
func (h *ReplayHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	var p *pendingSubscribe
	for i := range pk.Filters {
		f := pk.Filters[i].Filter
		if !isStreamFilter(f) {
			continue
		}
		if p == nil {
			p = &pendingSubscribe{results: make([]*subResult, len(pk.Filters))}
		}
		r := h.prepare(f, pk.Properties.User)
		if h.opts.Authorize != nil {
			// Authorization comes before any other answer, so a client not allowed to
			// read a stream learns nothing of it (whether it exists, its filters).
			name := r.topic.name
			if r.stream != nil {
				name = r.stream.Name()
			}
			if name != "" && !h.opts.Authorize(cl, name, r.topic.filter, r.create) {
				r.err = &subError{code: packets.ErrNotAuthorized, msg: fmt.Sprintf("%q: not authorized to read stream %q", f, name)}
			}
		}
		p.results[i] = r
		if r.err != nil {
			pk.Filters[i].Filter = "" // mochi answers "topic filter invalid" and subscribes nothing
			continue
		}
		// Retained messages are no part of a replay.
		pk.Filters[i].RetainHandling = 2
	}
	if p == nil {
		return pk
	}
	if s := h.sessionFor(cl); s != nil {
		s.mu.Lock()
		s.pending[pk.PacketID] = p
		s.mu.Unlock()
	}
	return pk
}

// prepare parses a stream filter and finds its stream and start point.
func (h *ReplayHook) prepare(f string, user []packets.UserProperty) *subResult {
	r := &subResult{filter: f}
	t, err := parseStreamTopic(f)
	if err != nil {
		r.err = err
		return r
	}
	r.topic = t
	if r.start, err = subscriptionStart(t, user); err != nil {
		r.err = err
		return r
	}
	if t.name == "" {
		r.stream = h.streamByFilter(t.filter)
		if r.stream == nil {
			r.err = invalidFilter("%q: no stream has topic filter %q", f, t.filter)
		}
		return r
	}
	def, ok := h.opts.Catalog.Definition(t.name)
	if ok {
		r.stream = h.opts.Catalog.Stream(t.name)
	}
	if r.stream == nil {
		if t.filter != "" && h.opts.AutoCreate.Enabled {
			r.create = true
			return r
		}
		r.err = invalidFilter("%q: stream %q does not exist", f, t.name)
		return r
	}
	if t.filter != "" && !slices.Contains(def.Filters, t.filter) {
		r.err = invalidFilter("%q: stream %q has topic filter %s, not %q", f, t.name, strings.Join(def.Filters, ", "), t.filter)
	}
	return r
}

// streamByFilter finds the stream (first by name) one of whose filters is filter.
func (h *ReplayHook) streamByFilter(filter string) *log.Stream {
	if d, ok := h.opts.Catalog.StreamByFilter(filter); ok {
		return h.opts.Catalog.Stream(d.Name)
	}
	return nil
}

// createStream makes the stream of an auto-creating subscription through the catalog;
// a concurrent creation of the same name is fine when its filter is the same.
func (h *ReplayHook) createStream(t streamTopic) (*log.Stream, *subError) {
	def := mapping.Definition{Name: t.name, Filters: []string{t.filter}, Shards: h.opts.AutoCreate.Shards}
	def, err := h.opts.Catalog.Create(def, true)
	if errors.Is(err, mapping.ErrStreamExists) {
		cur, ok := h.opts.Catalog.Definition(t.name)
		st := h.opts.Catalog.Stream(t.name)
		if !ok || st == nil {
			return nil, implError("auto-create stream %q: deleted while being created", t.name)
		}
		if !slices.Contains(cur.Filters, t.filter) {
			return nil, invalidFilter("stream %q exists with another topic filter", t.name)
		}
		return st, nil
	}
	if errors.Is(err, mapping.ErrInvalid) {
		return nil, invalidFilter("auto-create: %s", err)
	}
	if err != nil {
		return nil, implError("auto-create stream %q: %v", t.name, err)
	}
	st := h.opts.Catalog.Stream(t.name)
	if st == nil {
		return nil, implError("auto-create stream %q: deleted while being created", t.name)
	}
	h.lg.Info().Str("stream", t.name).Str("filter", t.filter).Int32("shards", def.Shards).Msg("stream auto-created by subscription")
	return st, nil
}

// OnSubscribed takes the stream filters mochi granted (authorization included) and
// sets their subscriptions up; their readers start once the SUBACK is out.
func (h *ReplayHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, reasonCodes []byte) {
	s := h.session(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	p := s.pending[pk.PacketID]
	s.mu.Unlock()
	if p == nil {
		return
	}
	granted := false
	for i, r := range p.results {
		if r == nil || r.err != nil {
			continue
		}
		if i >= len(reasonCodes) || reasonCodes[i] > packets.CodeGrantedQos2.Code {
			r.err = &subError{} // refused by mochi (e.g. not authorized): its code stands
			continue
		}
		if r.create {
			if r.stream, r.err = h.createStream(r.topic); r.err != nil {
				// mochi has subscribed the literal filter: take it off the session so
				// the client's state and ours agree (it never matches a publish).
				cl.State.Subscriptions.Delete(r.filter)
				continue
			}
		}
		sub := pk.Filters[i]
		r.sub, r.fresh, r.err = s.subscribe(cl, r, sub, reasonCodes[i])
		if r.err != nil {
			cl.State.Subscriptions.Delete(r.filter)
			continue
		}
		granted = true
	}
	if granted {
		h.openWindow(cl)
	}
}

// OnPacketEncode writes the stream filters' own reason codes and reason string into
// the SUBACK mochi built.
//
// It also keeps user properties on PUBLISH when the client set Request Problem
// Information to 0: that setting only forbids them on other packets [MQTT-3.1.2-29], but
// mochi strips them from every packet, and with them the stream position of replays.
func (h *ReplayHook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Publish {
		pk.Mods.DisallowProblemInfo = false
		if w := h.windowOf(cl); w != nil {
			holdLiveDelivery(w, &pk)
		}
		return pk
	}
	if pk.FixedHeader.Type != packets.Suback {
		return pk
	}
	s := h.session(cl.ID)
	if s == nil {
		return pk
	}
	s.mu.Lock()
	p := s.pending[pk.PacketID]
	s.mu.Unlock()
	if p == nil {
		return pk
	}
	var reasons []string
	for i, r := range p.results {
		if r == nil || r.err == nil || r.err.code.Code == 0 || i >= len(pk.ReasonCodes) {
			continue
		}
		code := r.err.code.Code
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrUnspecifiedError.Code // 3.1.1 knows only 0x80 "failure"
		}
		pk.ReasonCodes[i] = code
		reasons = append(reasons, r.err.msg)
	}
	if len(reasons) > 0 && cl.Properties.ProtocolVersion == 5 {
		pk.Properties.ReasonString = strings.Join(reasons, "; ")
	}
	return pk
}

// OnPacketSent starts the readers of subscriptions granted by a SUBACK once mochi has
// written it (or put it in its output buffer): their first write, ordered behind what
// mochi buffered (mochi_adapter.go), puts the SUBACK on the wire before anything they
// replay.
//
// While mochi's write loop of the client waits for window room, the packets the read
// loop writes (acks, SUBACKs, PINGRESP) wait in mochi's buffer: they are written out
// here (mochi_adapter.go).
func (h *ReplayHook) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Suback && h.startSubscribed(cl, pk.PacketID) {
		return
	}
	if w := h.windowOf(cl); w != nil && w.holding.Load() {
		flushHeld(cl)
	}
}

// startSubscribed starts the readers of the stream subscriptions a SUBACK granted,
// reporting whether there were any.
func (h *ReplayHook) startSubscribed(cl *mochi.Client, pid uint16) bool {
	s := h.session(cl.ID)
	if s == nil {
		return false
	}
	s.mu.Lock()
	p := s.pending[pid]
	delete(s.pending, pid)
	s.mu.Unlock()
	if p == nil {
		return false
	}
	started := false
	for _, r := range p.results {
		if r != nil && r.err == nil && r.fresh {
			started = s.startSub(cl, r.sub) || started
		}
	}
	return started
}

// OnUnsubscribed ends the stream subscriptions named and forgets their positions.
func (h *ReplayHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	s := h.session(cl.ID)
	if s == nil || !s.isClient(cl) {
		return
	}
	for _, f := range pk.Filters {
		if isStreamFilter(f.Filter) {
			if group, ok := s.unsubscribe(f.Filter); ok {
				h.deleteGroup(group)
			}
		}
	}
}

// OnQosComplete frees a window slot when the client acknowledges a message (not when
// a flow of the client's own publish, which may reuse the id, ends: endsDelivery).
func (h *ReplayHook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	if !endsDelivery(pk) {
		return
	}
	if w := h.windowOf(cl); w != nil {
		w.acked(pk.PacketID)
	}
	if s := h.session(cl.ID); s != nil {
		s.acked(cl, pk.PacketID)
	}
}

// OnQosDropped frees the slot of a message mochi gave up on (expired or refused).
func (h *ReplayHook) OnQosDropped(cl *mochi.Client, pk packets.Packet) {
	if !endsDelivery(pk) {
		return
	}
	if w := h.windowOf(cl); w != nil {
		w.acked(pk.PacketID)
	}
	if s := h.session(cl.ID); s != nil {
		s.acked(cl, pk.PacketID)
	}
}

// commitLoop stores the positions of persistent sessions that moved, and starts
// readers for shards that streams gained.
func (h *ReplayHook) commitLoop() {
	defer h.wg.Done()
	t := time.NewTicker(shardCheckInterval)
	defer t.Stop()
	lastCommit := time.Now()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.RLock()
		sessions := make([]*replaySession, 0, len(h.sessions))
		for _, s := range h.sessions {
			sessions = append(sessions, s)
		}
		h.mu.RUnlock()
		commit := time.Since(lastCommit) >= h.opts.CommitInterval
		if commit {
			lastCommit = time.Now()
		}
		for _, s := range sessions {
			s.growShards()
			if commit {
				s.commit()
			}
		}
	}
}

// shardCheckInterval is how often subscriptions look for shards their stream gained.
const shardCheckInterval = time.Second

// groupName is the consumer group holding a persistent stream subscription's position;
// Kafka tools list it, so replay lag is visible like any consumer's.
func groupName(clientID, filter string) string {
	var b bytes.Buffer
	b.WriteString("$mqtt/")
	b.WriteString(clientID)
	b.WriteByte('/')
	b.WriteString(filter)
	return b.String()
}

// errStopped ends a reader whose subscription or connection went away.
var errStopped = errors.New("replay stopped")

func wrapShard(st *log.Stream, shard int32, err error) error {
	return fmt.Errorf("replay %s/%d: %w", st.Name(), shard, err)
}
