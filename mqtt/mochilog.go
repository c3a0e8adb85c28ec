package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// quietRefusals drops the line mochi v2.7.9's TCP listener logs (level warn, empty
// message, the error only) for a connection refused at login or at its TLS handshake:
// the auth hook and tlsLogConn have logged those once, with the remote address.
type quietRefusals struct{ slog.Handler }

// Handle skips the duplicate lines.
func (q quietRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" && r.Level == slog.LevelWarn {
		skip := false
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
				skip = errors.Is(err, packets.ErrBadUsernameOrPassword) || errors.As(err, new(handshakeError))
				return false
			}
			return true
		})
		if skip {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

// WithAttrs keeps the filter on derived handlers.
func (q quietRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return quietRefusals{q.Handler.WithAttrs(as)}
}

// WithGroup keeps the filter on derived handlers.
func (q quietRefusals) WithGroup(name string) slog.Handler {
	return quietRefusals{q.Handler.WithGroup(name)}
}

// handshakeError is a failed TLS handshake (an expired or unknown client certificate,
// plain text on a TLS port, ...).
type handshakeError struct{ err error }

func (e handshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e handshakeError) Unwrap() error { return e.err }

// tlsLogListener hands out connections that log a failed TLS handshake once, with the
// remote address; the handshake itself runs on the connection's first read, in mochi's
// goroutine for the connection, so a slow client does not hold up Accept.
type tlsLogListener struct {
	net.Listener // a tls.NewListener
	lg           zerolog.Logger
}

// Accept wraps the next TLS connection.
func (l tlsLogListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil
	}
	return &tlsLogConn{Conn: tc, lg: l.lg}, nil
}

type tlsLogConn struct {
	*tls.Conn
	lg   zerolog.Logger
	once sync.Once
	err  error
}

// Read completes the handshake first, logging its failure.
func (c *tlsLogConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		if err := c.Handshake(); err != nil {
			c.err = handshakeError{err}
			c.lg.Warn().Str("remote", c.RemoteAddr().String()).Err(err).Msg("mqtt tls handshake failed")
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}
