package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// namedServer is one member of a serverGroup.
type namedServer struct {
	Name   string       // "admin", "ctkip": used in errors and logs
	Addr   string       // listen address, e.g. ":8443" or "127.0.0.1:0"
	Server *http.Server // the server; its Addr and TLSConfig are ignored
	TLS    *tls.Config  // nil serves plain HTTP (tests only)

	// Listener, if set, is used instead of binding Addr: an already bound
	// socket (systemd socket activation, tests). The group closes it.
	Listener net.Listener
}

// serverGroup runs several HTTP servers as one unit:
//
//  1. bind every listener; the first failure closes the ones already bound
//     and returns "admin listener :8443: address already in use";
//  2. call Ready with the bound addresses (an error aborts the start);
//  3. notify systemd READY=1;
//  4. serve until ctx is cancelled or a server fails;
//  5. notify systemd STOPPING=1 and shut every server down gracefully
//     (in-flight requests finish), bounded by ShutdownTimeout; connections
//     still open then are closed.
//
// Run returns nil after a clean stop by ctx, the first server's error if one
// failed, or an error if the graceful shutdown ran out of time.
type serverGroup struct {
	Servers         []namedServer
	ShutdownTimeout time.Duration // 0 means 15s
	Logger          *slog.Logger  // nil discards

	// Ready, if set, runs after every listener is bound and before READY=1.
	// It receives the bound address of each server by name (useful with
	// port 0). Listeners accept into their backlog meanwhile; keep it short.
	Ready func(addrs map[string]net.Addr) error

	// Notify sends a state to the service manager; nil means sdNotify.
	// Tests record the calls instead.
	Notify func(state string)
}

// sdNotify sends state to systemd when NOTIFY_SOCKET is set (Type=notify);
// without systemd it does nothing.
func sdNotify(logger *slog.Logger) func(string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			logger.Warn("sd_notify failed", "state", state, "err", err)
		}
	}
}

// listen binds addr for the server called name. The error reads
// "admin listener :8443: address already in use" and still matches
// syscall.EADDRINUSE with errors.Is.
func listen(ctx context.Context, name, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		cause := err
		var se *os.SyscallError
		var ae *net.AddrError
		var oe *net.OpError
		switch {
		case errors.As(err, &se):
			cause = se.Err
		case errors.As(err, &ae):
			cause = errors.New(ae.Err)
		case errors.As(err, &oe):
			cause = oe.Err
		}
		return nil, fmt.Errorf("%s listener %s: %w", name, addr, cause)
	}
	return ln, nil
}

// Run runs the group; see serverGroup.
func (g *serverGroup) Run(ctx context.Context) error {
	logger := g.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	notify := g.Notify
	if notify == nil {
		notify = sdNotify(logger)
	}
	timeout := g.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}

	listeners := make([]net.Listener, 0, len(g.Servers))
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	addrs := make(map[string]net.Addr, len(g.Servers))
	for _, s := range g.Servers {
		ln := s.Listener
		if ln == nil {
			var err error
			if ln, err = listen(ctx, s.Name, s.Addr); err != nil {
				closeAll()
				return err
			}
		}
		listeners = append(listeners, ln)
		addrs[s.Name] = ln.Addr()
	}
	if g.Ready != nil {
		if err := g.Ready(addrs); err != nil {
			closeAll()
			return err
		}
	}

	errc := make(chan error, len(g.Servers))
	var wg sync.WaitGroup
	for i, s := range g.Servers {
		ln := listeners[i]
		if s.TLS != nil {
			ln = tls.NewListener(ln, s.TLS)
		}
		scheme := "http"
		if s.TLS != nil {
			scheme = "https"
		}
		logger.Info("listening", "server", s.Name, "addr", addrs[s.Name].String(), "scheme", scheme)
		wg.Go(func() {
			if err := s.Server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		})
	}
	notify(daemon.SdNotifyReady)

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx), "timeout", timeout)
	case runErr = <-errc:
		logger.Error("server failed; stopping the others", "err", runErr)
	}
	notify(daemon.SdNotifyStopping)

	shutdownErr := g.shutdown(logger, timeout)
	wg.Wait()
	return errors.Join(runErr, shutdownErr)
}

// shutdown stops every server concurrently: Shutdown (stop accepting, wait
// for in-flight requests) bounded by timeout, then Close for stragglers.
func (g *serverGroup) shutdown(logger *slog.Logger, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := make([]error, len(g.Servers))
	var wg sync.WaitGroup
	for i, s := range g.Servers {
		wg.Go(func() {
			err := s.Server.Shutdown(ctx)
			if err == nil {
				return
			}
			s.Server.Close()
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%s server: requests still running after the shutdown timeout of %s were cut off", s.Name, timeout)
			} else {
				err = fmt.Errorf("%s server: shutdown: %w", s.Name, err)
			}
			logger.Warn("unclean shutdown", "server", s.Name, "err", err)
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// newHTTPServer returns an http.Server with the timeouts every tokend
// listener wants (slow-client protection) and its error log routed to
// logger. The coordinator sets nothing else but the handler.
func newHTTPServer(name string, handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          httpErrorLog(logger, name),
	}
}

// serveEnv is everything the serve command prepared before it calls
// runServe(ctx, env) — the coordinator's function in serve.go. By then:
// the configuration is valid, the data directory exists (0700) and is
// writable, the master key is loaded (created if this is a first start),
// the TLS pair is loaded (generated on first start) and ctx is cancelled by
// SIGTERM or SIGINT. runServe opens the store, checks the master key against
// it, builds the Service and handlers, and runs env.newServerGroup(...).Run(ctx).
type serveEnv struct {
	Config *Config      // validated effective configuration
	Logger *slog.Logger // process logger (format and level from Config.Log)
	Paths  dataPaths    // DATA_DIR and the files in it, absolute

	// MasterKey is the 32-byte master key. It is a []byte underneath (pass
	// it straight to the sealer) that prints and logs as "[redacted]".
	MasterKey        secretBytes
	MasterKeyPath    string          // the file it came from
	MasterKeySource  masterKeySource // "file" or "systemd-credential"
	MasterKeyCreated bool            // generated during this start: the store must be new too

	TLS      *tlsMaterial // certificate, parsed leaf (expiry metric), files, Generated
	AdminTLS *tls.Config  // for the admin listener: TLS 1.2+, h2 and http/1.1
	CTKIPTLS *tls.Config  // for the CT-KIP listener: TLS 1.2+, http/1.1
	// Certs serves TLS.Certificate to every HTTPS listener and replaces it
	// on SIGHUP or when the files change (tlsreload.go); runServe starts it.
	Certs *certReloader

	// CTKIPPublicURL is the URL devices are told to use: ctkip_public_url,
	// or derived from ctkip_listen and Hostname. With ctkip_listen on port 0
	// it is wrong until the port is known; use publicURL(env.Config.CTKIPPublicURL,
	// boundAddr.String(), env.Hostname) from the Ready callback then.
	CTKIPPublicURL string
	Hostname       string // the machine's host name ("" if unknown)

	Now    func() time.Time // the clock to inject into the Service
	Rand   io.Reader        // the randomness to inject (crypto/rand.Reader)
	Stdout io.Writer        // the command's output (e.g. print the admin token on first start)
	Stderr io.Writer
}

// newServerGroup returns a group of the given servers with the configured
// shutdown timeout and logger, notifying systemd. The coordinator sets
// Ready (readiness) on the result and calls Run(ctx).
func (e *serveEnv) newServerGroup(servers ...namedServer) *serverGroup {
	return &serverGroup{
		Servers:         servers,
		ShutdownTimeout: e.Config.ShutdownTimeout,
		Logger:          e.Logger,
	}
}

// prepareServe performs the serve command's start-up sequence, in order:
// configuration (already loaded and validated) → logger → data directory →
// master key → TLS → CT-KIP public URL. It refuses to generate a master key
// when the database already exists: data sealed under a lost key would be
// unreadable, and a fresh key would hide that.
func (a *app) prepareServe(cfg *Config) (*serveEnv, error) {
	logger, err := newLogger(cfg.Log, a.stderr)
	if err != nil {
		return nil, err
	}
	hostname, err := a.hostname()
	if err != nil {
		logger.Warn("cannot determine the host name; using localhost", "err", err)
		hostname = ""
	}
	paths, err := newDataPaths(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	mode, err := ensureDataDir(paths.DataDir)
	if err != nil {
		return nil, err
	}
	if mode&0o077 != 0 {
		logger.Warn("data directory is accessible by group or others; chmod 700 it", "path", paths.DataDir, "mode", fmt.Sprintf("%04o", mode))
	}

	keyPath, source := resolveMasterKeyPath(cfg.MasterKeyFile, paths, a.lookupEnv)
	var key []byte
	created := false
	if source == masterKeyFromCredential {
		key, err = readMasterKey(keyPath, false)
	} else {
		key, err = readMasterKey(keyPath, true)
		if errors.Is(err, fs.ErrNotExist) {
			dbExists, statErr := exists(paths.DB)
			if statErr != nil {
				return nil, fmt.Errorf("database %s: %w", paths.DB, statErr)
			}
			if dbExists {
				return nil, fmt.Errorf("master key %s is missing but the database %s exists; restore the key from backup (a new key cannot read the existing data)", keyPath, paths.DB)
			}
			key, created, err = loadOrCreateMasterKey(keyPath)
		}
	}
	if err != nil {
		return nil, err
	}
	if created {
		logger.Warn("generated a new master key; back it up, the data cannot be read without it", "path", keyPath)
	}

	ctkipURL := publicURL(cfg.CTKIPPublicURL, cfg.CTKIPListen, hostname)
	var mat *tlsMaterial
	if cfg.TLSCert != "" {
		mat, err = loadTLS(cfg.TLSCert, cfg.TLSKey)
	} else {
		mat, err = loadOrCreateTLS(paths.TLSCert, paths.TLSKey, certRequest{
			Hostname: hostname,
			Extra:    certExtraNames(cfg, ctkipURL),
			Now:      a.now(),
		})
	}
	if err != nil {
		return nil, err
	}
	if mat.Generated {
		logger.Info("generated a self-signed TLS certificate", "cert", mat.CertFile, "sha256", mat.Fingerprint(), "not_after", mat.Leaf.NotAfter)
	}

	certs := newCertReloader(mat, logger)
	return &serveEnv{
		Config:           cfg,
		Logger:           logger,
		Paths:            paths,
		MasterKey:        secretBytes(key),
		MasterKeyPath:    keyPath,
		MasterKeySource:  source,
		MasterKeyCreated: created,
		TLS:              mat,
		Certs:            certs,
		AdminTLS:         certs.config(true),
		CTKIPTLS:         certs.config(false),
		CTKIPPublicURL:   ctkipURL,
		Hostname:         hostname,
		Now:              a.now,
		Rand:             a.rand,
		Stdout:           a.stdout,
		Stderr:           a.stderr,
	}, nil
}
