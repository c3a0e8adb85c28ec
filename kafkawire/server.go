// Package kafkawire is the Kafka broker of mqstreams: it serves the streams of the log
// as topics (one partition per shard) over the Kafka wire protocol, decoding every
// request and encoding every response with franz-go's kmsg.
package kafkawire

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/netlimit"
)

// Config is the Kafka listener's configuration.
type Config struct {
	// Addr is the address to listen on (default ":9092"); "127.0.0.1:0" picks a port.
	Addr string
	// AdvertisedAddr is the host:port given to clients in Metadata; empty means the
	// bound address, with "localhost" for an unspecified host (0.0.0.0 or ::).
	AdvertisedAddr string
	// MaxRequestBytes is the largest request frame accepted (socket.request.max.bytes,
	// default 100 MiB); a larger one closes the connection.
	MaxRequestBytes int32
	// SecurityProtocol is the listener's protocol as Kafka names it: plaintext, ssl,
	// sasl_plaintext or sasl_ssl (default plaintext).
	SecurityProtocol string
	// SessionLifetime bounds an authenticated SASL session (KIP-368); 0 means none.
	SessionLifetime time.Duration
	// ProducerExpiration drops idempotent producer state idle this long (default
	// DefaultProducerExpiration, 7 days).
	ProducerExpiration time.Duration
	// QueuedMaxRequestBytes is the server-wide budget of request bytes read but not
	// yet handled, inflated records included (Kafka's queued.max.request.bytes;
	// default 128 MiB, at least MaxRequestBytes).
	QueuedMaxRequestBytes int64
	// MaxConnections caps the listener's connections (default 1000); MaxConnectionsPerIP
	// those from one remote IP (default 256). Negative means unlimited.
	MaxConnections, MaxConnectionsPerIP int
	// FrameTimeout is how long a request frame may take to arrive once its first byte
	// has (default 30s): the slowloris bound.
	FrameTimeout time.Duration
	// MaxFetchPartitions caps the partitions one Fetch may name (default 10000);
	// MaxMetadataTopics the topics one Metadata may name (default 10000).
	MaxFetchPartitions, MaxMetadataTopics int
	// TransactionMaxTimeout bounds the timeout a transactional producer may ask for
	// (Kafka's transaction.max.timeout.ms; default DefaultTransactionMaxTimeout).
	TransactionMaxTimeout time.Duration
}

// Options are what New needs.
type Options struct {
	Config     Config
	Log        *log.Log
	Logger     zerolog.Logger
	Registerer prometheus.Registerer // may be nil
	// Auth authenticates SASL clients and authorizes every request; nil allows
	// everything (tests of other features).
	Auth *auth.Store
	// TLS serves the listener over TLS (security protocols ssl and sasl_ssl).
	TLS *certs.Source
	// Deliver receives every produced batch once durable, in commit order, to publish
	// it to MQTT subscribers (deliver.go); nil delivers nothing. It must not block.
	Deliver func(mapping.Produced)
	// Catalog owns the stream definitions: the admin APIs change topics through it and
	// DescribeConfigs reads typed definitions from it. Nil opens one on Log (tests).
	Catalog Catalog
	// Cluster names the nodes, partition leaders and group coordinators (cluster.go);
	// nil is a server alone, node 0, leading and coordinating everything.
	Cluster Cluster
	// Writer is where Produce appends: nil means Log (a single node); a cluster passes
	// its replicated writer. Fetch and the other APIs read Log.
	Writer log.Writer
	// Offsets stores OffsetCommit's offsets: nil means Log; a cluster replicates them.
	Offsets OffsetStore
}

// Catalog is what the Kafka broker asks of the stream catalog (mapping.Catalog).
type Catalog interface {
	Definition(name string) (mapping.Definition, bool)
	Create(d mapping.Definition, needFilter bool) (mapping.Definition, error)
	Update(name string, change func(mapping.Definition) (mapping.Definition, error)) (mapping.Definition, error)
	Delete(name string) error
}

// Server is the Kafka broker: one node (alone, node 0), every stream a topic, every
// shard a partition.
type Server struct {
	cfg     Config
	log     *log.Log
	writer  log.Writer // Produce appends here (Options.Writer or log)
	cat     Catalog
	lg      zerolog.Logger
	metrics *metrics
	coord   *coordinator
	// producers gives out producer ids and dedupes idempotent produces.
	producers *producers
	txns      *txns
	deliver   func(mapping.Produced)

	clusterID string
	// cluster answers who leads and coordinates what; clustered is false for a server
	// alone, whose requests skip the placement checks.
	cluster   Cluster
	clustered bool

	// proto is the listener's security protocol (security.go); auth and tls its user
	// store (nil allows everything) and certificates (nil without TLS).
	proto   string
	auth    *auth.Store
	tls     *certs.Source
	limiter *auth.Limiter
	budget  *requestBudget

	ln        net.Listener
	advHost   string
	advPort   int32
	done      chan struct{} // closed by Close: ends long polls and connections
	closeOnce sync.Once

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

const defaultMaxRequestBytes = 100 << 20

// nodeID is this broker's id in Metadata, DescribeCluster and as every partition's leader.
const nodeID int32 = 0

// New checks the options and prepares a server; Start binds it.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		return nil, errors.New("kafkawire: no log")
	}
	cfg := o.Config
	if cfg.Addr == "" {
		cfg.Addr = ":9092"
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = defaultMaxRequestBytes
	}
	if cfg.QueuedMaxRequestBytes <= 0 {
		cfg.QueuedMaxRequestBytes = 128 << 20
	}
	cfg.QueuedMaxRequestBytes = max(cfg.QueuedMaxRequestBytes, int64(cfg.MaxRequestBytes))
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 1000
	}
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = 256
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = 30 * time.Second
	}
	if cfg.MaxFetchPartitions <= 0 {
		cfg.MaxFetchPartitions = 10000
	}
	if cfg.MaxMetadataTopics <= 0 {
		cfg.MaxMetadataTopics = 10000
	}
	if cfg.AdvertisedAddr != "" {
		if _, _, err := splitHostPort(cfg.AdvertisedAddr); err != nil {
			return nil, fmt.Errorf("kafkawire: advertised address: %w", err)
		}
	}
	proto, err := checkSecurity(o)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kafkawire: metrics: %w", err)
	}
	id, err := loadClusterID(o.Log.Dir())
	if err != nil {
		return nil, fmt.Errorf("kafkawire: cluster id: %w", err)
	}
	cat := o.Catalog
	if cat == nil {
		if cat, err = mapping.OpenCatalog(o.Log); err != nil {
			return nil, fmt.Errorf("kafkawire: %w", err)
		}
	}
	lg := o.Logger.With().Str("component", "kafka").Logger()
	prods, err := newProducers(o.Log, cfg.ProducerExpiration, time.Now, lg)
	if err != nil {
		return nil, fmt.Errorf("kafkawire: %w", err)
	}
	srv := &Server{
		cfg:       cfg,
		log:       o.Log,
		writer:    writerOf(o),
		cat:       cat,
		lg:        lg,
		metrics:   m,
		coord:     newCoordinator(o.Log, lg, defaultCoordinatorConfig()).storing(o.Offsets),
		producers: prods,
		deliver:   o.Deliver,
		clusterID: id,
		proto:     proto,
		auth:      o.Auth,
		tls:       o.TLS,
		limiter:   auth.NewLimiter(loginFailBurst, loginFailWindow),
		done:      make(chan struct{}),
		conns:     map[*conn]struct{}{},
		budget:    newRequestBudget(cfg.QueuedMaxRequestBytes),
		cluster:   o.Cluster,
		clustered: o.Cluster != nil,
	}
	if srv.cluster == nil {
		srv.cluster = singleNode{srv}
	} else if err := prods.joinCluster(srv.cluster.Self()); err != nil {
		return nil, fmt.Errorf("kafkawire: %w", err)
	}
	if srv.txns, err = newTxns(srv, cfg.TransactionMaxTimeout, cfg.ProducerExpiration, lg); err != nil {
		return nil, fmt.Errorf("kafkawire: %w", err)
	}
	return srv, nil
}

// Start binds the listener and serves connections in the background; it returns once
// the address is bound.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kafka listen %s: %w", s.cfg.Addr, err)
	}
	adv := s.cfg.AdvertisedAddr
	if adv == "" {
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "localhost"
		}
		adv = net.JoinHostPort(host, port)
	}
	s.advHost, s.advPort, err = splitHostPort(adv)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("kafka advertised address %s: %w", adv, err)
	}
	lim := netlimit.Limits{MaxConns: max(s.cfg.MaxConnections, 0), MaxPerIP: max(s.cfg.MaxConnectionsPerIP, 0)}
	ln = netlimit.Wrap(ln, lim, func(reason string, remote net.Addr) {
		s.metrics.refusedConn(reason)
		s.lg.Warn().Str("remote", remote.String()).Str("reason", reason).Msg("kafka connection refused")
	})
	s.ln = s.listen(ln)
	s.txns.start()
	s.wg.Add(1)
	go s.accept()
	s.lg.Info().Str("addr", ln.Addr().String()).Str("advertised", adv).Str("cluster_id", s.clusterID).Str("security_protocol", s.proto).Msg("kafka listening")
	return nil
}

// Addr is the bound address (nil before Start).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, ends every connection (and its long poll) and waits for them.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ln != nil {
			err = s.ln.Close()
		}
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		if s.ln != nil {
			s.txns.close()
		}
		s.coord.close()
	})
	if err != nil {
		return fmt.Errorf("kafka close: %w", err)
	}
	return nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.lg.Error().Err(err).Msg("kafka accept")
			return
		}
		c := newConn(s, nc)
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			_ = nc.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.metrics.connOpened()
			defer s.metrics.connClosed()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func splitHostPort(addr string) (string, int32, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	if host == "" {
		host = "localhost"
	}
	return host, int32(port), nil
}

// clusterIDFile holds the cluster id beside the log's data so it survives restarts and
// belongs to the data, as Kafka's meta.properties does.
const clusterIDFile = "kafka-cluster-id"

// loadClusterID reads the data dir's cluster id, creating one on first use. A log
// without a directory gets a fresh id per process.
func loadClusterID(dir string) (string, error) {
	if dir == "" {
		return newClusterID(), nil
	}
	path := filepath.Join(dir, clusterIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := newClusterID()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return id, nil
}

// newClusterID makes a Kafka-style cluster id: a random UUID in URL-safe base64.
func newClusterID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return base64.RawURLEncoding.EncodeToString(u[:])
}

// topicID derives a stream's Kafka topic id from the cluster id and the stream's
// internal id, which is never reused within a data dir: stable across restarts, and
// different for a stream deleted and created again under the same name.
func (s *Server) topicID(st *log.Stream) [16]byte {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%s", s.clusterID, st.ID(), st.Name()))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x50 // name-based UUID, never the zero id
	u[8] = u[8]&0x3f | 0x80
	return u
}

// streamByTopicID resolves a v10+/v13+ topic id to a live stream, or nil.
func (s *Server) streamByTopicID(id [16]byte) *log.Stream {
	for _, st := range s.log.Streams() {
		if s.topicID(st) == id {
			return st
		}
	}
	return nil
}

// stream returns the live stream for a topic name, or nil.
func (s *Server) stream(topic string) *log.Stream {
	st := s.log.Stream(topic)
	if st == nil || st.Deleted() {
		return nil
	}
	return st
}

// advertised is the host:port clients are told to connect to.
func (s *Server) advertised() string {
	return net.JoinHostPort(s.advHost, strconv.Itoa(int(s.advPort)))
}
