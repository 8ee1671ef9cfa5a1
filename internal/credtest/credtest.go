// Package credtest holds what the tests of identity-source credential
// files share: a self-signed CA in PEM, a credentials directory beside an
// outside one holding the daemon's secret, and an "LDAP server" an
// attacker runs that records every byte sent to it. Only tests import it.
package credtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CAPEM returns a fresh self-signed CA certificate named cn, in PEM.
func CAPEM(t testing.TB, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// WriteFile writes content to path (0600) and returns path.
func WriteFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Dirs makes a credentials directory (creds) beside an outside one whose
// master.key holds secret, the way /etc/tokend/ldap sits beside the master
// key, in a fresh temporary directory.
func Dirs(t testing.TB, secret string) (creds, outside, secretFile string) {
	t.Helper()
	base := t.TempDir()
	creds, outside = filepath.Join(base, "creds"), filepath.Join(base, "outside")
	for _, d := range []string{creds, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return creds, outside, WriteFile(t, filepath.Join(outside, "master.key"), secret)
}

// Recorder is an "LDAP server" an attacker runs: it counts the connections
// it accepts and keeps every byte it is sent, and never answers.
type Recorder struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	got   []byte
}

// NewRecorder listens on 127.0.0.1; the test's cleanup closes the listener
// and every connection.
func NewRecorder(t testing.TB) *Recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				// Never answer, and hang up after a while: the bind request
				// is all an attacker needs, and a client waiting for an
				// answer is let go sooner.
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					r.mu.Lock()
					r.got = append(r.got, buf[:n]...)
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// URL is the recorder's ldap:// URL.
func (r *Recorder) URL() string { return "ldap://" + r.ln.Addr().String() }

// Seen returns the connections accepted and the bytes received so far.
func (r *Recorder) Seen() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns), string(r.got)
}
