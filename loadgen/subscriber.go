package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// SubConfig describes a subscriber that measures delivery latency.
type SubConfig struct {
	Addr string
	// Version is V311 (default) or V5.
	Version  byte
	ClientID string
	Filter   string
	// QoS is the subscription QoS, 0 or 1.
	QoS byte
	// StreamOffset, when set, is sent as the MQTT 5 subscription user property
	// "stream-offset" (mqstreams `$stream` replay start point).
	StreamOffset string
	// ReceiveMax is the MQTT 5 Receive Maximum sent in CONNECT (0: not sent).
	ReceiveMax uint16
}

// Subscriber is a connected, subscribed client.
type Subscriber struct {
	cfg  SubConfig
	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // guards bw: Close may run while Receive acknowledges
	bw   *bufio.Writer
}

// Subscribe connects, subscribes and waits for the SUBACK.
func Subscribe(ctx context.Context, cfg SubConfig) (*Subscriber, error) {
	if cfg.Version == 0 {
		cfg.Version = V311
	}
	if cfg.QoS > 1 {
		return nil, errors.New("subscriber supports QoS 0 and 1")
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Subscriber{cfg: cfg, conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 16<<10)}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	writeConnect(s.bw, cfg.Version, cfg.ClientID, "", "", 300, cfg.ReceiveMax)
	var props []userProp
	if cfg.StreamOffset != "" {
		props = append(props, userProp{"stream-offset", cfg.StreamOffset})
	}
	writeSubscribe(s.bw, cfg.Version, 1, cfg.Filter, cfg.QoS, props)
	if err := s.bw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	for got := 0; got < 2; {
		h, body, _, err := readPacket(s.br, nil)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("subscribe %s: %w", cfg.Filter, err)
		}
		switch h >> 4 {
		case pktConnack:
			ca, err := parseConnack(cfg.Version, body)
			if err != nil {
				conn.Close()
				return nil, err
			}
			if ca.code != 0 {
				conn.Close()
				return nil, fmt.Errorf("connection refused: %s (0x%02x)", connectReasonText(ca.code), ca.code)
			}
			got++
		case pktSuback:
			rc := body[len(body)-1]
			if rc >= 0x80 {
				conn.Close()
				return nil, fmt.Errorf("subscribe %s refused with reason code 0x%02x", cfg.Filter, rc)
			}
			got++
		default:
			conn.Close()
			return nil, fmt.Errorf("unexpected packet type %d before SUBACK", h>>4)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return s, nil
}

// Receive calls fn with each message's topic and payload (valid only during the call)
// until ctx ends or the connection fails; it acknowledges QoS 1 deliveries.
func (s *Subscriber) Receive(ctx context.Context, fn func(topic, payload []byte)) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	var buf []byte
	for {
		h, body, b, err := readPacket(s.br, buf)
		buf = b
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch h >> 4 {
		case pktPublish:
			topic, id, payload, err := publishPayload(s.cfg.Version, h, body)
			if err != nil {
				return err
			}
			fn(topic, payload)
			if (h>>1)&3 == 1 {
				s.wmu.Lock()
				writeIDPacket(s.bw, pktPuback, id)
				// Batch acks while a whole next packet is already buffered; flush
				// before any read that could block, or broker and client wait on each other.
				if !packetBuffered(s.br) {
					err = s.bw.Flush()
				}
				s.wmu.Unlock()
				if err != nil {
					return err
				}
			}
		case pktDisconnect:
			return errors.New("broker disconnected")
		}
	}
}

// Close disconnects.
func (s *Subscriber) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.bw.WriteByte(pktDisconnect << 4)
	_ = s.bw.WriteByte(0)
	_ = s.bw.Flush()
	return s.conn.Close()
}

// Stamp reads the send time StampPayload wrote into a payload.
func Stamp(payload []byte) (time.Time, bool) {
	if len(payload) < 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(payload))), true
}

// packetBuffered tells whether r holds a whole packet, so reading it cannot block.
func packetBuffered(r *bufio.Reader) bool {
	b, _ := r.Peek(r.Buffered())
	if len(b) < 2 {
		return false
	}
	n, l, err := readVarint(b[1:])
	return err == nil && 1+l+n <= len(b)
}
