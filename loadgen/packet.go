package loadgen

// A minimal MQTT 3.1.1 / 5.0 packet codec: only what a publisher and a latency
// subscriber send and receive. It writes straight into a bufio.Writer and reads from a
// bufio.Reader without allocating per packet, so the generator is not the bottleneck.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MQTT control packet types (upper nibble of the fixed header).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktPubrec     = 5
	pktPubrel     = 6
	pktPubcomp    = 7
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// Protocol versions as carried in CONNECT.
const (
	// V311 is MQTT 3.1.1 (protocol level 4).
	V311 = 4
	// V5 is MQTT 5.0 (protocol level 5).
	V5 = 5
)

func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	default:
		return 4
	}
}

func writeVarint(w *bufio.Writer, n int) {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		_ = w.WriteByte(b)
		if n == 0 {
			return
		}
	}
}

func writeU16(w *bufio.Writer, v uint16) {
	_ = w.WriteByte(byte(v >> 8))
	_ = w.WriteByte(byte(v))
}

func writeString(w *bufio.Writer, s string) {
	writeU16(w, uint16(len(s)))
	_, _ = w.WriteString(s)
}

// userProp is one MQTT 5 user property.
type userProp struct{ key, value string }

// writeConnect writes CONNECT with clean start, the given keep-alive and, on MQTT 5, a
// receive maximum (0: not sent).
func writeConnect(w *bufio.Writer, version byte, clientID, username, password string, keepAlive uint16, receiveMax uint16) {
	var flags byte = 0x02
	payload := 2 + len(clientID)
	if username != "" {
		flags |= 0x80
		payload += 2 + len(username)
	}
	if password != "" {
		flags |= 0x40
		payload += 2 + len(password)
	}
	props := 0
	if version == V5 && receiveMax > 0 {
		props = 3
	}
	rl := 10 + payload
	if version == V5 {
		rl += varintLen(props) + props
	}
	_ = w.WriteByte(pktConnect << 4)
	writeVarint(w, rl)
	writeString(w, "MQTT")
	_ = w.WriteByte(version)
	_ = w.WriteByte(flags)
	writeU16(w, keepAlive)
	if version == V5 {
		writeVarint(w, props)
		if props > 0 {
			_ = w.WriteByte(0x21)
			writeU16(w, receiveMax)
		}
	}
	writeString(w, clientID)
	if username != "" {
		writeString(w, username)
	}
	if password != "" {
		writeString(w, password)
	}
}

// writePublish writes one PUBLISH; id is ignored at QoS 0.
func writePublish(w *bufio.Writer, version, qos byte, topic []byte, id uint16, payload []byte) {
	rl := 2 + len(topic) + len(payload)
	if qos > 0 {
		rl += 2
	}
	if version == V5 {
		rl++ // empty property list
	}
	_ = w.WriteByte(pktPublish<<4 | qos<<1)
	writeVarint(w, rl)
	writeU16(w, uint16(len(topic)))
	_, _ = w.Write(topic)
	if qos > 0 {
		writeU16(w, id)
	}
	if version == V5 {
		_ = w.WriteByte(0)
	}
	_, _ = w.Write(payload)
}

// writeIDPacket writes a PUBACK, PUBREC, PUBREL or PUBCOMP with reason success.
func writeIDPacket(w *bufio.Writer, typ byte, id uint16) {
	flags := byte(0)
	if typ == pktPubrel {
		flags = 0x02
	}
	_ = w.WriteByte(typ<<4 | flags)
	_ = w.WriteByte(2)
	writeU16(w, id)
}

// writeSubscribe writes SUBSCRIBE for one filter; props are sent on MQTT 5 only.
func writeSubscribe(w *bufio.Writer, version byte, id uint16, filter string, qos byte, props []userProp) {
	pl := 0
	for _, p := range props {
		pl += 1 + 2 + len(p.key) + 2 + len(p.value)
	}
	rl := 2 + 2 + len(filter) + 1
	if version == V5 {
		rl += varintLen(pl) + pl
	}
	_ = w.WriteByte(pktSubscribe<<4 | 0x02)
	writeVarint(w, rl)
	writeU16(w, id)
	if version == V5 {
		writeVarint(w, pl)
		for _, p := range props {
			_ = w.WriteByte(0x26)
			writeString(w, p.key)
			writeString(w, p.value)
		}
	}
	writeString(w, filter)
	_ = w.WriteByte(qos)
}

// errMalformed reports a packet the codec cannot parse.
var errMalformed = errors.New("malformed MQTT packet")

// readPacket reads one packet into buf (grown as needed) and returns its first header
// byte and body. The body aliases buf and is valid until the next call.
func readPacket(r *bufio.Reader, buf []byte) (byte, []byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, buf, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, buf, err
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, buf, errMalformed
		}
		mult *= 128
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	body := buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, buf, err
	}
	return h, body, buf, nil
}

func readVarint(b []byte) (int, int, error) {
	n, mult := 0, 1
	for i := 0; i < 4 && i < len(b); i++ {
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, errMalformed
}

// connackResult is what a CONNACK told the client.
type connackResult struct {
	code       byte
	receiveMax uint16 // MQTT 5 Receive Maximum; 0 when not given (no limit on 3.1.1)
}

// parseConnack parses a CONNACK body, reading the MQTT 5 properties it needs.
func parseConnack(version byte, body []byte) (connackResult, error) {
	if len(body) < 2 {
		return connackResult{}, errMalformed
	}
	res := connackResult{code: body[1]}
	if version != V5 || len(body) == 2 {
		return res, nil
	}
	pl, n, err := readVarint(body[2:])
	if err != nil || 2+n+pl > len(body) {
		return res, errMalformed
	}
	props := body[2+n : 2+n+pl]
	err = walkProps(props, func(id byte, v []byte) {
		if id == 0x21 && len(v) == 2 {
			res.receiveMax = binary.BigEndian.Uint16(v)
		}
	})
	return res, err
}

// walkProps calls fn for each MQTT 5 property with its raw value.
func walkProps(p []byte, fn func(id byte, v []byte)) error {
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		var size int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			size = 1
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			size = 2
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			size = 4
		case 0x0B: // variable byte integer
			_, n, err := readVarint(p)
			if err != nil {
				return err
			}
			size = n
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F: // string / binary
			if len(p) < 2 {
				return errMalformed
			}
			size = 2 + int(binary.BigEndian.Uint16(p))
		case 0x26: // string pair
			if len(p) < 2 {
				return errMalformed
			}
			k := 2 + int(binary.BigEndian.Uint16(p))
			if len(p) < k+2 {
				return errMalformed
			}
			size = k + 2 + int(binary.BigEndian.Uint16(p[k:]))
		default:
			return fmt.Errorf("unknown MQTT 5 property 0x%02x: %w", id, errMalformed)
		}
		if len(p) < size {
			return errMalformed
		}
		fn(id, p[:size])
		p = p[size:]
	}
	return nil
}

// publishPayload returns the topic and payload of a PUBLISH body (and its packet id).
func publishPayload(version, header byte, body []byte) (topic []byte, id uint16, payload []byte, err error) {
	if len(body) < 2 {
		return nil, 0, nil, errMalformed
	}
	tl := int(binary.BigEndian.Uint16(body))
	p := 2 + tl
	if len(body) < p {
		return nil, 0, nil, errMalformed
	}
	topic = body[2:p]
	if (header>>1)&3 > 0 {
		if len(body) < p+2 {
			return nil, 0, nil, errMalformed
		}
		id = binary.BigEndian.Uint16(body[p:])
		p += 2
	}
	if version == V5 {
		pl, n, err := readVarint(body[p:])
		if err != nil || p+n+pl > len(body) {
			return nil, 0, nil, errMalformed
		}
		p += n + pl
	}
	return topic, id, body[p:], nil
}

// connectReasonText names the CONNACK return codes a benchmark is likely to meet.
func connectReasonText(code byte) string {
	switch code {
	case 0x01, 0x84:
		return "unsupported protocol version"
	case 0x02, 0x85:
		return "client identifier not valid"
	case 0x03, 0x88:
		return "server unavailable"
	case 0x04, 0x86:
		return "bad user name or password"
	case 0x05, 0x87:
		return "not authorized"
	}
	return "refused"
}
