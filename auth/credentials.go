package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Mechanism is a SCRAM mechanism name as SASL spells it.
type Mechanism string

// The SCRAM mechanisms the store keeps keys for.
const (
	ScramSHA256 Mechanism = "SCRAM-SHA-256"
	ScramSHA512 Mechanism = "SCRAM-SHA-512"
)

// ScramIterations is the PBKDF2 iteration count of new SCRAM keys: Kafka's minimum for
// both mechanisms, which every client accepts.
const ScramIterations = 4096

// ScramKeys are the salted keys a server keeps for one SCRAM mechanism (RFC 5802): the
// password itself cannot be recovered from them.
type ScramKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Valid tells whether keys are present.
func (k ScramKeys) Valid() bool {
	return len(k.StoredKey) > 0 && len(k.ServerKey) > 0 && k.Iterations > 0
}

// Credentials are everything the store keeps about a password.
type Credentials struct {
	// Bcrypt verifies passwords given in clear over a protected channel (MQTT CONNECT,
	// HTTP basic auth, SASL PLAIN).
	Bcrypt []byte
	// Scram holds the keys for each SCRAM mechanism; a credential imported from a bare
	// bcrypt hash has none, and such a user cannot use SCRAM.
	Scram map[Mechanism]ScramKeys
}

// credentialsPrefix starts the encoded form, so a future format can be told apart.
const credentialsPrefix = "mqs1"

// HashPassword derives fresh credentials (new random salts) from a password.
func HashPassword(password string, bcryptCost int) (Credentials, error) {
	if password == "" {
		return Credentials{}, errors.New("empty password")
	}
	if len(password) > 72 {
		// bcrypt reads only 72 bytes; longer passwords would be silently truncated.
		return Credentials{}, errors.New("password longer than 72 bytes")
	}
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	b, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return Credentials{}, fmt.Errorf("bcrypt: %w", err)
	}
	c := Credentials{Bcrypt: b, Scram: map[Mechanism]ScramKeys{}}
	for _, m := range []Mechanism{ScramSHA256, ScramSHA512} {
		salt := make([]byte, 24)
		if _, err := rand.Read(salt); err != nil {
			return Credentials{}, fmt.Errorf("salt: %w", err)
		}
		k, err := DeriveScramKeys(m, password, salt, ScramIterations)
		if err != nil {
			return Credentials{}, err
		}
		c.Scram[m] = k
	}
	return c, nil
}

// HashFunc is the hash of a SCRAM mechanism.
func (m Mechanism) HashFunc() (func() hash.Hash, error) {
	switch m {
	case ScramSHA256:
		return sha256.New, nil
	case ScramSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unknown SCRAM mechanism %q", m)
}

// DeriveScramKeys computes the stored and server keys of RFC 5802 section 3.
func DeriveScramKeys(m Mechanism, password string, salt []byte, iterations int) (ScramKeys, error) {
	h, err := m.HashFunc()
	if err != nil {
		return ScramKeys{}, err
	}
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return ScramKeys{}, fmt.Errorf("%s: %w", m, err)
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	stored := h()
	stored.Write(clientKey)
	return ScramKeys{
		Salt:       salt,
		Iterations: iterations,
		StoredKey:  stored.Sum(nil),
		ServerKey:  hmacSum(h, salted, []byte("Server Key")),
	}, nil
}

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// VerifyPassword checks a password given in clear against the bcrypt hash.
func (c Credentials) VerifyPassword(password string) bool {
	return len(c.Bcrypt) > 0 && bcrypt.CompareHashAndPassword(c.Bcrypt, []byte(password)) == nil
}

// String encodes the credentials as the one line `mqstreams hash-password` prints and
// `auth.users[].password_hash` holds: the bcrypt hash and each mechanism's salted keys.
func (c Credentials) String() string {
	var b strings.Builder
	b.WriteString(credentialsPrefix)
	b.WriteString(";bcrypt=")
	b.Write(c.Bcrypt)
	for _, m := range []Mechanism{ScramSHA256, ScramSHA512} {
		k, ok := c.Scram[m]
		if !ok {
			continue
		}
		enc := base64.StdEncoding.EncodeToString
		fmt.Fprintf(&b, ";%s=%d:%s:%s:%s", strings.ToLower(string(m)), k.Iterations, enc(k.Salt), enc(k.StoredKey), enc(k.ServerKey))
	}
	return b.String()
}

// ParseCredentials decodes what String encodes. A bare bcrypt hash ($2a$, $2b$, $2y$)
// is accepted too, for hashes made by other tools: such a user has no SCRAM keys.
func ParseCredentials(s string) (Credentials, error) {
	if strings.HasPrefix(s, "$2") {
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return Credentials{}, fmt.Errorf("not a bcrypt hash: %w", err)
		}
		return Credentials{Bcrypt: []byte(s)}, nil
	}
	parts := strings.Split(s, ";")
	if parts[0] != credentialsPrefix {
		return Credentials{}, errors.New(`not a password hash (want the output of "mqstreams hash-password" or a bcrypt hash)`)
	}
	c := Credentials{Scram: map[Mechanism]ScramKeys{}}
	for _, p := range parts[1:] {
		name, val, ok := strings.Cut(p, "=")
		if !ok {
			return Credentials{}, fmt.Errorf("password hash: malformed part %q", p)
		}
		switch name {
		case "bcrypt":
			if _, err := bcrypt.Cost([]byte(val)); err != nil {
				return Credentials{}, fmt.Errorf("password hash: bcrypt: %w", err)
			}
			c.Bcrypt = []byte(val)
		case "scram-sha-256", "scram-sha-512":
			k, err := parseScramKeys(val)
			if err != nil {
				return Credentials{}, fmt.Errorf("password hash: %s: %w", name, err)
			}
			c.Scram[Mechanism(strings.ToUpper(name))] = k
		default:
			return Credentials{}, fmt.Errorf("password hash: unknown part %q", name)
		}
	}
	if len(c.Bcrypt) == 0 {
		return Credentials{}, errors.New("password hash: no bcrypt part")
	}
	return c, nil
}

func parseScramKeys(s string) (ScramKeys, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return ScramKeys{}, errors.New("want iterations:salt:stored_key:server_key")
	}
	it, err := strconv.Atoi(f[0])
	if err != nil || it < 1 {
		return ScramKeys{}, fmt.Errorf("bad iteration count %q", f[0])
	}
	var k ScramKeys
	k.Iterations = it
	for i, dst := range []*[]byte{&k.Salt, &k.StoredKey, &k.ServerKey} {
		if *dst, err = base64.StdEncoding.DecodeString(f[i+1]); err != nil || len(*dst) == 0 {
			return ScramKeys{}, fmt.Errorf("field %d is not base64", i+2)
		}
	}
	return k, nil
}
