package mqtt

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
)

// allowAll is the hook deciding who may connect, publish and subscribe when the server
// has no user store (tests of other features): everyone may do everything.
type allowAll struct{ mochi.HookBase }

func newAllowAllHook() mochi.Hook { return new(allowAll) }

// ID names the hook in mochi's logs.
func (*allowAll) ID() string { return "allow-all-auth" }

// Provides lists the mochi events the hook handles.
func (*allowAll) Provides(b byte) bool {
	return bytes.IndexByte([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, b) >= 0
}

// OnConnectAuthenticate accepts every connection.
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic, for reading and writing.
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// Failed-login limit per remote address (auth.Limiter): enough for a user mistyping a
// password, far too few for guessing one.
const (
	DefaultLoginFailBurst  = 10
	DefaultLoginFailWindow = time.Minute
)

// authHook asks the auth.Store who may connect and what each client may publish,
// subscribe and replay. It plays the part of mochi's hooks/auth (OnConnectAuthenticate
// and OnACLCheck, logging each refusal) with the store in place of mochi's ledger, whose
// plain-text passwords and per-filter read/write grants do not fit a store shared with
// Kafka.
//
// Each connection keeps the principal it authenticated as, by client id and bound to
// the *mochi.Client, so a connection taken over by a newer one with the same client id
// is refused everything from then on. The principal stays while the MQTT session lives
// (messages queued for an offline persistent session are checked against it) and is
// dropped when the session ends. Principals read the store's current grants on every
// check, so run-time changes reach open connections.
type authHook struct {
	mochi.HookBase
	store   *auth.Store
	limiter *auth.Limiter
	lg      zerolog.Logger

	mu      sync.Mutex // serialises logins' check of the session owner with the store
	clients sync.Map   // client id -> *clientPrincipal
	// refused holds why a connection is being refused until its CONNACK is encoded
	// (*mochi.Client -> refusal): mochi sends one code for every refusal.
	refused sync.Map
	// failures counts refused logins.
	failures prometheus.Counter
}

type clientPrincipal struct {
	cl *mochi.Client
	p  auth.Principal
	// prev is the connection or stored session this one takes over (the same user's:
	// client ids belong to one user). mochi logs the new connection in before it swaps
	// the session over, and a publish fanned out in between still goes to prev, whose
	// queue the new connection inherits: prev keeps its grants until the swap.
	prev *clientPrincipal
}

// refusal is why a CONNECT was refused.
type refusal uint8

const (
	refusedCredentials   refusal = iota + 1 // bad or missing credentials, or rate-limited
	refusedNotAuthorized                    // a will it may not publish, another user's client id
)

func newAuthHook(store *auth.Store, limiter *auth.Limiter, failures prometheus.Counter, lg zerolog.Logger) *authHook {
	if limiter == nil {
		limiter = auth.NewLimiter(DefaultLoginFailBurst, DefaultLoginFailWindow)
	}
	return &authHook{store: store, limiter: limiter, failures: failures, lg: lg.With().Str("hook", "auth").Logger()}
}

// ID names the hook in mochi's logs.
func (*authHook) ID() string { return "mqstreams-auth" }

// Provides lists the mochi events the hook handles.
func (*authHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnPacketEncode,
		mochi.OnSessionEstablished, mochi.OnDisconnect, mochi.OnClientExpired:
		return true
	}
	return false
}

// OnConnectAuthenticate logs the client in: a verified client certificate's CN, else
// username and password, else anonymous when the store allows it. A refused login is
// logged once, with client id, remote address and username, never the password.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	remote := cl.Net.Remote
	user := string(pk.Connect.Username)
	if !h.limiter.Allow(remote) {
		// Debug only: the warning below said the address is being refused, and a
		// guessing client must not flood the log either.
		h.refuse(cl, refusedCredentials)
		h.lg.Debug().Str("client", cl.ID).Str("remote", remote).Str("username", user).
			Msg("mqtt login refused: too many failed logins from this address")
		return false
	}
	p, method, ok := h.authenticate(cl, pk)
	if !ok {
		h.limiter.Fail(remote)
		h.refuse(cl, refusedCredentials)
		h.lg.Warn().Str("client", cl.ID).Str("remote", remote).Str("username", user).Str("method", method).
			Bool("address_blocked", !h.limiter.Allow(remote)).
			Msg("mqtt login refused: bad credentials")
		return false
	}
	if pk.Connect.WillFlag && !p.CanPublish(pk.Connect.WillTopic) {
		// As mosquitto does: a will the client could not publish itself refuses the
		// connection (mochi would send it at disconnect without asking).
		h.refuse(cl, refusedNotAuthorized)
		h.lg.Warn().Str("client", cl.ID).Str("remote", remote).Str("username", p.Name()).Str("topic", pk.Connect.WillTopic).
			Msg("mqtt login refused: will topic not allowed")
		return false
	}
	// A session belongs to the user who made it: another user taking it over would
	// inherit its subscriptions (stream replays included) and its queued messages, or
	// at least cut its owner off.
	h.mu.Lock()
	if v, ok := h.clients.Load(cl.ID); ok && v.(*clientPrincipal).p.Name() != p.Name() {
		h.mu.Unlock()
		h.refuse(cl, refusedNotAuthorized)
		h.lg.Warn().Str("client", cl.ID).Str("remote", remote).Str("username", p.Name()).
			Str("owner", v.(*clientPrincipal).p.Name()).Msg("mqtt login refused: client id belongs to another user's session")
		return false
	}
	cp := &clientPrincipal{cl: cl, p: p}
	if v, ok := h.clients.Load(cl.ID); ok {
		old := v.(*clientPrincipal)
		cp.prev = &clientPrincipal{cl: old.cl, p: old.p}
	}
	h.clients.Store(cl.ID, cp)
	h.mu.Unlock()
	h.lg.Debug().Str("client", cl.ID).Str("remote", remote).Str("username", p.Name()).Str("method", method).Msg("mqtt login")
	return true
}

// authenticate finds the principal of a CONNECT; method names how, for the log.
func (h *authHook) authenticate(cl *mochi.Client, pk packets.Packet) (auth.Principal, string, bool) {
	user := string(pk.Connect.Username)
	// A certificate verified against client_ca proves its CN; a CONNECT naming another
	// user proves that one with its password instead.
	if cn, ok := peerName(cl.Net.Conn); ok && (user == "" || user == cn) {
		p, ok := h.store.Lookup(cn)
		return p, "certificate", ok
	}
	if pk.Connect.UsernameFlag {
		p, ok := h.store.Authenticate(user, string(pk.Connect.Password))
		return p, "password", ok
	}
	p, ok := h.store.Anonymous()
	return p, "anonymous", ok
}

// tlsConn is a connection that did a TLS handshake (*tls.Conn, or the WebSocket
// adapter over one).
type tlsConn interface{ ConnectionState() tls.ConnectionState }

// peerName is the CN of the connection's verified client certificate. The handshake is
// done: mochi has read the CONNECT through it.
func peerName(c net.Conn) (string, bool) {
	tc, ok := c.(tlsConn)
	if !ok {
		return "", false
	}
	return certs.PeerName(tc.ConnectionState())
}

func (h *authHook) refuse(cl *mochi.Client, r refusal) {
	h.failures.Inc()
	h.refused.Store(cl, r)
}

// OnPacketEncode sets the refusal's own code in the CONNACK. mochi v2.7.9 sends every
// failed authentication as 0x86 "bad user name or password" and maps that to 3.1.1's
// 0x05 "not authorized"; 3.1.1 has 0x04 for bad credentials, and a refused will or
// client id is "not authorized" in both versions.
func (h *authHook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack {
		return pk
	}
	v, ok := h.refused.LoadAndDelete(cl)
	if !ok {
		return pk
	}
	v5 := cl.Properties.ProtocolVersion >= 5
	switch {
	case v.(refusal) == refusedCredentials && !v5:
		pk.ReasonCode = packets.ErrMalformedUsernameOrPassword.Code // 3.1.1: 0x04 bad user name or password
	case v.(refusal) == refusedNotAuthorized && v5:
		pk.ReasonCode = packets.ErrNotAuthorized.Code
		pk.Properties.ReasonString = packets.ErrNotAuthorized.Reason
	case v.(refusal) == refusedNotAuthorized:
		pk.ReasonCode = packets.Err3NotAuthorized.Code
	}
	return pk
}

// principal is the principal a connection authenticated as.
func (h *authHook) principal(cl *mochi.Client) (auth.Principal, bool) {
	if v, ok := h.clients.Load(cl.ID); ok {
		cp := v.(*clientPrincipal)
		if cp.cl == cl {
			return cp.p, true
		}
		if cp.prev != nil && cp.prev.cl == cl {
			return cp.prev.p, true // being taken over: mochi has not swapped it out yet
		}
		return auth.Principal{}, false // taken over by a newer connection
	}
	if cl.Net.Conn == nil && !cl.Net.Inline {
		// An offline session restored from storage after a restart: its connection
		// authenticated as this username before. It gets that user's current grants
		// (none if the user is gone) until it reconnects and logs in again.
		var p auth.Principal
		var ok bool
		if len(cl.Properties.Username) > 0 {
			p, ok = h.store.Lookup(string(cl.Properties.Username))
		} else {
			p, ok = h.store.Anonymous()
		}
		if ok {
			h.clients.LoadOrStore(cl.ID, &clientPrincipal{cl: cl, p: p})
		}
		return p, ok
	}
	return auth.Principal{}, false
}

// OnACLCheck decides publishes (write) and subscriptions and deliveries (read).
//
// A 3.1.1 publish is always let through here and decided in OnPublish: mochi
// disconnects a 3.1.1 client whose QoS 1/2 publish is refused here, where mosquitto
// acknowledges it and drops it, which is what clients expect.
//
// Stream subscriptions (`$stream/...`, `$s/...`) are decided on the stream by the
// replay hook (streamAllowed), never as topic filters, so a grant of `#` does not reach
// them and a deny cannot be sidestepped; by the time mochi asks here, the replay hook
// has already replaced a refused one with an invalid filter.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	p, ok := h.principal(cl)
	if !ok {
		return false
	}
	if write {
		if cl.Properties.ProtocolVersion < 5 {
			return true
		}
		if p.CanPublish(topic) {
			return true
		}
		h.lg.Debug().Str("client", cl.ID).Str("username", p.Name()).Str("topic", topic).Msg("publish not authorized")
		return false
	}
	filter := topic
	if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		// A shared subscription reads what its filter matches: the group name is no
		// part of the grant.
		if _, f, ok := strings.Cut(rest, "/"); ok {
			filter = f
		}
		if isStreamFilter(filter) {
			return false // stream replay is not served to shared subscriptions
		}
	} else if isStreamFilter(filter) {
		return true
	}
	if p.CanSubscribe(filter) {
		return true
	}
	h.lg.Debug().Str("client", cl.ID).Str("username", p.Name()).Str("filter", topic).Msg("subscribe not authorized")
	return false
}

// OnPublish drops a 3.1.1 publish the client may not make: mochi acknowledges it
// (CodeSuccessIgnore) and neither fans it out, retains it nor hands it to the hooks
// after this one, the stream ingest included.
func (h *authHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || cl.Properties.ProtocolVersion >= 5 {
		return pk, nil // MQTT 5 publishes were decided by OnACLCheck
	}
	if p, ok := h.principal(cl); ok && p.CanPublish(pk.TopicName) {
		return pk, nil
	}
	h.lg.Debug().Str("client", cl.ID).Str("topic", pk.TopicName).Msg("publish not authorized, dropped")
	return pk, packets.CodeSuccessIgnore
}

// streamAllowed decides a stream subscription on the stream: read, and for a
// subscription that would create the stream, admin on it and subscribe on the topic
// filter it would capture (reading a stream reads every publish its filter matches).
func (h *authHook) streamAllowed(cl *mochi.Client, stream, filter string, create bool) bool {
	p, ok := h.principal(cl)
	if !ok {
		return false
	}
	allowed := p.CanStream(stream, auth.OpRead)
	if create {
		allowed = allowed && p.CanStream(stream, auth.OpAdmin) && p.CanSubscribe(filter)
	}
	if !allowed {
		h.lg.Debug().Str("client", cl.ID).Str("username", p.Name()).Str("stream", stream).Bool("create", create).
			Msg("stream subscription not authorized")
	}
	return allowed
}

// OnSessionEstablished lets go of the session the connection took over: mochi has
// swapped it out and handed its queue over.
func (h *authHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if v, ok := h.clients.Load(cl.ID); ok {
		if cp := v.(*clientPrincipal); cp.cl == cl && cp.prev != nil {
			h.clients.CompareAndSwap(cl.ID, v, &clientPrincipal{cl: cl, p: cp.p})
		}
	}
}

// OnDisconnect drops the principal of a session that ends with its connection.
func (h *authHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire {
		h.forget(cl)
	}
}

// OnClientExpired drops the principal of an offline session mochi expired.
func (h *authHook) OnClientExpired(cl *mochi.Client) { h.forget(cl) }

func (h *authHook) forget(cl *mochi.Client) {
	if v, ok := h.clients.Load(cl.ID); ok && v.(*clientPrincipal).cl == cl {
		h.clients.CompareAndDelete(cl.ID, v)
	}
}
