// Package mqtt is the MQTT side of mqstreams: an embedded mochi-mqtt v2 broker (MQTT 3.1,
// 3.1.1 and 5) whose publishes that match a stream are appended durably to the stream log
// before they are acknowledged, without serialising a publisher on the log's fsyncs.
package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Config is the MQTT listener configuration.
type Config struct {
	// Addr is the TCP listen address (default ":1883"; "127.0.0.1:0" picks a free port).
	Addr string
	// MaxPacketBytes is the largest MQTT packet accepted (default 1 MiB), advertised in
	// CONNACK; a larger one ends the connection, with DISCONNECT 0x95 on MQTT 5.
	MaxPacketBytes int
	// WSAddr is the MQTT over WebSocket listen address; empty means none.
	WSAddr string
	// Capabilities are advertised in CONNACK and enforced; nil means DefaultCapabilities.
	Capabilities *Capabilities
	// MaxConnections and MaxConnectionsPerIP cap each listener's connections, in all
	// and per remote IP (0: unlimited).
	MaxConnections, MaxConnectionsPerIP int
	// ConnectTimeout closes a connection that has not sent CONNECT (default 10s).
	ConnectTimeout time.Duration
	// PacketTimeout closes a connection whose packet, once begun, has not arrived
	// whole in this time (default 30s).
	PacketTimeout time.Duration
	// MaxQueuedPackets and MaxQueuedBytes cap what waits to be written to one client
	// (defaults 1000 packets, 16 MiB): beyond them a QoS 0 message is dropped for that
	// client and a QoS 1/2 one disconnects it (slowclient.go).
	MaxQueuedPackets int
	MaxQueuedBytes   int64
	// MaxConnectBytes caps the first packet (CONNECT) of a connection (default 64 KiB):
	// mochi allocates a packet's announced size before reading it, so this bounds what
	// a client that has not identified itself can make the server hold.
	MaxConnectBytes int
}

// Default configuration values.
const (
	DefaultAddr           = ":1883"
	DefaultMaxPacketBytes = 1 << 20
)

// Options are what New needs.
type Options struct {
	Config Config
	Log    *log.Log
	// Writer is where publishes are appended: nil means Log (a single node); a cluster
	// passes its replicated writer. Broker state always uses Log.
	Writer log.Writer
	// Reader is where `$stream` replay reads shards: nil means Log (a single node); a
	// cluster passes its reader, which reads a shard this node holds no replica of from
	// a node that holds one.
	Reader log.ShardReader
	// Catalog owns the stream definitions and the router publishes are routed with.
	Catalog *mapping.Catalog
	Logger  zerolog.Logger
	// Registerer receives the MQTT metrics; nil means none are registered.
	Registerer prometheus.Registerer
	// Hooks are further mochi hooks (stream replay, ...), added in order after the
	// authorization hook and before the ingest hook.
	Hooks []mochi.Hook
	// AutoCreate lets a `$stream/<name>/<filter>` subscription create a missing stream.
	AutoCreate AutoCreate
	// Auth decides who connects and what each client may publish, subscribe and
	// replay; nil allows everything (tests of other features).
	Auth *auth.Store
	// TLS, when set, serves MQTT (and MQTT over WebSocket) over TLS only.
	TLS *certs.Source
	// LoginLimiter rate-limits failed logins per remote address (default
	// DefaultLoginFailBurst per DefaultLoginFailWindow).
	LoginLimiter *auth.Limiter
	// Peers are the other nodes of a cluster (routes.go): publishes reach their
	// subscribers too. Nil is a broker alone.
	Peers Peers
}

// Server is the embedded MQTT broker with the stream ingest hook.
type Server struct {
	cfg    Config
	tls    *certs.Source
	lg     zerolog.Logger
	broker *mochi.Server
	ingest *ingestHook
	met    *metrics
	replay *ReplayHook
	deliv  *deliverer
	store  *storeHook
	routes *routes // nil alone

	mu         sync.Mutex
	listener   net.Listener
	wsListener net.Listener
	started    bool
	closed     bool
}

// Listener ids inside mochi.
const (
	listenerID   = "mqtt-tcp"
	wsListenerID = "mqtt-ws"
)

// New builds the broker and its hooks; Start binds and serves.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		return nil, errors.New("mqtt: Options.Log is required")
	}
	if o.Catalog == nil {
		return nil, errors.New("mqtt: Options.Catalog is required")
	}
	cfg := o.Config
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxPacketBytes <= 0 {
		cfg.MaxPacketBytes = DefaultMaxPacketBytes
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.PacketTimeout <= 0 {
		cfg.PacketTimeout = 30 * time.Second
	}
	if cfg.MaxConnectBytes <= 0 {
		cfg.MaxConnectBytes = 64 << 10
	}
	if cfg.MaxQueuedPackets <= 0 {
		cfg.MaxQueuedPackets = 1000
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = 16 << 20
	}
	lg := o.Logger.With().Str("component", "mqtt").Logger()

	ours := DefaultCapabilities()
	if cfg.Capabilities != nil {
		ours = *cfg.Capabilities
	}
	if ours.ReceiveMaximum == 0 || ours.MaximumQoS > 2 {
		return nil, fmt.Errorf("mqtt: receive maximum %d and maximum QoS %d: want at least 1 and at most 2", ours.ReceiveMaximum, ours.MaximumQoS)
	}
	caps := mochi.NewDefaultServerCapabilities()
	ours.apply(caps, cfg.MaxPacketBytes)
	caps.MaximumClientWritesPending = int32(min(cfg.MaxQueuedPackets, math.MaxInt32))
	// mochi's default drops every retained and queued message a day after it was
	// published, whatever its own expiry: a device's retained status must last until
	// it is replaced, so only a message's own expiry interval applies.
	caps.MaximumMessageExpiryInterval = 0
	// Acks echo no publish properties: user properties of a large publish would
	// otherwise be sent back in every PUBACK.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true

	logHandler, logBroker := newClientLogHandler(zerolog.NewSlogHandler(lg.With().Str("lib", "mochi").Logger()))
	broker := mochi.New(&mochi.Options{
		Capabilities: caps,
		// The inline client publishes records produced over Kafka (mochi_inline.go).
		InlineClient: true,
		Logger:       slog.New(quietRefusals{logHandler}),
	})
	logBroker.Store(broker)

	met := newMetrics(broker)
	if o.Registerer != nil {
		if err := met.register(o.Registerer); err != nil {
			return nil, fmt.Errorf("mqtt metrics: %w", err)
		}
	}

	// Hook order matters: authorization (OnACLCheck) is consulted before OnPublish, and
	// the ingest hook must be the last OnPublish so it sees the packet other hooks leave.
	deliv := newDeliverer(broker, o.Catalog.Router(), cfg.MaxPacketBytes, lg)
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{deliv.delivered, deliv.skipped} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("mqtt metrics: %w", err)
			}
		}
	}
	ro := ReplayOptions{Log: o.Log, Reader: o.Reader, Catalog: o.Catalog, AutoCreate: o.AutoCreate, Logger: lg, Broker: broker,
		InvalidTopic:     deliv.skipped.WithLabelValues(skipInvalidTopic).Inc,
		OnRefusedPublish: func() { met.dropped.WithLabelValues("stream_topic").Inc() }}
	authz := newAllowAllHook()
	var ah *authHook
	if o.Auth != nil {
		ah = newAuthHook(o.Auth, o.LoginLimiter, met.loginFailures, lg)
		ro.Authorize = ah.streamAllowed
		authz = ah
	}
	// Before authorization: mochi stops asking OnACLCheck at the first hook that allows.
	if err := broker.AddHook(newSlowClientHook(broker, cfg.MaxQueuedBytes, met, lg), nil); err != nil {
		return nil, fmt.Errorf("mqtt slow-client hook: %w", err)
	}
	if err := broker.AddHook(authz, nil); err != nil {
		return nil, fmt.Errorf("mqtt auth hook: %w", err)
	}
	if err := broker.AddHook(newLimitsHook(ours, cfg.MaxPacketBytes, met), nil); err != nil {
		return nil, fmt.Errorf("mqtt limits hook: %w", err)
	}
	if err := broker.AddHook(&dollarSharedHook{}, nil); err != nil {
		return nil, fmt.Errorf("mqtt dollar-shared hook: %w", err)
	}
	replay, err := NewReplayHook(ro)
	if err != nil {
		return nil, err
	}
	if err := broker.AddHook(replay, nil); err != nil {
		return nil, fmt.Errorf("mqtt replay hook: %w", err)
	}
	store := newStoreHook(o.Log, broker, lg)
	if ah != nil {
		// A restored session still belongs to its user: the auth hook learns the owner
		// before any connection can claim its client id.
		store.onRestored = func(cl *mochi.Client) { ah.principal(cl) }
	}
	if err := broker.AddHook(store, nil); err != nil {
		return nil, fmt.Errorf("mqtt store hook: %w", err)
	}
	for _, hk := range o.Hooks {
		if err := broker.AddHook(hk, nil); err != nil {
			return nil, fmt.Errorf("mqtt hook %s: %w", hk.ID(), err)
		}
	}
	ingest := newIngestHook(broker, writerOf(o), o.Catalog.Router(), lg, met, int(caps.ReceiveMaximum))
	ingest.storeRetained = true
	store.retainedStored = ingest.retainedStored
	if err := broker.AddHook(ingest, nil); err != nil {
		return nil, fmt.Errorf("mqtt ingest hook: %w", err)
	}
	if err := broker.AddHook(deliv, nil); err != nil {
		return nil, fmt.Errorf("mqtt deliver hook: %w", err)
	}
	rt, err := addRoutes(broker, o.Peers, o.Registerer, lg)
	if err != nil {
		return nil, err
	}
	if rt != nil {
		rt.retain = func(pk packets.Packet) { retainQuietly(broker, store.OnRetainMessage, rt.peer, pk) }
		stamps, err := store.storedStamps()
		if err != nil {
			return nil, err
		}
		rt.loadStamps(stamps)
		ingest.complete = rt.pick
	}
	go deliv.run()
	return &Server{cfg: cfg, tls: o.TLS, lg: lg, broker: broker, ingest: ingest, met: met, replay: replay, deliv: deliv, store: store, routes: rt}, nil
}

// DeliverProduced publishes a batch of records produced over Kafka, already durable,
// to the live MQTT subscribers of their topics (deliver.go). It never blocks: batches
// are delivered in the order they are handed over.
func (s *Server) DeliverProduced(p mapping.Produced) {
	s.deliv.enqueue(p)
}

// Start binds the TCP listener and serves; it returns once the listener is bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("mqtt: server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("mqtt listen %s: %w", s.cfg.Addr, err)
	}
	var ws net.Listener
	if s.cfg.WSAddr != "" {
		if ws, err = net.Listen("tcp", s.cfg.WSAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("mqtt websocket listen %s: %w", s.cfg.WSAddr, err)
		}
	}
	closeAll := func() {
		_ = ln.Close()
		if ws != nil {
			_ = ws.Close()
		}
	}
	mqttLn := s.limitListener(ln, listenerID)
	if s.tls != nil {
		mqttLn = tlsLogListener{Listener: s.tls.Listen(ln), lg: s.lg}
	}
	mqttLn = &limitListener{Listener: mqttLn, wrap: s.limitConn}
	if err := s.broker.AddListener(listeners.NewNet(listenerID, mqttLn)); err != nil {
		closeAll()
		return fmt.Errorf("mqtt listener: %w", err)
	}
	if ws != nil {
		wsLn := s.limitListener(ws, wsListenerID)
		if s.tls != nil {
			wsLn = s.tls.Listen(ws)
		}
		wl := newWSListener(wsListenerID, wsLn, s.tls != nil)
		wl.wrap = s.limitConn
		if err := s.broker.AddListener(wl); err != nil {
			closeAll()
			return fmt.Errorf("mqtt websocket listener: %w", err)
		}
	}
	if err := s.broker.Serve(); err != nil {
		closeAll()
		return fmt.Errorf("mqtt serve: %w", err)
	}
	s.listener, s.wsListener = ln, ws
	s.started = true
	s.lg.Info().Str("addr", ln.Addr().String()).Bool("tls", s.tls != nil).Msg("mqtt listening")
	if ws != nil {
		s.lg.Info().Str("addr", ws.Addr().String()).Bool("tls", s.tls != nil).Msg("mqtt websocket listening")
	}
	return nil
}

// WSAddr is the bound MQTT over WebSocket address (nil before Start or without one).
func (s *Server) WSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wsListener == nil {
		return nil
	}
	return s.wsListener.Addr()
}

// Addr is the bound listen address (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Close stops taking new stream publishes, waits until every publish already handed to
// the log is acknowledged (or failed), then closes the listener and every client.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()

	s.ingest.close()
	s.deliv.close()
	if s.routes != nil {
		s.routes.close()
	}
	if !started {
		return nil
	}
	// mochi's own listener closer lists clients with Clients.GetByListener, which
	// takes the clients' read lock twice and deadlocks against a client connecting or
	// disconnecting at that moment (mochi issue #488). Close the listeners first with a
	// closer that reads the list once; mochi's Close then finds them closed. Pending
	// acks were written above, so none is lost to the shutdown.
	s.broker.Listeners.CloseAll(func(id string) {
		for _, cl := range s.broker.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = s.broker.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	if err := s.broker.Close(); err != nil {
		return fmt.Errorf("mqtt close: %w", err)
	}
	return nil
}
