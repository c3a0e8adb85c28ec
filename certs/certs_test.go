package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"

	"github.com/mqstreams/mqstreams/certs/certstest"
)

func TestClientCertificateIdentity(t *testing.T) {
	p, err := certstest.NewTestPKI(t.TempDir(), "device-7")
	if err != nil {
		t.Fatal(err)
	}
	src, err := Load(Files{Cert: p.ServerCert, Key: p.ServerKey, ClientCA: p.CA})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := src.Listen(ln)
	defer tln.Close()
	type result struct {
		name string
		ok   bool
		err  error
	}
	results := make(chan result, 1)
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			cs, err := Handshake(c)
			name, ok := PeerName(cs)
			results <- result{name, ok, err}
			c.Close()
		}
	}()
	caPEM, _ := os.ReadFile(p.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dial := func(cert, key string) {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if cert != "" {
			kp, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			_ = c.Handshake()
			c.Close()
		}
	}
	tests := []struct {
		name, cert, key string
		wantName        string
		wantErr         bool
	}{
		{"client certificate", p.ClientCert, p.ClientKey, "device-7", false},
		{"no certificate", "", "", "", false},
		{"expired certificate", p.ExpiredCert, p.ExpiredKey, "", true},
	}
	for _, tt := range tests {
		dial(tt.cert, tt.key)
		r := <-results
		if (r.err != nil) != tt.wantErr || r.name != tt.wantName || r.ok != (tt.wantName != "") {
			t.Errorf("%s: got name %q ok %v err %v", tt.name, r.name, r.ok, r.err)
		}
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
}
