// Package certstest makes a throw-away PKI (CA, server and client certificates) for tests
// of the TLS listeners; it is not linked into the server.
package certstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TestPKI is a throw-away CA with server and client certificates in PEM files.
type TestPKI struct {
	Dir                     string
	CA                      string // CA certificate (client_ca, and the clients' --cafile)
	ServerCert, ServerKey   string
	ClientCert, ClientKey   string // CN = ClientCN
	ExpiredCert, ExpiredKey string // CN = ClientCN, expired yesterday
	ClientCN                string
}

// NewTestPKI writes the files into dir. The server certificate is valid for localhost,
// 127.0.0.1 and ::1.
func NewTestPKI(dir, clientCN string) (*TestPKI, error) {
	p := &TestPKI{Dir: dir, ClientCN: clientCN}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqstreams test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if p.CA, err = writePEM(dir, "ca.pem", "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	issue := func(name string, serial int64, tmpl *x509.Certificate) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		certPath, err := writePEM(dir, name+".pem", "CERTIFICATE", der)
		if err != nil {
			return "", "", err
		}
		kd, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", "", err
		}
		keyPath, err := writePEM(dir, name+".key", "EC PRIVATE KEY", kd)
		return certPath, keyPath, err
	}
	if p.ServerCert, p.ServerKey, err = issue("server", 2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	client := func(notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: clientCN},
			NotBefore:   now.Add(-48 * time.Hour),
			NotAfter:    notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	if p.ClientCert, p.ClientKey, err = issue("client", 3, client(now.Add(24*time.Hour))); err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if p.ExpiredCert, p.ExpiredKey, err = issue("expired", 4, client(now.Add(-24*time.Hour))); err != nil {
		return nil, fmt.Errorf("expired certificate: %w", err)
	}
	return p, nil
}

func writePEM(dir, name, typ string, der []byte) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
