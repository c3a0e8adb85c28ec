package compattests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqstreams/mqstreams/certs/certstest"
)

// TestTLSReloadOnSIGHUP replaces the certificate files of every listener and sends
// SIGHUP: new handshakes present the new certificate, while an MQTT connection opened
// before the reload keeps working.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	ctx := Deadline(t, 2*time.Minute)
	oldPKI, err := certstest.NewTestPKI(t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	newPKI, err := certstest.NewTestPKI(t.TempDir(), "c")
	if err != nil {
		t.Fatal(err)
	}
	live := t.TempDir()
	cert, key := filepath.Join(live, "srv.pem"), filepath.Join(live, "srv.key")
	install := func(p *certstest.TestPKI) {
		for src, dst := range map[string]string{p.ServerCert: cert, p.ServerKey: key} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(oldPKI)
	tlsYAML := fmt.Sprintf("{ cert: %q, key: %q }", cert, key)
	srv := StartServer(t, ServerOptions{Config: fmt.Sprintf("mqtt: { tls: %s }\nkafka: { security_protocol: ssl, tls: %s }\nhttp: { tls: %s }\n", tlsYAML, tlsYAML, tlsYAML)})

	pool := func(p *certstest.TestPKI) *x509.CertPool {
		b, err := os.ReadFile(p.CA)
		if err != nil {
			t.Fatal(err)
		}
		cp := x509.NewCertPool()
		cp.AppendCertsFromPEM(b)
		return cp
	}
	handshake := func(addr string, p *certstest.TestPKI) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(p), ServerName: "localhost"})
		if err != nil {
			return err
		}
		return c.Close()
	}
	doors := map[string]string{"mqtt": srv.MQTTAddr, "kafka": srv.KafkaAddr, "http": srv.HTTPAddr}
	for name, addr := range doors {
		if err := handshake(addr, oldPKI); err != nil {
			t.Fatalf("%s before reload: %v", name, err)
		}
	}

	// An MQTT session opened before the reload.
	conn, err := tls.Dial("tcp", srv.MQTTAddr, &tls.Config{RootCAs: pool(oldPKI), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), ClientID: "before-reload", PacketTimeout: startTimeout}) // a TLS conn: see TestMQTTAuthReasonCodes
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "before-reload", CleanStart: true, KeepAlive: 60}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	defer c.Disconnect(&paho.Disconnect{})

	install(newPKI)
	srv.Signal(t, syscall.SIGHUP)
	deadline := time.Now().Add(startTimeout)
	for strings.Count(srv.Logs(), "tls certificate reloaded") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged for all three listeners:\n%s", srv.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, addr := range doors {
		if err := handshake(addr, newPKI); err != nil {
			t.Errorf("%s after reload with the new CA: %v", name, err)
		}
		if err := handshake(addr, oldPKI); err == nil {
			t.Errorf("%s after reload still presents the old certificate", name)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if pr, err := c.Publish(pctx, &paho.Publish{Topic: "still/here", QoS: 1, Payload: []byte("x")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("the connection opened before the reload: %v %+v", err, pr)
	}
	if code, _ := srv.HTTPGet(t, "/healthz"); code == 200 {
		t.Error("plain HTTP answered on a TLS listener")
	}
}
