package mqtttest

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// DialWebSocket opens an MQTT over WebSocket connection (subprotocol "mqtt") to url,
// ws:// or wss:// (tlsConfig for the latter), for Connect.
func DialWebSocket(ctx context.Context, url string, tlsConfig *tls.Config) (net.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsConfig, HandshakeTimeout: 30 * time.Second}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	return &wsConn{Conn: ws}, nil
}

// wsConn is a WebSocket as a byte stream: MQTT packets may span binary messages.
type wsConn struct {
	*websocket.Conn
	r io.Reader // the current message
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message (Client writes one packet at a time).
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
