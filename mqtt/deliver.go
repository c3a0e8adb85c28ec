package mqtt

import (
	"bytes"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Reasons a produced record is not delivered (label of the skipped counter).
const (
	skipInvalidTopic  = "invalid_topic"
	skipNotAuthorized = "not_authorized"
	skipTooLarge      = "too_large"
	skipOverloaded    = "overloaded"
)

// maxQueuedBytes bounds the produced records waiting for delivery. Past it new batches
// are not delivered (counted as overloaded; they stay in the log for $stream replay),
// as mochi drops messages for a client whose outbound queue is full: a burst of Kafka
// produces must not grow the server's memory without bound.
const maxQueuedBytes = 64 << 20

// deliverer publishes records produced over Kafka to live MQTT subscribers through
// mochi's inline client (mochi_inline.go), one batch at a time in the order the log
// committed them. The topic is the record's mqtt.topic header, else the stream's
// publish_topic; mqtt.qos (default: each subscription's maximum, as $stream replay
// does), mqtt.retain and the MQTT 5 property headers map back onto the PUBLISH and
// other headers become user properties. A record is not delivered (but stays stored)
// when its topic is not a valid MQTT topic name or starts with '$', when the producer
// may not publish to it, or when its PUBLISH exceeds our own maximum packet size.
type deliverer struct {
	mochi.HookBase

	broker    *mochi.Server
	router    *mapping.Router
	lg        zerolog.Logger
	maxPacket int

	delivered *prometheus.CounterVec
	skipped   *prometheus.CounterVec

	mu         sync.Mutex
	queue      []mapping.Produced
	queued     int // bytes of the queued records
	closed     bool
	lastWarned time.Time
	wake       chan struct{}
	stop       chan struct{}
	stopped    chan struct{}

	tmplMu sync.Mutex
	tmpls  map[string]*mapping.TopicTemplate // by template text
}

func newDeliverer(broker *mochi.Server, router *mapping.Router, maxPacket int, lg zerolog.Logger) *deliverer {
	return &deliverer{
		broker:    broker,
		router:    router,
		lg:        lg,
		maxPacket: maxPacket,
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_kafka_produced_delivered_total",
			Help: "Records produced over Kafka published to MQTT subscribers.",
		}, []string{"stream"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_kafka_produced_skipped_total",
			Help: "Records produced over Kafka (or copies for one client) not published to MQTT, by reason: invalid_topic, not_authorized, too_large, overloaded.",
		}, []string{"reason"}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		tmpls:   map[string]*mapping.TopicTemplate{},
	}
}

// ID names the hook in mochi's logs.
func (d *deliverer) ID() string { return "mqstreams-deliver" }

// Provides lists the mochi events the hook handles.
func (d *deliverer) Provides(b byte) bool { return b == mochi.OnPacketEncode }

// OnPacketEncode counts (and un-tracks) a delivery too large for the receiving client,
// which mochi then drops.
func (d *deliverer) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if injected(&pk) && pk.Mods.MaxSize > 0 {
		var buf bytes.Buffer
		tooLargeFor(cl, &pk, &buf, d.skipped.WithLabelValues(skipTooLarge).Inc)
	}
	return pk
}

func (d *deliverer) run() {
	defer close(d.stopped)
	for {
		d.mu.Lock()
		q := d.queue
		d.queue = nil
		d.queued = 0
		d.mu.Unlock()
		for _, p := range q {
			d.deliver(p)
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-d.wake:
		case <-d.stop:
			return
		}
	}
}

// enqueue queues a durable batch; it never blocks (it is called in the log's commit
// order, on the committer's goroutine).
func (d *deliverer) enqueue(p mapping.Produced) {
	size := 0
	for i := range p.Records {
		r := &p.Records[i]
		size += len(r.Key) + len(r.Value) + 64
		for _, h := range r.Headers {
			size += len(h.Key) + len(h.Value) + 16
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if d.queued > 0 && d.queued+size > maxQueuedBytes {
		warn := time.Since(d.lastWarned) > 10*time.Second
		if warn {
			d.lastWarned = time.Now()
		}
		queued := d.queued
		d.mu.Unlock()
		d.skipped.WithLabelValues(skipOverloaded).Add(float64(len(p.Records)))
		if warn {
			d.lg.Warn().Str("stream", p.Stream).Int("queued_bytes", queued).Msg("MQTT delivery of produced records falls behind; records not delivered (they stay in the stream)")
		}
		return
	}
	d.queue = append(d.queue, p)
	d.queued += size
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close stops delivering; batches still queued are dropped (they stay in the log).
func (d *deliverer) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	<-d.stopped
}

func (d *deliverer) template(def *mapping.Definition) *mapping.TopicTemplate {
	text := def.PublishTopic
	if text == "" {
		text = mapping.DefaultPublishTopic
	}
	d.tmplMu.Lock()
	defer d.tmplMu.Unlock()
	t := d.tmpls[text]
	if t == nil {
		var err error
		if t, err = mapping.ParseTopicTemplate(text); err != nil {
			// Definitions are validated before they reach the router.
			d.lg.Error().Err(err).Str("stream", def.Name).Msg("publish_topic")
			return nil
		}
		d.tmpls[text] = t
	}
	return t
}

func (d *deliverer) deliver(p mapping.Produced) {
	def, ok := d.router.Definition(p.Stream)
	if !ok || !def.Delivers() {
		return
	}
	tmpl := d.template(&def)
	if tmpl == nil {
		return
	}
	var scratch bytes.Buffer
	n := 0
	for i := range p.Records {
		r := &p.Records[i]
		pk, reason := d.packet(&p, tmpl, r, &scratch)
		if reason != "" {
			d.skipped.WithLabelValues(reason).Inc()
			d.lg.Debug().Str("stream", p.Stream).Int32("partition", p.Partition).Str("reason", reason).
				Msg("produced record not delivered to MQTT")
			continue
		}
		if err := injectDelivery(d.broker, pk); err != nil {
			d.lg.Warn().Err(err).Str("stream", p.Stream).Str("topic", pk.TopicName).Msg("deliver produced record")
			continue
		}
		n++
	}
	if n > 0 {
		d.delivered.WithLabelValues(p.Stream).Add(float64(n))
	}
}

// packet builds the PUBLISH for r, or names why r is not delivered.
func (d *deliverer) packet(p *mapping.Produced, tmpl *mapping.TopicTemplate, r *log.Record, scratch *bytes.Buffer) (packets.Packet, string) {
	if hasHeader(r.Headers, mapping.HeaderTopicDenied) {
		// The producer claimed a topic it may not publish to (kafkawire renamed the
		// header when storing it): not delivered under it, nor under the template.
		return packets.Packet{}, skipNotAuthorized
	}
	msg := mapping.FromRecord(*r)
	topic := msg.Topic
	if !hasHeader(r.Headers, mapping.HeaderTopic) {
		topic = tmpl.Render(p.Stream, p.Partition, r)
	}
	if mapping.ValidTopic(topic) != nil || strings.HasPrefix(topic, "$") {
		return packets.Packet{}, skipInvalidTopic
	}
	if p.MayPublish != nil && !p.MayPublish(topic) {
		return packets.Packet{}, skipNotAuthorized
	}
	qos := byte(2) // no mqtt.qos: each subscription's maximum applies
	if hasHeader(r.Headers, mapping.HeaderQoS) {
		qos = msg.QoS
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: msg.Retain},
		TopicName:   topic,
		Payload:     msg.Payload,
		// As mochi's Server.Publish: an id only for validity (none at QoS 0), the inline
		// client's publishes are not acknowledged.
		PacketID: uint16(qos),
		Created:  time.Now().Unix(),
	}
	pk.Properties.User = setProperties(&pk.Properties, &msg, 0)
	// Our own limit, for MQTT 5 encoding (the largest): a larger PUBLISH is sent to no
	// one. Encoding only to measure is skipped when a cheap upper bound fits.
	if publishSizeBound(&pk) > d.maxPacket {
		check := pk
		check.ProtocolVersion = 5
		scratch.Reset()
		if err := check.PublishEncode(scratch); err != nil || scratch.Len() > d.maxPacket {
			return packets.Packet{}, skipTooLarge
		}
	}
	return pk, ""
}

// publishSizeBound is at least the size of pk encoded as an MQTT 5 PUBLISH: fixed
// header, topic, packet id, property length and every property with its overhead.
func publishSizeBound(pk *packets.Packet) int {
	p := &pk.Properties
	n := 5 + 2 + len(pk.TopicName) + 2 + 4 + len(pk.Payload)
	n += 2 + 5 + 3 + len(p.ContentType) + 3 + len(p.ResponseTopic) + 3 + len(p.CorrelationData)
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Val)
	}
	return n
}
