package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestCredentialsRoundTrip(t *testing.T) {
	c, err := HashPassword("s3cret", 4)
	if err != nil {
		t.Fatal(err)
	}
	enc := c.String()
	if strings.Contains(enc, "s3cret") {
		t.Fatal("encoded credentials hold the password")
	}
	got, err := ParseCredentials(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != enc {
		t.Fatalf("round trip changed the encoding:\n%s\n%s", enc, got.String())
	}
	if !got.VerifyPassword("s3cret") || got.VerifyPassword("s3cret ") || got.VerifyPassword("") {
		t.Fatal("bcrypt verification wrong")
	}
	for _, m := range []Mechanism{ScramSHA256, ScramSHA512} {
		k := got.Scram[m]
		want, err := DeriveScramKeys(m, "s3cret", k.Salt, k.Iterations)
		if err != nil {
			t.Fatal(err)
		}
		if !hmac.Equal(want.StoredKey, k.StoredKey) || !hmac.Equal(want.ServerKey, k.ServerKey) {
			t.Fatalf("%s keys do not derive from the password", m)
		}
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"hunter2",
		"mqs1",
		"mqs1;bcrypt=nope",
		"mqs1;scram-sha-256=4096:AA==:AA==:AA==",
		"mqs1;bcrypt=$2a$04$abc;what=1",
		"$2a$xx",
	} {
		if _, err := ParseCredentials(s); err == nil {
			t.Errorf("ParseCredentials(%q) accepted", s)
		}
	}
	c, err := HashPassword("pw", 4)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := ParseCredentials(string(c.Bcrypt))
	if err != nil || !bare.VerifyPassword("pw") || len(bare.Scram) != 0 {
		t.Fatalf("bare bcrypt hash: %v", err)
	}
	if _, err := HashPassword("", 4); err == nil {
		t.Fatal("empty password accepted")
	}
	if _, err := HashPassword(strings.Repeat("x", 73), 4); err == nil {
		t.Fatal("73-byte password accepted (bcrypt would truncate it)")
	}
}

// TestScramKeysRFC7677 checks the derived keys against the SCRAM-SHA-256 exchange of
// RFC 7677 section 3: the client's proof verifies against StoredKey, and ServerKey
// produces the server's signature.
func TestScramKeysRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	k, err := DeriveScramKeys(ScramSHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	authMsg := "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	sig := hmacSum(sha256.New, k.StoredKey, []byte(authMsg))
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	h := sha256.Sum256(clientKey)
	if !hmac.Equal(h[:], k.StoredKey) {
		t.Fatal("client proof of RFC 7677 does not verify against the stored key")
	}
	want, _ := base64.StdEncoding.DecodeString("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	if got := hmacSum(sha256.New, k.ServerKey, []byte(authMsg)); !hmac.Equal(got, want) {
		t.Fatal("server signature differs from RFC 7677")
	}
}
