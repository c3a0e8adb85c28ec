package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/cluster"
	"github.com/mqstreams/mqstreams/conf"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Config is the server configuration: the YAML file's shape (each key is a field's yaml
// tag, a contract), with defaults filled in. It is decoded strictly by conf.Decode;
// values with their own syntax are typed (mapping.ByteSize, mapping.Duration, stream
// definitions) and every section checks its ranges in a Validate method, whose errors
// name the key. A new key is a tagged field plus, when it has a range, a line in its
// section's Validate.
type Config struct {
	DataDir string `yaml:"data_dir"`
	// Durability is when appends are acknowledged: fsync (on disk) or write (in the
	// operating system, fsynced at least every SyncInterval); streams may override it.
	Durability   log.Durability   `yaml:"durability"`
	SyncInterval mapping.Duration `yaml:"sync_interval"`
	// AppendQueueBytes bounds the appends awaiting their commit (back-pressure beyond).
	AppendQueueBytes mapping.ByteSize `yaml:"append_queue_bytes"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT); 0 leaves the
	// runtime's own (unlimited, or the GOMEMLIMIT environment variable).
	MemoryLimit mapping.ByteSize `yaml:"memory_limit"`
	MQTT        MQTTConfig       `yaml:"mqtt"`
	Kafka       KafkaConfig      `yaml:"kafka"`
	HTTP        HTTPConfig       `yaml:"http"`
	Storage     StorageConfig    `yaml:"storage"`
	Auth        AuthConfig       `yaml:"auth"`
	AutoCreate  AutoCreateConfig `yaml:"auto_create"`
	// Streams are the configured stream definitions, validated (defaults filled).
	Streams []mapping.Definition `yaml:"streams"`
	// Cluster makes this server a node of a cluster (cluster/); nil: a single node.
	Cluster *cluster.Config `yaml:"cluster"`
	// StreamsSet tells whether the file had a streams list at all: an explicit empty
	// list turns the embedded default stream off, a missing key does not.
	StreamsSet bool `yaml:"-"`
}

// MQTTConfig configures the MQTT listeners.
type MQTTConfig struct {
	Addr string `yaml:"addr"`
	// WSAddr is the MQTT over WebSocket listen address; empty means none.
	WSAddr         string           `yaml:"ws_addr"`
	MaxPacketBytes mapping.ByteSize `yaml:"max_packet_bytes"`
	TLS            TLSConfig        `yaml:"tls"`
	// Limits advertised in the MQTT 5 CONNACK and enforced (mqtt.Capabilities).
	ReceiveMaximum        int64 `yaml:"receive_maximum"`
	TopicAliasMaximum     int64 `yaml:"topic_alias_maximum"`
	MaximumQoS            int64 `yaml:"maximum_qos"`
	RetainAvailable       bool  `yaml:"retain_available"`
	WildcardSubscriptions bool  `yaml:"wildcard_subscriptions"`
	SharedSubscriptions   bool  `yaml:"shared_subscriptions"`
	// Resource limits (SECURITY.md, "Limits"); 0 means unlimited where noted there.
	MaxConnections      int64            `yaml:"max_connections"`
	MaxConnectionsPerIP int64            `yaml:"max_connections_per_ip"`
	ConnectTimeoutMS    int64            `yaml:"connect_timeout_ms"`
	PacketTimeoutMS     int64            `yaml:"packet_timeout_ms"`
	MaxQueuedPackets    int64            `yaml:"max_queued_packets"`
	MaxQueuedBytes      mapping.ByteSize `yaml:"max_queued_bytes"`
	MaxConnectBytes     mapping.ByteSize `yaml:"max_connect_bytes"`
}

// Validate checks the MQTT section's ranges.
func (m *MQTTConfig) Validate() error {
	return first(
		checkAddrField("addr", m.Addr, false),
		checkAddrField("ws_addr", m.WSAddr, true),
		sizeRange("max_packet_bytes", m.MaxPacketBytes, 1, maxMQTTPacket),
		intRange("receive_maximum", m.ReceiveMaximum, 1, 65535),
		intRange("topic_alias_maximum", m.TopicAliasMaximum, 0, 65535),
		intRange("maximum_qos", m.MaximumQoS, 0, 2),
		intRange("max_connections", m.MaxConnections, 0, math.MaxInt32),
		intRange("max_connections_per_ip", m.MaxConnectionsPerIP, 0, math.MaxInt32),
		intRange("connect_timeout_ms", m.ConnectTimeoutMS, 1, math.MaxInt32),
		intRange("packet_timeout_ms", m.PacketTimeoutMS, 1, math.MaxInt32),
		intRange("max_queued_packets", m.MaxQueuedPackets, 1, math.MaxInt32),
		sizeRange("max_queued_bytes", m.MaxQueuedBytes, 1, math.MaxInt64),
		sizeRange("max_connect_bytes", m.MaxConnectBytes, 1, maxMQTTPacket),
	)
}

// TLSConfig names a certificate and key in PEM files, and optionally the CA bundle that
// client certificates must chain to (mutual TLS; the certificate's CN is the username).
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled tells whether the listener speaks TLS.
func (t TLSConfig) Enabled() bool { return t.Cert != "" }

// Validate checks that cert and key come together.
func (t *TLSConfig) Validate() error {
	if (t.Cert == "") != (t.Key == "") || (t.ClientCA != "" && t.Cert == "") {
		return errors.New("cert and key are both required")
	}
	return nil
}

// KafkaConfig configures the Kafka wire-protocol listener.
type KafkaConfig struct {
	Addr            string           `yaml:"addr"`
	AdvertisedAddr  string           `yaml:"advertised_addr"`
	MaxRequestBytes mapping.ByteSize `yaml:"max_request_bytes"`
	// SecurityProtocol is Kafka's listener security protocol: plaintext, ssl,
	// sasl_plaintext or sasl_ssl.
	SecurityProtocol string    `yaml:"security_protocol"`
	TLS              TLSConfig `yaml:"tls"`
	// SessionLifetimeMS bounds an authenticated SASL session (KIP-368); clients
	// re-authenticate before it ends. 0 means no limit.
	SessionLifetimeMS int64 `yaml:"session_lifetime_ms"`
	// ProducerIDExpirationMS drops idempotent producer state idle this long
	// (Kafka's transactional.id.expiration.ms); 0 means the default, 7 days.
	ProducerIDExpirationMS int64 `yaml:"producer_id_expiration_ms"`
	// TransactionMaxTimeoutMS bounds the transaction timeout a producer may ask for
	// (Kafka's transaction.max.timeout.ms); 0 means the default, 15 minutes.
	TransactionMaxTimeoutMS int64 `yaml:"transaction_max_timeout_ms"`
	// Resource limits (SECURITY.md, "Limits"); 0 means unlimited where noted there.
	MaxConnections        int64            `yaml:"max_connections"`
	MaxConnectionsPerIP   int64            `yaml:"max_connections_per_ip"`
	QueuedMaxRequestBytes mapping.ByteSize `yaml:"queued_max_request_bytes"`
	FrameTimeoutMS        int64            `yaml:"frame_timeout_ms"`
	MaxFetchPartitions    int64            `yaml:"max_fetch_partitions"`
	MaxMetadataTopics     int64            `yaml:"max_metadata_topics"`
}

// Validate checks the Kafka section's ranges.
func (k *KafkaConfig) Validate() error {
	err := first(
		checkAddrField("addr", k.Addr, false),
		advertisedAddrField("advertised_addr", k.AdvertisedAddr),
		sizeRange("max_request_bytes", k.MaxRequestBytes, 1, math.MaxInt32),
		oneOf("security_protocol", k.SecurityProtocol, "plaintext", "ssl", "sasl_plaintext", "sasl_ssl"),
		intRange("session_lifetime_ms", k.SessionLifetimeMS, 0, math.MaxInt64),
		intRange("max_connections", k.MaxConnections, 0, math.MaxInt32),
		intRange("max_connections_per_ip", k.MaxConnectionsPerIP, 0, math.MaxInt32),
		sizeRange("queued_max_request_bytes", k.QueuedMaxRequestBytes, 1, math.MaxInt64),
		intRange("frame_timeout_ms", k.FrameTimeoutMS, 1, math.MaxInt32),
		intRange("max_fetch_partitions", k.MaxFetchPartitions, 1, 60000),
		intRange("max_metadata_topics", k.MaxMetadataTopics, 1, math.MaxInt32),
		intRange("producer_id_expiration_ms", k.ProducerIDExpirationMS, 0, math.MaxInt64),
		intRange("transaction_max_timeout_ms", k.TransactionMaxTimeoutMS, 0, math.MaxInt64),
	)
	if err == nil && k.QueuedMaxRequestBytes < k.MaxRequestBytes {
		err = conf.Fieldf("queued_max_request_bytes", "must be at least kafka.max_request_bytes (%d), got %d", k.MaxRequestBytes, k.QueuedMaxRequestBytes)
	}
	return err
}

// HTTPConfig configures the HTTP listener (health, readiness, metrics, admin API).
type HTTPConfig struct {
	Addr string    `yaml:"addr"`
	TLS  TLSConfig `yaml:"tls"`
	// MetricsAuth requires credentials for /metrics too (the probes stay open).
	MetricsAuth bool `yaml:"metrics_auth"`
	// ReadTimeoutMS bounds reading one request (headers and body); IdleTimeoutMS closes
	// a keep-alive connection idle that long.
	ReadTimeoutMS int64 `yaml:"read_timeout_ms"`
	IdleTimeoutMS int64 `yaml:"idle_timeout_ms"`
}

// Validate checks the HTTP section's ranges.
func (h *HTTPConfig) Validate() error {
	return first(
		checkAddrField("addr", h.Addr, false),
		intRange("read_timeout_ms", h.ReadTimeoutMS, 1, math.MaxInt32),
		intRange("idle_timeout_ms", h.IdleTimeoutMS, 1, math.MaxInt32),
	)
}

// StorageConfig configures the data directory's guards and the storage engine's cache.
type StorageConfig struct {
	// MinFreeBytes: below this much free space writes are refused (0 turns the guard off).
	MinFreeBytes mapping.ByteSize `yaml:"min_free_bytes"`
	// CacheBytes sizes the storage engine's block cache (log.Options.CacheBytes).
	CacheBytes mapping.ByteSize `yaml:"cache_bytes"`
}

// Validate checks the storage section's ranges.
func (s *StorageConfig) Validate() error {
	return first(
		sizeRange("min_free_bytes", s.MinFreeBytes, 0, math.MaxInt64),
		sizeRange("cache_bytes", s.CacheBytes, 1<<20, math.MaxInt64),
	)
}

// AuthConfig lists the users allowed to connect and what anonymous clients may do.
type AuthConfig struct {
	// AllowAnonymous is nil when not set: with no users at all the server then runs
	// in the open demo mode on loopback only.
	AllowAnonymous *bool        `yaml:"allow_anonymous"`
	AnonymousACL   []ACLRule    `yaml:"anonymous_acl"`
	Users          []UserConfig `yaml:"users"`
}

// Validate refuses a username given twice.
func (a *AuthConfig) Validate() error {
	names := map[string]int{}
	for i, u := range a.Users {
		if j, dup := names[u.Username]; dup {
			return conf.Fieldf(fmt.Sprintf("users[%d].username", i), "duplicate username %q (also users[%d])", u.Username, j)
		}
		names[u.Username] = i
	}
	return nil
}

// AnonymousRules are the rules anonymous clients get when allowed (nil: the default).
func (a AuthConfig) AnonymousRules() []auth.Rule {
	var rules []auth.Rule
	for _, r := range a.AnonymousACL {
		rules = append(rules, r.rule)
	}
	return rules
}

// UserList is the configured users, as the user store takes them.
func (a AuthConfig) UserList() []auth.User {
	var users []auth.User
	for _, u := range a.Users {
		users = append(users, u.user)
	}
	return users
}

// UserConfig is one configured user; the password is given as a hash only.
type UserConfig struct {
	Username     string    `yaml:"username"`
	PasswordHash string    `yaml:"password_hash"`
	Superuser    bool      `yaml:"superuser"`
	ACL          []ACLRule `yaml:"acl"`
	user         auth.User // built by Validate
}

// Validate parses the hash and builds the user.
func (u *UserConfig) Validate() error {
	if u.Username == "" || u.PasswordHash == "" {
		return errors.New("username and password_hash are required")
	}
	c, err := auth.ParseCredentials(u.PasswordHash)
	if err != nil {
		return conf.Field("password_hash", err)
	}
	u.user = auth.User{Name: u.Username, Credentials: c, Superuser: u.Superuser}
	for _, r := range u.ACL {
		u.user.Rules = append(u.user.Rules, r.rule)
	}
	return nil
}

// ACLRule is one access rule: exactly one of topic (an MQTT filter), stream (a name,
// "prefix*" or "*") or group (a group-id prefix), and the operations allowed.
type ACLRule struct {
	Topic  *string   `yaml:"topic"`
	Stream *string   `yaml:"stream"`
	Group  *string   `yaml:"group"`
	Allow  []string  `yaml:"allow"`
	rule   auth.Rule // built by Validate
}

// Validate checks the operations and builds the rule.
func (r *ACLRule) Validate() error {
	for i, name := range r.Allow {
		if _, err := auth.ParseOp(name); err != nil {
			return conf.Field(fmt.Sprintf("allow[%d]", i), err)
		}
	}
	for _, f := range []struct {
		key string
		p   *string
	}{{"topic", r.Topic}, {"stream", r.Stream}} {
		if f.p != nil && *f.p == "" {
			return conf.Fieldf(f.key, "must not be empty")
		}
	}
	rule, err := auth.RuleSpec{Topic: r.Topic, Stream: r.Stream, Group: r.Group, Allow: r.Allow}.Rule()
	if err != nil {
		return err
	}
	r.rule = rule
	return nil
}

// AutoCreateConfig controls creating streams on a $stream/<name>/... subscription.
type AutoCreateConfig struct {
	Enabled bool  `yaml:"enabled"`
	Shards  int32 `yaml:"shards"`
}

// Validate checks the shard count.
func (a *AutoCreateConfig) Validate() error {
	return intRange("shards", int64(a.Shards), 1, mapping.MaxShards)
}

// Validate checks the top-level values and what spans sections (stream names).
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return conf.Fieldf("data_dir", "must not be empty")
	}
	if err := oneOf("durability", string(c.Durability), string(log.DurabilityFsync), string(log.DurabilityWrite)); err != nil {
		return err
	}
	if c.SyncInterval <= 0 {
		return conf.Fieldf("sync_interval", "expected a positive duration such as 10ms, got %s", mapping.FormatDuration(time.Duration(c.SyncInterval)))
	}
	if c.AppendQueueBytes < 1<<20 {
		return conf.Fieldf("append_queue_bytes", "must be at least 1MiB, got %d", c.AppendQueueBytes)
	}
	if err := sizeRange("memory_limit", c.MemoryLimit, 0, math.MaxInt64); err != nil {
		return err
	}
	byName := map[string]int{}
	for i, d := range c.Streams {
		if j, dup := byName[d.Name]; dup {
			return conf.Fieldf(fmt.Sprintf("streams[%d].name", i), "duplicate stream name %q (also streams[%d])", d.Name, j)
		}
		byName[d.Name] = i
	}
	return nil
}

// maxMQTTPacket is the largest packet MQTT can frame (a 4-byte remaining length plus header).
const maxMQTTPacket = 268435455 + 5

// DefaultConfig is the embedded configuration used when no file is given.
func DefaultConfig() Config {
	return Config{
		DataDir:          "./data",
		Durability:       log.DurabilityFsync,
		SyncInterval:     mapping.Duration(10 * time.Millisecond),
		AppendQueueBytes: log.DefaultQueueBytes,
		MQTT: MQTTConfig{Addr: ":1883", MaxPacketBytes: 1 << 20, ReceiveMaximum: 1024, TopicAliasMaximum: 65535,
			MaximumQoS: 2, RetainAvailable: true, WildcardSubscriptions: true, SharedSubscriptions: true,
			MaxConnections: 10000, MaxConnectionsPerIP: 1000, ConnectTimeoutMS: 10000, PacketTimeoutMS: 30000,
			MaxQueuedPackets: 1000, MaxQueuedBytes: 16 << 20, MaxConnectBytes: 64 << 10},
		Kafka: KafkaConfig{Addr: ":9092", MaxRequestBytes: 100 << 20, SecurityProtocol: "plaintext",
			MaxConnections: 1000, MaxConnectionsPerIP: 256, QueuedMaxRequestBytes: 128 << 20, FrameTimeoutMS: 30000,
			MaxFetchPartitions: 10000, MaxMetadataTopics: 10000},
		HTTP:       HTTPConfig{Addr: ":8080", ReadTimeoutMS: 30000, IdleTimeoutMS: 120000},
		Storage:    StorageConfig{MinFreeBytes: 64 << 20, CacheBytes: log.DefaultCacheBytes},
		AutoCreate: AutoCreateConfig{Shards: 4},
	}
}

// DefaultStream is the stream created in an empty data dir when the config names none:
// everything published lands in "mqtt", so a first session needs no set-up.
func DefaultStream() (mapping.Definition, error) {
	d := mapping.Definition{Name: "mqtt", Filters: []string{"#"}, Shards: 4, Key: "clientid"}
	if err := d.Validate(); err != nil {
		return d, fmt.Errorf("default stream: %w", err)
	}
	return d, nil
}

// LoadConfigFile reads and validates a config file on top of the defaults; errors
// name the file, line and key ("config.yaml:12: streams[2].retention.max_bytes: ...").
func LoadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path leads the message already
		}
		return Config{}, &conf.Error{File: path, Err: err}
	}
	return parseConfig(path, data)
}

// ParseConfig parses YAML config on top of the defaults. Unknown keys, duplicate keys,
// values of the wrong kind and invalid streams are errors naming the key.
func ParseConfig(data []byte) (Config, error) {
	return parseConfig("", data)
}

func parseConfig(file string, data []byte) (Config, error) {
	c := DefaultConfig()
	if err := conf.Decode(file, data, &c); err != nil {
		return c, err
	}
	c.StreamsSet = c.Streams != nil
	return c, nil
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func intRange(key string, v, min, max int64) error {
	if v < min || v > max {
		return conf.Fieldf(key, "expected a whole number from %d to %d, got %d", min, max, v)
	}
	return nil
}

func sizeRange(key string, v mapping.ByteSize, min, max int64) error {
	if int64(v) < min || int64(v) > max {
		return conf.Fieldf(key, "must be from %d to %d bytes, got %d", min, max, v)
	}
	return nil
}

func oneOf(key, v string, values ...string) error {
	if slices.Contains(values, v) {
		return nil
	}
	return conf.Fieldf(key, "unknown value %q (known: %s)", v, strings.Join(values, ", "))
}

func checkAddrField(key, v string, optional bool) error {
	if optional && v == "" {
		return nil
	}
	return conf.Field(key, checkAddr(v))
}

func advertisedAddrField(key, v string) error {
	if v == "" {
		return nil
	}
	return conf.Field(key, checkAdvertisedAddr(v))
}

// checkAddr validates a listen address: optional host, numeric port 0-65535.
func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("expected host:port or :port, got %q", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port of %q must be a number from 0 to 65535", s)
	}
	return nil
}

// checkAdvertisedAddr validates an address Kafka clients will dial: host and non-zero port.
func checkAdvertisedAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("expected host:port that clients can reach, got %q", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port of %q must be a number from 1 to 65535", s)
	}
	return nil
}

// Overrides are the serve flags that replace config values when given.
type Overrides struct {
	ConfigFile     string
	DataDir        string
	MQTTAddr       string
	KafkaAddr      string
	HTTPAddr       string
	AdvertisedAddr string
	// Cluster flags (cluster.go): --node-id, --raft-addr, --peers.
	Cluster clusterFlags
}

// Apply replaces the values of c by the flags that were given, validating them.
func (o Overrides) Apply(c *Config) error {
	set := func(dst *string, v, flag string, check func(string) error) error {
		if v == "" {
			return nil
		}
		if check != nil {
			if err := check(v); err != nil {
				return fmt.Errorf("flag --%s: %w", flag, err)
			}
		}
		*dst = v
		return nil
	}
	for _, err := range []error{
		set(&c.DataDir, o.DataDir, "data-dir", nil),
		set(&c.MQTT.Addr, o.MQTTAddr, "mqtt-addr", checkAddr),
		set(&c.Kafka.Addr, o.KafkaAddr, "kafka-addr", checkAddr),
		set(&c.HTTP.Addr, o.HTTPAddr, "http-addr", checkAddr),
		set(&c.Kafka.AdvertisedAddr, o.AdvertisedAddr, "advertised-kafka-addr", checkAdvertisedAddr),
		o.Cluster.apply(c),
	} {
		if err != nil {
			return err // the first, so the message stays one line
		}
	}
	return nil
}

// LoadConfig builds the effective configuration: defaults, then the file, then flags.
func LoadConfig(o Overrides) (Config, error) {
	c := DefaultConfig()
	if o.ConfigFile != "" {
		var err error
		if c, err = LoadConfigFile(o.ConfigFile); err != nil {
			return c, err
		}
	}
	if err := o.Apply(&c); err != nil {
		return c, err
	}
	return c, nil
}
