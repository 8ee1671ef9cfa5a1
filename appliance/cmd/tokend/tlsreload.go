package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tlsPollEvery is how often the certificate and key files are checked for
// a change (modification time and size), besides SIGHUP.
const tlsPollEvery = 5 * time.Second

// certReloader holds the certificate every HTTPS listener serves (through
// tls.Config.GetCertificate) and replaces it when the files change or on
// SIGHUP, without a restart. A pair that does not load keeps the previous
// one in service.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tlsMaterial]

	// OnReload, if set, is called after a new pair went into service
	// (main updates the certificate-expiry metric).
	OnReload func(*tlsMaterial)

	mu    sync.Mutex // one reload at a time
	stamp [2]fileStamp
}

// fileStamp is what the poll compares: a replaced or rewritten file
// changes at least one of them.
type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func statStamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}

func newCertReloader(m *tlsMaterial, log *slog.Logger) *certReloader {
	r := &certReloader{certFile: m.CertFile, keyFile: m.KeyFile, log: log}
	r.cur.Store(m)
	r.stamp = r.stamps()
	return r
}

func (r *certReloader) stamps() [2]fileStamp {
	return [2]fileStamp{statStamp(r.certFile), statStamp(r.keyFile)}
}

// Current is the pair in service.
func (r *certReloader) Current() *tlsMaterial { return r.cur.Load() }

// GetCertificate is tls.Config.GetCertificate for every listener.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &r.cur.Load().Certificate, nil
}

// config is serverTLSConfig serving the reloader's current certificate.
func (r *certReloader) config(allowH2 bool) *tls.Config {
	c := serverTLSConfig(r.Current().Certificate, allowH2)
	c.Certificates = nil
	c.GetCertificate = r.GetCertificate
	return c
}

// Reload loads the pair from the files and puts it into service; on error
// the previous pair stays and the error is logged (it names the files and
// what is wrong with them, never key material) and returned.
func (r *certReloader) Reload(reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = r.stamps()
	m, err := loadTLS(r.certFile, r.keyFile)
	if err != nil {
		r.log.Error("TLS certificate reload failed; still serving the previous certificate", "reason", reason, "err", err)
		return err
	}
	old := r.cur.Swap(m)
	r.log.Info("TLS certificate reloaded", "reason", reason, "cert", r.certFile, "sha256", m.Fingerprint(),
		"not_after", m.Leaf.NotAfter, "previous_sha256", old.Fingerprint())
	if r.OnReload != nil {
		r.OnReload(m)
	}
	return nil
}

// changed reports whether either file differs from the last load attempt.
func (r *certReloader) changed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stamps() != r.stamp
}

// Start reloads on SIGHUP and when the files change (checked every poll)
// until ctx ends. SIGHUP is taken over before Start returns, so from then
// on it no longer ends the process.
func (r *certReloader) Start(ctx context.Context, poll time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		tick := time.NewTicker(poll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = r.Reload("SIGHUP")
			case <-tick.C:
				if r.changed() {
					_ = r.Reload("files changed")
				}
			}
		}
	}()
}
