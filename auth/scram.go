package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// This is the server side of a SCRAM exchange (RFC 5802, RFC 7677) as Kafka speaks it:
// no channel binding, usernames escaped with =2C and =3D, optional extensions after the
// nonce (tokenauth=true asks for a delegation token, which we do not have). It is
// written here rather than taken from github.com/xdg-go/scram because that server
// panics on an empty GS2 flag, does not unescape usernames, and answers an unknown user
// differently from a wrong password; this one fails both at the proof, the same way.

// ErrScramFailed is the outcome of a SCRAM exchange whose proof does not match: wrong
// password and unknown user alike.
var ErrScramFailed = errors.New("authentication failed: invalid credentials")

// ScramLookup returns a user's keys for the conversation's mechanism.
type ScramLookup func(user string) (ScramKeys, bool)

// ScramServer is one SCRAM conversation, server side: Step it with each client message
// until it returns done.
type ScramServer struct {
	mech   Mechanism
	h      func() hash.Hash
	lookup ScramLookup
	// fakeKey derives stable fake salts for unknown users, so probing for names
	// learns nothing from the server-first message.
	fakeKey []byte
	// Nonce makes the server's part of the nonce; tests set it to replay RFC vectors.
	Nonce func() string

	step        int
	user        string
	keys        ScramKeys
	known       bool
	gs2         string
	clientFirst string // client-first-message-bare
	serverFirst string
	nonce       string
}

// NewScramServer starts a conversation for mechanism m. fakeKey is a server secret
// used to derive the salt shown for unknown users.
func NewScramServer(m Mechanism, lookup ScramLookup, fakeKey []byte) (*ScramServer, error) {
	h, err := m.HashFunc()
	if err != nil {
		return nil, err
	}
	return &ScramServer{mech: m, h: h, lookup: lookup, fakeKey: fakeKey, Nonce: randomNonce}, nil
}

// ScramServer starts a SCRAM conversation against the store's users.
func (s *Store) ScramServer(m Mechanism) (*ScramServer, error) {
	return NewScramServer(m, func(user string) (ScramKeys, bool) { return s.ScramKeys(user, m) }, s.cacheKey)
}

func randomNonce() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// User is the username the client gave (known after the first step; authenticated
// only once Step returned done without error).
func (c *ScramServer) User() string { return c.user }

// KnownUser tells whether the username has keys for the mechanism (after the first
// step): for the server's log only, the client is never told.
func (c *ScramServer) KnownUser() bool { return c.known }

// Mechanism is the conversation's mechanism.
func (c *ScramServer) Mechanism() Mechanism { return c.mech }

// Step takes the client's next message and returns the server's answer. done is true
// once the client is authenticated; an error ends the conversation: malformed input
// is described, a failed proof is ErrScramFailed.
func (c *ScramServer) Step(msg []byte) (out []byte, done bool, err error) {
	c.step++
	switch c.step {
	case 1:
		out, err = c.first(string(msg))
		return out, false, err
	case 2:
		out, err = c.final(string(msg))
		return out, err == nil, err
	}
	return nil, false, errors.New("scram: exchange already finished")
}

func (c *ScramServer) first(msg string) ([]byte, error) {
	// gs2-header: flag "," [authzid] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, errors.New("scram: client-first-message has no gs2 header")
	}
	switch flag {
	case "n", "y":
	case "":
		return nil, errors.New("scram: empty gs2 channel-binding flag")
	default:
		return nil, errors.New("scram: channel binding is not supported")
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, errors.New("scram: client-first-message has no gs2 header")
	}
	c.gs2 = flag + "," + authz + ","
	c.clientFirst = bare
	fields := strings.Split(bare, ",")
	if len(fields) < 2 {
		return nil, errors.New("scram: client-first-message needs n= and r=")
	}
	if strings.HasPrefix(fields[0], "m=") {
		return nil, errors.New("scram: mandatory extensions are not supported")
	}
	name, ok := strings.CutPrefix(fields[0], "n=")
	if !ok {
		return nil, errors.New("scram: client-first-message has no username")
	}
	user, err := unescapeSaslName(name)
	if err != nil {
		return nil, err
	}
	cnonce, ok := strings.CutPrefix(fields[1], "r=")
	if !ok || cnonce == "" || strings.ContainsAny(cnonce, ",") {
		return nil, errors.New("scram: client-first-message has no nonce")
	}
	for _, ext := range fields[2:] {
		if ext == "tokenauth=true" {
			return nil, errors.New("scram: delegation tokens are not supported")
		}
	}
	if authz != "" {
		a, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return nil, errors.New("scram: malformed authorization identity")
		}
		if a, err = unescapeSaslName(a); err != nil || a != user {
			return nil, errors.New("scram: authorization identity must be empty or the username")
		}
	}
	c.user = user
	c.keys, c.known = c.lookup(user)
	if !c.known {
		c.keys = c.fakeKeys(user)
	}
	c.nonce = cnonce + c.Nonce()
	c.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", c.nonce, base64.StdEncoding.EncodeToString(c.keys.Salt), c.keys.Iterations)
	return []byte(c.serverFirst), nil
}

// fakeKeys are what an unknown user is answered with: a salt stable per name (a
// random one would tell two probes apart) and keys no proof matches.
func (c *ScramServer) fakeKeys(user string) ScramKeys {
	salt := hmacSum(c.h, c.fakeKey, []byte("scram-fake-salt/"+string(c.mech)+"/"+user))
	return ScramKeys{Salt: salt[:24], Iterations: ScramIterations}
}

func (c *ScramServer) final(msg string) ([]byte, error) {
	fields := strings.Split(msg, ",")
	if len(fields) < 3 {
		return nil, errors.New("scram: client-final-message needs c=, r= and p=")
	}
	cb, ok := strings.CutPrefix(fields[0], "c=")
	if !ok {
		return nil, errors.New("scram: client-final-message has no channel binding")
	}
	if raw, err := base64.StdEncoding.DecodeString(cb); err != nil || string(raw) != c.gs2 {
		return nil, errors.New("scram: channel binding does not match the gs2 header")
	}
	// Kafka accepts a final nonce that ends with the one it sent (ScramSaslServer uses
	// endsWith): librdkafka 2.0 sends the client nonce twice, c-nonce + (c-nonce +
	// s-nonce). The server's fresh part must still be there, and the proof covers the
	// message as sent, so nothing replayed from another exchange passes.
	nonce, ok := strings.CutPrefix(fields[1], "r=")
	if !ok || len(nonce) < len(c.nonce) || subtle.ConstantTimeCompare([]byte(nonce[len(nonce)-len(c.nonce):]), []byte(c.nonce)) != 1 {
		return nil, errors.New("scram: nonce does not match this exchange")
	}
	last := fields[len(fields)-1]
	p, ok := strings.CutPrefix(last, "p=")
	if !ok {
		return nil, errors.New("scram: client-final-message has no proof")
	}
	proof, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, errors.New("scram: proof is not base64")
	}
	withoutProof := msg[:len(msg)-len(last)-1]
	authMsg := []byte(c.clientFirst + "," + c.serverFirst + "," + withoutProof)
	if !c.known || len(proof) != c.h().Size() || len(c.keys.StoredKey) != len(proof) {
		return nil, ErrScramFailed
	}
	sig := hmacSum(c.h, c.keys.StoredKey, authMsg)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	sum := c.h()
	sum.Write(clientKey)
	if !hmac.Equal(sum.Sum(nil), c.keys.StoredKey) {
		return nil, ErrScramFailed
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(hmacSum(c.h, c.keys.ServerKey, authMsg))), nil
}

// unescapeSaslName decodes a SCRAM saslname: "=2C" is ",", "=3D" is "=", any other
// "=" is malformed.
func unescapeSaslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		if s == "" {
			return "", errors.New("scram: empty username")
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", errors.New("scram: malformed escape in username")
		}
		i += 2
	}
	return b.String(), nil
}
