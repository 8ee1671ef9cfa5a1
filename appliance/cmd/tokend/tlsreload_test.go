package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newPair writes a fresh self-signed pair to certFile and keyFile (key
// first, each atomically, as an operator's renewal would) and returns the
// certificate's serial.
func newPair(t *testing.T, certFile, keyFile string) *big.Int {
	t.Helper()
	certPEM, keyPEM, err := generateSelfSigned(certRequest{Hostname: "localhost", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return pemSerial(t, certPEM)
}

func pemSerial(t *testing.T, certPEM []byte) *big.Int {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// servedSerial does a TLS handshake with addr and returns the serial of the
// certificate it presents (no verification: the test only looks).
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspecting the served certificate only
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitServed waits until every addr serves the certificate with serial want.
func waitServed(t *testing.T, want *big.Int, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range addrs {
		for {
			got := servedSerial(t, addr)
			if got.Cmp(want) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s serves serial %x, want %x", addr, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitLog waits until the logs hold substr.
func waitLog(t *testing.T, logs interface{ String() string }, substr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", substr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSReloadOnSIGHUP: a running tokend serves a replaced certificate on
// both HTTPS listeners after SIGHUP, without a restart; a pair that does
// not match keeps the previous certificate in service, and neither log line
// shows key material.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	adminAddr := strings.TrimPrefix(in.admin, "https://")
	ctkipAddr := strings.TrimPrefix(strings.SplitN(strings.TrimPrefix(in.ctkipURL, "https://"), "/", 2)[0], "https://")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := servedSerial(t, adminAddr)

	second := newPair(t, certFile, keyFile)
	if second.Cmp(first) == 0 {
		t.Fatal("the new pair has the old serial")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed(t, second, adminAddr, ctkipAddr)
	waitLog(t, in.logs, `"msg":"TLS certificate reloaded","reason":"SIGHUP"`)
	secondPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	trusted := filepath.Join(t.TempDir(), "second.crt")
	if err := os.WriteFile(trusted, secondPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	// A certificate whose key is not the one in tls.key: refused, the
	// second pair stays in service.
	otherDir := t.TempDir()
	newPair(t, filepath.Join(otherDir, "c"), filepath.Join(otherDir, "k"))
	var mismatched []byte
	mismatched, err = os.ReadFile(filepath.Join(otherDir, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(certFile, mismatched, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, in.logs, `"msg":"TLS certificate reload failed; still serving the previous certificate","reason":"SIGHUP"`)
	for _, addr := range []string{adminAddr, ctkipAddr} {
		if got := servedSerial(t, addr); got.Cmp(second) != 0 {
			t.Errorf("%s serves %x after a bad reload, want the previous %x", addr, got, second)
		}
	}
	if strings.Contains(in.logs.String(), "PRIVATE KEY") {
		t.Error("the log shows key material")
	}
	// Still serving requests, verified against the new certificate.
	in.client = newTrustingClient(t, trusted)
	if got := in.status(t, "GET", "/api/v1/users", in.token); got != http.StatusOK {
		t.Errorf("API after reloads: %d", got)
	}
}

// TestTLSReloadOnFileChange: without a signal, a listener serves the new
// certificate once the poll sees the files change, on a real TLS listener.
func TestTLSReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := newPair(t, certFile, keyFile)
	mat, err := loadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	r := newCertReloader(mat, slog.New(slog.NewTextHandler(&logs, nil)))
	var mu sync.Mutex
	var reloaded []*tlsMaterial
	r.OnReload = func(m *tlsMaterial) { mu.Lock(); reloaded = append(reloaded, m); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.Start(ctx, 20*time.Millisecond)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, r.config(true)))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	waitServed(t, first, addr)

	second := newPair(t, certFile, keyFile)
	waitServed(t, second, addr)
	waitLog(t, &logs, "files changed")

	// A key file that is not PEM: the second certificate stays.
	if err := writeFileAtomic(keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &logs, "reload failed")
	if got := servedSerial(t, addr); got.Cmp(second) != 0 {
		t.Errorf("serves %x after a bad key, want %x", got, second)
	}
	if bytes.Contains([]byte(logs.String()), []byte("not a key")) {
		t.Error("the log quotes the key file")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reloaded) != 1 || reloaded[0].Leaf.SerialNumber.Cmp(second) != 0 {
		t.Errorf("OnReload calls %d, want 1 with the second certificate", len(reloaded))
	}
}
