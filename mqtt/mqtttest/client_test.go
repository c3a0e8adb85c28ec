package mqtttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startMochi runs a plain mochi broker (user u / password p) on 127.0.0.1:0: the client
// is tested against a real server, not against itself.
func startMochi(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(userHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// userHook lets user u with password p in and allows it everything.
type userHook struct{ mochi.HookBase }

func (h *userHook) ID() string { return "user-u" }

func (h *userHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *userHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return string(pk.Connect.Username) == "u" && string(pk.Connect.Password) == "p"
}

func (h *userHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, addr string, o Options) *Client {
	t.Helper()
	if o.Username == "" {
		o.Username, o.Password = "u", "p"
	}
	c, err := Dial(ctxT(t), addr, o)
	if err != nil {
		t.Fatalf("connect %s: %v", o.ClientID, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	addr := startMochi(t)
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			ctx := ctxT(t)
			sub := dial(t, addr, Options{ClientID: fmt.Sprint("sub", v), Version: v, CleanStart: true})
			var props packets.Properties
			if v == 5 {
				props.SubscriptionIdentifier = []int{7}
			}
			sa, err := sub.Subscribe(ctx, props, packets.Subscription{Filter: fmt.Sprintf("rt%d/#", v), Qos: 2})
			if err != nil || len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != 2 {
				t.Fatalf("suback %v %v", sa.ReasonCodes, err)
			}
			pub := dial(t, addr, Options{ClientID: fmt.Sprint("pub", v), Version: v, CleanStart: true})
			for qos := byte(0); qos <= 2; qos++ {
				pk := NewPublish(fmt.Sprintf("rt%d/%d", v, qos), qos, []byte{'m', '0' + qos})
				pk.Properties.ContentType = "text/plain"
				pk.Properties.ResponseTopic = "reply"
				pk.Properties.CorrelationData = []byte{qos}
				pk.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
				ack, err := pub.Publish(ctx, pk)
				if err != nil {
					t.Fatalf("publish qos %d: %v", qos, err)
				}
				wantAck := []byte{0, packets.Puback, packets.Pubcomp}[qos]
				if ack.FixedHeader.Type != wantAck {
					t.Fatalf("qos %d acked by %s", qos, typeName(ack.FixedHeader.Type))
				}
			}
			msgs, err := sub.WaitMessages(ctx, 3)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]packets.Packet{}
			for _, m := range msgs {
				got[m.TopicName] = m
			}
			for qos := byte(0); qos <= 2; qos++ {
				m, ok := got[fmt.Sprintf("rt%d/%d", v, qos)]
				if !ok || m.FixedHeader.Qos != qos || !bytes.Equal(m.Payload, []byte{'m', '0' + qos}) {
					t.Fatalf("qos %d: got %+v (all: %d)", qos, m, len(msgs))
				}
				if v == 5 && (m.Properties.ContentType != "text/plain" || m.Properties.ResponseTopic != "reply" ||
					!bytes.Equal(m.Properties.CorrelationData, []byte{qos}) || UserProperty(m, "k") != "v" ||
					fmt.Sprint(m.Properties.SubscriptionIdentifier) != "[7]") {
					t.Fatalf("qos %d: properties %+v", qos, m.Properties)
				}
			}
			if ua, err := sub.Unsubscribe(ctx, fmt.Sprintf("rt%d/#", v)); err != nil || ua.FixedHeader.Type != packets.Unsuback {
				t.Fatalf("unsubscribe: %+v %v", ua, err)
			}
			if err := sub.Disconnect(); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(sub.Err(), ErrClosed) {
				t.Fatalf("after Disconnect: %v", sub.Err())
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	addr := startMochi(t)
	ctx := ctxT(t)
	_, err := Dial(ctx, addr, Options{ClientID: "bad", Username: "u", Password: "wrong"})
	if code, ok := Code(err); !ok || code != packets.ErrBadUsernameOrPassword.Code {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = Dial(ctx, addr, Options{ClientID: "bad3", Version: 4, Username: "u", Password: "wrong"})
	if code, ok := Code(err); !ok || code == 0 {
		t.Fatalf("wrong password on 3.1.1: %v", err)
	}
	c := dial(t, addr, Options{ClientID: "subs"})
	sa, err := c.Subscribe(ctx, packets.Properties{}, packets.Subscription{Filter: "ok/#", Qos: 1}, packets.Subscription{Filter: "a/#/b", Qos: 1})
	if code, ok := Code(err); !ok || code < 0x80 || len(sa.ReasonCodes) != 2 || sa.ReasonCodes[0] != 1 {
		t.Fatalf("invalid filter: %v %v", sa.ReasonCodes, err)
	}
	// A second connection with the same client id takes the session over: the first
	// gets DISCONNECT 0x8E and ends.
	dial(t, addr, Options{ClientID: "subs"})
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("taken-over connection still open")
	}
	if d, ok := c.ServerDisconnect(); !ok || d.ReasonCode != packets.ErrSessionTakenOver.Code {
		t.Fatalf("server DISCONNECT %+v %v", d, ok)
	}
	if _, err := c.Publish(ctx, NewPublish("x", 1, nil)); err == nil {
		t.Fatal("publish on an ended connection")
	}
}

// TestManualAck: with manual acks nothing is acknowledged until Ack, and MaxInflight
// counts what the server had out unacknowledged. (The Receive Maximum stays above what
// is ever out: mochi keeps a delivery over it until the client reconnects.)
func TestManualAck(t *testing.T) {
	addr := startMochi(t)
	ctx := ctxT(t)
	o := Options{ClientID: "slow", CleanStart: true, ManualAck: true}
	o.Properties.ReceiveMaximum = 10
	sub := dial(t, addr, o)
	if _, err := sub.Subscribe(ctx, packets.Properties{}, packets.Subscription{Filter: "rm/#", Qos: 2}); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, addr, Options{ClientID: "fast"})
	for round := 0; round < 3; round++ {
		for qos := byte(1); qos <= 2; qos++ {
			if _, err := pub.Publish(ctx, NewPublish("rm/x", qos, []byte{byte(round)})); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := sub.WaitMessages(ctx, 2*(round+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := sub.MaxInflight(); got != 2 {
			t.Fatalf("round %d: most unacknowledged deliveries %d, want 2", round, got)
		}
		for _, m := range msgs[2*round:] {
			if err := sub.Ack(m); err != nil {
				t.Fatal(err)
			}
		}
		// The QoS 2 delivery ends with the server's PUBREL: wait for it, so the next
		// round starts from none in flight.
		deadline := time.Now().Add(30 * time.Second)
		for sub.Inflight() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d deliveries still in flight after the acks", round, sub.Inflight())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// fakeServer answers CONNECT with a CONNACK and then writes what the test gives it.
func fakeServer(t *testing.T, o Options, then ...packets.Packet) *Client {
	t.Helper()
	cl, srv := net.Pipe()
	t.Cleanup(func() { _ = srv.Close() })
	go func() {
		buf := make([]byte, 1024)
		_, _ = srv.Read(buf) // the CONNECT
		w := &Client{version: 5, conn: srv, opts: Options{Timeout: time.Second}}
		_ = w.writeAny(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}})
		for _, pk := range then {
			_ = w.writeAny(pk)
		}
		_ = srv.Close()
	}()
	c, err := Connect(ctxT(t), cl, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// writeAny lets the fake server send server-side packets.
func (c *Client) writeAny(pk packets.Packet) error {
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	switch pk.FixedHeader.Type {
	case packets.Connack:
		_ = pk.ConnackEncode(&buf)
	case packets.Disconnect:
		_ = pk.DisconnectEncode(&buf)
	default:
		return c.write(pk)
	}
	_, err := c.conn.Write(buf.Bytes())
	return err
}

func TestMaximumPacketSizeEnforced(t *testing.T) {
	o := Options{ClientID: "small"}
	o.Properties.MaximumPacketSize = 64
	c := fakeServer(t, o, NewPublish("big", 0, make([]byte, 100)))
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("oversized packet accepted")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "Maximum Packet Size") {
		t.Fatalf("error %v", err)
	}
}

func TestServerDisconnectReasonString(t *testing.T) {
	d := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: 0x98}
	d.Properties.ReasonString = "stream deleted"
	c := fakeServer(t, Options{ClientID: "d"}, d)
	<-c.Done()
	if got, ok := c.ServerDisconnect(); !ok || got.ReasonCode != 0x98 || got.Properties.ReasonString != "stream deleted" {
		t.Fatalf("server DISCONNECT %+v %v", got, ok)
	}
}
