package kafkawire

import (
	"errors"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metrics are the broker's Prometheus series; a nil *metrics records nothing.
type metrics struct {
	conns      prometheus.Gauge
	fetchBytes *prometheus.CounterVec
	requests   *prometheus.CounterVec
	errors     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	refused    *prometheus.CounterVec
	bytesIn    prometheus.Counter
	bytesOut   prometheus.Counter
	refusals   *prometheus.CounterVec
	timeouts   *prometheus.CounterVec
	txns       *prometheus.CounterVec
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
	m := &metrics{conns: conns, fetchBytes: fetch, refusals: refusals, timeouts: timeouts}
	if m.requests, err = registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mqstreams_kafka_requests_total",
		Help: "Kafka requests handled, by API.",
	}, []string{"api"})); err != nil {
		return nil, err
	}
	if m.errors, err = registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mqstreams_kafka_errors_total",
		Help: "Error codes in Kafka responses (each partition's counts), and requests that closed the connection (error=\"connection_closed\"), by API and error.",
	}, []string{"api", "error"})); err != nil {
		return nil, err
	}
	if m.latency, err = registerOrExisting(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mqstreams_kafka_request_duration_seconds",
		Help:    "Time from a Kafka request read to its response ready, by API (a Fetch includes its wait).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs to ~13s
	}, []string{"api"})); err != nil {
		return nil, err
	}
	if m.txns, err = registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mqstreams_kafka_transactions_total",
		Help: "Kafka transactions ended, by outcome (commit, abort, timeout: aborted past its timeout, fenced: aborted by a new producer instance).",
	}, []string{"outcome"})); err != nil {
		return nil, err
	}
	// The next three share their names with the MQTT listener's (proto="mqtt").
	if m.refused, err = registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "mqstreams_connections_refused_total",
		Help:        "Connections refused or ended by the server, by protocol and reason.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	}, []string{"reason"})); err != nil {
		return nil, err
	}
	if m.bytesIn, err = registerOrExisting(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "mqstreams_received_bytes_total",
		Help:        "Bytes received from clients, by protocol.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	})); err != nil {
		return nil, err
	}
	if m.bytesOut, err = registerOrExisting(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "mqstreams_sent_bytes_total",
		Help:        "Bytes sent to clients, by protocol.",
		ConstLabels: prometheus.Labels{"proto": "kafka"},
	})); err != nil {
		return nil, err
	}
	return m, nil
}

// request records one handled request: its count, latency and the error codes of its
// response.
func (m *metrics) request(key int16, d time.Duration, resp kmsg.Response) {
	if m == nil {
		return
	}
	api := kmsg.NameForKey(key)
	m.requests.WithLabelValues(api).Inc()
	m.latency.WithLabelValues(api).Observe(d.Seconds())
	if resp != nil {
		errorCodes(reflect.ValueOf(resp), func(code int16) {
			name := "UNKNOWN"
			if e := kerr.ErrorForCode(code); e != nil {
				var ke *kerr.Error
				if errors.As(e, &ke) {
					name = ke.Message
				}
			}
			m.errors.WithLabelValues(api, name).Inc()
		})
	}
}

// failed records a request that closed its connection (undecodable, unknown API).
func (m *metrics) failed(key int16, reason string) {
	if m == nil {
		return
	}
	api := kmsg.NameForKey(key)
	if api == "Unknown" || api == "" {
		api = "unknown"
	}
	m.errors.WithLabelValues(api, "connection_closed").Inc()
	m.refused.WithLabelValues(reason).Inc()
}

func (m *metrics) traffic(in, out int) {
	if m == nil {
		return
	}
	if in > 0 {
		m.bytesIn.Add(float64(in))
	}
	if out > 0 {
		m.bytesOut.Add(float64(out))
	}
}

// errorCodes calls fn with every non-zero ErrorCode field in a kmsg response (the
// top-level one and those of topics and partitions), skipping byte slices.
func errorCodes(v reflect.Value, fn func(int16)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			errorCodes(v.Elem(), fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if t.Field(i).Name == "ErrorCode" && f.Kind() == reflect.Int16 {
				if c := int16(f.Int()); c != 0 {
					fn(c)
				}
				continue
			}
			switch f.Kind() {
			case reflect.Struct, reflect.Slice, reflect.Pointer:
				errorCodes(f, fn)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := 0; i < v.Len(); i++ {
			errorCodes(v.Index(i), fn)
		}
	}
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

// limitRefused counts a request (or part of one) refused by a limit.
func (m *metrics) limitRefused(limit string) {
	if m != nil {
		m.refusals.WithLabelValues(limit).Inc()
	}
}

// refusedConn counts a connection refused or ended by a limit.
func (m *metrics) refusedConn(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) timedOut(which string) {
	if m != nil {
		m.timeouts.WithLabelValues(which).Inc()
	}
}

// txnEnded counts an ended transaction by outcome.
func (m *metrics) txnEnded(outcome string) {
	if m == nil {
		return
	}
	m.txns.WithLabelValues(outcome).Inc()
}
