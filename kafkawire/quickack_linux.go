package kafkawire

import (
	"crypto/tls"
	"net"
	"syscall"
)

// ackHandshake sends the ACK of the client's last TLS handshake flight at once
// (TCP_QUICKACK, Linux). Without it a client with Nagle's algorithm on (librdkafka's
// default, socket.nagle.disable=false) holds its first request until our delayed ACK
// fires, about 40 ms, because a TLS 1.3 server has nothing to send after the client's
// Finished message.
func ackHandshake(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	raw, ok := tc.NetConn().(syscall.Conn)
	if !ok {
		return
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
