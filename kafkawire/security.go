package kafkawire

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
)

// Listener security, as Kafka's security.protocol names it: plaintext and ssl clients
// are who their connection says (ANONYMOUS, or the CN of a verified client
// certificate); sasl_plaintext and sasl_ssl clients must finish a SASL exchange
// (17_sasl_handshake.go, 36_sasl_authenticate.go) before anything but ApiVersions and
// the SASL APIs is served. Every request is then authorized with the connection's
// principal (authz.go).

// The security protocols of Config.SecurityProtocol.
const (
	protoPlaintext     = "plaintext"
	protoSSL           = "ssl"
	protoSASLPlaintext = "sasl_plaintext"
	protoSASLSSL       = "sasl_ssl"
)

// Failed SASL logins allowed per remote host and window before further attempts are
// refused unchecked (auth.Limiter).
const (
	loginFailBurst  = 10
	loginFailWindow = time.Minute
)

// tlsHandshakeTimeout bounds a TLS handshake, so a silent peer cannot hold a goroutine.
const tlsHandshakeTimeout = 10 * time.Second

// checkSecurity validates the listener's protocol against the options.
func checkSecurity(o Options) (proto string, err error) {
	proto = o.Config.SecurityProtocol
	if proto == "" {
		proto = protoPlaintext
	}
	switch proto {
	case protoPlaintext, protoSASLPlaintext:
		if o.TLS != nil {
			return "", fmt.Errorf("kafkawire: TLS certificates given for security protocol %s", proto)
		}
	case protoSSL, protoSASLSSL:
		if o.TLS == nil {
			return "", fmt.Errorf("kafkawire: security protocol %s needs TLS certificates", proto)
		}
	default:
		return "", fmt.Errorf("kafkawire: unknown security protocol %q (known: plaintext, ssl, sasl_plaintext, sasl_ssl)", proto)
	}
	if (proto == protoSASLPlaintext || proto == protoSASLSSL) && o.Auth == nil {
		return "", fmt.Errorf("kafkawire: security protocol %s needs a user store", proto)
	}
	return proto, nil
}

// sasl tells whether the listener requires SASL authentication.
func (s *Server) sasl() bool { return s.proto == protoSASLPlaintext || s.proto == protoSASLSSL }

// listen wraps the TCP listener in TLS for ssl and sasl_ssl.
func (s *Server) listen(ln net.Listener) net.Listener {
	if s.tls != nil {
		return s.tls.Listen(ln)
	}
	return ln
}

// connSecurity is one connection's identity and SASL progress; only the connection's
// goroutine touches it.
type connSecurity struct {
	// principal is who the requests are authorized as. The zero Principal is refused
	// everything (a client certificate naming no known user, or anonymous clients
	// refused on a listener without SASL).
	principal auth.Principal
	// authenticated is set once a SASL exchange succeeded (listeners with SASL only).
	authenticated bool
	// user is the SASL user of the first authentication: re-authentication (KIP-368)
	// must prove the same one.
	user string
	// expires ends the session (SaslAuthenticate's session_lifetime_ms); zero never.
	expires time.Time

	// mech is the mechanism of the last SaslHandshake, "" before one.
	mech string
	// handshakeVersion is the version of that handshake: 0 means the SASL tokens come
	// as bare size-prefixed frames instead of SaslAuthenticate requests.
	handshakeVersion int16
	// scram is the SCRAM exchange in progress, or nil.
	scram *auth.ScramServer
	// closeAfterWrite ends the connection once the current response is written (a
	// failed authentication is answered, then the connection closed, as Kafka does).
	closeAfterWrite bool
}

// errUnauthenticated closes a connection that sends a request before authenticating.
var errUnauthenticated = errors.New("request before SASL authentication")

// errSessionExpired closes a connection whose SASL session ended without
// re-authentication.
var errSessionExpired = errors.New("SASL session expired")

// setupSecurity runs before the first request: it finishes the TLS handshake (to read
// the client certificate) and sets the principal of listeners without SASL.
func (c *conn) setupSecurity() error {
	s := c.s
	var peerCN string
	if s.tls != nil {
		_ = c.nc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		st, err := certs.Handshake(c.nc)
		_ = c.nc.SetDeadline(time.Time{})
		if err != nil {
			c.lg.Warn().Err(err).Msg("kafka TLS handshake failed")
			return err
		}
		ackHandshake(c.nc)
		peerCN, _ = certs.PeerName(st)
	}
	if s.sasl() || s.auth == nil {
		return nil // the principal comes from SASL, or nothing is checked
	}
	if peerCN != "" {
		if p, ok := s.auth.Lookup(peerCN); ok {
			c.sec.principal = p
			c.lg = c.lg.With().Str("user", peerCN).Logger()
			return nil
		}
		// Kafka would authorize User:<CN> against its ACLs; with no such user here
		// nothing is granted.
		c.lg.Warn().Str("cn", peerCN).Msg("kafka client certificate names no known user; every request will be refused")
		return nil
	}
	if p, ok := s.auth.Anonymous(); ok {
		c.sec.principal = p
		return nil
	}
	c.lg.Info().Msg("kafka client without credentials and anonymous access refused; every request will be refused")
	return nil
}

// gate decides whether a request may be served in the connection's state; an error
// closes the connection, as Kafka does for requests before authentication.
func (c *conn) gate(key int16) error {
	switch key {
	case apiVersionsKey, saslHandshakeKey, saslAuthenticateKey:
		return nil
	}
	if c.s.sasl() && !c.sec.authenticated {
		return fmt.Errorf("%w: %s", errUnauthenticated, kmsg.NameForKey(key))
	}
	if !c.sec.expires.IsZero() && time.Now().After(c.sec.expires) {
		return fmt.Errorf("%w: %s", errSessionExpired, kmsg.NameForKey(key))
	}
	return nil
}
