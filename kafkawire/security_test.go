package kafkawire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/certs/certstest"
	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// secureBroker is a broker with a user store: admin (superuser), reader (read on
// "open", group prefix "app-"), writer (write on "open").
type secureBroker struct {
	*testBroker
	store *auth.Store
}

type secureOpts struct {
	proto    string
	tls      *certs.Source
	lifetime time.Duration
	users    []auth.User
	anon     bool
	deliver  func(mapping.Produced)
}

const testPassword = "s3cret-pw"

func testUsers(t testing.TB) []auth.User {
	t.Helper()
	c, err := auth.HashPassword(testPassword, 4)
	if err != nil {
		t.Fatal(err)
	}
	return []auth.User{
		{Name: "admin", Credentials: c, Superuser: true},
		{Name: "reader", Credentials: c, Rules: []auth.Rule{
			auth.StreamRule("open", auth.OpRead),
			{Resource: auth.ResGroup, Name: "app-", Prefix: true, Ops: auth.OpRead},
		}},
		{Name: "writer", Credentials: c, Rules: []auth.Rule{auth.StreamRule("open", auth.OpWrite)}},
	}
}

func startSecureBroker(t testing.TB, o secureOpts) *secureBroker {
	t.Helper()
	if o.users == nil {
		o.users = testUsers(t)
	}
	l, err := log.Open(log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), NoSync: true, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	store, err := auth.NewStore(auth.Options{Users: o.users, AllowAnonymous: o.anon, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		Config: Config{Addr: "127.0.0.1:0", SecurityProtocol: o.proto, SessionLifetime: o.lifetime},
		Log:    l, Logger: zerolog.Nop(), Auth: store, TLS: o.tls, Deliver: o.deliver,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		_ = l.Close()
	})
	sb := &secureBroker{testBroker: &testBroker{s: s, l: l, addr: s.Addr().String()}, store: store}
	for _, name := range []string{"open", "secret"} {
		st := sb.stream(t, log.StreamSpec{Name: name, Shards: 1})
		appendRecs(t, st, 0, log.Record{Key: []byte("k"), Value: []byte(name + "-data")})
	}
	return sb
}

func scramMech(m auth.Mechanism, user, pw string) sasl.Mechanism {
	a := scram.Auth{User: user, Pass: pw}
	if m == auth.ScramSHA256 {
		return a.AsSha256Mechanism()
	}
	return a.AsSha512Mechanism()
}

// metadataTopics lists the topics a client sees.
func metadataTopics(t *testing.T, cl *kgo.Client) map[string]int16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	out := map[string]int16{}
	for _, tp := range resp.Topics {
		out[*tp.Topic] = tp.ErrorCode
	}
	return out
}

// fetchCode fetches offset 0 of a topic's partition 0 and returns the error code and
// the batch bytes.
func fetchCode(t *testing.T, cl *kgo.Client, topic string) (int16, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := fetchReq(12, topic, 0, 0, 100, 1)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, len(p.RecordBatches)
}

func TestSASLMechanismsAndAuthorization(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	for _, mech := range []sasl.Mechanism{
		plain.Auth{User: "reader", Pass: testPassword}.AsMechanism(),
		scramMech(auth.ScramSHA256, "reader", testPassword),
		scramMech(auth.ScramSHA512, "reader", testPassword),
	} {
		t.Run(mech.Name(), func(t *testing.T) {
			cl := b.client(t, kgo.SASL(mech))
			seen := metadataTopics(t, cl)
			if _, ok := seen["open"]; !ok || len(seen) != 1 {
				t.Fatalf("metadata shows %v, want only open", seen)
			}
			if code, n := fetchCode(t, cl, "open"); code != 0 || n == 0 {
				t.Fatalf("fetch open: code %d, %d bytes", code, n)
			}
			if code, n := fetchCode(t, cl, "secret"); code != kerr.TopicAuthorizationFailed.Code || n != 0 {
				t.Fatalf("fetch secret: code %d, %d bytes", code, n)
			}
		})
	}
	// Asking for the hidden topic by name is refused without saying whether it exists.
	cl := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "reader", testPassword)))
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range []string{"secret", "nonexistent"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range resp.Topics {
		if tp.ErrorCode != kerr.TopicAuthorizationFailed.Code || len(tp.Partitions) != 0 {
			t.Errorf("metadata %s: code %d, %d partitions", *tp.Topic, tp.ErrorCode, len(tp.Partitions))
		}
	}
	// The writer may produce to open but not to secret.
	w := b.client(t, kgo.SASL(scramMech(auth.ScramSHA256, "writer", testPassword)), kgo.RecordRetries(1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.ProduceSync(ctx, &kgo.Record{Topic: "open", Value: []byte("w")}).FirstErr(); err != nil {
		t.Fatalf("produce to open: %v", err)
	}
	if err := w.ProduceSync(ctx, &kgo.Record{Topic: "secret", Value: []byte("w")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce to secret: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	// The reader may not produce at all: no write anywhere, so no producer id.
	r := b.client(t, kgo.SASL(scramMech(auth.ScramSHA256, "reader", testPassword)), kgo.RecordRetries(1))
	if err := r.ProduceSync(ctx, &kgo.Record{Topic: "open", Value: []byte("r")}).FirstErr(); err == nil {
		t.Fatal("reader produced to open")
	}
}

func TestSASLWrongPassword(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	for _, mech := range []sasl.Mechanism{
		plain.Auth{User: "reader", Pass: "wrong"}.AsMechanism(),
		plain.Auth{User: "ghost", Pass: "wrong"}.AsMechanism(),
		scramMech(auth.ScramSHA512, "reader", "wrong"),
		scramMech(auth.ScramSHA256, "ghost", "wrong"),
	} {
		cl := b.client(t, kgo.SASL(mech), kgo.RequestRetries(0))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		cancel()
		if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "invalid credentials") {
			t.Errorf("%s: %v, want SASL_AUTHENTICATION_FAILED with invalid credentials", mech.Name(), err)
		}
	}
}

func TestSASLRateLimit(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	for i := 0; i < loginFailBurst; i++ {
		if code, _ := rawPlain(t, b.addr, 1, "reader", "wrong"); code != kerr.SaslAuthenticationFailed.Code {
			t.Fatalf("attempt %d: code %d", i, code)
		}
	}
	code, msg := rawPlain(t, b.addr, 1, "reader", testPassword)
	if code != kerr.SaslAuthenticationFailed.Code || !strings.Contains(msg, "too many") {
		t.Fatalf("right password past the limit: code %d %q", code, msg)
	}
}

// rawPlain runs a PLAIN exchange over SaslHandshake v1 + SaslAuthenticate v<av> and
// returns the SaslAuthenticate error code and message.
func rawPlain(t *testing.T, addr string, av int16, user, pw string) (int16, string) {
	t.Helper()
	rc := dialRaw(t, addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	hr := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse)
	if hr.ErrorCode != 0 {
		t.Fatalf("handshake: %d", hr.ErrorCode)
	}
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.Version = av
	ar.SASLAuthBytes = []byte("\x00" + user + "\x00" + pw)
	resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse)
	msg := ""
	if resp.ErrorMessage != nil {
		msg = *resp.ErrorMessage
	}
	if resp.ErrorCode != 0 {
		rc.expectClosed()
	}
	return resp.ErrorCode, msg
}

func TestSASLGate(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	// ApiVersions is served before authentication, Fetch closes the connection.
	rc := dialRaw(t, b.addr)
	if resp := rc.roundTrip(apiVersionsReq(3)).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("api versions: %d", resp.ErrorCode)
	}
	rc.send(fetchReq(12, "open", 0, 0, 0, 0))
	rc.expectClosed()

	// An unknown mechanism is answered with the list, then the connection closes.
	rc = dialRaw(t, b.addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "GSSAPI"
	hr := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse)
	if hr.ErrorCode != kerr.UnsupportedSaslMechanism.Code || strings.Join(hr.SupportedMechanisms, ",") != "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" {
		t.Fatalf("handshake: %d %v", hr.ErrorCode, hr.SupportedMechanisms)
	}
	rc.expectClosed()

	// SaslAuthenticate without a handshake.
	rc = dialRaw(t, b.addr)
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.SASLAuthBytes = []byte("\x00reader\x00" + testPassword)
	if resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("authenticate without handshake: %d", resp.ErrorCode)
	}
	rc.expectClosed()

	// A truncated SCRAM exchange fails with a message and closes.
	rc = dialRaw(t, b.addr)
	hs.Mechanism = "SCRAM-SHA-256"
	if hr := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse); hr.ErrorCode != 0 {
		t.Fatalf("handshake: %d", hr.ErrorCode)
	}
	ar.SASLAuthBytes = []byte("n,,n=rea")
	resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse)
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || resp.ErrorMessage == nil {
		t.Fatalf("truncated scram: %d", resp.ErrorCode)
	}
	rc.expectClosed()

	// A good PLAIN login then serves Fetch.
	if code, msg := rawPlain(t, b.addr, 0, "reader", testPassword); code != 0 {
		t.Fatalf("plain: %d %s", code, msg)
	}
}

// TestSASLHandshakeV0 runs the raw-token exchanges that follow a v0 handshake.
func TestSASLHandshakeV0(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	handshake := func(rc *rawConn, mech string) {
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, mech
		if hr := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse); hr.ErrorCode != 0 {
			t.Fatalf("handshake: %d", hr.ErrorCode)
		}
	}
	token := func(rc *rawConn, b []byte) []byte {
		frame := append([]byte{0, 0, 0, byte(len(b))}, b...)
		rc.write(frame)
		out, err := rc.readFrame(20 * time.Second)
		if err != nil {
			t.Fatalf("raw token: %v", err)
		}
		return out
	}
	afterwards := func(rc *rawConn) {
		resp := rc.roundTrip(fetchReq(12, "open", 0, 0, 0, 0)).(*kmsg.FetchResponse)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
			t.Fatalf("fetch after raw auth: code %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
		}
	}

	rc := dialRaw(t, b.addr)
	handshake(rc, "PLAIN")
	if out := token(rc, []byte("\x00reader\x00"+testPassword)); len(out) != 0 {
		t.Fatalf("plain answer %q", out)
	}
	afterwards(rc)

	rc = dialRaw(t, b.addr)
	handshake(rc, "SCRAM-SHA-512")
	sess, first, err := scramMech(auth.ScramSHA512, "reader", testPassword).Authenticate(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := first
	for {
		out := token(rc, msg)
		done, next, err := sess.Challenge(out)
		if err != nil {
			t.Fatalf("scram: %v", err)
		}
		if done {
			break
		}
		msg = next
	}
	afterwards(rc)

	// A wrong password over raw tokens closes the connection.
	rc = dialRaw(t, b.addr)
	handshake(rc, "PLAIN")
	rc.write([]byte("\x00\x00\x00\x0b\x00reader\x00bad"))
	rc.expectClosed()
}

// TestSASLSessionLifetime: the lifetime is announced, franz-go re-authenticates on its
// connection and keeps working, and a client that does not is disconnected.
func TestSASLSessionLifetime(t *testing.T) {
	const lifetime = 1500 * time.Millisecond
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext, lifetime: lifetime})

	rc := dialRaw(t, b.addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	rc.roundTrip(hs)
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.Version = 1
	ar.SASLAuthBytes = []byte("\x00reader\x00" + testPassword)
	resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse)
	if resp.ErrorCode != 0 || resp.SessionLifetimeMillis != lifetime.Milliseconds() {
		t.Fatalf("authenticate: code %d lifetime %d", resp.ErrorCode, resp.SessionLifetimeMillis)
	}
	start := time.Now()
	// Re-authentication on the same connection works, as another user does not.
	rc.roundTrip(hs)
	if resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != 0 {
		t.Fatalf("re-authenticate: %d", resp.ErrorCode)
	}
	// Past the lifetime without re-authenticating, the next request closes.
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(start) < lifetime+200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("clock")
		}
		time.Sleep(50 * time.Millisecond) // waiting for the session to expire
	}
	rc.send(fetchReq(12, "open", 0, 0, 0, 0))
	rc.expectClosed()

	rc = dialRaw(t, b.addr)
	rc.roundTrip(hs)
	rc.roundTrip(ar)
	rc.roundTrip(hs)
	ar.SASLAuthBytes = []byte("\x00writer\x00" + testPassword)
	if resp := rc.roundTrip(ar).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("re-authenticate as another user: %d", resp.ErrorCode)
	}
	rc.expectClosed()

	// franz-go re-authenticates before expiry and keeps consuming across lifetimes.
	cl := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "reader", testPassword)))
	end := time.Now().Add(3 * lifetime)
	for time.Now().Before(end) {
		if code, n := fetchCode(t, cl, "open"); code != 0 || n == 0 {
			t.Fatalf("fetch: code %d, %d bytes", code, n)
		}
		time.Sleep(100 * time.Millisecond) // spread requests over several lifetimes
	}
}

func TestTLSListeners(t *testing.T) {
	dir := t.TempDir()
	pki, err := certstest.NewTestPKI(dir, "reader")
	if err != nil {
		t.Fatal(err)
	}
	src, err := certs.Load(certs.Files{Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	clientCert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}

	// ssl: the client certificate's CN is the principal.
	b := startSecureBroker(t, secureOpts{proto: protoSSL, tls: src})
	cl := b.client(t, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, ServerName: "localhost"}))
	if seen := metadataTopics(t, cl); len(seen) != 1 {
		t.Fatalf("cert user sees %v", seen)
	}
	if code, _ := fetchCode(t, cl, "secret"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("fetch secret: %d", code)
	}
	// Without a certificate and with anonymous refused, nothing is granted.
	anon := b.client(t, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}))
	if seen := metadataTopics(t, anon); len(seen) != 0 {
		t.Fatalf("anonymous sees %v", seen)
	}
	// Garbage instead of a TLS handshake closes that connection only.
	rc := dialRaw(t, b.addr)
	rc.write([]byte("\x00\x00\x00\x10garbage-garbage!"))
	rc.expectClosed()
	if seen := metadataTopics(t, cl); len(seen) != 1 {
		t.Fatalf("after garbage: %v", seen)
	}

	// sasl_ssl: SCRAM over TLS.
	b2 := startSecureBroker(t, secureOpts{proto: protoSASLSSL, tls: src})
	cl2 := b2.client(t, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}),
		kgo.SASL(scramMech(auth.ScramSHA512, "admin", testPassword)))
	if seen := metadataTopics(t, cl2); len(seen) != 2 {
		t.Fatalf("admin over sasl_ssl sees %v", seen)
	}
}

func TestGroupAuthorization(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	cl := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "reader", testPassword)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Commits to its own group prefix work; another group or a $mqtt/ group are refused.
	offs := map[int32]int64{0: 1}
	if err := commitOffsets(t, ctx, cl, "app-1", "open", offs); err != nil {
		t.Fatalf("commit app-1: %v", err)
	}
	for _, g := range []string{"other", "$mqtt/client1"} {
		if err := commitOffsets(t, ctx, cl, g, "open", offs); !errors.Is(err, kerr.GroupAuthorizationFailed) {
			t.Errorf("commit %s: %v, want GROUP_AUTHORIZATION_FAILED", g, err)
		}
	}
	// A commit for a topic it may not read.
	if err := commitOffsets(t, ctx, cl, "app-1", "secret", offs); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("commit secret: %v", err)
	}
	// Deleting needs admin on the group.
	if err := deleteGroup(t, ctx, cl, "app-1"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("delete app-1: %v", err)
	}
	// The admin sees every group; the reader only its own.
	acl := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "admin", testPassword)))
	if err := commitOffsets(t, ctx, acl, "$mqtt/client1", "open", offs); err != nil {
		t.Fatalf("admin commit: %v", err)
	}
	if err := commitOffsets(t, ctx, acl, "zzz", "open", offs); err != nil {
		t.Fatalf("admin commit: %v", err)
	}
	var groups []string
	for g := range listGroups(t, ctx, cl) {
		groups = append(groups, g)
	}
	if got := strings.Join(groups, ","); got != "app-1" {
		t.Errorf("reader lists %q", got)
	}
	// Fetching committed offsets of all topics leaves out the streams it may not read.
	fo, err := fetchOffsets(t, ctx, cl, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fo["open"][0]; !ok || len(fo) != 1 {
		t.Errorf("offsets of app-1: %v", fo)
	}
	if _, err := fetchOffsets(t, ctx, cl, "zzz"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("fetch offsets of zzz: %v", err)
	}
}

func TestACLRoundTrip(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "admin", testPassword)))
	reader := b.client(t, kgo.SASL(scramMech(auth.ScramSHA512, "reader", testPassword)))
	// describe asks for reader's allow rules on any resource, any host, any operation.
	describe := func(cl *kgo.Client) *kmsg.DescribeACLsResponse {
		req := kmsg.NewPtrDescribeACLsRequest()
		req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
		req.Principal = kmsg.StringPtr("User:reader")
		req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAllow
		return request[*kmsg.DescribeACLsResponse](t, ctx, cl, req)
	}
	// create adds one literal topic rule for reader from any host.
	create := func(perm kmsg.ACLPermissionType, topic string, op kmsg.ACLOperation) kmsg.CreateACLsResponseResult {
		req := kmsg.NewPtrCreateACLsRequest()
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceTypeTopic, topic, kmsg.ACLResourcePatternTypeLiteral
		c.Principal, c.Host, c.Operation, c.PermissionType = "User:reader", "*", op, perm
		req.Creations = append(req.Creations, c)
		resp := request[*kmsg.CreateACLsResponse](t, ctx, admin, req)
		if len(resp.Results) != 1 {
			t.Fatalf("CreateACLs answered %d results", len(resp.Results))
		}
		return resp.Results[0]
	}
	// remove deletes reader's allow rules of any operation on one literal topic.
	remove := func(topic string) []kmsg.DeleteACLsResponseResult {
		req := kmsg.NewPtrDeleteACLsRequest()
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourceName, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.StringPtr(topic), kmsg.ACLResourcePatternTypeLiteral
		f.Principal, f.Operation, f.PermissionType = kmsg.StringPtr("User:reader"), kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAllow
		req.Filters = append(req.Filters, f)
		return request[*kmsg.DeleteACLsResponse](t, ctx, admin, req).Results
	}

	// Non-admins may not use the ACL APIs.
	if r := describe(reader); r.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("reader describes ACLs: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if code, _ := fetchCode(t, reader, "secret"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("before grant: %d", code)
	}
	if r := create(kmsg.ACLPermissionTypeAllow, "secret", kmsg.ACLOperationRead); r.ErrorCode != 0 {
		t.Fatalf("create: %v %v", kerr.ErrorForCode(r.ErrorCode), r.ErrorMessage)
	}
	if code, n := fetchCode(t, reader, "secret"); code != 0 || n == 0 {
		t.Fatalf("after grant: code %d, %d bytes", code, n)
	}
	// Describe lists config rules and the new one.
	dr := describe(admin)
	if dr.ErrorCode != 0 {
		t.Fatalf("describe: %v", kerr.ErrorForCode(dr.ErrorCode))
	}
	var listed []string
	for _, r := range dr.Resources {
		for _, a := range r.ACLs {
			listed = append(listed, r.ResourceType.String()+":"+r.ResourceName+":"+r.ResourcePatternType.String()+":"+a.Operation.String())
		}
	}
	got := strings.Join(listed, " ")
	for _, want := range []string{"TOPIC:open:LITERAL:READ", "TOPIC:secret:LITERAL:READ", "GROUP:app-:PREFIXED:READ"} {
		if !strings.Contains(got, want) {
			t.Errorf("describe lists %q, missing %q", got, want)
		}
	}
	// Unsupported bindings are refused one by one.
	if r := create(kmsg.ACLPermissionTypeDeny, "open", kmsg.ACLOperationRead); r.ErrorCode != kerr.InvalidRequest.Code || r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, "DENY") {
		t.Fatalf("deny: %v %v", kerr.ErrorForCode(r.ErrorCode), r.ErrorMessage)
	}
	// Deleting the run-time rule takes the access away again; config rules stay.
	del := remove("secret")
	if len(del) != 1 || del[0].ErrorCode != 0 || len(del[0].MatchingACLs) != 1 || del[0].MatchingACLs[0].ErrorCode != 0 {
		t.Fatalf("delete: %+v", del)
	}
	if code, _ := fetchCode(t, reader, "secret"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("after delete: %d", code)
	}
	if code, _ := fetchCode(t, reader, "open"); code != 0 {
		t.Fatalf("config rule lost: %d", code)
	}
	cfgDel := remove("open")
	if len(cfgDel) != 1 || len(cfgDel[0].MatchingACLs) != 1 || cfgDel[0].MatchingACLs[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("delete config rule: %+v", cfgDel)
	}
}

// TestPlaintextPrincipals: without SASL a client is ANONYMOUS; refused anonymous
// access means authorization errors everywhere (as Kafka's ACLs would answer
// User:ANONYMOUS), not a closed connection; the SASL APIs are ILLEGAL_SASL_STATE.
func TestPlaintextPrincipals(t *testing.T) {
	b := startSecureBroker(t, secureOpts{proto: protoPlaintext})
	cl := b.client(t, kgo.RequestRetries(0))
	if seen := metadataTopics(t, cl); len(seen) != 0 {
		t.Fatalf("anonymous sees %v", seen)
	}
	if code, _ := fetchCode(t, cl, "open"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("fetch: %d", code)
	}
	rc := dialRaw(t, b.addr)
	lo := rc.roundTrip(listOffsetsReq(7, "open", -1)).(*kmsg.ListOffsetsResponse)
	if code := lo.Topics[0].Partitions[0].ErrorCode; code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("list offsets: %d", code)
	}
	dc := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "open"
	dc.Resources = append(dc.Resources, r)
	br := kmsg.NewDescribeConfigsRequestResource()
	br.ResourceType = kmsg.ConfigResourceTypeBroker
	dc.Resources = append(dc.Resources, br)
	resp := rc.roundTrip(dc).(*kmsg.DescribeConfigsResponse)
	if len(resp.Resources) != 2 || resp.Resources[0].ErrorCode != kerr.TopicAuthorizationFailed.Code || resp.Resources[1].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("describe configs: %+v", resp.Resources)
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	if resp := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("handshake on plaintext: %d", resp.ErrorCode)
	}
	ip := kmsg.NewPtrInitProducerIDRequest()
	if resp := rc.roundTrip(ip).(*kmsg.InitProducerIDResponse); resp.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("init producer id: %d", resp.ErrorCode)
	}

	// With anonymous access allowed, its rules apply.
	users := testUsers(t)
	b2 := startSecureBroker(t, secureOpts{proto: protoPlaintext, users: users, anon: true})
	if err := b2.store.AddRules(auth.AnonymousName, []auth.Rule{auth.StreamRule("open", auth.OpRead)}); err != nil {
		t.Fatal(err)
	}
	cl2 := b2.client(t)
	if seen := metadataTopics(t, cl2); len(seen) != 1 {
		t.Fatalf("anonymous with a rule sees %v", seen)
	}
	if code, n := fetchCode(t, cl2, "open"); code != 0 || n == 0 {
		t.Fatalf("fetch: %d %d", code, n)
	}
}
