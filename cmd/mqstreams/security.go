package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/conf"
	"github.com/mqstreams/mqstreams/log"
)

// tlsSources are the certificate sources of the listeners that speak TLS (nil for
// those that do not); SIGHUP reloads them all.
type tlsSources struct {
	mqtt, kafka, http *certs.Source
}

func loadTLS(cfg Config) (tlsSources, error) {
	var t tlsSources
	load := func(field string, c TLSConfig, dst **certs.Source) error {
		if !c.Enabled() {
			return nil
		}
		s, err := certs.Load(certs.Files{Cert: c.Cert, Key: c.Key, ClientCA: c.ClientCA})
		if err != nil {
			return &conf.Error{Path: field, Err: err}
		}
		*dst = s
		return nil
	}
	kafkaTLS := cfg.Kafka.SecurityProtocol == "ssl" || cfg.Kafka.SecurityProtocol == "sasl_ssl"
	switch {
	case kafkaTLS && !cfg.Kafka.TLS.Enabled():
		return t, &conf.Error{Path: "kafka.tls", Err: fmt.Errorf("security_protocol %s needs tls.cert and tls.key", cfg.Kafka.SecurityProtocol)}
	case !kafkaTLS && cfg.Kafka.TLS.Enabled():
		return t, &conf.Error{Path: "kafka.security_protocol", Err: fmt.Errorf("kafka.tls is set but security_protocol is %s (want ssl or sasl_ssl)", cfg.Kafka.SecurityProtocol)}
	}
	for _, err := range []error{
		load("mqtt.tls", cfg.MQTT.TLS, &t.mqtt),
		load("kafka.tls", cfg.Kafka.TLS, &t.kafka),
		load("http.tls", cfg.HTTP.TLS, &t.http),
	} {
		if err != nil {
			return t, err
		}
	}
	return t, nil
}

// reload re-reads every certificate; a listener whose files fail keeps its old one.
func (t tlsSources) reload(lg zerolog.Logger) {
	for name, s := range map[string]*certs.Source{"mqtt": t.mqtt, "kafka": t.kafka, "http": t.http} {
		if s == nil {
			continue
		}
		if err := s.Reload(); err != nil {
			lg.Error().Err(err).Str("listener", name).Msg("tls reload failed; the previous certificate stays in use")
			continue
		}
		lg.Info().Str("listener", name).Msg("tls certificate reloaded")
	}
}

// newAuthStore builds the user store from the config and the users stored in the log.
func newAuthStore(cfg Config, l *log.Log, lg zerolog.Logger) (*auth.Store, error) {
	allow := cfg.Auth.AllowAnonymous != nil && *cfg.Auth.AllowAnonymous
	rules := cfg.Auth.AnonymousRules()
	if allow && rules == nil {
		// Anonymous clients, when allowed and given no rules of their own, may use the
		// broker and the streams as before authentication existed, but not administer.
		rules = []auth.Rule{
			{Resource: auth.ResTopic, Name: "#", Ops: auth.OpPublish | auth.OpSubscribe},
			auth.StreamRule("*", auth.OpRead|auth.OpWrite),
			{Resource: auth.ResGroup, Name: "", Prefix: true, Ops: auth.OpRead},
		}
	}
	s, err := auth.NewStore(auth.Options{
		Users:           cfg.Auth.UserList(),
		AllowAnonymous:  allow,
		RefuseAnonymous: cfg.Auth.AllowAnonymous != nil && !allow,
		AnonymousRules:  rules,
		Entries:         l,
		Logger:          lg.With().Str("component", "auth").Logger(),
	})
	if err != nil {
		return nil, &conf.Error{Path: "auth", Err: err}
	}
	if cfg.Auth.AllowAnonymous != nil && !allow && len(s.Users()) == 0 {
		lg.Warn().Msg("auth.allow_anonymous is false and no user exists: no client can log in until one is added (mqstreams users add --data-dir)")
	}
	return s, nil
}

// openModeAddrs applies mosquitto 2.0's rule to the open demo mode (no users, anonymous
// access not configured): listeners without a host bind loopback only, and a listener
// configured on another interface stops start-up.
func openModeAddrs(cfg *Config, open bool, lg zerolog.Logger) error {
	if !open {
		return nil
	}
	for _, l := range []struct {
		field string
		addr  *string
	}{{"mqtt.addr", &cfg.MQTT.Addr}, {"mqtt.ws_addr", &cfg.MQTT.WSAddr}, {"kafka.addr", &cfg.Kafka.Addr}, {"http.addr", &cfg.HTTP.Addr}} {
		if *l.addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(*l.addr)
		if err != nil {
			return &conf.Error{Path: l.field, Err: err}
		}
		switch {
		case host == "":
			*l.addr = net.JoinHostPort("127.0.0.1", port)
		case !isLoopback(host):
			return &conf.Error{Path: l.field, Err: fmt.Errorf("%s is not a loopback address and no user is configured: add auth.users, or set auth.allow_anonymous: true to let anyone in", *l.addr)}
		}
	}
	lg.Warn().Msg("no users configured: listening on loopback only, and every local client may do everything (add auth.users or set auth.allow_anonymous)")
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errNoCredentials is what an unauthenticated admin request is told.
var errNoCredentials = errors.New("authentication required")
