package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"time"
)

// certValidity is the lifetime of a generated certificate: two years, below
// the 825 days some clients (Apple) accept for any TLS server certificate.
const certValidity = 2 * 365 * 24 * time.Hour

// tlsMaterial is the server certificate in use.
type tlsMaterial struct {
	Certificate tls.Certificate   // chain and private key, for tls.Config
	Leaf        *x509.Certificate // parsed leaf: NotAfter feeds the certificate-expiry metric
	CertFile    string            // where it was loaded from (or written to)
	KeyFile     string
	// Generated is true when this start wrote a new self-signed pair
	// (first start, or the previous generated certificate had expired).
	Generated bool
}

// Fingerprint is the SHA-256 of the leaf in hex, for operators who pin it.
func (m *tlsMaterial) Fingerprint() string {
	sum := sha256.Sum256(m.Leaf.Raw)
	return hex.EncodeToString(sum[:])
}

// certRequest says what a generated certificate covers.
type certRequest struct {
	Hostname string    // machine host name: the subject CN and a DNS SAN
	Extra    []string  // further host names or IP addresses (listener hosts, public URL host)
	Now      time.Time // validity starts an hour before Now (clock skew)
	Rand     io.Reader // randomness for the key and serial; nil = crypto/rand
}

// loadTLS loads a configured certificate chain and key pair (PEM) with
// tls.LoadX509KeyPair. Errors name both files.
func loadTLS(certFile, keyFile string) (*tlsMaterial, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, unwrapPath(err))
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
		}
	}
	return &tlsMaterial{Certificate: cert, Leaf: leaf, CertFile: certFile, KeyFile: keyFile}, nil
}

// loadOrCreateTLS is the default-path case (tls_cert and tls_key unset):
// when certFile and keyFile both exist they are loaded and reused; when
// either is missing (first start, or a crash between the two writes) a new
// self-signed pair is generated and written: the key 0600, the certificate
// 0644, each atomically. A self-signed certificate that has expired is
// replaced too; any other certificate there is the operator's and is only
// loaded.
//
// The generated certificate: ECDSA P-256 key, random 128-bit serial, valid
// two years, KeyUsage digitalSignature, ExtKeyUsage serverAuth, SANs
// localhost, the host name, 127.0.0.1, ::1 and req.Extra.
//
// It is deliberately NOT a CA (BasicConstraints CA:FALSE). Go, curl and
// OpenSSL all accept a self-signed end-entity certificate given directly as
// the trust root (curl --cacert tls.crt, tokend --ca tls.crt, Go's
// x509.CertPool), so the file still works for pinning; while a CA:TRUE
// certificate presented as a server certificate is rejected outright by
// Firefox (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY), which would lock
// operators out of the web console, and a CA key on an appliance could
// sign certificates for any name if it leaked.
func loadOrCreateTLS(certFile, keyFile string, req certRequest) (*tlsMaterial, error) {
	certExists, err := exists(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	keyExists, err := exists(keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key %s: %w", keyFile, err)
	}
	if certExists && keyExists {
		m, err := loadTLS(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w (delete both files to have a new self-signed pair generated)", err)
		}
		if !req.Now.After(m.Leaf.NotAfter) || !isSelfSigned(m.Leaf) {
			return m, nil
		}
		// Our own generated certificate expired: make a new one.
	}
	certPEM, keyPEM, err := generateSelfSigned(req)
	if err != nil {
		return nil, err
	}
	// Key first: a crash in between leaves a key without a certificate,
	// which the next start regenerates.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("TLS key %s: write: %w", keyFile, err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("TLS certificate %s: write: %w", certFile, err)
	}
	m, err := loadTLS(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	m.Generated = true
	return m, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, unwrapPath(err)
}

// isSelfSigned reports whether c is issued by itself and signed by its own
// key. (CheckSignatureFrom would refuse: c is not a CA.)
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// generateSelfSigned makes the self-signed pair described at loadOrCreateTLS
// and returns both as PEM (certificate, PKCS#8 key).
func generateSelfSigned(req certRequest) (certPEM, keyPEM []byte, err error) {
	rnd := req.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, nil, fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rnd, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generate TLS serial: %w", err)
	}
	dns, ips := certNames(req.Hostname, req.Extra)
	cn := req.Hostname
	if cn == "" {
		cn = "localhost"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"tokend (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create TLS certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode TLS key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// certNames returns the SANs: localhost, hostname and the extra names as DNS
// names; 127.0.0.1, ::1 and the extra IP addresses as IPs. No duplicates,
// no wildcard listener hosts.
func certNames(hostname string, extra []string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, n := range append([]string{hostname}, extra...) {
		if isWildcardHost(n) {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// certExtraNames are the hosts a generated certificate must also cover: the
// hosts of the two listeners and of the CT-KIP public URL (devices check it).
func certExtraNames(cfg *Config, ctkipURL string) []string {
	var names []string
	for _, addr := range []string{cfg.AdminListen, cfg.CTKIPListen} {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			names = append(names, h)
		}
	}
	if u, err := url.Parse(ctkipURL); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	return names
}

// tls12Suites are the TLS 1.2 suites both listeners offer: ECDHE with an
// AEAD only. Go's defaults also offer ECDHE with AES-CBC and HMAC-SHA1 (and
// SHA-256), which have no place on an appliance whose clients (browsers, the
// RSA SecurID apps on current Android, iOS and Windows, curl) all speak
// AES-GCM, and most TLS 1.3. TLS 1.3 suites are not configurable and are
// all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLSConfig is the tls.Config for one listener: the certificate, TLS
// 1.2 at least with forward-secret AEAD suites only (tls12Suites), Go's
// default curves (X25519MLKEM768 first). With allowH2 the listener offers
// HTTP/2 and HTTP/1.1 by ALPN (admin: browsers, the console); without,
// HTTP/1.1 only (CT-KIP clients are simple HTTP/1.1 SOAP clients).
func serverTLSConfig(cert tls.Certificate, allowH2 bool) *tls.Config {
	protos := []string{"http/1.1"}
	if allowH2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(tls12Suites),
		Certificates: []tls.Certificate{cert},
		NextProtos:   protos,
	}
}
