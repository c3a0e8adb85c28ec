//go:build !linux

package kafkawire

import "net"

// ackHandshake is a no-op where TCP_QUICKACK does not exist (see quickack_linux.go).
func ackHandshake(net.Conn) {}
