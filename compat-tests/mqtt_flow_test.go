package compattests

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// MQTT control packet types the wire tap tells apart.
const (
	wirePublish = 3
	wirePuback  = 4
	wireSuback  = 9
)

// wirePacket is one MQTT packet seen on a connection, in arrival order.
type wirePacket struct {
	typ   byte
	qos   byte
	id    uint16 // packet identifier (PUBLISH QoS 1/2, PUBACK, SUBACK)
	topic string // PUBLISH only
}

// wireTap is a recording TCP proxy between one client and the server: it sees every
// packet each side sends, in the order it crossed, whatever the client library does
// with it afterwards. (A net.Conn wrapper would not do: paho.golang writes a packet as
// net.Buffers, one writev on a TCP connection but one Write per buffer on a wrapper,
// so packets of two of its goroutines would interleave.)
type wireTap struct {
	addr      string // where the client connects
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced at every packet from the server
	in, out   []byte        // bytes not yet parsed into a whole packet
	read      []wirePacket  // from the server
	unacked   int           // QoS 1 PUBLISH from the server minus PUBACK from the client
	maxUnack  int
	onPublish func(p wirePacket, unacked int) // called with mu held
}

// newWireTap listens on a loopback port and proxies its first connection to server.
func newWireTap(t *testing.T, server string) *wireTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireTap{addr: ln.Addr().String(), changed: make(chan struct{})}
	go func() {
		defer ln.Close()
		client, err := ln.Accept()
		if err != nil {
			return
		}
		srv, err := net.Dial("tcp", server)
		if err != nil {
			client.Close()
			return
		}
		go w.pipe(srv, client, w.fromServer)
		w.pipe(client, srv, w.fromClient)
	}()
	t.Cleanup(func() { ln.Close() })
	return w
}

// pipe copies src to dst, showing each chunk to see before passing it on.
func (w *wireTap) pipe(src, dst net.Conn, see func([]byte)) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			see(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (w *wireTap) fromServer(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.in = append(w.in, b...)
	for {
		p, rest, ok := parseWirePacket(w.in)
		if !ok {
			break
		}
		w.in = rest
		w.read = append(w.read, p)
		if p.typ == wirePublish && p.qos > 0 {
			w.unacked++
			w.maxUnack = max(w.maxUnack, w.unacked)
			if w.onPublish != nil {
				w.onPublish(p, w.unacked)
			}
		}
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func (w *wireTap) fromClient(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out = append(w.out, b...)
	for {
		p, rest, ok := parseWirePacket(w.out)
		if !ok {
			break
		}
		w.out = rest
		if p.typ == wirePuback {
			w.unacked--
		}
	}
}

// waitFor waits until cond holds on the packets read so far.
func (w *wireTap) waitFor(ctx context.Context, t *testing.T, what string, cond func(read []wirePacket) bool) {
	t.Helper()
	for {
		w.mu.Lock()
		ok, ch := cond(w.read), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

func (w *wireTap) packets() []wirePacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wirePacket(nil), w.read...)
}

// parseWirePacket takes one whole packet off the front of b.
func parseWirePacket(b []byte) (wirePacket, []byte, bool) {
	if len(b) < 2 {
		return wirePacket{}, b, false
	}
	n, mul, i := 0, 1, 1
	for ; ; i++ {
		if i >= len(b) || i > 4 {
			return wirePacket{}, b, false
		}
		n += int(b[i]&0x7f) * mul
		mul *= 128
		if b[i]&0x80 == 0 {
			i++
			break
		}
	}
	if len(b) < i+n {
		return wirePacket{}, b, false
	}
	body := b[i : i+n]
	p := wirePacket{typ: b[0] >> 4, qos: (b[0] >> 1) & 3}
	switch p.typ {
	case wirePublish:
		if len(body) >= 2 {
			tl := int(body[0])<<8 | int(body[1])
			if len(body) >= 2+tl {
				p.topic = string(body[2 : 2+tl])
				if p.qos > 0 && len(body) >= 4+tl {
					p.id = uint16(body[2+tl])<<8 | uint16(body[3+tl])
				}
			}
		}
	case wirePuback, wireSuback:
		if len(body) >= 2 {
			p.id = uint16(body[0])<<8 | uint16(body[1])
		}
	}
	return p, b[i+n:], true
}

// flowClient is a paho.golang MQTT 5 client announcing Receive Maximum rm and
// acknowledging deliveries only when the test says so (manual acknowledgement).
type flowClient struct {
	c   *paho.Client
	tap *wireTap

	mu      sync.Mutex
	pending []*paho.Publish // received, not yet acknowledged, in order
	got     map[string]int  // deliveries by topic prefix (before the first '/')
}

func dialFlowClient(ctx context.Context, t *testing.T, addr, id string, rm uint16) *flowClient {
	t.Helper()
	fc := &flowClient{tap: newWireTap(t, addr), got: map[string]int{}}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fc.tap.addr)
	if err != nil {
		t.Fatal(err)
	}
	fc.c = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn, PacketTimeout: startTimeout,
		EnableManualAcknowledgment: true, SendAcksInterval: time.Millisecond,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			fc.mu.Lock()
			defer fc.mu.Unlock()
			prefix, _, _ := strings.Cut(pr.Packet.Topic, "/")
			fc.got[prefix]++
			if pr.Packet.QoS > 0 {
				fc.pending = append(fc.pending, pr.Packet)
			}
			return true, nil
		}},
	})
	ack, err := fc.c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ack)
	}
	t.Cleanup(func() { _ = fc.c.Disconnect(&paho.Disconnect{}) })
	return fc
}

// ackOldest acknowledges the oldest delivery not yet acknowledged, if any.
func (fc *flowClient) ackOldest(t *testing.T) bool {
	fc.mu.Lock()
	if len(fc.pending) == 0 {
		fc.mu.Unlock()
		return false
	}
	p := fc.pending[0]
	fc.pending = fc.pending[1:]
	fc.mu.Unlock()
	if err := fc.c.Ack(p); err != nil {
		t.Errorf("ack: %v", err)
	}
	return true
}

func (fc *flowClient) count(prefix string) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.got[prefix]
}

// ackUntil acknowledges one delivery a millisecond until done holds.
func ackUntil(ctx context.Context, t *testing.T, fc *flowClient, done func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-tick.C:
			fc.ackOldest(t)
		case <-ctx.Done():
			t.Fatalf("got %d live and %d replayed: %v", fc.count("live"), fc.count("s"), ctx.Err())
		}
	}
}

func flowSubscribe(ctx context.Context, t *testing.T, c *paho.Client, offset string, subs ...paho.SubscribeOptions) {
	t.Helper()
	sp := &paho.Subscribe{Subscriptions: subs}
	if offset != "" {
		sp.Properties = &paho.SubscribeProperties{User: paho.UserProperties{{Key: "stream-offset", Value: offset}}}
	}
	ack, err := c.Subscribe(ctx, sp)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i, rc := range ack.Reasons {
		if rc != subs[i].QoS {
			t.Fatalf("subscribe %s: reason 0x%x, want QoS %d granted", subs[i].Topic, rc, subs[i].QoS)
		}
	}
}

// flowPublish publishes n QoS 1 messages on topic from one connection; each is
// acknowledged (its fan-out to subscribers queued) when it returns.
func flowPublish(ctx context.Context, t *testing.T, addr, id, topic string, n int) {
	t.Helper()
	c := kafkaMQTTConnect(t, ctx, addr, id)
	for i := 0; i < n; i++ {
		kafkaMQTTPublish(t, ctx, c, topic, []byte(fmt.Sprintf("m%d", i)), false, nil)
	}
}

const flowConfig = "streams:\n  - {name: s, filter: \"s/#\", shards: 2}\n  - {name: w, filter: \"w/#\"}\n"

// TestReceiveMaximumStreamSubscriberPaho: a paho.golang subscriber announcing Receive
// Maximum 2, with a `$stream` subscription replaying stored records and an ordinary
// subscription with live QoS 1 traffic, acknowledging slowly, never has more than 2
// QoS 1 messages unacknowledged on its connection, and gets every message.
func TestReceiveMaximumStreamSubscriberPaho(t *testing.T) {
	const (
		rm     = 2
		stored = 60
		live   = 60
	)
	srv := StartServer(t, ServerOptions{Config: flowConfig})
	ctx := Deadline(t, 3*time.Minute)
	flowPublish(ctx, t, srv.MQTTAddr, "rm-fill", "s/a", stored)

	sub := dialFlowClient(ctx, t, srv.MQTTAddr, "rm-sub", rm)
	var over []string
	sub.tap.mu.Lock()
	sub.tap.onPublish = func(p wirePacket, unacked int) {
		if unacked > rm {
			over = append(over, fmt.Sprintf("%s #%d with %d unacknowledged", p.topic, p.id, unacked))
		}
	}
	sub.tap.mu.Unlock()
	flowSubscribe(ctx, t, sub.c, "earliest", paho.SubscribeOptions{Topic: "$stream/s", QoS: 1}, paho.SubscribeOptions{Topic: "live/#", QoS: 1})
	flowPublish(ctx, t, srv.MQTTAddr, "rm-pub", "live/x", live)

	// A slow consumer: one acknowledgement every 2 ms, never more than it has.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for sub.count("s") < stored || sub.count("live") < live {
		select {
		case <-tick.C:
			sub.ackOldest(t)
		case <-ctx.Done():
			t.Fatalf("got %d replayed and %d live, want %d and %d", sub.count("s"), sub.count("live"), stored, live)
		}
	}
	for sub.ackOldest(t) {
	}
	sub.tap.mu.Lock()
	defer sub.tap.mu.Unlock()
	if len(over) > 0 {
		t.Fatalf("over the Receive Maximum %d: %s", rm, strings.Join(over, "; "))
	}
	t.Logf("max unacked on the wire: %d", sub.tap.maxUnack)
	if sub.tap.maxUnack != rm {
		t.Fatalf("at most %d unacknowledged on the wire, want the window (%d) used", sub.tap.maxUnack, rm)
	}
}

// TestSubackBeforeReplayPaho: a `$stream` subscription's SUBACK reaches a paho.golang
// client before the first replayed message, even when the SUBACK has to wait in
// mochi's output buffer: the subscriber's live deliveries are held for window room
// (Receive Maximum 1, the first delivery unacknowledged) with more queued behind, so
// mochi buffers the SUBACK instead of writing it.
func TestSubackBeforeReplayPaho(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: flowConfig})
	ctx := Deadline(t, 2*time.Minute)
	flowPublish(ctx, t, srv.MQTTAddr, "order-fill", "s/a", 20)

	sub := dialFlowClient(ctx, t, srv.MQTTAddr, "order-sub", 1)
	// A stream subscription (stream w, nothing stored) puts the client under the
	// server's send window; live/# brings the traffic that fills it.
	flowSubscribe(ctx, t, sub.c, "", paho.SubscribeOptions{Topic: "$stream/w", QoS: 1}, paho.SubscribeOptions{Topic: "live/#", QoS: 1})
	// mochi v2.7.9 refuses a SUBSCRIBE whose packet id one of its own deliveries in
	// flight uses (0x91); both sides count from 1. Ten deliveries acknowledged first move
	// mochi's ids past the one paho takes next.
	flowPublish(ctx, t, srv.MQTTAddr, "order-warm", "live/x", 10)
	ackUntil(ctx, t, sub, func() bool { return sub.count("live") == 10 })
	for sub.ackOldest(t) {
	}
	flowPublish(ctx, t, srv.MQTTAddr, "order-pub", "live/x", 5)
	sub.tap.waitFor(ctx, t, "the first held-back live delivery", func(read []wirePacket) bool {
		n := 0
		for _, p := range read {
			if p.topic == "live/x" {
				n++
			}
		}
		return n == 11
	})

	// paho's Subscribe returns at the SUBACK: it runs apart, the wire tap tells the order.
	done := make(chan error, 1)
	go func() {
		ack, err := sub.c.Subscribe(ctx, &paho.Subscribe{
			Subscriptions: []paho.SubscribeOptions{{Topic: "$stream/s", QoS: 0}},
			Properties:    &paho.SubscribeProperties{User: paho.UserProperties{{Key: "stream-offset", Value: "earliest"}}},
		})
		if err == nil && (len(ack.Reasons) != 1 || ack.Reasons[0] != 0) {
			err = fmt.Errorf("SUBACK reasons %v, want [0]", ack.Reasons)
		}
		done <- err
	}()
	sub.tap.waitFor(ctx, t, "a replayed message", func(read []wirePacket) bool {
		for _, p := range read {
			if strings.HasPrefix(p.topic, "s/") {
				return true
			}
		}
		return false
	})
	// The order on the wire: the second SUBACK must come before any s/ message.
	subacks := 0
	for _, p := range sub.tap.packets() {
		if p.typ == wireSuback {
			subacks++
		}
		if strings.HasPrefix(p.topic, "s/") {
			if subacks < 2 {
				t.Fatalf("replayed %s arrived before the SUBACK of its subscription", p.topic)
			}
			break
		}
	}
	// Let the held live deliveries through and finish.
	ackUntil(ctx, t, sub, func() bool { return sub.count("live") == 15 && sub.count("s") == 20 })
	if err := <-done; err != nil {
		t.Fatalf("subscribe: %v", err)
	}
}
