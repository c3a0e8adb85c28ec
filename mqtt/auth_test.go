package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/certs/certstest"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// authEnv is a server with a user store: alice publishes and subscribes under plant/
// and reads stream plant; bob subscribes to # but reads no stream; carol administers
// streams named new* and subscribes to new/#; dev is known by certificate only in
// the TLS tests; admin is a superuser.
type authEnv struct {
	*testEnv
	store *auth.Store
	pki   *certstest.TestPKI
}

type authEnvOptions struct {
	noAuth  bool      // no user store: the allow-all hook (benchmark baseline)
	log     io.Writer // server log; nil discards it
	tls     bool
	limiter *auth.Limiter
	ws      bool
	dir     string // data dir; empty means a new temporary one
}

const testPassword = "s3cret"

func testUsers(tb testing.TB) []auth.User {
	tb.Helper()
	creds, err := auth.HashPassword(testPassword, 4)
	if err != nil {
		tb.Fatal(err)
	}
	topic := func(f string, ops auth.Op) auth.Rule { return auth.Rule{Resource: auth.ResTopic, Name: f, Ops: ops} }
	return []auth.User{
		{Name: "alice", Credentials: creds, Rules: []auth.Rule{
			topic("plant/#", auth.OpPublish|auth.OpSubscribe), auth.StreamRule("plant", auth.OpRead)}},
		{Name: "bob", Credentials: creds, Rules: []auth.Rule{topic("#", auth.OpSubscribe)}},
		{Name: "carol", Credentials: creds, Rules: []auth.Rule{
			topic("new/#", auth.OpSubscribe), auth.StreamRule("new*", auth.OpRead|auth.OpAdmin)}},
		{Name: "dev", Credentials: creds, Rules: []auth.Rule{topic("plant/dev/#", auth.OpPublish)}},
		{Name: "admin", Credentials: creds, Superuser: true},
	}
}

func newAuthEnv(tb testing.TB, o authEnvOptions) *authEnv {
	tb.Helper()
	dir := o.dir
	if dir == "" {
		dir = tb.TempDir()
	}
	l, cat := openStreams(tb, log.Options{Dir: dir, Logger: zerolog.Nop(), NoSync: true},
		[]mapping.Definition{streamDef("plant", 1, "topic", "plant/#")})
	store, err := auth.NewStore(auth.Options{Users: testUsers(tb), Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	e := &authEnv{store: store}
	lg := zerolog.Nop()
	if o.log != nil {
		lg = zerolog.New(o.log)
	}
	opts := Options{
		Config:       Config{Addr: "127.0.0.1:0"},
		Log:          l,
		Catalog:      cat,
		Logger:       lg,
		Auth:         store,
		LoginLimiter: o.limiter,
		AutoCreate:   AutoCreate{Enabled: true, Shards: 1},
	}
	if o.noAuth {
		opts.Auth = nil
	}
	if o.ws {
		opts.Config.WSAddr = "127.0.0.1:0"
	}
	if o.tls {
		if e.pki, err = certstest.NewTestPKI(tb.TempDir(), "dev"); err != nil {
			tb.Fatal(err)
		}
		if opts.TLS, err = certs.Load(certs.Files{Cert: e.pki.ServerCert, Key: e.pki.ServerKey, ClientCA: e.pki.CA}); err != nil {
			tb.Fatal(err)
		}
	}
	srv, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	e.testEnv = &testEnv{srv: srv, log: l, router: cat.Router(), addr: srv.Addr().String()}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Error(err)
		}
		_ = l.Close()
	})
	return e
}

// connectRaw sends a CONNECT (username set when user != "") and returns the client and
// the CONNACK's reason code.
func connectRaw(tb testing.TB, conn net.Conn, id string, version byte, user, password string, will string) (*rawClient, byte) {
	tb.Helper()
	c := &rawClient{tb: tb, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), version: version}
	tb.Cleanup(func() { _ = conn.Close() })
	name := "MQTT"
	if version == 3 {
		name = "MQIsdp"
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName: []byte(name), Clean: true, ClientIdentifier: id, Keepalive: 60,
		},
	}
	if user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
	if will != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, will, []byte("gone")
	}
	c.send(pk)
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack {
		tb.Fatalf("connect: got packet type %d", ack.FixedHeader.Type)
	}
	return c, ack.ReasonCode
}

func dialTCP(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return conn
}

func TestAuthConnect(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	for _, tc := range []struct {
		name           string
		version        byte
		user, password string
		will           string
		want           byte
	}{
		{"v5 good password", 5, "alice", testPassword, "", 0},
		{"v311 good password", 4, "alice", testPassword, "", 0},
		{"v5 wrong password", 5, "alice", "nope", "", 0x86},
		{"v5 unknown user", 5, "mallory", testPassword, "", 0x86},
		{"v5 anonymous refused", 5, "", "", "", 0x86},
		{"v311 wrong password", 4, "alice", "nope", "", 0x04},
		{"v311 anonymous refused", 4, "", "", "", 0x04},
		{"v31 wrong password", 3, "alice", "nope", "", 0x04},
		{"v5 will allowed", 5, "alice", testPassword, "plant/will", 0},
		{"v5 will not allowed", 5, "alice", testPassword, "other/will", 0x87},
		{"v311 will not allowed", 4, "alice", testPassword, "other/will", 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, code := connectRaw(t, dialTCP(t, e.addr), "c", tc.version, tc.user, tc.password, tc.will)
			if code != tc.want {
				t.Fatalf("CONNACK %#x, want %#x", code, tc.want)
			}
		})
	}
}

// TestAuthLoginRateLimit: after the burst of failures from one address, even the
// right password is refused until the window passes.
func TestAuthLoginRateLimit(t *testing.T) {
	lim := auth.NewLimiter(2, time.Hour)
	now := time.Now()
	lim.Now = func() time.Time { return now }
	e := newAuthEnv(t, authEnvOptions{limiter: lim})
	for i := 0; i < 2; i++ {
		if _, code := connectRaw(t, dialTCP(t, e.addr), "c", 5, "alice", "nope", ""); code != 0x86 {
			t.Fatalf("wrong password %d: CONNACK %#x", i, code)
		}
	}
	if _, code := connectRaw(t, dialTCP(t, e.addr), "c", 5, "alice", testPassword, ""); code != 0x86 {
		t.Fatalf("right password while limited: CONNACK %#x, want 0x86", code)
	}
	if n := testutil.ToFloat64(e.srv.met.loginFailures); n != 3 {
		t.Fatalf("login failures metric %v, want 3", n)
	}
	now = now.Add(2 * time.Hour)
	if _, code := connectRaw(t, dialTCP(t, e.addr), "c", 5, "alice", testPassword, ""); code != 0 {
		t.Fatalf("right password after the window: CONNACK %#x", code)
	}
}

// TestAuthPublish: MQTT 5 gets PUBACK 0x87 for a denied publish, 3.1.1 a plain PUBACK
// and the message dropped (the connection stays); neither is stored.
func TestAuthPublish(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	v5, _ := connectRaw(t, dialTCP(t, e.addr), "dev5", 5, "dev", testPassword, "")
	v5.send(publishPacket("plant/other/x", 1, 1, "denied5"))
	if ack := v5.expect(packets.Puback, 1); ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("v5 denied PUBACK %#x, want 0x87", ack.ReasonCode)
	}
	v3, _ := connectRaw(t, dialTCP(t, e.addr), "dev3", 4, "dev", testPassword, "")
	v3.send(publishPacket("plant/other/x", 1, 1, "denied3"), publishPacket("plant/other/x", 2, 2, "denied3q2"))
	v3.expect(packets.Puback, 1)
	v3.expect(packets.Pubrec, 2)
	v3.send(pubrelPacket(2))
	v3.expect(packets.Pubcomp, 2)
	// Allowed publishes on both connections prove they are still up and mark the end.
	v5.send(publishPacket("plant/dev/1", 1, 3, "ok5"))
	if ack := v5.expect(packets.Puback, 3); ack.ReasonCode != 0 {
		t.Fatalf("v5 allowed PUBACK %#x", ack.ReasonCode)
	}
	v3.send(publishPacket("plant/dev/1", 1, 4, "ok3"))
	v3.expect(packets.Puback, 4)
	recs := e.records(t, "plant", 0)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Value))
	}
	if fmt.Sprint(got) != "[ok5 ok3]" {
		t.Fatalf("stream holds %v, want [ok5 ok3]", got)
	}
}

// TestAuthSubscribe: topic filters must be covered by a grant; stream subscriptions are
// decided on the stream, so bob's `#` does not reach $stream/plant.
func TestAuthSubscribe(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	// alice reads stream plant; one record to replay.
	pub, _ := connectRaw(t, dialTCP(t, e.addr), "p", 5, "alice", testPassword, "")
	pub.send(publishPacket("plant/a", 1, 1, "hello"))
	pub.expect(packets.Puback, 1)
	ts := strconv.FormatInt(time.Now().Add(-time.Hour).UnixMicro(), 10)

	for _, tc := range []struct {
		user    string
		filters []string
		want    string
	}{
		{"alice", []string{"plant/#", "plant/+/x", "other/#", "#", "$SYS/#"}, "[1 1 135 135 135]"},
		{"alice", []string{"$stream/plant", "$stream/plant/plant/#", "$share/g/plant/#"}, "[1 1 1]"},
		{"bob", []string{"#", "other/x", "$stream/plant", "$share/g/$stream/plant"}, "[1 1 135 135]"},
		// Refused before anything else: no hint whether a stream exists or its filters.
		{"bob", []string{"$stream/nosuch", "$stream/plant/other/#"}, "[135 135]"},
		{"alice", []string{"$stream/plant/other/#"}, "[143]"},
		// The $s/ form names no stream: decided on the stream its filter finds.
		{"alice", []string{"$s/" + ts + "/plant/#"}, "[1]"},
		{"bob", []string{"$s/" + ts + "/plant/#"}, "[135]"},
		// auto_create: carol administers new* and subscribes to new/#; alice may not create.
		{"carol", []string{"$stream/newone/new/#", "$stream/newtwo/plant/#", "$stream/other/new/#"}, "[1 135 135]"},
		{"alice", []string{"$stream/newthree/plant/#"}, "[135]"},
	} {
		t.Run(tc.user+fmt.Sprint(tc.filters), func(t *testing.T) {
			c := dialV5(t, e.addr, v5Options{id: "sub-" + tc.user, user: tc.user, password: testPassword})
			offset := "earliest"
			if strings.HasPrefix(tc.filters[0], "$s/") {
				offset = "" // the topic holds the start
			}
			sa := c.subscribe(t, offset, 1, tc.filters...)
			if got := fmt.Sprint(sa.ReasonCodes); got != tc.want {
				t.Fatalf("SUBACK %s, want %s", got, tc.want)
			}
		})
	}
	if e.log.Stream("newone") == nil {
		t.Fatal("carol's auto-created stream newone missing")
	}
	for _, name := range []string{"newtwo", "other", "newthree"} {
		if e.log.Stream(name) != nil {
			t.Fatalf("stream %s created by a refused subscription", name)
		}
	}

	// MQTT 3.1.1 gets 0x80 for every refusal.
	v3, _ := connectRaw(t, dialTCP(t, e.addr), "b3", 4, "bob", testPassword, "")
	v3.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 7,
		Filters: packets.Subscriptions{{Filter: "x/y", Qos: 1}, {Filter: "$stream/plant", Qos: 1}, {Filter: "$SYS/#", Qos: 1}}})
	if sa := v3.expect(packets.Suback, 7); fmt.Sprint(sa.ReasonCodes) != "[1 128 128]" {
		t.Fatalf("v3 SUBACK %v, want [1 128 128]", sa.ReasonCodes)
	}
}

// TestAuthRevokedAtRunTime: a rule removed at run time applies to an open connection.
func TestAuthRevokedAtRunTime(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	if err := e.store.AddRules("bob", []auth.Rule{{Resource: auth.ResTopic, Name: "bob/#", Ops: auth.OpPublish}}); err != nil {
		t.Fatal(err)
	}
	c, _ := connectRaw(t, dialTCP(t, e.addr), "bob", 5, "bob", testPassword, "")
	c.send(publishPacket("bob/1", 1, 1, "x"))
	if ack := c.expect(packets.Puback, 1); ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %#x before revoking", ack.ReasonCode)
	}
	if _, err := e.store.RemoveRules(func(p string, _ auth.Rule) bool { return p == "bob" }); err != nil {
		t.Fatal(err)
	}
	c.send(publishPacket("bob/1", 1, 2, "x"))
	if ack := c.expect(packets.Puback, 2); ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("PUBACK %#x after revoking, want 0x87", ack.ReasonCode)
	}
}

// TestAuthTLS: the client certificate's CN logs in without a password; a password login
// works over TLS too; an expired certificate fails the handshake; plain text is refused.
func TestAuthTLS(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{tls: true, ws: true})
	ca, err := os.ReadFile(e.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	dialTLS := func(cert, key string) (net.Conn, error) {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if cert != "" {
			kp, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		c, err := tls.Dial("tcp", e.addr, cfg)
		if err != nil {
			return nil, err
		}
		return c, c.Handshake()
	}

	conn, err := dialTLS(e.pki.ClientCert, e.pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, code := connectRaw(t, conn, "dev-cert", 4, "", "", "")
	if code != 0 {
		t.Fatalf("certificate login: CONNACK %#x", code)
	}
	c.send(publishPacket("plant/dev/1", 1, 1, "by-cert"))
	c.expect(packets.Puback, 1)

	conn, err = dialTLS("", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, code := connectRaw(t, conn, "alice-tls", 5, "alice", testPassword, ""); code != 0 {
		t.Fatalf("password over TLS: CONNACK %#x", code)
	}
	conn, err = dialTLS("", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, code := connectRaw(t, conn, "anon-tls", 5, "", "", ""); code != 0x86 {
		t.Fatalf("no certificate, no password: CONNACK %#x, want 0x86", code)
	}

	// TLS 1.3 reports a refused client certificate on the first read.
	other, err := certstest.NewTestPKI(t.TempDir(), "dev") // same CN, another CA
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string][2]string{
		"expired":    {e.pki.ExpiredCert, e.pki.ExpiredKey},
		"unknown CA": {other.ClientCert, other.ClientKey},
	} {
		if conn, err := dialTLS(kp[0], kp[1]); err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			_ = conn.Close()
			if err == nil {
				t.Fatalf("%s certificate accepted", name)
			}
		}
	}

	plain := dialTCP(t, e.addr)
	_ = plain.SetReadDeadline(time.Now().Add(30 * time.Second))
	c = &rawClient{tb: t, conn: plain, r: bufio.NewReader(plain), version: 5}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: "plain", Keepalive: 60}})
	if pk, err := c.readPacket(); err == nil && pk.FixedHeader.Type == packets.Connack {
		t.Fatal("plain-text CONNECT answered on the TLS port")
	}
	if e.srv.WSAddr() == nil {
		t.Fatal("no WebSocket address")
	}
}

// TestAuthWebSocket: MQTT over WebSocket shares the user store and the TLS setup.
func TestAuthWebSocket(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			e := newAuthEnv(t, authEnvOptions{ws: true, tls: withTLS})
			url := "ws://" + e.srv.WSAddr().String()
			var tlsConfig *tls.Config
			if withTLS {
				url = "wss://" + e.srv.WSAddr().String()
				ca, err := os.ReadFile(e.pki.CA)
				if err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(ca)
				tlsConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
			}
			connect := func(user, password string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				conn, err := mqtttest.DialWebSocket(ctx, url, tlsConfig)
				if err != nil {
					t.Fatalf("websocket dial: %v", err)
				}
				c, err := mqtttest.Connect(ctx, conn, mqtttest.Options{ClientID: "ws", Version: 4, CleanStart: true, Username: user, Password: password})
				if err != nil {
					return err
				}
				if _, err := c.Publish(ctx, mqtttest.NewPublish("plant/ws", 1, []byte("over-ws"))); err != nil {
					t.Fatalf("publish over websocket: %v", err)
				}
				return c.Disconnect()
			}
			if err := connect("alice", "wrong"); err == nil {
				t.Fatal("wrong password accepted over websocket")
			}
			if err := connect("alice", testPassword); err != nil {
				t.Fatalf("alice over websocket: %v", err)
			}
			if recs := e.waitRecords(t, "plant", 0, 1); string(recs[0].Value) != "over-ws" {
				t.Fatalf("stored %q", recs[0].Value)
			}
		})
	}
}

// TestAuthClientIDOwner: a session belongs to its user; another user may not take it
// over (it would inherit its subscriptions), the same user may.
func TestAuthClientIDOwner(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	bob := dialV5(t, e.addr, v5Options{id: "shared", user: "bob", password: testPassword, noClean: true, expiry: 3600})
	bob.subscribe(t, "", 1, "plant/#")
	bob.disconnect(t)
	// The offline session still belongs to bob.
	if _, code := connectRaw(t, dialTCP(t, e.addr), "shared", 5, "alice", testPassword, ""); code != 0x87 {
		t.Fatalf("alice taking bob's session: CONNACK %#x, want 0x87", code)
	}
	if _, code := connectRaw(t, dialTCP(t, e.addr), "shared", 4, "alice", testPassword, ""); code != 0x05 {
		t.Fatalf("alice (3.1.1) taking bob's session: CONNACK %#x, want 0x05", code)
	}
	if _, code := connectRaw(t, dialTCP(t, e.addr), "shared", 5, "bob", testPassword, ""); code != 0 {
		t.Fatalf("bob back: CONNACK %#x", code)
	}
}

// BenchmarkPublishQoS1Auth is the end-to-end cost of authorization on the publish path:
// one MQTT 3.1.1 publisher, 20 QoS 1 publishes in flight into a stream (no fsync, so
// the broker's own work shows), without a user store and with one whose user holds
// 1,000 topic rules besides the one granting the topic.
func BenchmarkPublishQoS1Auth(b *testing.B) {
	for _, mode := range []string{"auth-off", "auth-on-1000-rules"} {
		b.Run(mode, func(b *testing.B) {
			e := newAuthEnv(b, authEnvOptions{noAuth: mode == "auth-off"})
			var rules []auth.Rule
			for i := range 1000 {
				rules = append(rules, auth.Rule{Resource: auth.ResTopic, Name: fmt.Sprintf("site/%d/+/telemetry/#", i), Ops: auth.OpPublish})
			}
			if err := e.store.AddRules("alice", rules); err != nil {
				b.Fatal(err)
			}
			c, code := connectRaw(b, dialTCP(b, e.addr), "bench-pub", 4, "alice", testPassword, "")
			if code != 0 {
				b.Fatalf("CONNACK %#x", code)
			}
			runPublisherOn(b, c, 4, benchWindow)
		})
	}
}

// lockedBuffer is a log sink tests read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuthReplayRevoked: revoking read on a stream stops an open $stream replay before
// its next read of the log.
func TestAuthReplayRevoked(t *testing.T) {
	var logs lockedBuffer
	e := newAuthEnv(t, authEnvOptions{log: &logs})
	if err := e.store.AddRules("bob", []auth.Rule{auth.StreamRule("plant", auth.OpRead)}); err != nil {
		t.Fatal(err)
	}
	pub, _ := connectRaw(t, dialTCP(t, e.addr), "pub", 5, "alice", testPassword, "")
	pub.send(publishPacket("plant/a", 1, 1, "one"))
	pub.expect(packets.Puback, 1)
	bob := dialV5(t, e.addr, v5Options{id: "bob-replay", user: "bob", password: testPassword})
	if sa := bob.subscribe(t, "earliest", 1, "$stream/plant"); fmt.Sprint(sa.ReasonCodes) != "[1]" {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	bob.waitN(t, 1)
	if _, err := e.store.RemoveRules(func(p string, _ auth.Rule) bool { return p == "bob" }); err != nil {
		t.Fatal(err)
	}
	// The reader waits for appends; this one wakes it, and it finds its grant gone.
	pub.send(publishPacket("plant/a", 1, 2, "two"))
	pub.expect(packets.Puback, 2)
	waitFor(t, "the replay to stop", func() bool { return strings.Contains(logs.String(), "replay stops") })
	if n := bob.count(); n != 1 {
		t.Fatalf("bob received %d replayed messages, want 1 (read revoked before the second)", n)
	}
}

// TestAuthClientIDOwnerAfterRestart: a persistent session restored from the broker
// state store still belongs to its user: another user cannot take it over after a
// restart, its owner can.
func TestAuthClientIDOwnerAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e := newAuthEnv(t, authEnvOptions{dir: dir})
	bob := dialV5(t, e.addr, v5Options{id: "kept", user: "bob", password: testPassword, noClean: true, expiry: 3600})
	bob.subscribe(t, "", 1, "plant/#")
	bob.disconnect(t)
	waitFor(t, "bob offline", func() bool {
		cl, ok := e.srv.broker.Clients.Get("kept")
		return ok && cl.Closed()
	})
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := newAuthEnv(t, authEnvOptions{dir: dir})
	if _, ok := e2.srv.broker.Clients.Get("kept"); !ok {
		t.Fatal("bob's session was not restored")
	}
	if _, code := connectRaw(t, dialTCP(t, e2.addr), "kept", 5, "alice", testPassword, ""); code != 0x87 {
		t.Fatalf("alice taking bob's restored session: CONNACK %#x, want 0x87", code)
	}
	if _, code := connectRaw(t, dialTCP(t, e2.addr), "kept", 5, "bob", testPassword, ""); code != 0 {
		t.Fatalf("bob back: CONNACK %#x", code)
	}
}
