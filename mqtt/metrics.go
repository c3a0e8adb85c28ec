package mqtt

import (
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqstreams/mqstreams/mapping"
)

// metrics are the MQTT side's Prometheus series.
type metrics struct {
	connections prometheus.GaugeFunc
	appended    *prometheus.CounterVec
	failed      *prometheus.CounterVec
	// ingestDropped counts publishes nobody waits for that the full append queue refused.
	ingestDropped *prometheus.CounterVec
	unmatched     prometheus.Counter
	fallbacks     *prometheus.CounterVec
	refused       *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	bytesIn       prometheus.CounterFunc
	bytesOut      prometheus.CounterFunc
	// loginFailures counts refused CONNECTs (credentials, rate limit, will, client id).
	loginFailures prometheus.Counter
}

// countFallbacks counts the targets whose key came from the stream's key_fallback.
func (m *metrics) countFallbacks(targets []mapping.Target) {
	for i := range targets {
		if targets[i].KeyFallback {
			m.fallbacks.WithLabelValues(targets[i].Stream).Inc()
		}
	}
}

// packetTooLarge counts a connection ended for a packet over the maximum size.
func (m *metrics) packetTooLarge() { m.refused.WithLabelValues("packet_too_large").Inc() }

func newMetrics(broker *mochi.Server) *metrics {
	return &metrics{
		// A const label rather than a vector, so the Kafka side can register its own
		// collector for the same series name with proto="kafka".
		connections: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "mqstreams_connections",
			Help:        "Open client connections by protocol.",
			ConstLabels: prometheus.Labels{"proto": "mqtt"},
		}, func() float64 { return float64(atomic.LoadInt64(&broker.Info.ClientsConnected)) }),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_publishes_appended_total",
			Help: "MQTT publishes durably appended to a stream.",
		}, []string{"stream"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_append_failures_total",
			Help: "MQTT publishes whose append to a stream failed.",
		}, []string{"stream"}),
		ingestDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_dropped_total",
			Help: "MQTT publishes nobody waits for (QoS 0, wills) not appended, by reason: queue_full when the append queue was full.",
		}, []string{"reason"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_key_fallbacks_total",
			Help: "MQTT publishes whose stream key expression yielded nothing (say a JSON path missing from the payload), so the stream's key_fallback gave the key.",
		}, []string{"stream"}),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_publishes_unmatched_total",
			Help: "MQTT publishes that matched no stream (delivered to subscribers only).",
		}),
		// Const proto labels, like connections, so the Kafka side registers the same
		// series names with proto="kafka".
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "mqstreams_connections_refused_total",
			Help:        "Connections refused or ended by the server, by protocol and reason.",
			ConstLabels: prometheus.Labels{"proto": "mqtt"},
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_messages_dropped_total",
			Help: "MQTT messages not delivered to a subscriber by a limit (queue_full: mqtt.max_queued_packets), or publishes refused (stream_topic: a PUBLISH to $stream/).",
		}, []string{"reason"}),
		bytesIn: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "mqstreams_received_bytes_total",
			Help:        "Bytes received from clients, by protocol.",
			ConstLabels: prometheus.Labels{"proto": "mqtt"},
		}, func() float64 { return float64(atomic.LoadInt64(&broker.Info.BytesReceived)) }),
		bytesOut: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "mqstreams_sent_bytes_total",
			Help:        "Bytes sent to clients, by protocol.",
			ConstLabels: prometheus.Labels{"proto": "mqtt"},
		}, func() float64 { return float64(atomic.LoadInt64(&broker.Info.BytesSent)) }),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_login_failures_total",
			Help: "MQTT connections refused at login (bad credentials, rate-limited, will or client id not allowed).",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.connections, m.appended, m.failed, m.loginFailures, m.unmatched, m.fallbacks, m.refused, m.dropped, m.ingestDropped, m.bytesIn, m.bytesOut} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
