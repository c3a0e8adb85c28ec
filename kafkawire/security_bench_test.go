package kafkawire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
	"github.com/mqstreams/mqstreams/certs/certstest"
)

// BenchmarkConnectTLSScram512 measures one new client connection per op over
// sasl_ssl: TCP, TLS handshake, ApiVersions, SCRAM-SHA-512 (4096 PBKDF2 iterations on
// the client), then one Metadata request.
func BenchmarkConnectTLSScram512(b *testing.B) {
	pki, err := certstest.NewTestPKI(b.TempDir(), "reader")
	if err != nil {
		b.Fatal(err)
	}
	src, err := certs.Load(certs.Files{Cert: pki.ServerCert, Key: pki.ServerKey})
	if err != nil {
		b.Fatal(err)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	sb := startSecureBroker(b, secureOpts{proto: protoSASLSSL, tls: src})
	mech := scramMech(auth.ScramSHA512, "reader", testPassword)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(mech),
			kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
			b.Fatal(err)
		}
		cl.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}
