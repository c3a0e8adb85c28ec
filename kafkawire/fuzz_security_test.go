package kafkawire

import (
	"encoding/binary"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/log"
)

// FuzzDispatchSecured runs arbitrary requests through a SASL listener's gate and the
// authorization of a connection authenticated as reader (read on "open" only): no
// input may panic, answer a malformed frame, let reader change a grant, or touch the
// stored data. Each input first goes to a fresh unauthenticated connection (where only
// ApiVersions and the SASL APIs are served), then to the authenticated one.
func FuzzDispatchSecured(f *testing.F) {
	l, err := log.Open(log.Options{Dir: f.TempDir(), Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"open", "fz"} {
		st, err := l.CreateStream(log.StreamSpec{Name: name, Shards: 2})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := st.Append(1, []log.Record{{Key: []byte("k"), Value: []byte("v")}}); err != nil {
			f.Fatal(err)
		}
	}
	store, err := auth.NewStore(auth.Options{Users: testUsers(f), Logger: zerolog.Nop()})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Options{Log: l, Logger: zerolog.Nop(), Auth: store, Config: Config{SecurityProtocol: protoSASLPlaintext}})
	if err != nil {
		f.Fatal(err)
	}
	_ = s.Close()
	s.advHost, s.advPort = "localhost", 9092
	reader, _ := store.Lookup("reader")

	for _, body := range dispatchSeeds() {
		f.Add(body)
	}
	frame := func(req kmsg.Request) []byte {
		return kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, req, 1)[4:]
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "SCRAM-SHA-512"
	f.Add(frame(hs))
	ca := kmsg.NewPtrCreateACLsRequest()
	cr := kmsg.NewCreateACLsRequestCreation()
	cr.ResourceType, cr.ResourceName, cr.ResourcePatternType = kmsg.ACLResourceTypeTopic, "fz", kmsg.ACLResourcePatternTypeLiteral
	cr.Principal, cr.Host, cr.Operation, cr.PermissionType = "User:reader", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
	ca.Creations = append(ca.Creations, cr)
	f.Add(frame(ca))

	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(out []byte, err error) {
			noAnswer := out == nil && len(body) >= 2 && binary.BigEndian.Uint16(body) == 0
			if err == nil && !noAnswer && (len(out) < 8 || int(binary.BigEndian.Uint32(out[:4])) != len(out)-4) {
				t.Fatalf("response frame of %d bytes is malformed", len(out))
			}
		}
		fresh := &conn{s: s, remote: "fuzz:1", lg: zerolog.Nop()}
		out, err := fresh.dispatch(body)
		if len(body) >= 2 {
			switch key := int16(binary.BigEndian.Uint16(body)); key {
			case apiVersionsKey, saslHandshakeKey, saslAuthenticateKey:
			default:
				if err == nil {
					t.Fatalf("api key %d served before authentication", key)
				}
			}
		}
		check(out, err)

		c := &conn{s: s, remote: "fuzz:2", lg: zerolog.Nop()}
		c.sec.principal, c.sec.authenticated, c.sec.user = reader, true, "reader"
		out, err = c.dispatch(body)
		check(out, err)
		if reader.CanStream("fz", auth.OpRead) || len(store.RunTimeRules()) != 0 {
			t.Fatal("reader changed the grants")
		}
		for _, st := range l.Streams() {
			if start, hwm, _ := st.Offsets(1); start != 0 || hwm != 1 {
				t.Fatalf("%s: stored data changed: log %d..%d", st.Name(), start, hwm)
			}
		}
	})
}
