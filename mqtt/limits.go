package mqtt

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// Capabilities are what the broker advertises in an MQTT 5 CONNACK and enforces.
type Capabilities struct {
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have unacknowledged.
	ReceiveMaximum uint16
	// TopicAliasMaximum is the highest topic alias a client may use (0: none).
	TopicAliasMaximum uint16
	// MaximumQoS is the highest QoS granted and delivered (0, 1 or 2).
	MaximumQoS byte
	// RetainAvailable, WildcardSubscriptions and SharedSubscriptions switch retained
	// messages, wildcard filters and `$share/` filters on or off.
	RetainAvailable       bool
	WildcardSubscriptions bool
	SharedSubscriptions   bool
}

// DefaultCapabilities are the capabilities of a broker configured with none.
func DefaultCapabilities() Capabilities {
	return Capabilities{ReceiveMaximum: 1024, TopicAliasMaximum: 65535, MaximumQoS: 2,
		RetainAvailable: true, WildcardSubscriptions: true, SharedSubscriptions: true}
}

func flag(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// apply sets mochi's capabilities from ours.
func (c Capabilities) apply(caps *mochi.Capabilities, maxPacket int) {
	caps.ReceiveMaximum = c.ReceiveMaximum
	caps.TopicAliasMaximum = c.TopicAliasMaximum
	caps.MaximumQos = c.MaximumQoS
	caps.RetainAvailable = flag(c.RetainAvailable)
	caps.WildcardSubAvailable = flag(c.WildcardSubscriptions)
	caps.SharedSubAvailable = flag(c.SharedSubscriptions)
	caps.MaximumPacketSize = uint32(maxPacket)
}

// limitsHook completes what mochi v2.7.9 leaves out of the limits it is configured
// with: its CONNACK advertises only Receive Maximum and a reduced Maximum QoS, and it
// takes Wildcard and Shared Subscription Available as information only. The hook adds
// the other CONNACK properties, refuses the filters switched off with their MQTT 5
// reason codes, and tells the connection wrapper (limitConn) each client's identity.
type limitsHook struct {
	mochi.HookBase
	caps      Capabilities
	maxPacket uint32
	met       *metrics

	mu      sync.Mutex
	refused map[refusedKey][]refusedFilter
}

type refusedKey struct {
	client string
	id     uint16
}

type refusedFilter struct {
	index int
	code  packets.Code
}

func newLimitsHook(caps Capabilities, maxPacket int, met *metrics) *limitsHook {
	return &limitsHook{caps: caps, maxPacket: uint32(maxPacket), met: met, refused: map[refusedKey][]refusedFilter{}}
}

// ID names the hook in mochi's logs.
func (h *limitsHook) ID() string { return "mqstreams-limits" }

// Provides lists the mochi events the hook handles.
func (h *limitsHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnect, mochi.OnSubscribe, mochi.OnPacketEncode, mochi.OnDisconnect:
		return true
	}
	return false
}

// OnConnect gives the connection wrapper the client's id and protocol version, which
// it needs to answer an oversized packet with a DISCONNECT.
func (h *limitsHook) OnConnect(cl *mochi.Client, _ packets.Packet) error {
	if lc, ok := cl.Net.Conn.(*limitConn); ok {
		lc.setClient(cl.ID, cl.Properties.ProtocolVersion)
	}
	return nil
}

// OnSubscribe takes out the filters the configuration switches off (mochi would grant
// them); OnPacketEncode puts their reason codes into the SUBACK.
func (h *limitsHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if h.caps.WildcardSubscriptions && h.caps.SharedSubscriptions {
		return pk
	}
	var refused []refusedFilter
	for i := range pk.Filters {
		f := pk.Filters[i].Filter
		switch {
		case isStreamFilter(f):
		case !h.caps.SharedSubscriptions && mochi.IsSharedFilter(f):
			refused = append(refused, refusedFilter{i, packets.ErrSharedSubscriptionsNotSupported})
		case !h.caps.WildcardSubscriptions && hasWildcard(f):
			refused = append(refused, refusedFilter{i, packets.ErrWildcardSubscriptionsNotSupported})
		default:
			continue
		}
		if len(refused) > 0 && refused[len(refused)-1].index == i {
			pk.Filters[i].Filter = "" // mochi refuses it as invalid and subscribes nothing
		}
	}
	if len(refused) > 0 && cl.Properties.ProtocolVersion == 5 {
		h.mu.Lock()
		h.refused[refusedKey{cl.ID, pk.PacketID}] = refused
		h.mu.Unlock()
	}
	return pk
}

// connackReason names a refused CONNACK's reason code for the refused-connections metric.
func connackReason(cl *mochi.Client, code byte) string {
	if cl.Properties.ProtocolVersion < 5 {
		switch code {
		case 0x01:
			return "protocol_version"
		case 0x02:
			return "client_id"
		case 0x03:
			return "server_unavailable"
		case 0x04:
			return "bad_credentials"
		case 0x05:
			return "not_authorized"
		}
	}
	switch code {
	case packets.ErrBadUsernameOrPassword.Code:
		return "bad_credentials"
	case packets.ErrNotAuthorized.Code:
		return "not_authorized"
	case packets.ErrServerBusy.Code, packets.ErrServerUnavailable.Code:
		return "server_busy"
	case packets.ErrClientIdentifierNotValid.Code:
		return "client_id"
	case packets.ErrUnsupportedProtocolVersion.Code:
		return "protocol_version"
	}
	return "other"
}

func hasWildcard(f string) bool {
	for i := 0; i < len(f); i++ {
		if f[i] == '+' || f[i] == '#' {
			return true
		}
	}
	return false
}

// OnPacketEncode completes a successful MQTT 5 CONNACK with the capabilities and a
// SUBACK with the reason codes of refused filters.
func (h *limitsHook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode != 0 {
			h.met.refused.WithLabelValues(connackReason(cl, pk.ReasonCode)).Inc()
			return pk
		}
		if cl.Properties.ProtocolVersion != 5 {
			return pk
		}
		p := &pk.Properties
		p.MaximumPacketSize = h.maxPacket
		p.ReceiveMaximum = h.caps.ReceiveMaximum
		p.TopicAliasMaximum = h.caps.TopicAliasMaximum
		p.MaximumQos, p.MaximumQosFlag = h.caps.MaximumQoS, h.caps.MaximumQoS < 2
		p.RetainAvailable, p.RetainAvailableFlag = flag(h.caps.RetainAvailable), !h.caps.RetainAvailable
		p.WildcardSubAvailable, p.WildcardSubAvailableFlag = flag(h.caps.WildcardSubscriptions), !h.caps.WildcardSubscriptions
		p.SharedSubAvailable, p.SharedSubAvailableFlag = flag(h.caps.SharedSubscriptions), !h.caps.SharedSubscriptions
	case packets.Suback:
		k := refusedKey{cl.ID, pk.PacketID}
		h.mu.Lock()
		refused, ok := h.refused[k]
		delete(h.refused, k)
		h.mu.Unlock()
		if !ok {
			return pk
		}
		codes := append([]byte(nil), pk.ReasonCodes...)
		for _, r := range refused {
			if r.index < len(codes) {
				codes[r.index] = r.code.Code
				pk.Properties.ReasonString = r.code.Reason
			}
		}
		pk.ReasonCodes = codes
	}
	return pk
}

// OnDisconnect forgets refusals of a SUBSCRIBE whose SUBACK was never sent.
func (h *limitsHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.mu.Lock()
	for k := range h.refused {
		if k.client == cl.ID {
			delete(h.refused, k)
		}
	}
	h.mu.Unlock()
}

// limitListener wraps a listener so every connection is a limitConn.
type limitListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

// Accept wraps the next connection.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// limitConn wraps a client connection (TCP, TLS or WebSocket) in a limitConn.
func (s *Server) limitConn(c net.Conn) net.Conn {
	lc := &limitConn{Conn: c, maxPacket: uint32(s.cfg.MaxPacketBytes), lg: s.lg, oversized: s.met.packetTooLarge,
		connectBy: time.Now().Add(s.cfg.ConnectTimeout), connectTimeout: s.cfg.ConnectTimeout, packetTimeout: s.cfg.PacketTimeout,
		timedOut: func(reason string) { s.met.refused.WithLabelValues(reason).Inc() }, maxConnect: s.cfg.MaxConnectBytes, first: true,
		quickAck: quickAcker(c)}
	return lc
}

// limitConn follows the MQTT framing of what mochi reads, to answer a packet over the
// maximum size with DISCONNECT 0x95 on MQTT 5 before the connection closes: mochi
// v2.7.9 refuses such a packet as soon as it has read its fixed header (the limit test
// is remaining length + 1 > maximum, repeated here) and closes the connection without
// a word. Writes are serialised so the DISCONNECT never splits a packet mochi writes.
type limitConn struct {
	net.Conn
	maxPacket uint32
	lg        zerolog.Logger
	oversized func()

	// read side, on mochi's read goroutine only
	state     int // 0: header byte, 1: remaining length, 2: body
	remaining uint64
	mult      uint64
	lenBytes  int
	tooLarge  atomic.Bool

	wmu      sync.Mutex
	closed   bool
	corked   int          // cork calls not yet matched by uncork (under wmu)
	wbuf     []byte       // what corked writes hold back (under wmu)
	wErr     error        // a held-back write's failure, returned by the next write
	quickAck func()       // after an uncork's write: acknowledge the client's next segment at once
	writes   atomic.Int64 // writes to the connection (tests count the acknowledgement writes)
	clientID atomic.Pointer[string]
	v5       atomic.Bool

	// Timeouts (timeouts.go): mochi v2.7.9 reads CONNECT with no deadline and then
	// sets only its keep-alive one; the read deadline applied is the earliest of
	// mochi's, the CONNECT timeout (until mochi sets its own) and, inside a packet,
	// the packet timeout.
	dlMu           sync.Mutex
	connectBy      time.Time // zero once mochi set its own deadline
	connectTimeout time.Duration
	packetTimeout  time.Duration
	pktStart       time.Time // first byte of the packet being read
	mochiDL        time.Time
	applied        time.Time
	appliedSet     bool
	timedOut       func(reason string)
	maxConnect     int

	// The body of an MQTT 5 SUBSCRIBE being read, checked before mochi decodes it.
	ptype   byte
	collect bool
	body    []byte
	// first is true while the first packet (CONNECT) is read; pos and nameLen find
	// its protocol version.
	first        bool
	pos, nameLen int
}

func (c *limitConn) setClient(id string, version byte) {
	c.clientID.Store(&id)
	c.v5.Store(version == 5)
}

// Read passes bytes on, following packet boundaries.
func (c *limitConn) Read(p []byte) (int, error) {
	reason := c.armDeadline()
	n, err := c.Conn.Read(p)
	if err != nil && reason != "" {
		c.reportTimeout(reason, err)
	}
	started := false
	startIdx := 0 // where the packet being parsed began in p (0: in an earlier read)
	for i, b := range p[:n] {
		switch c.state {
		case 0:
			started = true
			startIdx = i
			c.state, c.remaining, c.mult, c.lenBytes = 1, 0, 1, 0
			c.ptype = b >> 4
		case 1:
			c.remaining += uint64(b&0x7f) * c.mult
			c.mult *= 128
			c.lenBytes++
			if b&0x80 != 0 && c.lenBytes < 4 {
				continue
			}
			if c.maxPacket > 0 && c.remaining+1 > uint64(c.maxPacket) {
				c.tooLarge.Store(true)
			}
			if c.maxConnect > 0 && c.remaining > uint64(c.maxConnect) && c.beforeConnect() {
				// mochi v2.7.9 allocates a packet's announced length before reading
				// it: a client not yet identified may not make it allocate more than
				// max_connect_bytes. The packet's header never reaches mochi.
				c.refuseConnect()
				return startIdx, errConnectTooLarge
			}
			c.state = 2
			c.collect = c.ptype == packets.Subscribe && c.v5.Load() && c.remaining <= uint64(max(c.maxPacket, 1<<16))
			c.body = c.body[:0]
			if c.remaining == 0 {
				c.state = 0
			}
		case 2:
			if c.collect {
				c.body = append(c.body, b)
			}
			if c.first {
				// CONNECT: protocol name length (2 bytes), name, then the version;
				// needed before OnConnect when packets follow in the same read.
				switch {
				case c.pos < 2:
					c.nameLen = c.nameLen<<8 | int(b)
				case c.pos == 2+c.nameLen:
					c.v5.Store(b == 5)
				}
				c.pos++
			}
			if c.remaining--; c.remaining == 0 {
				c.state = 0
				c.first = false
				if c.collect && !subscribeDecodable(c.body) {
					// The packet's last byte never reaches mochi: its read fails and
					// the connection ends the ordinary way (timeouts.go).
					c.refuseMalformed()
					return i, errMalformedSubscribe
				}
			}
		}
	}
	if started && c.state != 0 {
		c.dlMu.Lock()
		c.pktStart = time.Now()
		c.dlMu.Unlock()
	}
	return n, err
}

// ConnectionState is the TLS state of the wrapped connection (empty for plain TCP), so
// the auth hook still finds a client certificate through the wrapper.
func (c *limitConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Write writes one packet (mochi writes whole packets); while corked it holds the packet
// back for the uncork's single write.
func (c *limitConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wErr != nil {
		return 0, c.wErr
	}
	if c.corked > 0 && len(c.wbuf)+len(p) <= maxCorkBytes {
		c.wbuf = append(c.wbuf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// maxCorkBytes bounds what a cork holds back before writing anyway.
const maxCorkBytes = 64 << 10

// cork holds writes back until the matching uncork, which writes them in one system
// call: the acknowledgements of a group of publishes made durable together (ack.go)
// leave in one TCP write instead of one each.
func (c *limitConn) cork() {
	c.wmu.Lock()
	c.corked++
	c.wmu.Unlock()
}

// uncork ends a cork; the last one writes what was held back, then asks for the
// client's answer to be acknowledged at once (quickack_linux.go).
func (c *limitConn) uncork() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked--; c.corked == 0 && len(c.wbuf) > 0 {
		if c.flushLocked() == nil && c.quickAck != nil {
			c.quickAck()
		}
	}
}

func (c *limitConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	c.writes.Add(1)
	_, err := c.Conn.Write(c.wbuf)
	if cap(c.wbuf) > maxCorkBytes {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		c.wErr = err
	}
	return err
}

// disconnectTooLarge is DISCONNECT with reason 0x95 (packet too large) and no properties.
var disconnectTooLarge = []byte{0xE0, 0x02, packets.ErrPacketTooLarge.Code, 0x00}

// Close sends DISCONNECT 0x95 first when the connection ends over an oversized packet.
//
// A write blocked on a client that stopped reading holds the write lock: Close then
// closes the connection without the DISCONNECT (which could not be written anyway), so
// it never waits on a slow consumer.
func (c *limitConn) Close() error {
	if !c.wmu.TryLock() {
		return c.Conn.Close()
	}
	first := !c.closed
	c.closed = true
	if first && c.tooLarge.Load() {
		ev := c.lg.Warn().Str("remote", c.RemoteAddr().String()).Uint32("max_packet_bytes", c.maxPacket)
		if id := c.clientID.Load(); id != nil {
			ev = ev.Str("client", *id)
		}
		ev.Msg("packet over the maximum size: connection closed")
		if c.oversized != nil {
			c.oversized()
		}
		if c.v5.Load() {
			_, _ = c.Conn.Write(disconnectTooLarge)
		}
	}
	c.wmu.Unlock()
	return c.Conn.Close()
}
