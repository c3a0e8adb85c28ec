package mqtt

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// startStore starts a server over dir whose store hook sees the clock now (nil: the
// real one), for tests that restart the broker on the same data dir.
func startStore(tb testing.TB, dir string, now func() time.Time, defs ...mapping.Definition) (*Server, *log.Log) {
	tb.Helper()
	l, cat := openStreams(tb, log.Options{Dir: dir, Logger: zerolog.Nop()}, defs)
	srv, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Log: l, Catalog: cat, Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	if now != nil {
		srv.store.now = now
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	return srv, l
}

func stopStore(tb testing.TB, srv *Server, l *log.Log) {
	tb.Helper()
	if err := srv.Close(); err != nil {
		tb.Error(err)
	}
	if err := l.Close(); err != nil {
		tb.Error(err)
	}
}

// connectV5 connects a test client and returns it with the CONNACK's session present;
// got, when not nil, receives every publish.
func connectV5(tb testing.TB, addr, id string, clean bool, expiry uint32, got chan<- packets.Packet) (*mqtttest.Client, bool) {
	tb.Helper()
	o := mqtttest.Options{ClientID: id, CleanStart: clean, KeepAlive: 60}
	if got != nil {
		o.OnPublish = func(pk packets.Packet) { got <- pk }
	}
	if expiry > 0 {
		o.Properties.SessionExpiryInterval, o.Properties.SessionExpiryIntervalFlag = expiry, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mqtttest.Dial(ctx, addr, o)
	if err != nil {
		tb.Fatalf("connect %s: %v", id, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c, c.Connack().SessionPresent
}

func publishV5(tb testing.TB, c *mqtttest.Client, topic string, qos byte, retain bool, payload string, expiry uint32) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := mqtttest.NewPublish(topic, qos, []byte(payload))
	p.FixedHeader.Retain = retain
	p.Properties.MessageExpiryInterval = expiry
	if _, err := c.Publish(ctx, p); err != nil {
		tb.Fatalf("publish %s: %v", topic, err)
	}
}

func subscribeV5(tb testing.TB, c *mqtttest.Client, qos byte, filters ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var subs []packets.Subscription
	for _, f := range filters {
		subs = append(subs, packets.Subscription{Filter: f, Qos: qos})
	}
	if _, err := c.Subscribe(ctx, packets.Properties{}, subs...); err != nil {
		tb.Fatalf("subscribe %v: %v", filters, err)
	}
}

// collect reads n messages (topic → payload) within a deadline.
func collect(tb testing.TB, got <-chan packets.Packet, n int) map[string]string {
	tb.Helper()
	out := map[string]string{}
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case p := <-got:
			out[p.TopicName] = string(p.Payload)
		case <-deadline:
			tb.Fatalf("got %d of %d messages: %v", len(out), n, out)
		}
	}
	return out
}

// TestStoreSurvivesRestart: retained messages (stream-matched and plain), a persistent
// session's subscriptions and the QoS 1 messages queued for it while offline are all
// there after the broker and the log are closed and reopened on the same data dir.
func TestStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	def := streamDef("status", 1, "none", "status/#")
	srv, l := startStore(t, dir, nil, def)
	addr := srv.Addr().String()

	sub, _ := connectV5(t, addr, "dev-sub", true, 3600, nil)
	subscribeV5(t, sub, 1, "cmd/#")
	_ = sub.Disconnect()
	waitFor(t, "subscriber offline", func() bool {
		cl, ok := srv.broker.Clients.Get("dev-sub")
		return ok && cl.Closed()
	})

	pub, _ := connectV5(t, addr, "dev-pub", true, 0, nil)
	publishV5(t, pub, "status/dev1", 1, true, "online", 0)
	publishV5(t, pub, "plain/dev1", 1, true, "plain", 0)
	publishV5(t, pub, "status/gone", 1, true, "short", 1) // expires before the restart below
	for _, topic := range []string{"cmd/a", "cmd/b", "cmd/c"} {
		publishV5(t, pub, topic, 1, false, topic, 0)
	}
	publishV5(t, pub, "cmd/short", 1, false, "short", 1)
	_ = pub.Disconnect()
	stopStore(t, srv, l)

	later := func() time.Time { return time.Now().Add(time.Minute) }
	srv, l = startStore(t, dir, later, def)
	defer stopStore(t, srv, l)
	addr = srv.Addr().String()

	got := make(chan packets.Packet, 16)
	sub, present := connectV5(t, addr, "dev-sub", false, 3600, got)
	defer sub.Disconnect()
	if !present {
		t.Fatal("persistent session not present after restart")
	}
	queued := collect(t, got, 3)
	for _, topic := range []string{"cmd/a", "cmd/b", "cmd/c"} {
		if queued[topic] != topic {
			t.Fatalf("queued messages after restart: %v", queued)
		}
	}
	// The stored subscription still routes new publishes.
	pub, _ = connectV5(t, addr, "dev-pub", true, 0, nil)
	defer pub.Disconnect()
	publishV5(t, pub, "cmd/new", 1, false, "new", 0)
	if m := collect(t, got, 1); m["cmd/new"] != "new" {
		t.Fatalf("after restart the stored subscription got %v", m)
	}

	rgot := make(chan packets.Packet, 16)
	reader, _ := connectV5(t, addr, "reader", true, 0, rgot)
	defer reader.Disconnect()
	subscribeV5(t, reader, 1, "status/#", "plain/#")
	ret := collect(t, rgot, 2)
	if ret["status/dev1"] != "online" || ret["plain/dev1"] != "plain" {
		t.Fatalf("retained after restart: %v", ret)
	}
	select {
	case p := <-rgot:
		t.Fatalf("unexpected retained %s=%q (expired before the restart?)", p.TopicName, p.Payload)
	case p := <-got:
		t.Fatalf("unexpected queued %s=%q", p.TopicName, p.Payload)
	case <-time.After(200 * time.Millisecond): // nothing else is due: bounded look for extras
	}
	if got := srv.broker.Options.Capabilities.MaximumMessageExpiryInterval; got != 0 {
		t.Fatalf("retained and queued messages are dropped after %d s whatever their expiry", got)
	}
	if recs := readAll(t, l.Stream("status"), 0); len(recs) != 2 {
		t.Fatalf("stream records: %d, want 2", len(recs))
	}
}

// TestStoreSessionExpiryAcrossRestart: a session whose expiry interval passes while the
// server is down is gone after the restart, with its subscriptions and queued messages.
func TestStoreSessionExpiryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	srv, l := startStore(t, dir, nil)
	addr := srv.Addr().String()
	for _, id := range []string{"short", "long"} {
		expiry := uint32(30)
		if id == "long" {
			expiry = 3600
		}
		c, _ := connectV5(t, addr, id, true, expiry, nil)
		subscribeV5(t, c, 1, "cmd/#")
		_ = c.Disconnect()
	}
	waitFor(t, "subscribers offline", func() bool {
		a, ok1 := srv.broker.Clients.Get("short")
		b, ok2 := srv.broker.Clients.Get("long")
		return ok1 && ok2 && a.Closed() && b.Closed()
	})
	pub, _ := connectV5(t, addr, "pub", true, 0, nil)
	publishV5(t, pub, "cmd/x", 1, false, "x", 0)
	_ = pub.Disconnect()
	stopStore(t, srv, l)

	srv, l = startStore(t, dir, func() time.Time { return time.Now().Add(10 * time.Minute) })
	defer stopStore(t, srv, l)
	if _, ok := srv.broker.Clients.Get("short"); ok {
		t.Fatal("session with a 30 s expiry survived 10 minutes of downtime")
	}
	cl, ok := srv.broker.Clients.Get("long")
	if !ok {
		t.Fatal("session with a 1 h expiry lost")
	}
	if got := cl.Properties.Props.SessionExpiryInterval; got > 3600-600 || got < 3600-700 {
		t.Fatalf("remaining session expiry %d s, want about %d", got, 3600-600)
	}
	if n := cl.State.Inflight.Len(); n != 1 {
		t.Fatalf("queued for long: %d, want 1", n)
	}
	for _, kind := range []string{kindClient, kindSub, kindInflight} {
		es, err := l.Entries(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if len(e.Name) >= 5 && e.Name[:5] == "short" {
				t.Fatalf("%s entry %q of the expired session kept", kind, e.Name)
			}
		}
	}
}

// queueForOfflineDev leaves a persistent session "dev" subscribed to cmd/# offline and
// publishes "queued" to topic for it; the PUBACK of a second publish, which follows the
// queued copy being stored, says it is stored.
func queueForOfflineDev(t *testing.T, srv *Server, addr, topic string) {
	t.Helper()
	sub, _ := connectV5(t, addr, "dev", true, 3600, nil)
	subscribeV5(t, sub, 1, "cmd/#")
	_ = sub.Disconnect()
	waitFor(t, "dev offline", func() bool {
		cl, ok := srv.broker.Clients.Get("dev")
		return ok && cl.Closed()
	})
	pub, _ := connectV5(t, addr, "pub", true, 0, nil)
	publishV5(t, pub, topic, 1, false, "queued", 0)
	publishV5(t, pub, "other/sync", 1, false, "sync", 0)
	_ = pub.Disconnect()
}

// TestStoreQueuedKeptAcrossReconnect: a persistent session that reconnects gets its
// queued messages resent and, until it acknowledges them, they stay stored: mochi
// hands them to the new connection and drops them from the old one (OnQosDropped),
// which must not delete what the new connection still holds. After a restart the
// unacknowledged message comes again.
func TestStoreQueuedKeptAcrossReconnect(t *testing.T) {
	dir := t.TempDir()
	srv, l := startStore(t, dir, nil)
	addr := srv.Addr().String()
	queueForOfflineDev(t, srv, addr, "cmd/x")

	// Reconnect without acknowledging what is resent.
	o := mqtttest.Options{ClientID: "dev", KeepAlive: 60, ManualAck: true}
	o.Properties.SessionExpiryInterval, o.Properties.SessionExpiryIntervalFlag = 3600, true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	again, err := mqtttest.Dial(ctx, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := again.WaitMessages(ctx, 1); err != nil || msgs[0].TopicName != "cmd/x" {
		t.Fatalf("resent after reconnecting: %v %v", msgs, err)
	}
	_ = again.Close()
	waitFor(t, "dev offline again", func() bool {
		cl, ok := srv.broker.Clients.Get("dev")
		return ok && cl.Closed()
	})
	stopStore(t, srv, l)

	srv, l = startStore(t, dir, nil)
	defer stopStore(t, srv, l)
	got := make(chan packets.Packet, 4)
	if _, present := connectV5(t, srv.Addr().String(), "dev", false, 3600, got); !present {
		t.Fatal("session not restored")
	}
	if m := collect(t, got, 1); m["cmd/x"] != "queued" {
		t.Fatalf("after a reconnect and a restart the unacknowledged message is %v, want cmd/x", m)
	}
}

// dropInjector replays mochi's take-over races (mochi_takeover.go): when the session of
// id is taken over, the store is also told of extra being dropped, as mochi drops a
// message fanned out to the old session object after it cloned its in-flight messages,
// and orphan is queued on the old object as one fanned out after it cleared them.
type dropInjector struct {
	mochi.HookBase
	store  *storeHook
	id     string
	extra  packets.Packet
	orphan packets.Packet
	done   atomic.Bool
}

func (d *dropInjector) ID() string           { return "drop-injector" }
func (d *dropInjector) Provides(b byte) bool { return b == mochi.OnQosDropped }
func (d *dropInjector) OnQosDropped(cl *mochi.Client, _ packets.Packet) {
	if cl.ID == d.id && cl.IsTakenOver() && d.done.CompareAndSwap(false, true) {
		d.store.OnQosDropped(cl, d.extra)
		cl.State.Inflight.Set(d.orphan)
		d.store.OnQosPublish(cl, d.orphan, d.orphan.Created, 0)
	}
}

// TestStoreTakeoverHandsOverDropped: a message mochi drops from a session while the
// session's client reconnects reaches the new connection, and stays stored until it is
// acknowledged.
func TestStoreTakeoverHandsOverDropped(t *testing.T) {
	dir := t.TempDir()
	srv, l := startStore(t, dir, nil)
	addr := srv.Addr().String()
	queueForOfflineDev(t, srv, addr, "cmd/queued")
	inj := &dropInjector{store: srv.store, id: "dev", extra: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
		TopicName: "cmd/raced", Payload: []byte("raced"), PacketID: 77, Origin: "pub", Created: time.Now().Unix(),
	}, orphan: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
		TopicName: "cmd/orphan", Payload: []byte("orphan"), PacketID: 78, Origin: "pub", Created: time.Now().Unix(),
	}}
	if err := srv.broker.AddHook(inj, nil); err != nil {
		t.Fatal(err)
	}

	resumeDevAcrossRestart(t, dir, srv, l, nil, map[string]string{"cmd/queued": "queued", "cmd/raced": "raced", "cmd/orphan": "orphan"})
}

// reconnectDev resumes client dev's persistent session (acknowledging nothing), runs
// after (if any) once connected, and returns the first n messages it gets, by topic.
func reconnectDev(t *testing.T, addr string, n int, after func()) map[string]string {
	t.Helper()
	o := mqtttest.Options{ClientID: "dev", KeepAlive: 60, ManualAck: true}
	o.Properties.SessionExpiryInterval, o.Properties.SessionExpiryIntervalFlag = 3600, true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mqtttest.Dial(ctx, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if after != nil {
		after()
	}
	msgs, err := c.WaitMessages(ctx, n)
	got := map[string]string{}
	for _, m := range msgs {
		got[m.TopicName] = string(m.Payload)
	}
	if err != nil {
		t.Fatalf("got %v: %v", got, err)
	}
	return got
}

// resumeDevAcrossRestart checks that dev, resuming its session on srv (after runs once
// connected, if given), gets exactly want, and, unacknowledged, gets it all again
// after a restart of the server on the same data dir. It stops the servers.
func resumeDevAcrossRestart(t *testing.T, dir string, srv *Server, l *log.Log, after func(), want map[string]string) {
	t.Helper()
	if got := reconnectDev(t, srv.Addr().String(), len(want), after); !maps.Equal(got, want) {
		t.Fatalf("after the take-over: %v, want %v", got, want)
	}
	waitFor(t, "dev offline again", func() bool {
		cl, ok := srv.broker.Clients.Get("dev")
		return ok && cl.Closed()
	})
	stopStore(t, srv, l)
	srv, l = startStore(t, dir, nil)
	defer stopStore(t, srv, l)
	if got := reconnectDev(t, srv.Addr().String(), len(want), nil); !maps.Equal(got, want) {
		t.Fatalf("unacknowledged after a restart: %v, want %v", got, want)
	}
}
