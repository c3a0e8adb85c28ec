package mqtt

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTimeouts: a connection without CONNECT is closed at the connect timeout, one that
// stops in the middle of a packet at the packet timeout; a client idle between packets
// is left to its keep-alive. Each is counted.
func TestTimeouts(t *testing.T) {
	env := newEnv(t, envOptions{noSync: true, connectTimeout: 300 * time.Millisecond, packetTimeout: 300 * time.Millisecond})
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return true
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	counted := func(reason string) float64 {
		return testutil.ToFloat64(env.srv.met.refused.WithLabelValues(reason))
	}

	silent := dial()
	if !closedWithin(silent, 10*time.Second) {
		t.Fatal("connection without CONNECT not closed")
	}

	// Connected, idle between packets past the packet timeout: still open.
	idle := dial()
	if _, err := idle.Write(fuzzConnectV4); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(idle, ack); err != nil {
		t.Fatal(err)
	}
	if closedWithin(idle, time.Second) {
		t.Fatal("idle connected client closed before its keep-alive")
	}
	// Then half a PUBLISH: closed at the packet timeout.
	if _, err := idle.Write([]byte{0x30, 10, 0, 3, 'a'}); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(idle, 10*time.Second) {
		t.Fatal("half-sent packet not timed out")
	}
	deadline := time.Now().Add(5 * time.Second)
	for counted("connect_timeout") != 1 || counted("packet_timeout") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("timeouts counted: connect %v, packet %v", counted("connect_timeout"), counted("packet_timeout"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
