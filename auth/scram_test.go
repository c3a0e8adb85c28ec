package auth

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestScramRFC7677 replays the SCRAM-SHA-256 example of RFC 7677 section 3.
func TestScramRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	keys, err := DeriveScramKeys(ScramSHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewScramServer(ScramSHA256, func(u string) (ScramKeys, bool) { return keys, u == "user" }, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Nonce = func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }
	out, done, err := srv.Step([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if err != nil || done {
		t.Fatalf("first: %v %v", done, err)
	}
	if want := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"; string(out) != want {
		t.Fatalf("server-first %q, want %q", out, want)
	}
	out, done, err = srv.Step([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil || !done {
		t.Fatalf("final: %v %v", done, err)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(out) != want {
		t.Fatalf("server-final %q, want %q", out, want)
	}
	if srv.User() != "user" {
		t.Fatalf("user %q", srv.User())
	}
}

// runFranz runs franz-go's SCRAM client against a server conversation.
func runFranz(t *testing.T, store *Store, m Mechanism, user, pass string) error {
	t.Helper()
	a := scram.Auth{User: user, Pass: pass}
	var mech sasl.Mechanism = a.AsSha256Mechanism()
	if m == ScramSHA512 {
		mech = a.AsSha512Mechanism()
	}
	sess, msg, err := mech.Authenticate(context.Background(), "localhost:9092")
	if err != nil {
		return err
	}
	srv, err := store.ScramServer(m)
	if err != nil {
		return err
	}
	for {
		out, done, err := srv.Step(msg)
		if err != nil {
			return err
		}
		cdone, next, err := sess.Challenge(out)
		if err != nil {
			return err
		}
		if done != cdone {
			return errors.New("client and server disagree on the end of the exchange")
		}
		if done {
			if srv.User() != user {
				return errors.New("wrong user authenticated")
			}
			return nil
		}
		msg = next
	}
}

func TestScramFranzClient(t *testing.T) {
	c, err := HashPassword("s3cret", 4)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(Options{Users: []User{{Name: "al=ice,x", Credentials: c}, {Name: "bob", Credentials: c}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mechanism{ScramSHA256, ScramSHA512} {
		for _, tc := range []struct {
			user, pass string
			want       error
		}{
			{"bob", "s3cret", nil},
			{"al=ice,x", "s3cret", nil},
			{"bob", "wrong", ErrScramFailed},
			{"nobody", "s3cret", ErrScramFailed},
		} {
			t.Run(string(m)+"/"+tc.user+"/"+tc.pass, func(t *testing.T) {
				if err := runFranz(t, store, m, tc.user, tc.pass); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
			})
		}
	}
}

// TestScramUnknownUserLooksKnown checks that the server-first message of an unknown
// user looks like that of a known one: same iterations, a salt stable across tries.
func TestScramUnknownUserLooksKnown(t *testing.T) {
	c, _ := HashPassword("pw", 4)
	store, err := NewStore(Options{Users: []User{{Name: "bob", Credentials: c}}})
	if err != nil {
		t.Fatal(err)
	}
	first := func(user string) string {
		s, _ := store.ScramServer(ScramSHA512)
		out, _, err := s.Step([]byte("n,,n=" + user + ",r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(string(out), ",")
		return f[1] + "," + f[2]
	}
	a, b := first("ghost"), first("ghost")
	if a != b {
		t.Fatalf("unknown user's salt changes: %q vs %q", a, b)
	}
	if !strings.HasSuffix(first("bob"), ",i=4096") || !strings.HasSuffix(a, ",i=4096") {
		t.Fatalf("iterations differ: %q %q", first("bob"), a)
	}
}

func TestScramBadInput(t *testing.T) {
	keys, _ := DeriveScramKeys(ScramSHA256, "pencil", []byte("salt"), 4096)
	lookup := func(string) (ScramKeys, bool) { return keys, true }
	for _, tc := range []struct {
		name   string
		first  string
		final  func(nonce string) string
		substr string
	}{
		{"empty", "", nil, "gs2"},
		{"empty flag", ",,n=u,r=x", nil, "flag"},
		{"commas only", ",,,,", nil, "flag"},
		{"channel binding", "p=tls-unique,,n=u,r=x", nil, "channel binding"},
		{"no nonce", "n,,n=u", nil, "n= and r="},
		{"bad escape", "n,,n=a=2Xb,r=x", nil, "escape"},
		{"mandatory ext", "n,,m=x,n=u,r=x", nil, "mandatory"},
		{"token", "n,,n=u,r=x,tokenauth=true", nil, "delegation"},
		{"other authzid", "n,a=root,n=u,r=x", nil, "authorization identity"},
		{"replayed nonce", "n,,n=u,r=x", func(string) string { return "c=biws,r=xOLD,p=AAAA" }, "nonce"},
		{"bad binding", "n,,n=u,r=x", func(n string) string { return "c=eSws,r=" + n + ",p=AAAA" }, "channel binding"},
		{"no proof", "n,,n=u,r=x", func(n string) string { return "c=biws,r=" + n + ",x=1" }, "proof"},
		{"short", "n,,n=u,r=x", func(string) string { return "c=biws" }, "c=, r= and p="},
		{"bad proof", "n,,n=u,r=x", func(n string) string { return "c=biws,r=" + n + ",p=AAAA" }, "invalid credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := NewScramServer(ScramSHA256, lookup, []byte("k"))
			out, _, err := s.Step([]byte(tc.first))
			if tc.final != nil {
				if err != nil {
					t.Fatalf("first: %v", err)
				}
				nonce := strings.TrimPrefix(strings.Split(string(out), ",")[0], "r=")
				_, _, err = s.Step([]byte(tc.final(nonce)))
			}
			if err == nil || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.substr)
			}
		})
	}
}

// TestScramLibrdkafkaNonce: librdkafka 2.0 repeats the client nonce in its final
// message (c-nonce + c-nonce + s-nonce); Kafka accepts a nonce ending with the one it
// sent, and so do we, with the proof over the message as sent.
func TestScramLibrdkafkaNonce(t *testing.T) {
	salt, pw := []byte("0123456789abcdef"), "pencil"
	keys, err := DeriveScramKeys(ScramSHA256, pw, salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := NewScramServer(ScramSHA256, func(string) (ScramKeys, bool) { return keys, true }, []byte("k"))
	bare := "n=user,r=cnonce"
	out, _, err := srv.Step([]byte("n,," + bare))
	if err != nil {
		t.Fatal(err)
	}
	full := strings.TrimPrefix(strings.Split(string(out), ",")[0], "r=")
	withoutProof := "c=biws,r=cnonce" + full
	authMsg := bare + "," + string(out) + "," + withoutProof
	salted, err := pbkdf2.Key(sha256.New, pw, salt, 4096, 32)
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacSum(sha256.New, salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	sig := hmacSum(sha256.New, stored[:], []byte(authMsg))
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	if _, done, err := srv.Step([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))); err != nil || !done {
		t.Fatalf("librdkafka-style final message: %v %v", done, err)
	}
}

// FuzzScramServer feeds arbitrary client messages to a conversation: it must never
// panic, and never authenticate without the password.
func FuzzScramServer(f *testing.F) {
	keys, _ := DeriveScramKeys(ScramSHA256, "pencil", []byte("salt"), 4096)
	f.Add("n,,n=user,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add(",,,,", "")
	f.Add("y,a=user,n=user,r=x,ext=1", "c=eSxhPXVzZXIs,r=x,e=1,p=")
	f.Add("n,,n==2C=3D,r=r", "c=,r=,p=")
	f.Fuzz(func(t *testing.T, first, final string) {
		s, _ := NewScramServer(ScramSHA256, func(string) (ScramKeys, bool) { return keys, true }, []byte("k"))
		s.Nonce = func() string { return "srv" }
		if _, _, err := s.Step([]byte(first)); err != nil {
			return
		}
		if _, done, err := s.Step([]byte(final)); done || err == nil {
			t.Fatalf("authenticated by %q / %q", first, final)
		}
	})
}
