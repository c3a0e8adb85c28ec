package mqtt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// Entry kinds of the broker state kept in the log's database (docs/design.md, "Broker
// state across restarts"): one record per persistent client, subscription, retained topic and queued
// (in-flight) message.
const (
	kindClient   = "mqtt.client"
	kindSub      = "mqtt.sub"
	kindRetained = "mqtt.retained"
	// kindRetStamp is a retained change's cluster stamp, by topic (routes_retained.go);
	// kept after a clear, so the clear still wins over an older message elsewhere.
	kindRetStamp = "mqtt.retained.stamp"
	kindInflight = "mqtt.inflight"
)

// storedClient is a persistent session as stored: mochi's record plus the time the
// client went offline, so session expiry counts the time the server was down.
type storedClient struct {
	storage.Client
	// Disconnected is the Unix time (s) the client went offline; 0 while connected.
	Disconnected int64 `json:"disconnected,omitempty"`
}

// storedMessage is a retained or queued message as stored: mochi's record plus what
// mochi's own storage record leaves out and expiry needs after a restart.
type storedMessage struct {
	storage.Message
	// Expiry is the Unix time (s) the message expires at; 0 never.
	Expiry int64 `json:"expiry,omitempty"`
	// Proto is the MQTT version the message was published with.
	Proto byte `json:"proto,omitempty"`
}

// clientKeys indexes what is stored for one client id, so an ending session removes
// all of it without a scan.
type clientKeys struct {
	subs     map[string]struct{}
	inflight map[uint16]struct{}
}

// storeHook persists the broker state mochi keeps in memory — persistent sessions,
// their subscriptions and queued QoS 1/2 messages, and retained messages — as log
// entries, through mochi's storage hook interface (the events its hooks/storage/pebble
// hook handles, and the Stored* loaders mochi calls in Serve). The log's group commit
// writes them, so they share fsyncs with stream appends; a retained publish that also
// goes to a stream is written in the very batch of its append (see ingestHook).
//
// Only sessions that outlive their connection are stored: an MQTT 5 client with a
// session expiry interval, or an MQTT 3 client without clean session. `$stream/`
// subscriptions are stored like any other; the replay hook resumes them from their
// consumer-group position (their in-flight copies are not stored).
type storeHook struct {
	mochi.HookBase

	log    *log.Log
	broker *mochi.Server
	lg     zerolog.Logger
	now    func() time.Time
	// retainedStored reports that a retained publish was already written with its
	// stream append (set by the server to the ingest hook's check).
	retainedStored func(cl *mochi.Client, pk packets.Packet) bool
	// onRestored is told of every session mochi loaded from the store, before the
	// listeners serve (set by the server for the auth hook).
	onRestored func(cl *mochi.Client)

	loading atomic.Bool // mochi is restoring the store: its OnDisconnect calls are not news

	mu      sync.Mutex
	clients map[string]*clientKeys
	// unsynced counts, by publisher, queued-message writes not yet durable.
	unsynced map[string]int
	// handover holds, by client id, what mochi dropped from a session being taken
	// over until the new connection is established (mochi_takeover.go).
	handover map[string][]packets.Packet
	// previous is, by client id, the session object a connecting client may take over.
	previous map[string]*mochi.Client
	// restored are loaded messages whose expiry mochi's loaders drop; OnStarted puts it back.
	restoredRetained []storedMessage
	restoredInflight []storedMessage
}

func newStoreHook(l *log.Log, broker *mochi.Server, lg zerolog.Logger) *storeHook {
	h := &storeHook{
		log:      l,
		broker:   broker,
		lg:       lg,
		now:      time.Now,
		clients:  map[string]*clientKeys{},
		unsynced: map[string]int{},
		handover: map[string][]packets.Packet{},
		previous: map[string]*mochi.Client{},
	}
	h.loading.Store(true)
	return h
}

// ID names the hook in mochi's logs.
func (h *storeHook) ID() string { return "mqstreams-store" }

// Provides lists the mochi events the hook handles.
func (h *storeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnConnect,
		mochi.OnSessionEstablished,
		mochi.OnDisconnect,
		mochi.OnSubscribed,
		mochi.OnUnsubscribed,
		mochi.OnRetainMessage,
		mochi.OnWillSent,
		mochi.OnQosPublish,
		mochi.OnQosComplete,
		mochi.OnQosDropped,
		mochi.OnPublished,
		mochi.OnPacketRead,
		mochi.OnClientExpired,
		mochi.OnRetainedExpired,
		mochi.OnStarted,
		mochi.StoredClients,
		mochi.StoredInflightMessages,
		mochi.StoredRetainedMessages,
		mochi.StoredSubscriptions,
	}, []byte{b})
}

// persistent reports whether the client's session outlives its connection.
func persistent(cl *mochi.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func subName(client, filter string) string { return client + "\x00" + filter }

func inflightName(client string, id uint16) string {
	return client + "\x00" + strconv.FormatUint(uint64(id), 10)
}

// write queues ops in the log's group commit; wait blocks until they are durable.
func (h *storeHook) write(ops []log.EntryOp, wait bool, what string) {
	if !wait {
		h.log.PutEntriesAsync(ops, func(err error) {
			if err != nil {
				h.lg.Error().Err(err).Str("state", what).Msg("broker state not stored")
			}
		})
		return
	}
	ch := make(chan error, 1)
	h.log.PutEntriesAsync(ops, func(err error) { ch <- err })
	if err := <-ch; err != nil {
		h.lg.Error().Err(err).Str("state", what).Msg("broker state not stored")
	}
}

func (h *storeHook) keys(client string) *clientKeys {
	k := h.clients[client]
	if k == nil {
		k = &clientKeys{subs: map[string]struct{}{}, inflight: map[uint16]struct{}{}}
		h.clients[client] = k
	}
	return k
}

// dropOps removes a client's stored session: its record, subscriptions and messages.
func (h *storeHook) dropOps(client string) []log.EntryOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := []log.EntryOp{{Kind: kindClient, Name: client}}
	if k := h.clients[client]; k != nil {
		for f := range k.subs {
			ops = append(ops, log.EntryOp{Kind: kindSub, Name: subName(client, f)})
		}
		for id := range k.inflight {
			ops = append(ops, log.EntryOp{Kind: kindInflight, Name: inflightName(client, id)})
		}
		delete(h.clients, client)
	}
	return ops
}

func (h *storeHook) clientOp(cl *mochi.Client, disconnected int64) log.EntryOp {
	props := cl.Properties.Props.Copy(false)
	in := storedClient{
		Client: storage.Client{
			ID:              cl.ID,
			T:               storage.ClientKey,
			Remote:          cl.Net.Remote,
			Listener:        cl.Net.Listener,
			Username:        cl.Properties.Username,
			Clean:           cl.Properties.Clean,
			ProtocolVersion: cl.Properties.ProtocolVersion,
			Properties: storage.ClientProperties{
				SessionExpiryInterval:     props.SessionExpiryInterval,
				SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
				AuthenticationMethod:      props.AuthenticationMethod,
				AuthenticationData:        props.AuthenticationData,
				RequestProblemInfo:        props.RequestProblemInfo,
				RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
				RequestResponseInfo:       props.RequestResponseInfo,
				ReceiveMaximum:            props.ReceiveMaximum,
				TopicAliasMaximum:         props.TopicAliasMaximum,
				User:                      props.User,
				MaximumPacketSize:         props.MaximumPacketSize,
			},
			Will: storage.ClientWill(cl.Properties.Will),
		},
		Disconnected: disconnected,
	}
	v, _ := json.Marshal(in)
	return log.EntryOp{Kind: kindClient, Name: cl.ID, Value: v}
}

func messageValue(cl *mochi.Client, pk packets.Packet, sent int64) []byte {
	props := pk.Properties.Copy(false)
	in := storedMessage{
		Message: storage.Message{
			Client:      cl.ID,
			Origin:      pk.Origin,
			PacketID:    pk.PacketID,
			FixedHeader: pk.FixedHeader,
			TopicName:   pk.TopicName,
			Payload:     pk.Payload,
			Sent:        sent,
			Created:     pk.Created,
			Properties: storage.MessageProperties{
				PayloadFormat:          props.PayloadFormat,
				PayloadFormatFlag:      props.PayloadFormatFlag,
				MessageExpiryInterval:  props.MessageExpiryInterval,
				ContentType:            props.ContentType,
				ResponseTopic:          props.ResponseTopic,
				CorrelationData:        props.CorrelationData,
				SubscriptionIdentifier: props.SubscriptionIdentifier,
				User:                   props.User,
			},
		},
		Expiry: max(pk.Expiry, 0),
		Proto:  pk.ProtocolVersion,
	}
	v, _ := json.Marshal(in)
	return v
}

// retainedOp is the stored change a retained publish makes: an empty payload removes
// the topic's retained message.
func retainedOp(cl *mochi.Client, pk packets.Packet) log.EntryOp {
	op := log.EntryOp{Kind: kindRetained, Name: pk.TopicName}
	if len(pk.Payload) > 0 {
		op.Value = messageValue(cl, pk, 0)
	}
	return op
}

// OnSessionEstablished stores a persistent session; a clean start first drops what a
// previous session of the client id left.
func (h *storeHook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	var ops []log.EntryOp
	if pk.Connect.Clean {
		ops = h.dropOps(cl.ID)
	}
	if persistent(cl) {
		ops = append(ops, h.clientOp(cl, 0))
	}
	if len(ops) > 0 {
		h.write(ops, true, "session")
	}
	h.handOver(cl, pk.Connect.Clean)
}

// OnDisconnect notes when a persistent client went offline, or removes a session that
// ends with its connection.
func (h *storeHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	forgetOutbound(cl)
	if h.loading.Load() || cl.Net.Inline || cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	if expire || !persistent(cl) {
		h.write(h.dropOps(cl.ID), false, "session")
		return
	}
	h.write([]log.EntryOp{h.clientOp(cl, h.now().Unix())}, false, "session")
}

// OnWillSent stores the session without the will it has just sent.
func (h *storeHook) OnWillSent(cl *mochi.Client, _ packets.Packet) {
	if !persistent(cl) {
		return
	}
	disc := int64(0)
	if cl.Closed() {
		disc = h.now().Unix()
	}
	h.write([]log.EntryOp{h.clientOp(cl, disc)}, false, "session")
}

// OnClientExpired removes an expired session and everything stored for it.
func (h *storeHook) OnClientExpired(cl *mochi.Client) {
	h.write(h.dropOps(cl.ID), false, "session")
}

// OnSubscribed stores the granted subscriptions of a persistent session before the
// SUBACK is sent.
func (h *storeHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, reasonCodes []byte) {
	if !persistent(cl) {
		return
	}
	var ops []log.EntryOp
	h.mu.Lock()
	for i, f := range pk.Filters {
		if i >= len(reasonCodes) || reasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		v, _ := json.Marshal(storage.Subscription{
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			RetainHandling:    f.RetainHandling,
			Qos:               reasonCodes[i],
			RetainAsPublished: f.RetainAsPublished,
			NoLocal:           f.NoLocal,
		})
		ops = append(ops, log.EntryOp{Kind: kindSub, Name: subName(cl.ID, f.Filter), Value: v})
		h.keys(cl.ID).subs[f.Filter] = struct{}{}
	}
	h.mu.Unlock()
	if len(ops) > 0 {
		h.write(ops, true, "subscription")
	}
}

// OnUnsubscribed removes stored subscriptions.
func (h *storeHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	var ops []log.EntryOp
	h.mu.Lock()
	if k := h.clients[cl.ID]; k != nil {
		for _, f := range pk.Filters {
			if _, ok := k.subs[f.Filter]; ok {
				delete(k.subs, f.Filter)
				ops = append(ops, log.EntryOp{Kind: kindSub, Name: subName(cl.ID, f.Filter)})
			}
		}
	}
	h.mu.Unlock()
	if len(ops) > 0 {
		h.write(ops, false, "subscription")
	}
}

// OnRetainMessage stores (or removes) a topic's retained message. For a QoS 1/2
// publish the write is durable before mochi sends the acknowledgement.
func (h *storeHook) OnRetainMessage(cl *mochi.Client, pk packets.Packet, r int64) {
	stamp, stamped := retainedStampOp(pk)
	if h.retainedStored != nil && h.retainedStored(cl, pk) {
		if stamped {
			// The message went with its stream append; its stamp follows (a crash in
			// between leaves the previous stamp: the change looks older than it is).
			h.write([]log.EntryOp{stamp}, false, "retained stamp")
		}
		return
	}
	ops := []log.EntryOp{{Kind: kindRetained, Name: pk.TopicName}}
	if r != -1 {
		ops[0] = retainedOp(cl, pk)
	}
	if stamped {
		ops = append(ops, stamp)
	}
	h.write(ops, pk.FixedHeader.Qos > 0, "retained")
}

// retainedStampOp is the stored stamp of a retained change made in a cluster, if the
// route hook stamped it (routes_shared.go, routeNote).
func retainedStampOp(pk packets.Packet) (log.EntryOp, bool) {
	note, _ := noteOf(pk)
	if !note.stamped {
		return log.EntryOp{}, false
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(note.stamp.ts))
	v = binary.BigEndian.AppendUint64(v, note.stamp.node)
	return log.EntryOp{Kind: kindRetStamp, Name: pk.TopicName, Value: v}, true
}

// storedStamps returns the stored stamps of retained changes, by topic.
func (h *storeHook) storedStamps() (map[string]retStamp, error) {
	entries, err := h.log.Entries(kindRetStamp)
	if err != nil {
		return nil, fmt.Errorf("load retained stamps: %w", err)
	}
	out := make(map[string]retStamp, len(entries))
	for _, e := range entries {
		if len(e.Value) != 16 {
			h.lg.Warn().Str("topic", e.Name).Msg("stored retained stamp unreadable, skipped")
			continue
		}
		out[e.Name] = retStamp{ts: int64(binary.BigEndian.Uint64(e.Value)), node: binary.BigEndian.Uint64(e.Value[8:])}
	}
	return out, nil
}

// OnRetainedExpired removes an expired retained message.
func (h *storeHook) OnRetainedExpired(topic string) {
	h.write([]log.EntryOp{{Kind: kindRetained, Name: topic}}, false, "retained")
}

// OnQosPublish stores a QoS 1/2 message queued or in flight for a persistent session.
// The write is not waited for here (this runs once per subscriber); OnPublished waits
// for all of a publish's queued copies at once.
//
// Only deliveries are stored: the server's acknowledgements of the client's own
// publishes (which mochi passes here too) share their ids with deliveries (see
// endsDelivery) and would overwrite them.
func (h *storeHook) OnQosPublish(cl *mochi.Client, pk packets.Packet, sent int64, resends int) {
	if h.lateToTakenOver(cl, pk) {
		return
	}
	if pk.FixedHeader.Type != packets.Publish || resends > 0 || !persistent(cl) || pk.Origin == replayOrigin {
		return // a replay resumes from its own stored position instead
	}
	op := log.EntryOp{Kind: kindInflight, Name: inflightName(cl.ID, pk.PacketID), Value: messageValue(cl, pk, sent)}
	origin := pk.Origin
	h.mu.Lock()
	h.keys(cl.ID).inflight[pk.PacketID] = struct{}{}
	h.unsynced[origin]++
	h.mu.Unlock()
	h.log.PutEntriesAsync([]log.EntryOp{op}, func(err error) {
		if err != nil {
			h.lg.Error().Err(err).Str("client", cl.ID).Str("remote", cl.Net.Remote).Msg("queued message not stored")
		}
		h.mu.Lock()
		if h.unsynced[origin]--; h.unsynced[origin] <= 0 {
			delete(h.unsynced, origin)
		}
		h.mu.Unlock()
	})
}

// OnPacketRead keeps an outbound delivery whose id the client's PUBLISH reuses, which
// mochi v2.7.9's processPublish would lose (keepOutbound, mochi_adapter.go).
func (h *storeHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	keepOutbound(cl, pk)
	return pk, nil
}

// OnQosComplete removes a message its subscriber acknowledged (not one whose id the
// end of a flow of the client's own publish reuses: endsDelivery).
func (h *storeHook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	if !endsDelivery(pk) {
		if pk.FixedHeader.Type == packets.Pubrel {
			restoreOutbound(h.broker, cl, pk.PacketID, packets.Pubrel) // the client's PUBREL (keepOutbound)
		}
		return
	}
	h.mu.Lock()
	ok := false
	if k := h.clients[cl.ID]; k != nil {
		if _, ok = k.inflight[pk.PacketID]; ok {
			delete(k.inflight, pk.PacketID)
		}
	}
	h.mu.Unlock()
	if ok {
		h.write([]log.EntryOp{{Kind: kindInflight, Name: inflightName(cl.ID, pk.PacketID)}}, false, "inflight")
	}
}

// OnQosDropped removes a message mochi gave up on (expired or refused).
// One dropped from a session being taken over may not have reached the new connection
// (mochi_takeover.go).
func (h *storeHook) OnQosDropped(cl *mochi.Client, pk packets.Packet) {
	h.takenOverDrop(cl, pk)
	h.OnQosComplete(cl, pk)
}

// OnPublished returns once the copies of the publish queued for persistent sessions
// are durable. mochi acknowledges a publish before it fans it out, so this is what
// makes the publisher's next acknowledgement on the connection imply them.
//
// It also puts back an outbound delivery whose id the publish reused, which mochi
// v2.7.9's processPublish removed (restoreOutbound, mochi_adapter.go).
func (h *storeHook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos > 0 {
		restoreOutbound(h.broker, cl, pk.PacketID, packets.Publish)
	}
	h.mu.Lock()
	n := h.unsynced[cl.ID]
	h.mu.Unlock()
	if n > 0 {
		h.write(nil, true, "barrier")
	}
}

// StoredClients returns the stored sessions that have not expired, with their
// remaining session expiry; expired ones are removed with all they hold.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	entries, err := h.log.Entries(kindClient)
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	subs, err := h.log.Entries(kindSub)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	inflight, err := h.log.Entries(kindInflight)
	if err != nil {
		return nil, fmt.Errorf("load queued messages: %w", err)
	}
	h.mu.Lock()
	for _, e := range subs {
		if client, filter, ok := strings.Cut(e.Name, "\x00"); ok {
			h.keys(client).subs[filter] = struct{}{}
		}
	}
	for _, e := range inflight {
		if client, id, ok := strings.Cut(e.Name, "\x00"); ok {
			if n, err := strconv.ParseUint(id, 10, 16); err == nil {
				h.keys(client).inflight[uint16(n)] = struct{}{}
			}
		}
	}
	h.mu.Unlock()

	now := h.now().Unix()
	maxExpiry := int64(h.broker.Options.Capabilities.MaximumSessionExpiryInterval)
	var out []storage.Client
	var drop []log.EntryOp
	for _, e := range entries {
		var sc storedClient
		if err := json.Unmarshal(e.Value, &sc); err != nil {
			h.lg.Warn().Err(err).Str("client", e.Name).Msg("stored session unreadable, dropped")
			drop = append(drop, h.dropOps(e.Name)...)
			continue
		}
		expiry := maxExpiry
		if sc.ProtocolVersion == 5 {
			expiry = min(int64(sc.Properties.SessionExpiryInterval), maxExpiry)
		}
		offline := int64(0)
		if sc.Disconnected > 0 && sc.Disconnected < now {
			offline = now - sc.Disconnected
		}
		if expiry == 0 || offline >= expiry {
			drop = append(drop, h.dropOps(sc.ID)...)
			continue
		}
		if sc.ProtocolVersion == 5 {
			// mochi restarts the expiry clock at load: give it what is left.
			sc.Properties.SessionExpiryInterval = uint32(expiry - offline)
			sc.Properties.SessionExpiryIntervalFlag = true
		}
		out = append(out, sc.Client)
	}
	// Subscriptions and messages of a session that is not stored any more.
	live := make(map[string]bool, len(out))
	for _, c := range out {
		live[c.ID] = true
	}
	h.mu.Lock()
	var orphans []string
	for client := range h.clients {
		if !live[client] {
			orphans = append(orphans, client)
		}
	}
	h.mu.Unlock()
	for _, client := range orphans {
		drop = append(drop, h.dropOps(client)...)
	}
	if len(drop) > 0 {
		h.write(drop, true, "expired sessions")
	}
	return out, nil
}

// StoredSubscriptions returns the subscriptions of the stored sessions. mochi calls it
// once it has loaded the sessions and before it serves, which is when onRestored runs.
func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	if h.onRestored != nil {
		for _, cl := range h.broker.Clients.GetAll() {
			if cl.Net.Conn == nil && !cl.Net.Inline {
				h.onRestored(cl)
			}
		}
	}
	entries, err := h.log.Entries(kindSub)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	out := make([]storage.Subscription, 0, len(entries))
	for _, e := range entries {
		var s storage.Subscription
		if err := json.Unmarshal(e.Value, &s); err != nil {
			h.lg.Warn().Err(err).Str("subscription", e.Name).Msg("stored subscription unreadable, skipped")
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// loadMessages reads stored messages, removing those that expired while the server
// was down.
func (h *storeHook) loadMessages(kind string) ([]storedMessage, []storage.Message, error) {
	entries, err := h.log.Entries(kind)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", kind, err)
	}
	now := h.now().Unix()
	var kept []storedMessage
	var out []storage.Message
	var drop []log.EntryOp
	for _, e := range entries {
		var m storedMessage
		// Acknowledgements of a client's publishes, stored by earlier versions, are
		// dropped (OnQosPublish).
		if err := json.Unmarshal(e.Value, &m); err != nil || (m.Expiry > 0 && m.Expiry < now) ||
			(kind == kindInflight && m.FixedHeader.Type != packets.Publish && m.FixedHeader.Type != packets.Pubrel) {
			drop = append(drop, log.EntryOp{Kind: kind, Name: e.Name})
			continue
		}
		kept = append(kept, m)
		out = append(out, m.Message)
	}
	if len(drop) > 0 {
		h.write(drop, true, "expired messages")
	}
	return kept, out, nil
}

// StoredInflightMessages returns the queued messages that have not expired.
func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	kept, out, err := h.loadMessages(kindInflight)
	h.restoredInflight = kept
	return out, err
}

// StoredRetainedMessages returns the retained messages that have not expired.
func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	kept, out, err := h.loadMessages(kindRetained)
	h.restoredRetained = kept
	return out, err
}

// OnStarted ends the restore: mochi's loaders build packets without their expiry time
// and protocol version, so the restored messages are put back with them.
func (h *storeHook) OnStarted() {
	for _, m := range h.restoredRetained {
		if m.Expiry > 0 {
			pk := m.ToPacket()
			pk.Expiry, pk.ProtocolVersion = m.Expiry, m.Proto
			h.broker.Topics.RetainMessage(pk)
		}
	}
	for _, m := range h.restoredInflight {
		if m.Expiry == 0 {
			continue
		}
		if cl, ok := h.broker.Clients.Get(m.Client); ok {
			pk := m.ToPacket()
			pk.Expiry, pk.ProtocolVersion = m.Expiry, m.Proto
			cl.State.Inflight.Set(pk)
		}
	}
	h.restoredRetained, h.restoredInflight = nil, nil
	h.loading.Store(false)
}
