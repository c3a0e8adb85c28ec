package compattests

import (
	"net"
	"sync"
)

// pahoConn wraps a connection handed to paho.golang (v0.23.0) that is not a TCP
// connection, such as a *tls.Conn. paho writes a packet as net.Buffers: one write
// system call on TCP (writev), but one Write per part (header, body, properties,
// payload) on anything else, unless the connection is a sync.Locker, which
// packets.ControlPacket.WriteTo then holds around the parts. Its pinger sends the
// first PINGREQ from its own goroutine as soon as CONNACK arrives, so a SUBSCRIBE or
// PUBLISH sent right after Connect could carry the PINGREQ between its fixed header
// and its body: the server reads a malformed packet and closes the connection, and
// the call waits for its whole timeout (paho.golang issue #90). TestMQTTAuthReasonCodes
// failed so in 13 of 200 runs on a loaded machine, 0 of 200 through this wrapper.
type pahoConn struct {
	net.Conn
	sync.Mutex
}

// lockedConn makes c safe for paho.golang's concurrent packet writes.
func lockedConn(c net.Conn) net.Conn { return &pahoConn{Conn: c} }
