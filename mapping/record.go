package mapping

import (
	"strconv"

	"github.com/mqstreams/mqstreams/log"
)

// Message is an MQTT publish as the mapping sees it, free of any broker's types.
type Message struct {
	Topic           string
	Payload         []byte
	QoS             byte
	Retain          bool
	ClientID        string
	Username        string // empty when the publisher is not authenticated
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	PayloadFormat   *byte
	MessageExpiry   *uint32
	UserProperties  []UserProperty
	ConnSeq         uint64 // per-connection publish counter, spreads key `none` round robin
}

// UserProperty is one MQTT 5 user property; order and duplicates are significant.
type UserProperty struct{ Key, Value string }

// Record header names for the MQTT fields (docs/mapping.md, "Records").
const (
	HeaderTopic = "mqtt.topic"
	// HeaderTopicDenied replaces HeaderTopic in a record stored from a Kafka producer
	// that may not publish to that topic: the claimed topic is kept for Kafka readers,
	// but no MQTT delivery or $stream replay uses it (docs/kafka-to-mqtt.md).
	HeaderTopicDenied     = "mqtt.topic.unauthorized"
	HeaderQoS             = "mqtt.qos"
	HeaderRetain          = "mqtt.retain"
	HeaderClientID        = "mqtt.client_id"
	HeaderUsername        = "mqtt.username"
	HeaderContentType     = "mqtt.content_type"
	HeaderResponseTopic   = "mqtt.response_topic"
	HeaderCorrelationData = "mqtt.correlation_data"
	HeaderPayloadFormat   = "mqtt.payload_format"
	HeaderMessageExpiry   = "mqtt.message_expiry"
)

// ToRecord converts m into a record with the given key. The record's value aliases
// m.Payload (an empty payload becomes an empty, non-nil value); header values are fresh.
func ToRecord(m *Message, key []byte) log.Record {
	value := m.Payload
	if value == nil {
		value = []byte{}
	}
	return log.Record{Key: key, Value: value, Headers: recordHeaders(m)}
}

func recordHeaders(m *Message) []log.Header {
	n, size := 4, len(m.Topic)+1+5+len(m.ClientID)
	add := func(present bool, l int) {
		if present {
			n++
			size += l
		}
	}
	add(m.Username != "", len(m.Username))
	add(m.ContentType != "", len(m.ContentType))
	add(m.ResponseTopic != "", len(m.ResponseTopic))
	add(m.CorrelationData != nil, len(m.CorrelationData))
	add(m.PayloadFormat != nil, 3)
	add(m.MessageExpiry != nil, 10)
	n += len(m.UserProperties)
	for _, p := range m.UserProperties {
		size += len(p.Value)
	}

	// One backing array for all header values: one allocation instead of one per header.
	buf := make([]byte, 0, size)
	hs := make([]log.Header, 0, n)
	put := func(name string, v []byte) {
		start := len(buf)
		buf = append(buf, v...)
		hs = append(hs, log.Header{Key: name, Value: buf[start:len(buf):len(buf)]})
	}
	putString := func(name, v string) {
		start := len(buf)
		buf = append(buf, v...)
		hs = append(hs, log.Header{Key: name, Value: buf[start:len(buf):len(buf)]})
	}
	putString(HeaderTopic, m.Topic)
	putString(HeaderQoS, strconv.FormatUint(uint64(m.QoS), 10))
	putString(HeaderRetain, strconv.FormatBool(m.Retain))
	putString(HeaderClientID, m.ClientID)
	if m.Username != "" {
		putString(HeaderUsername, m.Username)
	}
	if m.ContentType != "" {
		putString(HeaderContentType, m.ContentType)
	}
	if m.ResponseTopic != "" {
		putString(HeaderResponseTopic, m.ResponseTopic)
	}
	if m.CorrelationData != nil {
		put(HeaderCorrelationData, m.CorrelationData)
	}
	if m.PayloadFormat != nil {
		putString(HeaderPayloadFormat, strconv.FormatUint(uint64(*m.PayloadFormat), 10))
	}
	if m.MessageExpiry != nil {
		putString(HeaderMessageExpiry, strconv.FormatUint(uint64(*m.MessageExpiry), 10))
	}
	for _, p := range m.UserProperties {
		putString(p.Key, p.Value)
	}
	return hs
}

// FromRecord is ToRecord's inverse: the value becomes the payload, mqtt.* headers the
// MQTT fields and every other header a user property, in order. A well-known mqtt.*
// header whose value does not parse is kept as a user property rather than lost.
// Payload and CorrelationData alias the record's bytes.
func FromRecord(r log.Record) Message {
	m := Message{Payload: r.Value}
	for _, h := range r.Headers {
		if !fromHeader(&m, h) {
			m.UserProperties = append(m.UserProperties, UserProperty{Key: h.Key, Value: string(h.Value)})
		}
	}
	return m
}

// fromHeader sets the field h names; false means h is not (a valid) MQTT field header.
func fromHeader(m *Message, h log.Header) bool {
	v := string(h.Value)
	switch h.Key {
	case HeaderTopic:
		m.Topic = v
	case HeaderQoS:
		q, err := strconv.ParseUint(v, 10, 8)
		if err != nil || q > 2 {
			return false
		}
		m.QoS = byte(q)
	case HeaderRetain:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false
		}
		m.Retain = b
	case HeaderClientID:
		m.ClientID = v
	case HeaderUsername:
		m.Username = v
	case HeaderContentType:
		m.ContentType = v
	case HeaderResponseTopic:
		m.ResponseTopic = v
	case HeaderCorrelationData:
		m.CorrelationData = h.Value
		if m.CorrelationData == nil {
			m.CorrelationData = []byte{}
		}
	case HeaderPayloadFormat:
		f, err := strconv.ParseUint(v, 10, 8)
		if err != nil || f > 1 {
			return false
		}
		b := byte(f)
		m.PayloadFormat = &b
	case HeaderMessageExpiry:
		e, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false
		}
		u := uint32(e)
		m.MessageExpiry = &u
	default:
		return false
	}
	return true
}
