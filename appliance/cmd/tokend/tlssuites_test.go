package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// rsaTestCertificate is a self-signed RSA-2048 certificate for localhost:
// an operator may bring an RSA certificate, and the ECDHE-RSA suites must
// then be AEAD only as well.
func rsaTestCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveHandshakes runs serverTLSConfig on a real listener on 127.0.0.1
// and completes the handshake of every connection.
func serveHandshakes(t *testing.T, cert tls.Certificate, allowH2 bool) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLSConfig(cert, allowH2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}(c)
		}
	}()
	return ln.Addr().String()
}

// TestListenersOfferOnlyAEADSuites: a client that offers only a CBC (or
// RSA key exchange, or 3DES) suite cannot connect to either listener over
// TLS 1.2; AEAD suites and TLS 1.3 can.
func TestListenersOfferOnlyAEADSuites(t *testing.T) {
	certFile, keyFile := tlsPaths(t)
	m, err := loadOrCreateTLS(certFile, keyFile, certRequest{Hostname: "box.example", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ecdsaCert, rsaCert := m.Certificate, rsaTestCertificate(t)

	tests := []struct {
		name    string
		rsa     bool
		suite   uint16 // 0: TLS 1.3
		wantErr bool
	}{
		{name: "ECDHE-ECDSA-AES128-SHA refused", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, wantErr: true},
		{name: "ECDHE-ECDSA-AES256-SHA refused", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, wantErr: true},
		{name: "ECDHE-ECDSA-AES128-SHA256 refused", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, wantErr: true},
		{name: "ECDHE-RSA-AES128-SHA refused", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, wantErr: true},
		{name: "ECDHE-RSA-AES256-SHA refused", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, wantErr: true},
		{name: "ECDHE-RSA-AES128-SHA256 refused", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, wantErr: true},
		{name: "RSA-AES128-GCM-SHA256 refused", rsa: true, suite: tls.TLS_RSA_WITH_AES_128_GCM_SHA256, wantErr: true},
		{name: "RSA-AES128-SHA refused", rsa: true, suite: tls.TLS_RSA_WITH_AES_128_CBC_SHA, wantErr: true},
		{name: "ECDHE-RSA-3DES refused", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, wantErr: true},
		{name: "ECDHE-ECDSA-AES128-GCM-SHA256 works", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "ECDHE-ECDSA-AES256-GCM-SHA384 works", suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{name: "ECDHE-ECDSA-CHACHA20-POLY1305 works", suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "ECDHE-RSA-AES128-GCM-SHA256 works", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{name: "ECDHE-RSA-AES256-GCM-SHA384 works", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{name: "ECDHE-RSA-CHACHA20-POLY1305 works", rsa: true, suite: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "TLS 1.3 works"},
		{name: "TLS 1.3 with an RSA certificate works", rsa: true},
	}
	for _, listener := range []struct {
		name    string
		allowH2 bool
	}{{"admin", true}, {"ctkip", false}} {
		addrs := map[bool]string{false: serveHandshakes(t, ecdsaCert, listener.allowH2), true: serveHandshakes(t, rsaCert, listener.allowH2)}
		for _, tt := range tests {
			t.Run(listener.name+"/"+tt.name, func(t *testing.T) {
				cfg := &tls.Config{ServerName: "localhost", InsecureSkipVerify: true} //nolint:gosec // the suite is under test, not the chain
				if tt.suite != 0 {
					cfg.MaxVersion = tls.VersionTLS12
					cfg.CipherSuites = []uint16{tt.suite}
				} else {
					cfg.MinVersion = tls.VersionTLS13
				}
				conn, err := tls.Dial("tcp", addrs[tt.rsa], cfg)
				if tt.wantErr {
					if err == nil {
						conn.Close()
						t.Fatalf("handshake with %s succeeded", tls.CipherSuiteName(tt.suite))
					}
					return
				}
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer conn.Close()
				if tt.suite != 0 {
					if got := conn.ConnectionState().CipherSuite; got != tt.suite {
						t.Errorf("suite %s, want %s", tls.CipherSuiteName(got), tls.CipherSuiteName(tt.suite))
					}
				} else if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
					t.Errorf("version %x, want TLS 1.3", v)
				}
			})
		}
	}
}
