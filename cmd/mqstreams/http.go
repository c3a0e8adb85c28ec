package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/kafkawire"
)

// httpServer serves liveness, readiness and metrics.
type httpServer struct {
	srv     *http.Server
	mux     *http.ServeMux
	routes  []string // patterns registered through Handle
	ln      net.Listener
	lg      zerolog.Logger
	ready   atomic.Bool
	started atomic.Bool
	// health, when set, can hold readiness down with a reason (a full disk).
	health atomic.Pointer[func() (bool, string)]
	done   chan struct{} // closed when Serve returns
	err    error         // Serve's error, set before done closes
}

// newHTTPServer binds addr; the handlers answer as soon as serve starts.
// A nil guard serves without authentication (tests of the probes alone).
func newHTTPServer(addr string, tlsSrc *certs.Source, gatherer prometheus.Gatherer, guard *apiAuth, metricsAuth bool, lg zerolog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	if tlsSrc != nil {
		ln = tlsSrc.Listen(ln)
	}
	h := &httpServer{ln: ln, done: make(chan struct{}), lg: lg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !h.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		if f := h.health.Load(); f != nil {
			if ok, why := (*f)(); !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + why + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	var metrics http.Handler = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog: promLogger{lg},
		// A failing collector should not hide all the others.
		ErrorHandling: promhttp.ContinueOnError,
	})
	if guard != nil && metricsAuth {
		metrics = guard.metrics(metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /api/v5/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	if guard != nil {
		mux.HandleFunc("POST /api/v5/login", guard.login)
		// Every other /api/ path, served or not, asks for credentials first, so an
		// unauthenticated client learns nothing of which paths exist.
		mux.Handle("/api/", guard.require(readAny, http.NotFoundHandler()))
	}
	h.mux = mux
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// net/http reports failed TLS handshakes (with the remote address) here.
		ErrorLog: stdlog.New(lineLogger{lg}, "", 0),
	}
	return h, nil
}

// Handle adds a route once the component behind it is up (ServeMux allows this while
// serving).
func (h *httpServer) Handle(pattern string, handler http.Handler) {
	h.mux.Handle(pattern, handler)
	h.routes = append(h.routes, pattern)
}

// openAPI describes every path of the HTTP API (served at /api/v5/openapi.json; a test
// checks that each registered route is in it).
//
//go:embed openapi.json
var openAPI []byte

// groupsHandler serves GET /api/v1/groups: the committed offsets and lag of every group
// the caller may read ($mqtt/ groups name MQTT client ids: administrators only).
func groupsHandler(lags func() []kafkawire.GroupLag) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		type partition struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			Committed int64  `json:"committed"`
			HWM       int64  `json:"hwm"`
			Lag       int64  `json:"lag"`
		}
		type group struct {
			Group      string      `json:"group"`
			TotalLag   int64       `json:"total_lag"`
			Partitions []partition `json:"partitions"`
		}
		out := []group{}
		for _, l := range lags() {
			if !p.CanGroup(l.Group, auth.OpRead) {
				continue
			}
			if len(out) == 0 || out[len(out)-1].Group != l.Group {
				out = append(out, group{Group: l.Group, Partitions: []partition{}})
			}
			g := &out[len(out)-1]
			g.TotalLag += l.Lag
			g.Partitions = append(g.Partitions, partition{Topic: l.Topic, Partition: l.Partition, Committed: l.Committed, HWM: l.HWM, Lag: l.Lag})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": out})
	})
}

// Addr is the bound address.
func (h *httpServer) Addr() net.Addr { return h.ln.Addr() }

// Start serves in the background.
func (h *httpServer) Start() {
	h.started.Store(true)
	go func() {
		if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
			h.err = fmt.Errorf("http serve: %w", err)
		}
		close(h.done)
	}()
}

// SetHealth makes /readyz answer 503 with the reason while f reports false.
func (h *httpServer) SetHealth(f func() (bool, string)) { h.health.Store(&f) }

// setTimeouts bounds reading a request and keeping an idle keep-alive connection;
// connections the server closes at either are logged and counted.
func (h *httpServer) setTimeouts(read, idle time.Duration, reg prometheus.Registerer) {
	h.srv.ReadTimeout, h.srv.IdleTimeout = read, idle
	if h.srv.ReadHeaderTimeout > read {
		h.srv.ReadHeaderTimeout = read
	}
	closed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "mqstreams_connections_refused_total",
		Help:        "Connections refused or ended by the server, by protocol and reason.",
		ConstLabels: prometheus.Labels{"proto": "http"},
	}, []string{"reason"})
	if reg != nil {
		_ = reg.Register(closed)
	}
	var states sync.Map // net.Conn -> time the connection went idle
	h.srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateIdle:
			states.Store(c, time.Now())
		case http.StateActive:
			states.Delete(c)
		case http.StateClosed, http.StateHijacked:
			v, wasIdle := states.LoadAndDelete(c)
			if wasIdle && st == http.StateClosed && time.Since(v.(time.Time)) >= idle {
				closed.WithLabelValues("idle_timeout").Inc()
				h.lg.Debug().Str("remote", c.RemoteAddr().String()).Dur("idle_timeout", idle).Msg("http keep-alive connection closed: idle")
			}
		}
	}
}

// SetReady flips /readyz.
func (h *httpServer) SetReady(ready bool) { h.ready.Store(ready) }

// Shutdown stops accepting, lets in-flight requests finish until ctx ends.
func (h *httpServer) Shutdown(ctx context.Context) error {
	h.ready.Store(false)
	if !h.started.Load() {
		return h.ln.Close()
	}
	if err := h.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-h.done
	return h.err
}

// Done is closed when the server stops serving, by Shutdown or by a failure (see Err).
func (h *httpServer) Done() <-chan struct{} { return h.done }

// Err is why the server stopped serving, nil after Shutdown; valid once Done is closed.
func (h *httpServer) Err() error { return h.err }

// lineLogger turns net/http's log lines into warnings.
type lineLogger struct{ lg zerolog.Logger }

func (l lineLogger) Write(p []byte) (int, error) {
	l.lg.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

type promLogger struct{ lg zerolog.Logger }

func (p promLogger) Println(v ...any) { p.lg.Warn().Msg(fmt.Sprint(v...)) }
