package mqtt

import (
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the MQTT side's Prometheus series.
type metrics struct {
	connections prometheus.GaugeFunc
	appended    *prometheus.CounterVec
	failed      *prometheus.CounterVec
	// loginFailures counts refused CONNECTs (credentials, rate limit, will, client id).
	loginFailures prometheus.Counter
}

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
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqstreams_mqtt_login_failures_total",
			Help: "MQTT connections refused at login (bad credentials, rate-limited, will or client id not allowed).",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.connections, m.appended, m.failed, m.loginFailures} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
