package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func tlsPaths(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

func TestLoadOrCreateTLSGeneratesThenReuses(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	req := certRequest{Hostname: "box.example", Extra: []string{"", "0.0.0.0", "::", "10.1.2.3", "tokens.example.com", "box.example"}, Now: testNow}

	first, err := loadOrCreateTLS(certFile, keyFile, req)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if !first.Generated {
		t.Error("first call: Generated = false")
	}
	for file, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Base(file), got, want)
		}
	}

	leaf := first.Leaf
	if diff := cmp.Diff([]string{"localhost", "box.example", "tokens.example.com"}, leaf.DNSNames); diff != "" {
		t.Errorf("DNS SANs (-want +got):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "::1", "10.1.2.3"}, ips); diff != "" {
		t.Errorf("IP SANs (-want +got):\n%s", diff)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"subject CN is the host name", leaf.Subject.CommonName == "box.example"},
		{"not a CA", leaf.BasicConstraintsValid && !leaf.IsCA},
		{"key usage digitalSignature only", leaf.KeyUsage == x509.KeyUsageDigitalSignature},
		{"ext key usage serverAuth", cmp.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})},
		{"valid from an hour before now", leaf.NotBefore.Equal(testNow.Add(-time.Hour))},
		{"valid two years", leaf.NotAfter.Equal(testNow.Add(certValidity))},
		{"positive serial of at most 128 bits", leaf.SerialNumber.Sign() > 0 && leaf.SerialNumber.BitLen() <= 128},
		{"self-signed", isSelfSigned(leaf)},
		{"fingerprint is sha256 hex", len(first.Fingerprint()) == 64},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("generated certificate: %s: false", c.name)
		}
	}

	second, err := loadOrCreateTLS(certFile, keyFile, req)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if second.Generated {
		t.Error("second call: Generated = true, want reuse")
	}
	if !bytes.Equal(second.Leaf.Raw, first.Leaf.Raw) {
		t.Error("second call returned a different certificate")
	}
}

func TestLoadOrCreateTLSRegenerates(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, certFile, keyFile string)
		now     time.Time
	}{
		{
			name:    "key without certificate (crash between writes)",
			prepare: func(t *testing.T, certFile, _ string) { os.Remove(certFile) },
			now:     testNow,
		},
		{
			name:    "certificate without key",
			prepare: func(t *testing.T, _, keyFile string) { os.Remove(keyFile) },
			now:     testNow,
		},
		{
			name:    "generated certificate expired",
			prepare: func(*testing.T, string, string) {},
			now:     testNow.Add(certValidity + time.Minute),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := tlsPaths(t)
			first, err := loadOrCreateTLS(certFile, keyFile, certRequest{Hostname: "box", Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, certFile, keyFile)
			second, err := loadOrCreateTLS(certFile, keyFile, certRequest{Hostname: "box", Now: tt.now})
			if err != nil {
				t.Fatal(err)
			}
			if !second.Generated || bytes.Equal(first.Leaf.Raw, second.Leaf.Raw) {
				t.Error("certificate was not regenerated")
			}
			if !second.Leaf.NotBefore.Equal(tt.now.Add(-time.Hour)) {
				t.Errorf("NotBefore = %v, want an hour before %v", second.Leaf.NotBefore, tt.now)
			}
		})
	}
}

func TestLoadOrCreateTLSKeepsOperatorCertificate(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	writeCASignedPair(t, certFile, keyFile, testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour))
	before, _ := os.ReadFile(certFile)
	m, err := loadOrCreateTLS(certFile, keyFile, certRequest{Hostname: "box", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if m.Generated {
		t.Error("an expired CA-issued certificate was replaced by a self-signed one")
	}
	if after, _ := os.ReadFile(certFile); !bytes.Equal(before, after) {
		t.Error("certificate file changed")
	}
}

func TestLoadOrCreateTLSCorruptFilesAreNotReplaced(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	os.WriteFile(certFile, []byte("not pem"), 0o644)
	os.WriteFile(keyFile, []byte("not pem either"), 0o600)
	_, err := loadOrCreateTLS(certFile, keyFile, certRequest{Now: testNow})
	if err == nil {
		t.Fatal("loadOrCreateTLS succeeded on corrupt files")
	}
	for _, want := range []string{certFile, keyFile, "delete both files"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if data, _ := os.ReadFile(certFile); string(data) != "not pem" {
		t.Error("corrupt certificate was overwritten")
	}
}

func TestLoadTLS(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	writeCASignedPair(t, certFile, keyFile, testNow.Add(-time.Hour), testNow.Add(time.Hour))
	m, err := loadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if m.Leaf == nil || m.Leaf.Subject.CommonName != "operator.example" || m.Generated {
		t.Errorf("loaded %+v", m)
	}
	if len(m.Certificate.Certificate) != 2 {
		t.Errorf("chain has %d certificates, want leaf and CA", len(m.Certificate.Certificate))
	}

	_, err = loadTLS(certFile, filepath.Join(t.TempDir(), "missing.key"))
	if err == nil || !strings.Contains(err.Error(), "missing.key: no such file or directory") || !strings.Contains(err.Error(), certFile) {
		t.Errorf("missing key: error %v, want one naming both files", err)
	}
}

// TestGeneratedCertificateAsTrustRoot checks the documented use: a client
// given tls.crt as its only root reaches the server by every SAN, and the
// admin listener negotiates h2 while the CT-KIP one stays on HTTP/1.1.
func TestGeneratedCertificateAsTrustRoot(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	m, err := loadOrCreateTLS(certFile, keyFile, certRequest{Hostname: "box.example", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		t.Fatal("tls.crt does not parse as a root")
	}
	for _, name := range []string{"localhost", "box.example", "127.0.0.1", "::1"} {
		if _, err := m.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}

	tests := []struct {
		name      string
		allowH2   bool
		wantProto string
	}{
		{"admin offers h2", true, "h2"},
		{"ctkip http/1.1 only", false, "http/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLSConfig(m.Certificate, tt.allowH2))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
				RootCAs:    roots,
				ServerName: "localhost",
				NextProtos: []string{"h2", "http/1.1"},
			})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().NegotiatedProtocol; got != tt.wantProto {
				t.Errorf("ALPN = %q, want %q", got, tt.wantProto)
			}
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLSConfig(m.Certificate, true))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}()
		_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Error("a TLS 1.1 handshake succeeded")
		}
	})
}

func TestCertNames(t *testing.T) {
	cfg := defaultConfig()
	cfg.AdminListen = "192.0.2.7:8443"
	cfg.CTKIPListen = ":8444"
	got := certExtraNames(&cfg, "https://tokens.example.com:8444/ctkip")
	if diff := cmp.Diff([]string{"192.0.2.7", "", "tokens.example.com"}, got); diff != "" {
		t.Errorf("certExtraNames (-want +got):\n%s", diff)
	}
	dns, ips := certNames("", got)
	if diff := cmp.Diff([]string{"localhost", "tokens.example.com"}, dns); diff != "" {
		t.Errorf("DNS (-want +got):\n%s", diff)
	}
	if len(ips) != 3 || !ips[2].Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("IPs = %v, want loopbacks and 192.0.2.7", ips)
	}
}

// writeCASignedPair writes a chain (leaf, CA) and leaf key issued by a
// throwaway CA, valid from notBefore to notAfter: an operator's certificate.
func writeCASignedPair(t *testing.T, certFile, keyFile string, notBefore, notAfter time.Time) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: notBefore.Add(-time.Hour), NotAfter: notAfter.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "operator.example"},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: []string{"operator.example"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
}
