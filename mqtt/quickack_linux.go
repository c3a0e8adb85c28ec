package mqtt

import (
	"crypto/tls"
	"net"
	"syscall"

	"github.com/mqstreams/mqstreams/netlimit"
)

// quickAcker returns a function that makes the connection's next received segment
// acknowledged at once (TCP_QUICKACK, Linux), or nil when c is not a TCP connection.
//
// A client with Nagle's algorithm on (libmosquitto's default, so mosquitto_pub) that
// gets a whole group of PUBACKs in one write (limitConn.cork) answers with one PUBLISH
// and holds the rest until that one is acknowledged; with nothing of ours to send until
// the next group is durable, our delayed ACK (up to 40 ms) would hold them.
func quickAcker(c net.Conn) func() {
	for {
		switch x := c.(type) {
		case *netlimit.Conn:
			c = x.Conn
			continue
		case *tls.Conn:
			c = x.NetConn()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() {
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
}
