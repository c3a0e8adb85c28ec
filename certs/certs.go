// Package certs serves TLS certificates from PEM files for every listener, reloadable
// at run time (SIGHUP) without dropping connections: a reload only changes what the next
// handshake presents and accepts.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
)

// Files names the PEM files of one listener.
type Files struct {
	Cert, Key string
	// ClientCA, when set, is the bundle client certificates must chain to. A client
	// presenting a valid certificate is identified by its subject CN; a client without
	// one may still log in with a password. An invalid or expired certificate fails
	// the handshake.
	ClientCA string
}

// Source is one listener's certificate, key and client CA pool.
type Source struct {
	files Files
	cur   atomic.Pointer[tls.Config]
}

// Load reads the files once; a listener built from Config then follows Reload.
func Load(f Files) (*Source, error) {
	s := &Source{files: f}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the files; on error the previous certificate stays in use.
func (s *Source) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tls %s / %s: %w", s.files.Cert, s.files.Key, err)
	}
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if s.files.ClientCA != "" {
		pem, err := os.ReadFile(s.files.ClientCA)
		if err != nil {
			return fmt.Errorf("tls client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls client_ca %s: no PEM certificate found", s.files.ClientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	s.cur.Store(c)
	return nil
}

// Config is the server TLS configuration: each handshake takes the certificate and
// client CA pool current at that moment.
func (s *Source) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// Listen wraps a TCP listener in TLS with the source's current configuration.
func (s *Source) Listen(ln net.Listener) net.Listener { return tls.NewListener(ln, s.Config()) }

// PeerName returns the subject CN of the verified client certificate of a TLS
// connection whose handshake is done, or false when there is none.
func PeerName(cs tls.ConnectionState) (string, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := cs.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// ErrNoTLS is returned by Handshake for a plain connection.
var ErrNoTLS = errors.New("not a TLS connection")

// Handshake completes the TLS handshake of a connection accepted from a TLS listener
// (so its client certificate can be read before the first request) and returns its
// state.
func Handshake(c net.Conn) (tls.ConnectionState, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, ErrNoTLS
	}
	if err := tc.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	return tc.ConnectionState(), nil
}
