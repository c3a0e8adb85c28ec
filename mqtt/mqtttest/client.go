// Package mqtttest is a small MQTT 3.1.1 / 5.0 client for tests, as net/http/httptest
// is for HTTP. It encodes and decodes with mochi-mqtt's packets package (the broker's
// own codec, already a dependency of the product), so the product's module needs no
// third-party MQTT client for its in-package tests; tests of what real clients do live
// in compat-tests/, which has its own go.mod.
//
// A test sees the wire as it is: CONNECT, SUBSCRIBE and PUBLISH carry any MQTT 5
// property, and every CONNACK, SUBACK, PUBACK/PUBREC/PUBCOMP, UNSUBACK and server
// DISCONNECT comes back as the decoded packet with its reason codes and properties.
// Incoming QoS 1/2 publishes are acknowledged at once, or only when the test calls
// Ack (Options.ManualAck), which is how a test holds a client at its Receive Maximum;
// MaxInflight tells the most unacknowledged publishes the server ever had out.
package mqtttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configure one connection.
type Options struct {
	// ClientID is the CONNECT client identifier (empty: the server assigns one on MQTT 5).
	ClientID string
	// Version is the protocol level: 3 (3.1), 4 (3.1.1) or 5 (the default when 0).
	Version byte
	// CleanStart is clean start (MQTT 5) or clean session (3.1.1).
	CleanStart bool
	// KeepAlive in seconds; 0 means 60. A PINGREQ goes out every KeepAlive/2.
	KeepAlive uint16
	// Username and Password are sent when not empty.
	Username, Password string
	// Properties are the CONNECT properties (MQTT 5), as mochi names them: set the
	// matching Flag field for SessionExpiryInterval and RequestProblemInfo.
	// ReceiveMaximum and MaximumPacketSize are sent when not 0; MaximumPacketSize is
	// also enforced: a larger packet from the server ends the connection with an error.
	Properties packets.Properties
	// Will, when its TopicName is set, is the will message (its Properties are the
	// will properties on MQTT 5).
	Will packets.Packet
	// ManualAck leaves every incoming QoS 1/2 publish unacknowledged until Ack.
	ManualAck bool
	// OnPublish, when set, gets every incoming publish (on the reading goroutine) in
	// place of the client keeping them for Messages and WaitMessages.
	OnPublish func(packets.Packet)
	// Timeout bounds each write and the CONNACK wait; 0 means 30 s. Waits for acks are
	// bounded by the caller's context.
	Timeout time.Duration
}

// Client is one MQTT connection. Its methods are safe for concurrent use.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	opts    Options
	version byte
	connack packets.Packet

	wmu sync.Mutex // one packet written at a time

	mu          sync.Mutex
	nextID      uint16
	waiting     map[uint16]chan packets.Packet // acks awaited by packet id
	msgs        []packets.Packet
	notify      chan struct{} // closed and replaced on every received publish
	inflight    map[uint16]bool
	maxInflight int
	disconnect  *packets.Packet
	closing     bool // Close or Disconnect called: the end is ours, whatever the reader sees
	err         error
	done        chan struct{}
}

// ReasonError is a refusal: a CONNACK, SUBACK, UNSUBACK or publish acknowledgement whose
// reason code says the server did not do what was asked. Packet is the whole packet.
type ReasonError struct {
	Packet packets.Packet
	// Code is the (first) refusing reason code.
	Code byte
}

// Error names the packet, the code and the server's reason string.
func (e *ReasonError) Error() string {
	s := fmt.Sprintf("%s refused: reason %#x", typeName(e.Packet.FixedHeader.Type), e.Code)
	if e.Packet.Properties.ReasonString != "" {
		s += " (" + e.Packet.Properties.ReasonString + ")"
	}
	return s
}

// Code returns the refusing reason code of err when it is a *ReasonError, and false
// otherwise.
func Code(err error) (byte, bool) {
	var re *ReasonError
	if errors.As(err, &re) {
		return re.Code, true
	}
	return 0, false
}

// ErrClosed is the error of calls on a connection that has ended without another error.
var ErrClosed = errors.New("mqtttest: connection closed")

// Dial connects over TCP and sends CONNECT; see Connect.
func Dial(ctx context.Context, addr string, o Options) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return Connect(ctx, conn, o)
}

// Connect sends CONNECT on conn and waits for the CONNACK. A refused connect returns a
// *ReasonError holding the CONNACK and closes conn; so does a failed one (any error).
func Connect(ctx context.Context, conn net.Conn, o Options) (*Client, error) {
	if o.Version == 0 {
		o.Version = 5
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 60
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	c := &Client{
		conn: conn, r: bufio.NewReaderSize(conn, 64<<10), opts: o, version: o.Version,
		waiting: map[uint16]chan packets.Packet{}, inflight: map[uint16]bool{},
		notify: make(chan struct{}), done: make(chan struct{}),
	}
	name := "MQTT"
	if o.Version == 3 {
		name = "MQIsdp"
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName:     []byte(name),
			Clean:            o.CleanStart,
			ClientIdentifier: o.ClientID,
			Keepalive:        o.KeepAlive,
		},
		Properties: o.Properties,
	}
	if o.Username != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(o.Username)
	}
	if o.Password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(o.Password)
	}
	if o.Will.TopicName != "" {
		pk.Connect.WillFlag = true
		pk.Connect.WillTopic = o.Will.TopicName
		pk.Connect.WillPayload = o.Will.Payload
		pk.Connect.WillQos = o.Will.FixedHeader.Qos
		pk.Connect.WillRetain = o.Will.FixedHeader.Retain
		pk.Connect.WillProperties = o.Will.Properties
	}
	fail := func(err error) (*Client, error) {
		_ = conn.Close()
		return nil, err
	}
	if err := c.write(pk); err != nil {
		return fail(fmt.Errorf("mqtttest: send CONNECT: %w", err))
	}
	deadline := time.Now().Add(o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	ack, err := c.readPacket()
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(fmt.Errorf("mqtttest: read CONNACK: %w", err))
	}
	if ack.FixedHeader.Type != packets.Connack {
		return fail(fmt.Errorf("mqtttest: got %s before CONNACK", typeName(ack.FixedHeader.Type)))
	}
	c.connack = ack
	if ack.ReasonCode != 0 { // 3.1.1 return codes 1–5 and MQTT 5 codes ≥ 0x80 refuse
		return fail(&ReasonError{Packet: ack, Code: ack.ReasonCode})
	}
	go c.readLoop()
	go c.pinger()
	return c, nil
}

// Connack returns the server's CONNACK (session present, properties such as Receive
// Maximum, Maximum Packet Size, Topic Alias Maximum, Maximum QoS, Retain Available).
func (c *Client) Connack() packets.Packet { return c.connack }

// NewPublish returns a PUBLISH packet for Publish; set Retain, Properties, etc. on it.
func NewPublish(topic string, qos byte, payload []byte) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
	}
}

// Publish sends pk (its packet id is chosen here) and, for QoS 1 and 2, waits for the
// PUBACK or the PUBCOMP (PUBREL is sent on PUBREC). It returns that acknowledgement;
// one with a reason code ≥ 0x80 (a PUBREC for QoS 2) comes with a *ReasonError.
func (c *Client) Publish(ctx context.Context, pk packets.Packet) (packets.Packet, error) {
	pk.FixedHeader.Type = packets.Publish
	if pk.FixedHeader.Qos == 0 {
		pk.PacketID = 0
		return packets.Packet{}, c.write(pk)
	}
	return c.request(ctx, pk)
}

// Subscribe sends one SUBSCRIBE with subs and props (MQTT 5: user properties, a
// subscription identifier) and waits for the SUBACK, returned with a *ReasonError when
// any of its codes is ≥ 0x80.
func (c *Client) Subscribe(ctx context.Context, props packets.Properties, subs ...packets.Subscription) (packets.Packet, error) {
	return c.request(ctx, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		Filters:     subs,
		Properties:  props,
	})
}

// Unsubscribe sends one UNSUBSCRIBE and waits for the UNSUBACK (MQTT 5 codes ≥ 0x80
// come with a *ReasonError).
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) (packets.Packet, error) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f})
	}
	return c.request(ctx, pk)
}

// request sends pk with a fresh packet id and waits for its final acknowledgement.
func (c *Client) request(ctx context.Context, pk packets.Packet) (packets.Packet, error) {
	ch := make(chan packets.Packet, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return packets.Packet{}, err
	}
	for i := 0; ; i++ {
		if i == 65535 {
			c.mu.Unlock()
			return packets.Packet{}, errors.New("mqtttest: no free packet id")
		}
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		// mochi keeps one packet id space per client for both directions, so an id
		// of a delivery still unacknowledged would be refused (0x91).
		if _, used := c.waiting[c.nextID]; !used && !c.inflight[c.nextID] {
			break
		}
	}
	pk.PacketID = c.nextID
	c.waiting[pk.PacketID] = ch
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		if c.waiting[pk.PacketID] == ch {
			delete(c.waiting, pk.PacketID)
		}
		c.mu.Unlock()
	}
	if err := c.write(pk); err != nil {
		release()
		return packets.Packet{}, err
	}
	select {
	case ack := <-ch:
		return ack, refusal(ack)
	case <-c.done:
		release()
		select { // the ack may have come just before the end
		case ack := <-ch:
			return ack, refusal(ack)
		default:
		}
		return packets.Packet{}, c.Err()
	case <-ctx.Done():
		release()
		return packets.Packet{}, fmt.Errorf("mqtttest: waiting for the ack of %s %d: %w", typeName(pk.FixedHeader.Type), pk.PacketID, ctx.Err())
	}
}

// refusal returns a *ReasonError when ack refuses.
func refusal(ack packets.Packet) error {
	if ack.ReasonCode >= 0x80 {
		return &ReasonError{Packet: ack, Code: ack.ReasonCode}
	}
	for _, code := range ack.ReasonCodes {
		if code >= 0x80 {
			return &ReasonError{Packet: ack, Code: code}
		}
	}
	return nil
}

// Ack acknowledges an incoming publish received with Options.ManualAck: PUBACK for
// QoS 1, PUBREC for QoS 2 (the PUBCOMP after the server's PUBREL is automatic).
func (c *Client) Ack(pk packets.Packet) error {
	switch pk.FixedHeader.Qos {
	case 1:
		err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		c.release(pk.PacketID)
		return err
	case 2:
		return c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
	}
	return nil
}

// Messages returns a copy of the publishes received so far (not with OnPublish).
func (c *Client) Messages() []packets.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]packets.Packet(nil), c.msgs...)
}

// WaitMessages waits until at least n publishes have been received and returns a copy
// of them all; on ctx's end or the connection's it returns what came with the error.
func (c *Client) WaitMessages(ctx context.Context, n int) ([]packets.Packet, error) {
	for {
		c.mu.Lock()
		if len(c.msgs) >= n {
			out := append([]packets.Packet(nil), c.msgs...)
			c.mu.Unlock()
			return out, nil
		}
		ch := c.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			c.mu.Lock()
			if len(c.msgs) >= n {
				c.mu.Unlock()
				continue
			}
			out := append([]packets.Packet(nil), c.msgs...)
			c.mu.Unlock()
			return out, fmt.Errorf("mqtttest: %d of %d messages before the connection ended: %w", len(out), n, c.Err())
		case <-ctx.Done():
			out := c.Messages()
			return out, fmt.Errorf("mqtttest: %d of %d messages: %w", len(out), n, ctx.Err())
		}
	}
}

// Inflight returns how many QoS 1/2 publishes from the server are not yet fully
// acknowledged (QoS 2 until the PUBCOMP is written).
func (c *Client) Inflight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// MaxInflight returns the most QoS 1/2 publishes the server had sent this client and
// not yet had acknowledged at any one time (QoS 2 counts until PUBCOMP).
func (c *Client) MaxInflight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxInflight
}

// Disconnect sends a normal DISCONNECT and closes the connection.
func (c *Client) Disconnect() error {
	return c.DisconnectWith(packets.Packet{})
}

// DisconnectWith sends pk as the DISCONNECT (a reason code such as 0x04 to have the will
// sent, or a session expiry interval property) and closes the connection.
func (c *Client) DisconnectWith(pk packets.Packet) error {
	pk.FixedHeader.Type = packets.Disconnect
	c.mu.Lock()
	c.closing = true // the server may close first, once it has read the DISCONNECT
	c.mu.Unlock()
	err := c.write(pk)
	c.finish(ErrClosed)
	return err
}

// Close drops the connection without DISCONNECT, as a client that lost its network.
func (c *Client) Close() error {
	c.finish(ErrClosed)
	return nil
}

// Done is closed when the connection has ended (either side).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (ErrClosed after Close or Disconnect, io.EOF
// when the server closed it), or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ServerDisconnect returns the DISCONNECT the server sent (MQTT 5), or false.
func (c *Client) ServerDisconnect() (packets.Packet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disconnect == nil {
		return packets.Packet{}, false
	}
	return *c.disconnect, true
}

// finish records why the connection ended (first reason wins) and closes it.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.closing {
		err = ErrClosed
	}
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	c.mu.Unlock()
	_ = c.conn.Close()
}

func (c *Client) write(pk packets.Packet) error {
	pk.ProtocolVersion = c.version
	pk.Mods.AllowResponseInfo = true // else mochi's encoder drops response topic and correlation data
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1 // [MQTT-3.6.1-1]
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.8.1-1]
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.10.1-1]
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("mqtttest: cannot send %s", typeName(pk.FixedHeader.Type))
	}
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		if cerr := c.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	return nil
}

// readPacket reads and decodes one packet from the server.
func (c *Client) readPacket() (packets.Packet, error) {
	return ReadPacket(c.r, c.version, c.opts.Properties.MaximumPacketSize)
}

// ReadPacket reads and decodes one packet a server sends a client of protocol version;
// a packet over maxSize bytes (0: no limit) is an error, as the client's Maximum Packet
// Size makes it. Raw-socket tests use it as well as Client.
func ReadPacket(r *bufio.Reader, version byte, maxSize uint32) (packets.Packet, error) {
	var pk packets.Packet
	b, err := r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, lenBytes, err := packets.DecodeLength(r)
	if err != nil {
		return pk, err
	}
	if maxSize > 0 && uint32(1+lenBytes+n) > maxSize {
		return pk, fmt.Errorf("mqtttest: server sent a %s of %d bytes over our Maximum Packet Size %d", typeName(pk.FixedHeader.Type), 1+lenBytes+n, maxSize)
	}
	pk.FixedHeader.Remaining = n // ack decoders read a reason code only when one is there
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("mqtttest: unexpected %s from the server", typeName(pk.FixedHeader.Type))
	}
	return pk, err
}

func (c *Client) readLoop() {
	for {
		pk, err := c.readPacket()
		if err != nil {
			c.finish(err)
			return
		}
		switch pk.FixedHeader.Type {
		case packets.Publish:
			c.received(pk)
		case packets.Pubrel:
			_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
			c.release(pk.PacketID)
		case packets.Pubrec:
			if pk.ReasonCode >= 0x80 {
				c.complete(pk)
				continue
			}
			_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pk.PacketID})
		case packets.Puback, packets.Pubcomp, packets.Suback, packets.Unsuback:
			c.complete(pk)
		case packets.Disconnect:
			c.mu.Lock()
			c.disconnect = &pk
			c.mu.Unlock()
		}
	}
}

// release ends an incoming delivery once its last acknowledgement is written (not
// before: a request taking its id must go out after it).
func (c *Client) release(id uint16) {
	c.mu.Lock()
	delete(c.inflight, id)
	c.mu.Unlock()
}

// complete hands an acknowledgement to the request waiting for its packet id.
func (c *Client) complete(ack packets.Packet) {
	c.mu.Lock()
	ch := c.waiting[ack.PacketID]
	delete(c.waiting, ack.PacketID)
	c.mu.Unlock()
	if ch != nil {
		ch <- ack
	}
}

func (c *Client) received(pk packets.Packet) {
	c.mu.Lock()
	if pk.FixedHeader.Qos > 0 {
		c.inflight[pk.PacketID] = true
		if len(c.inflight) > c.maxInflight {
			c.maxInflight = len(c.inflight)
		}
	}
	if c.opts.OnPublish == nil {
		c.msgs = append(c.msgs, pk)
		close(c.notify)
		c.notify = make(chan struct{})
	}
	c.mu.Unlock()
	if c.opts.OnPublish != nil {
		c.opts.OnPublish(pk)
	}
	if !c.opts.ManualAck {
		_ = c.Ack(pk)
	}
}

// pinger keeps the connection alive past the keep-alive interval.
func (c *Client) pinger() {
	t := time.NewTicker(time.Duration(c.opts.KeepAlive) * time.Second / 2)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		}
	}
}

// UserProperty returns the value of the first user property key of pk, or "".
func UserProperty(pk packets.Packet, key string) string {
	for _, u := range pk.Properties.User {
		if u.Key == key {
			return u.Val
		}
	}
	return ""
}

func typeName(t byte) string {
	if int(t) < len(packets.PacketNames) {
		return packets.PacketNames[t]
	}
	return fmt.Sprintf("packet type %d", t)
}
