//go:build !linux

package mqtt

import "net"

// quickAcker is nil where TCP_QUICKACK does not exist (see quickack_linux.go).
func quickAcker(net.Conn) func() { return nil }
