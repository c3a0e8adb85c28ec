package mqtt

import (
	"errors"
	"net"
	"time"
)

// armDeadline applies the earliest read deadline due and names it when it is one of
// ours ("connect_timeout", "packet_timeout"), "" when it is mochi's keep-alive.
func (c *limitConn) armDeadline() string {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	dl, reason := c.mochiDL, ""
	if !c.connectBy.IsZero() && (dl.IsZero() || c.connectBy.Before(dl)) {
		dl, reason = c.connectBy, "connect_timeout"
	}
	if c.state != 0 && c.packetTimeout > 0 {
		if pd := c.pktStart.Add(c.packetTimeout); dl.IsZero() || pd.Before(dl) {
			dl, reason = pd, "packet_timeout"
		}
	}
	if !c.appliedSet || !dl.Equal(c.applied) {
		_ = c.Conn.SetReadDeadline(dl)
		c.applied, c.appliedSet = dl, true
	}
	return reason
}

func (c *limitConn) reportTimeout(reason string, err error) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return
	}
	ev := c.lg.Warn().Str("remote", c.RemoteAddr().String())
	if id := c.clientID.Load(); id != nil {
		ev = ev.Str("client", *id)
	}
	switch reason {
	case "connect_timeout":
		ev.Dur("timeout", c.connectTimeout).Msg("mqtt connection closed: no CONNECT in time")
	default:
		ev.Dur("timeout", c.packetTimeout).Msg("mqtt connection closed: packet not completed in time")
	}
	if c.timedOut != nil {
		c.timedOut(reason)
	}
}

// SetDeadline is mochi's keep-alive deadline (set before each packet read once the
// client is connected); it replaces the CONNECT timeout.
func (c *limitConn) SetDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.mochiDL, c.connectBy, c.applied, c.appliedSet = t, time.Time{}, t, true
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline is treated as SetDeadline's read half.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.mochiDL, c.connectBy, c.applied, c.appliedSet = t, time.Time{}, t, true
	return c.Conn.SetReadDeadline(t)
}

// errConnectTooLarge ends a connection whose first packet announces more than
// Config.MaxConnectBytes.
var errConnectTooLarge = errors.New("first packet over mqtt.max_connect_bytes")

func (c *limitConn) beforeConnect() bool {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	return !c.connectBy.IsZero()
}

func (c *limitConn) refuseConnect() {
	c.lg.Warn().Str("remote", c.RemoteAddr().String()).Uint64("announced_bytes", c.remaining).Int("max_connect_bytes", c.maxConnect).
		Msg("mqtt connection closed: CONNECT over its size limit")
	if c.timedOut != nil {
		c.timedOut("connect_too_large")
	}
}

// errMalformedSubscribe ends a connection whose MQTT 5 SUBSCRIBE mochi could not decode
// safely.
var errMalformedSubscribe = errors.New("malformed SUBSCRIBE: topic filter without subscription options")

// subscribeDecodable reports whether mochi v2.7.9's SubscribeDecode can read an MQTT 5
// SUBSCRIBE body without panicking: it indexes the options byte after each topic
// filter without a bounds check, so a body ending right after a filter crashes the
// broker. Every other malformation is left to mochi, which refuses it with an error.
func subscribeDecodable(body []byte) bool {
	off := 2 // packet identifier
	if off > len(body) {
		return true
	}
	props, n := 0, 0
	for shift := 0; ; shift += 7 {
		if off+n >= len(body) || n == 4 {
			return true // malformed properties length: mochi refuses it
		}
		b := body[off+n]
		props |= int(b&0x7f) << shift
		n++
		if b&0x80 == 0 {
			break
		}
	}
	off += n + props
	for off < len(body) {
		if off+2 > len(body) {
			return true
		}
		l := int(body[off])<<8 | int(body[off+1])
		off += 2 + l
		if off > len(body) {
			return true
		}
		if off == len(body) {
			return false
		}
		off++ // subscription options
	}
	return true
}

func (c *limitConn) refuseMalformed() {
	ev := c.lg.Warn().Str("remote", c.RemoteAddr().String())
	if id := c.clientID.Load(); id != nil {
		ev = ev.Str("client", *id)
	}
	ev.Msg("mqtt connection closed: malformed SUBSCRIBE (topic filter without options)")
	if c.timedOut != nil {
		c.timedOut("malformed_packet")
	}
}
