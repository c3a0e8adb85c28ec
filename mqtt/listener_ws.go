package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket as mochi v2.7.9's listeners.Websocket does
// (gorilla/websocket, subprotocol "mqtt", one MQTT byte stream in binary messages), on
// a listener bound before the broker starts. mochi's own binds inside Serve
// (http.Server.ListenAndServe), so a ":0" port could not be reported, and takes a fixed
// tls.Config where we hand it a listener whose handshakes follow certificate reloads.
type wsListener struct {
	id       string
	ln       net.Listener // TLS-wrapped when the listener serves TLS
	tls      bool
	srv      *http.Server
	upgrader websocket.Upgrader
	log      *slog.Logger
	// establish is set by Serve before the HTTP server starts, so every request sees it.
	establish listeners.EstablishFn
	// wrap, when set, wraps each connection before mochi sees it (limitConn).
	wrap func(net.Conn) net.Conn
	once sync.Once
}

func newWSListener(id string, ln net.Listener, isTLS bool) *wsListener {
	l := &wsListener{
		id:  id,
		ln:  ln,
		tls: isTLS,
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			// Browsers on any origin may connect: the MQTT CONNECT authenticates.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	return l
}

// ID returns the id of the listener.
func (l *wsListener) ID() string { return l.id }

// Address returns the bound address.
func (l *wsListener) Address() string { return l.ln.Addr().String() }

// Protocol is ws or wss.
func (l *wsListener) Protocol() string {
	if l.tls {
		return "wss"
	}
	return "ws"
}

// Init builds the HTTP server; mochi calls it from AddListener, before Serve runs on
// a goroutine of its own, so Close never races with building it.
func (l *wsListener) Init(lg *slog.Logger) error {
	l.log = lg
	l.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := l.upgrader.Upgrade(w, r, nil)
			if err != nil {
				return // the upgrader has answered with an HTTP error
			}
			defer c.Close()
			var conn net.Conn = &wsConn{Conn: c.NetConn(), c: c}
			if l.wrap != nil {
				conn = l.wrap(conn)
			}
			if err := l.establish(l.id, conn); err != nil {
				l.log.Debug("websocket client ended", "error", err, "remote", r.RemoteAddr)
			}
		}),
		// Only the upgrade is HTTP: the MQTT keep-alive governs the connection after.
		ReadHeaderTimeout: 30 * time.Second,
		// http.Server logs failed TLS handshakes here, with the remote address.
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// Serve upgrades each HTTP request and hands the connection to the broker.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "error", err, "listener", l.id)
	}
}

// Close stops accepting, then closes the clients (hijacked connections are not
// closed by http.Server.Shutdown).
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
		_ = l.ln.Close() // Serve may not have started yet
	})
	closeClients(l.id)
}

// wsConn is a WebSocket connection as a net.Conn carrying MQTT bytes.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader // the current message, nil between messages
}

// Read reads MQTT bytes from consecutive binary messages.
func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, listeners.ErrInvalidMessage
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends the bytes as one binary message.
func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the underlying connection.
func (ws *wsConn) Close() error { return ws.Conn.Close() }

// ConnectionState is the TLS state of a wss connection (the client certificate).
func (ws *wsConn) ConnectionState() tls.ConnectionState {
	if tc, ok := ws.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}
