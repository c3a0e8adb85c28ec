package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/conf"
	"github.com/mqstreams/mqstreams/log"
)

// Kafka topic config names a definition maps to (DescribeConfigs shows them,
// CreateTopics and the AlterConfigs APIs set them).
const (
	KafkaTopicFilter    = "mqtt.topic.filter"
	KafkaKey            = "mqtt.key"
	KafkaRetentionMS    = "retention.ms"
	KafkaRetentionBytes = "retention.bytes"
	KafkaCleanupPolicy  = "cleanup.policy"
	KafkaCompression    = "compression.type"
)

// KafkaConfigNames lists the topic configs a definition answers for, sorted.
var KafkaConfigNames = []string{KafkaCleanupPolicy, KafkaCompression, KafkaTopicFilter, KafkaKey, KafkaRetentionBytes, KafkaRetentionMS}

// ErrUnknownConfig is returned by SetKafkaConfig for a config name it does not know.
var ErrUnknownConfig = errors.New("unknown topic config")

// SetKafkaConfig sets one Kafka topic config on d; a nil value restores the default.
// Values are read by the same checks as the config file's and the REST API's (topic
// filters, key expressions); the definition is validated as a whole by the catalog
// afterwards, as every definition is.
func (d *Definition) SetKafkaConfig(name string, value *string) error {
	v := ""
	if value != nil {
		v = strings.TrimSpace(*value)
	}
	reset := value == nil
	switch name {
	case KafkaTopicFilter:
		d.Filters = nil
		if !reset && v != "" {
			for _, f := range strings.Split(v, ",") {
				f = strings.TrimSpace(f)
				if err := checkFilter(f); err != nil {
					return Invalid(conf.Field(name, err))
				}
				d.Filters = append(d.Filters, f)
			}
		}
	case KafkaKey:
		if v != "" {
			if _, err := compileKey(v); err != nil {
				return Invalid(conf.Field(name, err))
			}
		}
		d.Key = v // "" is the default, clientid
	case KafkaRetentionMS:
		if reset {
			d.Retention.MaxAge = 0 // the default, 7 days
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n == 0 {
			return Invalid(conf.Fieldf(name, "expected a number of milliseconds > 0 or -1 (unbounded), got %q", v))
		}
		if n == -1 {
			d.Retention.MaxAge = NoMaxAge
		} else {
			d.Retention.MaxAge = time.Duration(n) * time.Millisecond
		}
	case KafkaRetentionBytes:
		if reset {
			d.Retention.MaxBytes = 0
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n == 0 {
			return Invalid(conf.Fieldf(name, "expected a number of bytes > 0 or -1 (unbounded), got %q", v))
		}
		if n == -1 {
			n = 0
		}
		d.Retention.MaxBytes = n
	case KafkaCleanupPolicy:
		switch strings.ReplaceAll(v, " ", "") {
		case "delete", "":
			d.LastValue = false
		case "compact", "compact,delete", "delete,compact":
			d.LastValue = true
		default:
			return Invalid(conf.Fieldf(name, "expected delete or compact, got %q", v))
		}
	case KafkaCompression:
		// Kafka's producer (keep what producers sent) is how batches arrive; stored
		// batches are compressed as the stream says once merged.
		switch v {
		case "", "producer", "uncompressed", "none":
			d.Compression = ""
		case log.CompressionLZ4, log.CompressionZstd:
			d.Compression = v
		default:
			return Invalid(conf.Fieldf(name, "expected uncompressed, lz4 or zstd, got %q", v))
		}
	default:
		return fmt.Errorf("%w %q (known: %s)", ErrUnknownConfig, name, strings.Join(KafkaConfigNames, ", "))
	}
	return nil
}

// KafkaConfig is one topic config's value as Kafka shows it.
type KafkaConfig struct {
	Name      string
	Value     string
	IsDefault bool
}

// KafkaConfigs shows d as Kafka topic configs, sorted by name.
func (d Definition) KafkaConfigs() []KafkaConfig {
	retMS, retBytes := int64(-1), int64(-1)
	if d.Retention.MaxAge > 0 {
		retMS = d.Retention.MaxAge.Milliseconds()
	}
	if d.Retention.MaxBytes > 0 {
		retBytes = d.Retention.MaxBytes
	}
	policy := "delete"
	if d.LastValue {
		policy = "compact"
	}
	compression := "uncompressed"
	if c := d.Spec().Compression; c != "" {
		compression = c
	}
	return []KafkaConfig{
		{KafkaCleanupPolicy, policy, !d.LastValue},
		{KafkaCompression, compression, compression == "uncompressed"},
		{KafkaKey, d.Key, d.Key == DefaultKey},
		{KafkaTopicFilter, strings.Join(d.Filters, ","), len(d.Filters) == 0},
		{KafkaRetentionBytes, strconv.FormatInt(retBytes, 10), retBytes < 0},
		{KafkaRetentionMS, strconv.FormatInt(retMS, 10), d.Retention.MaxAge == DefaultMaxAge},
	}
}
