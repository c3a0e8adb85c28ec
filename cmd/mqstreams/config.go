package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Config is the server configuration: the YAML file's shape, with defaults filled in.
type Config struct {
	DataDir string
	// Durability is when appends are acknowledged: fsync (on disk) or write (in the
	// operating system, fsynced at least every SyncInterval); streams may override it.
	Durability   log.Durability
	SyncInterval time.Duration
	// AppendQueueBytes bounds the appends awaiting their commit (back-pressure beyond).
	AppendQueueBytes int64
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT); 0 leaves the
	// runtime's own (unlimited, or the GOMEMLIMIT environment variable).
	MemoryLimit int64
	MQTT        MQTTConfig
	Kafka       KafkaConfig
	HTTP        HTTPConfig
	Storage     StorageConfig
	Auth        AuthConfig
	AutoCreate  AutoCreateConfig
	// Streams are the configured stream definitions, validated.
	Streams []mapping.Definition
	// StreamsSet tells whether the file had a streams key at all: an explicit empty list
	// turns the embedded default stream off, a missing key does not.
	StreamsSet bool
}

// MQTTConfig configures the MQTT listeners.
type MQTTConfig struct {
	Addr string
	// WSAddr is the MQTT over WebSocket listen address; empty means none.
	WSAddr         string
	MaxPacketBytes int64
	TLS            TLSConfig
	// Limits advertised in the MQTT 5 CONNACK and enforced (mqtt.Capabilities).
	ReceiveMaximum        int64
	TopicAliasMaximum     int64
	MaximumQoS            int64
	RetainAvailable       bool
	WildcardSubscriptions bool
	SharedSubscriptions   bool
	// Resource limits (SECURITY.md, "Limits"); 0 means unlimited where noted there.
	MaxConnections      int64
	MaxConnectionsPerIP int64
	ConnectTimeoutMS    int64
	PacketTimeoutMS     int64
	MaxQueuedPackets    int64
	MaxQueuedBytes      int64
	MaxConnectBytes     int64
}

// TLSConfig names a certificate and key in PEM files, and optionally the CA bundle that
// client certificates must chain to (mutual TLS; the certificate's CN is the username).
type TLSConfig struct {
	Cert     string
	Key      string
	ClientCA string
}

// Enabled tells whether the listener speaks TLS.
func (t TLSConfig) Enabled() bool { return t.Cert != "" }

// KafkaConfig configures the Kafka wire-protocol listener.
type KafkaConfig struct {
	Addr            string
	AdvertisedAddr  string
	MaxRequestBytes int64
	// SecurityProtocol is Kafka's listener security protocol: plaintext, ssl,
	// sasl_plaintext or sasl_ssl.
	SecurityProtocol string
	TLS              TLSConfig
	// SessionLifetimeMS bounds an authenticated SASL session (KIP-368); clients
	// re-authenticate before it ends. 0 means no limit.
	SessionLifetimeMS int64
	// ProducerIDExpirationMS drops idempotent producer state idle this long
	// (Kafka's transactional.id.expiration.ms); 0 means the default, 7 days.
	ProducerIDExpirationMS int64
	// TransactionMaxTimeoutMS bounds the transaction timeout a producer may ask for
	// (Kafka's transaction.max.timeout.ms); 0 means the default, 15 minutes.
	TransactionMaxTimeoutMS int64
	// Resource limits (SECURITY.md, "Limits"); 0 means unlimited where noted there.
	MaxConnections        int64
	MaxConnectionsPerIP   int64
	QueuedMaxRequestBytes int64
	FrameTimeoutMS        int64
	MaxFetchPartitions    int64
	MaxMetadataTopics     int64
}

// HTTPConfig configures the HTTP listener (health, readiness, metrics, admin API).
type HTTPConfig struct {
	Addr string
	TLS  TLSConfig
	// MetricsAuth requires credentials for /metrics too (the probes stay open).
	MetricsAuth bool
	// ReadTimeoutMS bounds reading one request (headers and body); IdleTimeoutMS closes
	// a keep-alive connection idle that long.
	ReadTimeoutMS int64
	IdleTimeoutMS int64
}

// StorageConfig configures the data directory's guards.
type StorageConfig struct {
	// MinFreeBytes: below this much free space writes are refused (0 turns the guard off).
	MinFreeBytes int64
}

// AuthConfig lists the users allowed to connect and what anonymous clients may do.
type AuthConfig struct {
	// AllowAnonymous is nil when not set: with no users at all the server then runs
	// in the open demo mode on loopback only.
	AllowAnonymous *bool
	AnonymousACL   []auth.Rule
	Users          []auth.User
}

// AutoCreateConfig controls creating streams on a $stream/<name>/... subscription.
type AutoCreateConfig struct {
	Enabled bool
	Shards  int32
}

// maxMQTTPacket is the largest packet MQTT can frame (a 4-byte remaining length plus header).
const maxMQTTPacket = 268435455 + 5

// DefaultConfig is the embedded configuration used when no file is given.
func DefaultConfig() Config {
	return Config{
		DataDir:          "./data",
		Durability:       log.DurabilityFsync,
		SyncInterval:     10 * time.Millisecond,
		AppendQueueBytes: log.DefaultQueueBytes,
		MQTT: MQTTConfig{Addr: ":1883", MaxPacketBytes: 1 << 20, ReceiveMaximum: 1024, TopicAliasMaximum: 65535,
			MaximumQoS: 2, RetainAvailable: true, WildcardSubscriptions: true, SharedSubscriptions: true,
			MaxConnections: 10000, MaxConnectionsPerIP: 1000, ConnectTimeoutMS: 10000, PacketTimeoutMS: 30000,
			MaxQueuedPackets: 1000, MaxQueuedBytes: 16 << 20, MaxConnectBytes: 64 << 10},
		Kafka: KafkaConfig{Addr: ":9092", MaxRequestBytes: 100 << 20, SecurityProtocol: "plaintext",
			MaxConnections: 1000, MaxConnectionsPerIP: 256, QueuedMaxRequestBytes: 128 << 20, FrameTimeoutMS: 30000,
			MaxFetchPartitions: 10000, MaxMetadataTopics: 10000},
		HTTP:       HTTPConfig{Addr: ":8080", ReadTimeoutMS: 30000, IdleTimeoutMS: 120000},
		Storage:    StorageConfig{MinFreeBytes: 64 << 20},
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

// ConfigError is a configuration problem, reported on one line naming the field.
type ConfigError struct {
	Line  int    // line in the file, 0 when unknown
	Field string // dotted path such as mqtt.addr or streams[1]
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	// A nested error may span lines (yaml's do); the contract is one line.
	b.WriteString(strings.Join(strings.Fields(e.Msg), " "))
	return b.String()
}

func fieldErr(n *yaml.Node, field, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &ConfigError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// LoadConfigFile reads and validates a config file on top of the defaults.
func LoadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &ConfigError{Msg: err.Error()}
	}
	return ParseConfig(data)
}

// ParseConfig parses YAML config on top of the defaults. Unknown keys, duplicate keys,
// values of the wrong kind and invalid streams are errors naming the field.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // empty file: all defaults
		}
		line, msg := cutLine(strings.TrimPrefix(err.Error(), "yaml: "))
		return c, &ConfigError{Line: line, Msg: msg}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return c, fieldErr(&extra, "", "more than one YAML document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := decodeMap(root, "", fields{
		"data_dir": str(&c.DataDir, true),
		"durability": func(n *yaml.Node, path string) error {
			var v string
			if err := oneOf(&v, string(log.DurabilityFsync), string(log.DurabilityWrite))(n, path); err != nil {
				return err
			}
			c.Durability = log.Durability(v)
			return nil
		},
		"sync_interval": positiveDuration(&c.SyncInterval),
		"append_queue_bytes": func(n *yaml.Node, path string) error {
			if err := byteSize(&c.AppendQueueBytes, math.MaxInt64)(n, path); err != nil {
				return err
			}
			if c.AppendQueueBytes < 1<<20 {
				return fieldErr(n, path, "must be at least 1MiB, got %s", describe(n))
			}
			return nil
		},
		"memory_limit": byteSize(&c.MemoryLimit, math.MaxInt64),
		"mqtt": section(fields{
			"addr":                   addr(&c.MQTT.Addr),
			"ws_addr":                addr(&c.MQTT.WSAddr),
			"max_packet_bytes":       byteSize(&c.MQTT.MaxPacketBytes, maxMQTTPacket),
			"receive_maximum":        intRange(&c.MQTT.ReceiveMaximum, 1, 65535),
			"topic_alias_maximum":    intRange(&c.MQTT.TopicAliasMaximum, 0, 65535),
			"maximum_qos":            intRange(&c.MQTT.MaximumQoS, 0, 2),
			"retain_available":       boolean(&c.MQTT.RetainAvailable),
			"wildcard_subscriptions": boolean(&c.MQTT.WildcardSubscriptions),
			"shared_subscriptions":   boolean(&c.MQTT.SharedSubscriptions),
			"max_connections":        intRange(&c.MQTT.MaxConnections, 0, math.MaxInt32),
			"max_connections_per_ip": intRange(&c.MQTT.MaxConnectionsPerIP, 0, math.MaxInt32),
			"connect_timeout_ms":     intRange(&c.MQTT.ConnectTimeoutMS, 1, math.MaxInt32),
			"packet_timeout_ms":      intRange(&c.MQTT.PacketTimeoutMS, 1, math.MaxInt32),
			"max_queued_packets":     intRange(&c.MQTT.MaxQueuedPackets, 1, math.MaxInt32),
			"max_queued_bytes":       byteSize(&c.MQTT.MaxQueuedBytes, math.MaxInt64),
			"max_connect_bytes":      byteSize(&c.MQTT.MaxConnectBytes, maxMQTTPacket),
			"tls":                    tlsSection(&c.MQTT.TLS),
		}),
		"kafka": section(fields{
			"addr":                       addr(&c.Kafka.Addr),
			"advertised_addr":            advertisedAddr(&c.Kafka.AdvertisedAddr),
			"max_request_bytes":          byteSize(&c.Kafka.MaxRequestBytes, math.MaxInt32),
			"security_protocol":          oneOf(&c.Kafka.SecurityProtocol, "plaintext", "ssl", "sasl_plaintext", "sasl_ssl"),
			"tls":                        tlsSection(&c.Kafka.TLS),
			"session_lifetime_ms":        nonNegativeInt64(&c.Kafka.SessionLifetimeMS),
			"max_connections":            intRange(&c.Kafka.MaxConnections, 0, math.MaxInt32),
			"max_connections_per_ip":     intRange(&c.Kafka.MaxConnectionsPerIP, 0, math.MaxInt32),
			"queued_max_request_bytes":   byteSize(&c.Kafka.QueuedMaxRequestBytes, math.MaxInt64),
			"frame_timeout_ms":           intRange(&c.Kafka.FrameTimeoutMS, 1, math.MaxInt32),
			"max_fetch_partitions":       intRange(&c.Kafka.MaxFetchPartitions, 1, 60000),
			"max_metadata_topics":        intRange(&c.Kafka.MaxMetadataTopics, 1, math.MaxInt32),
			"producer_id_expiration_ms":  nonNegativeInt64(&c.Kafka.ProducerIDExpirationMS),
			"transaction_max_timeout_ms": nonNegativeInt64(&c.Kafka.TransactionMaxTimeoutMS),
		}),
		"http": section(fields{
			"addr":            addr(&c.HTTP.Addr),
			"tls":             tlsSection(&c.HTTP.TLS),
			"metrics_auth":    boolean(&c.HTTP.MetricsAuth),
			"read_timeout_ms": intRange(&c.HTTP.ReadTimeoutMS, 1, math.MaxInt32),
			"idle_timeout_ms": intRange(&c.HTTP.IdleTimeoutMS, 1, math.MaxInt32),
		}),
		"storage": section(fields{
			"min_free_bytes": func(n *yaml.Node, path string) error {
				if n.Kind == yaml.ScalarNode && n.Value == "0" {
					c.Storage.MinFreeBytes = 0
					return nil
				}
				return byteSize(&c.Storage.MinFreeBytes, math.MaxInt64)(n, path)
			},
		}),
		"auth": section(fields{
			"allow_anonymous": func(n *yaml.Node, path string) error {
				var v bool
				if err := boolean(&v)(n, path); err != nil {
					return err
				}
				c.Auth.AllowAnonymous = &v
				return nil
			},
			"anonymous_acl": aclRules(&c.Auth.AnonymousACL),
			"users":         users(&c.Auth.Users),
		}),
		"auto_create": section(fields{
			"enabled": boolean(&c.AutoCreate.Enabled),
			"shards":  positiveInt32(&c.AutoCreate.Shards),
		}),
		"streams": func(n *yaml.Node, path string) error {
			c.StreamsSet = true
			defs, err := streams(n, path)
			c.Streams = defs
			return err
		},
	}); err != nil {
		return c, err
	}
	if c.Kafka.QueuedMaxRequestBytes < c.Kafka.MaxRequestBytes {
		return c, &ConfigError{Field: "kafka.queued_max_request_bytes", Msg: fmt.Sprintf("must be at least kafka.max_request_bytes (%d), got %d", c.Kafka.MaxRequestBytes, c.Kafka.QueuedMaxRequestBytes)}
	}
	return c, nil
}

// fields maps the keys a YAML mapping may hold to their decoders.
type fields map[string]func(n *yaml.Node, path string) error

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func decodeMap(n *yaml.Node, path string, fs fields) error {
	if isNull(n) {
		return nil // "mqtt:" with nothing under it keeps the defaults
	}
	if n.Kind != yaml.MappingNode {
		return fieldErr(n, path, "expected a mapping of keys, got %s", describe(n))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			return fieldErr(k, p, "duplicate key (first at line %d)", first)
		}
		seen[k.Value] = k.Line
		decode, ok := fs[k.Value]
		if !ok {
			return fieldErr(k, p, "unknown field (known: %s)", strings.Join(fs.keys(), ", "))
		}
		if err := decode(v, p); err != nil {
			return err
		}
	}
	return nil
}

func (fs fields) keys() []string {
	ks := make([]string, 0, len(fs))
	for k := range fs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func section(fs fields) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error { return decodeMap(n, path, fs) }
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNull(n) {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

func scalar(n *yaml.Node, path, what string) error {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return fieldErr(n, path, "expected %s, got %s", what, describe(n))
	}
	return nil
}

func str(dst *string, nonEmpty bool) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a string"); err != nil {
			return err
		}
		if nonEmpty && n.Value == "" {
			return fieldErr(n, path, "must not be empty")
		}
		*dst = n.Value
		return nil
	}
}

func boolean(dst *bool) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fieldErr(n, path, "expected true or false, got %s", describe(n))
		}
		return n.Decode(dst)
	}
}

func positiveInt32(dst *int32) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a whole number"); err != nil {
			return err
		}
		v, err := strconv.ParseInt(n.Value, 10, 32)
		if err != nil || v < 1 {
			return fieldErr(n, path, "expected a whole number of at least 1, got %s", describe(n))
		}
		*dst = int32(v)
		return nil
	}
}

// intRange accepts a whole number from min to max.
func intRange(dst *int64, min, max int64) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a whole number"); err != nil {
			return err
		}
		v, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || v < min || v > max {
			return fieldErr(n, path, "expected a whole number from %d to %d, got %s", min, max, describe(n))
		}
		*dst = v
		return nil
	}
}

// byteSize accepts a plain number of bytes or a size such as 1MiB.
func byteSize(dst *int64, max int64) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a size in bytes"); err != nil {
			return err
		}
		v, err := mapping.ParseBytes(n.Value)
		if err != nil {
			return fieldErr(n, path, "%v", err)
		}
		if v < 1 || v > max {
			return fieldErr(n, path, "must be from 1 to %d bytes, got %s", max, describe(n))
		}
		*dst = v
		return nil
	}
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

func addr(dst *string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "an address"); err != nil {
			return err
		}
		if err := checkAddr(n.Value); err != nil {
			return fieldErr(n, path, "%v", err)
		}
		*dst = n.Value
		return nil
	}
}

func advertisedAddr(dst *string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "an address"); err != nil {
			return err
		}
		if err := checkAdvertisedAddr(n.Value); err != nil {
			return fieldErr(n, path, "%v", err)
		}
		*dst = n.Value
		return nil
	}
}

func list(n *yaml.Node, path string, item func(n *yaml.Node, path string) error) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fieldErr(n, path, "expected a list, got %s", describe(n))
	}
	for i, c := range n.Content {
		if err := item(c, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

func tlsSection(dst *TLSConfig) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := decodeMap(n, path, fields{
			"cert":      str(&dst.Cert, true),
			"key":       str(&dst.Key, true),
			"client_ca": str(&dst.ClientCA, true),
		}); err != nil {
			return err
		}
		if (dst.Cert == "") != (dst.Key == "") || (dst.ClientCA != "" && dst.Cert == "") {
			return fieldErr(n, path, "cert and key are both required")
		}
		return nil
	}
}

func oneOf(dst *string, values ...string) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a string"); err != nil {
			return err
		}
		for _, v := range values {
			if n.Value == v {
				*dst = v
				return nil
			}
		}
		return fieldErr(n, path, "unknown value %q (known: %s)", n.Value, strings.Join(values, ", "))
	}
}

// positiveDuration parses a duration such as 10ms, 1s or 2m.
func positiveDuration(dst *time.Duration) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a duration such as 10ms"); err != nil {
			return err
		}
		d, err := mapping.ParseDuration(n.Value)
		if err != nil || d <= 0 {
			return fieldErr(n, path, "expected a positive duration such as 10ms, got %s", describe(n))
		}
		*dst = d
		return nil
	}
}

func nonNegativeInt64(dst *int64) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a whole number"); err != nil {
			return err
		}
		v, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || v < 0 {
			return fieldErr(n, path, "expected a whole number of at least 0, got %s", describe(n))
		}
		*dst = v
		return nil
	}
}

// aclRules parses a list of {topic|stream|group: pattern, allow: [ops]}.
func aclRules(dst *[]auth.Rule) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		return list(n, path, func(n *yaml.Node, path string) error {
			var spec auth.RuleSpec
			opt := func(p **string, nonEmpty bool) func(*yaml.Node, string) error {
				return func(n *yaml.Node, path string) error {
					*p = new(string)
					return str(*p, nonEmpty)(n, path)
				}
			}
			if err := decodeMap(n, path, fields{
				"topic":  opt(&spec.Topic, true),
				"stream": opt(&spec.Stream, true),
				"group":  opt(&spec.Group, false), // an empty prefix is every group
				"allow": func(n *yaml.Node, path string) error {
					return list(n, path, func(n *yaml.Node, path string) error {
						var name string
						if err := str(&name, true)(n, path); err != nil {
							return err
						}
						if _, err := auth.ParseOp(name); err != nil {
							return fieldErr(n, path, "%v", err)
						}
						spec.Allow = append(spec.Allow, name)
						return nil
					})
				},
			}); err != nil {
				return err
			}
			r, err := spec.Rule()
			if err != nil {
				return fieldErr(n, path, "%v", err)
			}
			*dst = append(*dst, r)
			return nil
		})
	}
}

func users(dst *[]auth.User) func(*yaml.Node, string) error {
	return func(n *yaml.Node, path string) error {
		names := map[string]string{}
		return list(n, path, func(n *yaml.Node, path string) error {
			var u auth.User
			var hash string
			if err := decodeMap(n, path, fields{
				"username": str(&u.Name, true),
				"password_hash": func(n *yaml.Node, path string) error {
					if err := str(&hash, true)(n, path); err != nil {
						return err
					}
					c, err := auth.ParseCredentials(hash)
					if err != nil {
						return fieldErr(n, path, "%v", err)
					}
					u.Credentials = c
					return nil
				},
				"superuser": boolean(&u.Superuser),
				"acl":       aclRules(&u.Rules),
			}); err != nil {
				return err
			}
			if u.Name == "" || hash == "" {
				return fieldErr(n, path, "username and password_hash are required")
			}
			if first, dup := names[u.Name]; dup {
				return fieldErr(n, path, "duplicate username %q (also %s)", u.Name, first)
			}
			names[u.Name] = path
			*dst = append(*dst, u)
			return nil
		})
	}
}

func streams(n *yaml.Node, path string) ([]mapping.Definition, error) {
	defs := []mapping.Definition{} // non-nil: an explicit empty list means no streams
	byName := map[string]string{}
	err := list(n, path, func(n *yaml.Node, path string) error {
		if n.Kind != yaml.MappingNode {
			return fieldErr(n, path, "expected a stream definition (a mapping), got %s", describe(n))
		}
		var d mapping.Definition
		if err := n.Decode(&d); err != nil {
			return streamErr(n, path, d.Name, err)
		}
		named := path
		if d.Name != "" {
			named = fmt.Sprintf("%s %q", path, d.Name)
		}
		if err := d.Validate(); err != nil {
			return streamErr(n, path, d.Name, err)
		}
		if first, dup := byName[d.Name]; dup {
			return fieldErr(n, named, "duplicate stream name (also %s)", first)
		}
		byName[d.Name] = path
		defs = append(defs, d)
		return nil
	})
	return defs, err
}

// streamErr reports a stream definition error under its streams[i] path, with the
// line and stream name the mapping package's DefinitionError carries.
func streamErr(n *yaml.Node, path, name string, err error) error {
	line, msg := 0, err.Error()
	var de *mapping.DefinitionError
	if errors.As(err, &de) {
		line, msg = de.Line, de.Err.Error()
		if de.Stream != "" {
			name = de.Stream
		}
	} else {
		line, msg = cutLine(strings.TrimPrefix(msg, "yaml: "))
	}
	if line == 0 {
		line = n.Line
	}
	if name != "" {
		path = fmt.Sprintf("%s %q", path, name)
	}
	return &ConfigError{Line: line, Field: path, Msg: msg}
}

// cutLine splits yaml's "line N: message" into N and the message.
func cutLine(msg string) (int, string) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, rest, ok := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, msg
	}
	return line, rest
}

// Overrides are the serve flags that replace config values when given.
type Overrides struct {
	ConfigFile     string
	DataDir        string
	MQTTAddr       string
	KafkaAddr      string
	HTTPAddr       string
	AdvertisedAddr string
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
