package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/cluster"
	"github.com/mqstreams/mqstreams/kafkawire"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt"
)

// shutdownTimeout bounds a graceful stop; past it the process exits non-zero.
const shutdownTimeout = 10 * time.Second

// serveCmd is "mqstreams serve": flags override the config file.
type serveCmd struct {
	Config              string `help:"YAML config file (default: the embedded default)." placeholder:"FILE"`
	DataDir             string `help:"Data directory (default ./data)." placeholder:"DIR"`
	MQTTAddr            string `name:"mqtt-addr" help:"MQTT listen address (default :1883)." placeholder:"ADDR"`
	KafkaAddr           string `help:"Kafka listen address (default :9092)." placeholder:"ADDR"`
	HTTPAddr            string `name:"http-addr" help:"HTTP listen address for health, metrics and the admin API (default :8080)." placeholder:"ADDR"`
	AdvertisedKafkaAddr string `help:"host:port Kafka clients are told to connect to." placeholder:"HOST:PORT"`
	NodeID              uint64 `name:"node-id" help:"Cluster node id (the cluster section's node_id)." placeholder:"ID"`
	RaftAddr            string `name:"raft-addr" help:"Cluster link listen address (cluster.raft_addr)." placeholder:"HOST:PORT"`
	Peers               string `name:"peers" help:"Cluster peers as id=host:port,... (cluster.peers)." placeholder:"PEERS"`
	LogLevel            string `default:"info" enum:"trace,debug,info,warn,error" help:"Log level: trace, debug, info, warn, error."`
	LogFormat           string `default:"" enum:",json,console" help:"Log format: json or console (default: console on a terminal, else json)."`
}

// Run serves until a signal; its exit code is returned as an exitCode error.
func (c serveCmd) Run(e env) error {
	o := Overrides{ConfigFile: c.Config, DataDir: c.DataDir, MQTTAddr: c.MQTTAddr, KafkaAddr: c.KafkaAddr, HTTPAddr: c.HTTPAddr, AdvertisedAddr: c.AdvertisedKafkaAddr,
		Cluster: clusterFlags{NodeID: c.NodeID, RaftAddr: c.RaftAddr, Peers: c.Peers}}
	if code := serve(o, c.LogLevel, c.LogFormat, e.stderr); code != 0 {
		return exitCode(code)
	}
	return nil
}

// serve runs the server until SIGINT/SIGTERM and returns the exit code.
func serve(o Overrides, level, format string, stderr io.Writer) int {
	lg, err := newLogger(stderr, level, format)
	if err != nil {
		fmt.Fprintf(stderr, "mqstreams serve: %v\n", err)
		return 2
	}
	cfg, err := LoadConfig(o)
	if err != nil {
		lg.Error().Msg(err.Error())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logMallocTuning(lg)
	s, err := startServer(cfg, lg)
	if err != nil {
		lg.Error().Msg(err.Error())
		return 1
	}
	applyMemoryLimit(ctx, int64(cfg.MemoryLimit), int64(cfg.AppendQueueBytes), s.log.QueuedBytes, lg)
	if !s.awaitClusterReady(ctx) {
		lg.Info().Msg("signal received before the cluster was ready, shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.Close(sctx); err != nil {
			lg.Error().Err(err).Msg("shutdown")
			return 1
		}
		return 0
	}
	ready := lg.Info().
		Str("version", version).
		Str("data_dir", cfg.DataDir).
		Str("mqtt_addr", s.mqtt.Addr().String())
	if ws := s.mqtt.WSAddr(); ws != nil {
		ready = ready.Str("mqtt_ws_addr", ws.String())
	}
	ready.Str("kafka_addr", s.kafka.Addr().String()).
		Str("http_addr", s.http.Addr().String()).
		Msg("ready")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	code := 0
	for running := true; running; {
		select {
		case <-hup:
			// New handshakes take the new certificates; open connections keep theirs.
			lg.Info().Msg("SIGHUP: reloading TLS certificates")
			s.tls.reload(lg)
		case <-ctx.Done():
			lg.Info().Msg("signal received, shutting down")
			running = false
		case <-s.http.Done():
			lg.Error().Err(s.http.Err()).Msg("http server stopped, shutting down")
			code = 1
			running = false
		}
	}
	// A second signal now kills the process the default way: an impatient operator wins.
	stop()
	watchdog := time.AfterFunc(shutdownTimeout, func() {
		lg.Error().Dur("timeout", shutdownTimeout).Msg("shutdown did not finish in time, exiting")
		os.Exit(1)
	})
	defer watchdog.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.Close(sctx); err != nil {
		lg.Error().Err(err).Msg("shutdown")
		return 1
	}
	lg.Info().Msg("stopped")
	return code
}

// server is the running process: the log and the three listeners around it.
type server struct {
	lg      zerolog.Logger
	log     *log.Log
	auth    *auth.Store
	tls     tlsSources
	streams *mapping.Catalog
	node    *cluster.Node // nil alone (cluster.go)
	mqtt    *mqtt.Server
	kafka   *kafkawire.Server
	http    *httpServer

	// started is closed when startServer is done; clusterReady when a cluster node
	// is also ready (cluster.go).
	started      chan struct{}
	clusterReady chan struct{}
}

// startServer opens the log, applies the configured streams and binds every listener.
// On error everything already started is closed again.
func startServer(cfg Config, lg zerolog.Logger) (_ *server, err error) {
	s := &server{lg: lg}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if cerr := s.Close(ctx); cerr != nil {
				lg.Warn().Err(cerr).Msg("cleanup after failed start")
			}
		}
	}()

	reg := newRegistry()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mqstreams_build_info",
		Help:        "Always 1; the version label tells which build runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	reg.MustRegister(buildInfo)
	metrics := newLogMetrics()
	if err := metrics.register(reg); err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}

	if s.tls, err = loadTLS(cfg); err != nil {
		return s, err
	}
	// The log opens before any listener binds: whether the server may listen beyond
	// loopback depends on the users stored in it.
	if s.log, err = openLogOptions(log.Options{
		Dir:          cfg.DataDir,
		Logger:       lg.With().Str("component", "log").Logger(),
		Observer:     metrics,
		MinFreeBytes: minFreeBytes(int64(cfg.Storage.MinFreeBytes)),
		Durability:   cfg.Durability,
		SyncInterval: time.Duration(cfg.SyncInterval),
		QueueBytes:   int64(cfg.AppendQueueBytes),
		CacheBytes:   int64(cfg.Storage.CacheBytes),
	}); err != nil {
		return s, err
	}
	reg.MustRegister(newStorageCollector(s.log))
	reg.MustRegister(newShardCollector(s.log))
	if s.auth, err = newAuthStore(cfg, s.log, lg); err != nil {
		return s, err
	}
	if err := openModeAddrs(&cfg, s.auth.Open(), lg); err != nil {
		return s, err
	}

	httpLog := lg.With().Str("component", "http").Logger()
	guard := newAPIAuth(s.auth, httpLog)
	if s.http, err = newHTTPServer(cfg.HTTP.Addr, s.tls.http, reg, guard, cfg.HTTP.MetricsAuth, httpLog); err != nil {
		return s, err
	}
	s.http.setTimeouts(time.Duration(cfg.HTTP.ReadTimeoutMS)*time.Millisecond, time.Duration(cfg.HTTP.IdleTimeoutMS)*time.Millisecond, reg)
	s.http.SetHealth(func() (bool, string) {
		h := s.log.Health()
		return h.Writable, h.Reason
	})
	usersAPI{store: s.auth}.register(s.http, guard)
	s.http.Start()

	if s.streams, err = mapping.OpenCatalog(s.log); err != nil {
		return s, err
	}
	if err := s.startCluster(cfg); err != nil {
		return s, err
	}
	if err := s.applyConfigStreams(cfg); err != nil {
		return s, err
	}
	streamsAPI{cat: s.streams, lg: httpLog}.register(s.http, guard)
	for _, d := range s.streams.Definitions() {
		lg.Info().Str("stream", d.Name).Strs("filters", d.Filters).Int32("shards", d.Shards).Str("key", d.Key).Msg("stream")
	}

	// MQTT is built first (not started) so the Kafka side can hand it produced records.
	if s.mqtt, err = mqtt.New(mqtt.Options{
		Config: mqtt.Config{
			Addr:           cfg.MQTT.Addr,
			MaxPacketBytes: int(cfg.MQTT.MaxPacketBytes),
			WSAddr:         cfg.MQTT.WSAddr,
			Capabilities: &mqtt.Capabilities{
				ReceiveMaximum:        uint16(cfg.MQTT.ReceiveMaximum),
				TopicAliasMaximum:     uint16(cfg.MQTT.TopicAliasMaximum),
				MaximumQoS:            byte(cfg.MQTT.MaximumQoS),
				RetainAvailable:       cfg.MQTT.RetainAvailable,
				WildcardSubscriptions: cfg.MQTT.WildcardSubscriptions,
				SharedSubscriptions:   cfg.MQTT.SharedSubscriptions,
			},
			MaxConnections:      int(cfg.MQTT.MaxConnections),
			MaxConnectionsPerIP: int(cfg.MQTT.MaxConnectionsPerIP),
			ConnectTimeout:      time.Duration(cfg.MQTT.ConnectTimeoutMS) * time.Millisecond,
			PacketTimeout:       time.Duration(cfg.MQTT.PacketTimeoutMS) * time.Millisecond,
			MaxQueuedPackets:    int(cfg.MQTT.MaxQueuedPackets),
			MaxQueuedBytes:      int64(cfg.MQTT.MaxQueuedBytes),
			MaxConnectBytes:     int(cfg.MQTT.MaxConnectBytes),
		},
		Auth:       s.auth,
		TLS:        s.tls.mqtt,
		Log:        s.log,
		Writer:     s.writer(),
		Reader:     s.shardReader(),
		Peers:      s.mqttPeers(),
		Catalog:    s.streams,
		AutoCreate: mqtt.AutoCreate{Enabled: cfg.AutoCreate.Enabled, Shards: cfg.AutoCreate.Shards},
		Logger:     lg.With().Str("proto", "mqtt").Logger(),
		Registerer: reg,
	}); err != nil {
		return s, err
	}
	broker := s.mqtt
	if s.kafka, err = kafkawire.New(kafkawire.Options{
		Config: kafkawire.Config{
			Addr:                  cfg.Kafka.Addr,
			AdvertisedAddr:        cfg.Kafka.AdvertisedAddr,
			MaxRequestBytes:       int32(cfg.Kafka.MaxRequestBytes),
			SecurityProtocol:      cfg.Kafka.SecurityProtocol,
			SessionLifetime:       time.Duration(cfg.Kafka.SessionLifetimeMS) * time.Millisecond,
			ProducerExpiration:    time.Duration(cfg.Kafka.ProducerIDExpirationMS) * time.Millisecond,
			TransactionMaxTimeout: time.Duration(cfg.Kafka.TransactionMaxTimeoutMS) * time.Millisecond,

			QueuedMaxRequestBytes: int64(cfg.Kafka.QueuedMaxRequestBytes),
			MaxConnections:        unlimitedIfZero(cfg.Kafka.MaxConnections),
			MaxConnectionsPerIP:   unlimitedIfZero(cfg.Kafka.MaxConnectionsPerIP),
			FrameTimeout:          time.Duration(cfg.Kafka.FrameTimeoutMS) * time.Millisecond,
			MaxFetchPartitions:    int(cfg.Kafka.MaxFetchPartitions),
			MaxMetadataTopics:     int(cfg.Kafka.MaxMetadataTopics),
		},
		Auth: s.auth,
		TLS:  s.tls.kafka,
		Deliver: func(p mapping.Produced) {
			broker.DeliverProduced(p)
		},
		Log:        s.log,
		Writer:     s.writer(),
		Offsets:    s.offsetStore(),
		Cluster:    s.kafkaCluster(),
		Catalog:    s.streams,
		Logger:     lg.With().Str("proto", "kafka").Logger(),
		Registerer: reg,
	}); err != nil {
		return s, err
	}
	if err := s.kafka.Start(); err != nil {
		s.kafka = nil
		return s, err
	}
	reg.MustRegister(newGroupLagCollector(s.kafka.GroupLags))
	s.http.Handle("GET /api/v1/groups", guard.require(readAny, groupsHandler(s.kafka.GroupLags)))
	groupsAPI{groups: s.kafka, lg: httpLog}.register(s.http, guard)
	clusterAPI{log: s.log, cluster: s.clusterStatus()}.register(s.http, guard)
	s.handlePeers()

	if err := s.mqtt.Start(); err != nil {
		s.mqtt = nil
		return s, err
	}
	s.advertiseCluster(cfg)

	s.setReady()
	return s, nil
}

// openLog opens the data dir, turning Pebble's lock error into an operator's message.
func openLog(dir string, lg zerolog.Logger, obs log.Observer) (*log.Log, error) {
	return openLogWith(dir, lg, obs, 0)
}

// unlimitedIfZero maps the config's 0 (unlimited) to the packages' negative.
func unlimitedIfZero(v int64) int {
	if v == 0 {
		return -1
	}
	return int(v)
}

// minFreeBytes maps storage.min_free_bytes 0 (guard off) to log.Options' negative.
func minFreeBytes(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}

// openLogWith is openLog with the free-space threshold (log.Options.MinFreeBytes).
func openLogWith(dir string, lg zerolog.Logger, obs log.Observer, minFree int64) (*log.Log, error) {
	return openLogOptions(log.Options{
		Dir:          dir,
		Logger:       lg.With().Str("component", "log").Logger(),
		Observer:     obs,
		MinFreeBytes: minFree,
	})
}

// openLogOptions opens the log with every option (durability, queue bound) given.
func openLogOptions(o log.Options) (*log.Log, error) {
	dir := o.Dir
	l, err := log.Open(o)
	if err != nil {
		// fcntl reports a held lock as a bare EAGAIN/EACCES; an EACCES with a path is
		// a permission problem instead, reported as it is.
		var pathErr *fs.PathError
		locked := (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES)) && !errors.As(err, &pathErr)
		if locked || strings.Contains(err.Error(), "lock held by current process") {
			return nil, fmt.Errorf("data dir %s is in use by another process (another mqstreams serve?); stop it or pass a different --data-dir", dir)
		}
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	return l, nil
}

// applyStreams creates or updates the configured streams (or the embedded default in an
// empty data dir) through the catalog. The config adds and updates streams, it never
// deletes them; where it and a stored definition disagree the file wins, and the fields
// it changed are logged.
func applyStreams(c *mapping.Catalog, cfg Config, lg zerolog.Logger) error {
	configured := cfg.Streams
	if !cfg.StreamsSet && len(c.Definitions()) == 0 {
		d, err := DefaultStream()
		if err != nil {
			return err
		}
		configured = []mapping.Definition{d}
	}
	for _, d := range configured {
		changed, kept, err := c.Ensure(d)
		if err != nil {
			return fmt.Errorf("stream %q: %w", d.Name, err)
		}
		if kept > 0 {
			lg.Warn().Str("stream", d.Name).Int32("config_shards", d.Shards).Int32("shards", kept).Msg("config file asks fewer shards than the stream has; shards cannot shrink, keeping the stored count")
		}
		if len(changed) > 0 {
			lg.Warn().Str("stream", d.Name).Strs("changed", changed).Msg("config file differs from the stored definition; the file wins")
		}
	}
	return nil
}

// Close stops the listeners (no new connections, no new appends), then closes the log,
// which commits the appends already queued before it returns.
func (s *server) Close(ctx context.Context) error {
	if s.http != nil {
		s.http.SetReady(false)
	}
	var errs []error
	if s.mqtt != nil {
		if err := s.mqtt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close mqtt: %w", err))
		}
	}
	if s.kafka != nil {
		if err := s.kafka.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close kafka: %w", err))
		}
	}
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.node != nil {
		if err := s.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close cluster node: %w", err))
		}
	}
	if s.log != nil {
		if err := s.log.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
