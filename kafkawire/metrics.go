package kafkawire

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus series; a nil *metrics records nothing.
type metrics struct {
	conns      prometheus.Gauge
	fetchBytes *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	timeouts   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	// The series name is shared with the MQTT listener, which registers its own gauge
	// with proto="mqtt": both use a constant proto label and the same help, as a
	// registry requires of two collectors of one metric name.
	conns, err := registerOrExisting(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mqstreams_connections",
		Help:        "Open client connections by protocol.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	}))
	if err != nil {
		return nil, err
	}
	fetch, err := registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mqstreams_kafka_fetch_bytes_total",
		Help: "Record batch bytes returned to Kafka fetches, per stream.",
	}, []string{"stream"}))
	if err != nil {
		return nil, err
	}
	refusals, err := registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "mqstreams_limit_refusals_total",
		Help:        "Connections, requests or messages refused by a limit, by protocol and limit.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	}, []string{"limit"}))
	if err != nil {
		return nil, err
	}
	timeouts, err := registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "mqstreams_timeouts_total",
		Help:        "Connections closed by a timeout, by protocol and timeout.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	}, []string{"timeout"}))
	if err != nil {
		return nil, err
	}
	return &metrics{conns: conns, fetchBytes: fetch, refusals: refusals, timeouts: timeouts}, nil
}

func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) connOpened() {
	if m != nil {
		m.conns.Inc()
	}
}

func (m *metrics) connClosed() {
	if m != nil {
		m.conns.Dec()
	}
}

func (m *metrics) fetched(stream string, n int) {
	if m != nil && n > 0 {
		m.fetchBytes.WithLabelValues(stream).Add(float64(n))
	}
}

func (m *metrics) refused(limit string) {
	if m != nil {
		m.refusals.WithLabelValues(limit).Inc()
	}
}

func (m *metrics) timedOut(which string) {
	if m != nil {
		m.timeouts.WithLabelValues(which).Inc()
	}
}
