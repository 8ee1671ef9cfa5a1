package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"tokend/agents/radius"
	"tokend/agents/rsarest"
	"tokend/appliance"
	"tokend/appliance/metrics"
	"tokend/internal/accesslog"
)

// purgeEvery is how often expired REST attempts and challenge sessions are
// deleted.
const purgeEvery = 5 * time.Minute

// agentDoors runs the RADIUS door (bound once a RADIUS agent exists) and
// builds the REST door's HTTPS server, which joins the server group.
type agentDoors struct {
	cfg     *Config
	svc     *appliance.Service
	log     *slog.Logger
	timeout time.Duration
	radius  *radius.Server
	rest    *http.Server

	// isRunner says whether this node purges expired authentication and
	// CT-KIP state (runner.go); nil means always.
	isRunner func() bool

	mu      sync.Mutex
	conn    net.PacketConn
	bindErr error
	serving sync.WaitGroup
	stop    chan struct{}
	loops   sync.WaitGroup
}

func newAgentDoors(env *serveEnv, svc *appliance.Service, m *metrics.Metrics) (*agentDoors, error) {
	cfg, log := env.Config, env.Logger
	am := m.Agents()
	d := &agentDoors{cfg: cfg, svc: svc, log: log, timeout: cfg.ShutdownTimeout, stop: make(chan struct{})}
	if cfg.RADIUS.Listen != "" {
		srv, err := radius.New(radius.Config{Service: svc, Logger: log, Recorder: am, RatePerAgent: cfg.RADIUS.RatePerAgent,
			BurstPerAgent: cfg.RADIUS.BurstPerAgent, MaxInFlight: cfg.RADIUS.MaxInFlight, DuplicateWindow: cfg.RADIUS.DuplicateWindow,
			PINMinLength: cfg.Auth.PINMinLength, PINMaxLength: cfg.Auth.PINMaxLength, Now: env.Now})
		if err != nil {
			return nil, err
		}
		d.radius = srv
	}
	if cfg.RESTAuthn.Listen != "" {
		h, err := rsarest.New(rsarest.Config{Service: svc, Logger: log, Recorder: am, PINMinLength: cfg.Auth.PINMinLength,
			PINMaxLength: cfg.Auth.PINMaxLength, PINAlphanumeric: cfg.Auth.PINAlphanumeric, Rand: env.Rand})
		if err != nil {
			return nil, err
		}
		d.rest = newHTTPServer("rest_authn", restObserved(h, m.HTTP("rest_authn"), log), log)
		m.TLSExpiry("rest_authn", env.TLS.Leaf.NotAfter)
	}
	return d, nil
}

// servers returns the HTTPS servers to run in the group.
func (d *agentDoors) servers(env *serveEnv) []namedServer {
	if d.rest == nil {
		return nil
	}
	return []namedServer{{Name: "rest_authn", Addr: d.cfg.RESTAuthn.Listen, Server: d.rest, TLS: env.Certs.config(false)}}
}

// start binds the RADIUS socket now if a RADIUS agent exists (a port in
// use then fails the start like any listener), else watches for the first
// one; and starts the purge of expired authentication state.
func (d *agentDoors) start(ctx context.Context) error {
	d.loops.Go(func() { d.purgeLoop(ctx) })
	if d.radius == nil {
		return nil
	}
	has, err := d.svc.HasRADIUSAgents(ctx)
	if err != nil {
		return fmt.Errorf("radius: %w", err)
	}
	if has {
		if err := d.bind(); err != nil {
			return err
		}
		return nil
	}
	d.log.Info("radius listener waits for the first RADIUS agent", "addr", d.cfg.RADIUS.Listen)
	d.loops.Go(func() { d.waitForAgent(ctx) })
	return nil
}

func (d *agentDoors) bind() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.stop:
		return nil
	default:
	}
	conn, err := net.ListenPacket("udp", d.cfg.RADIUS.Listen)
	if err != nil {
		cause := err
		var se *os.SyscallError
		if errors.As(err, &se) {
			cause = se.Err
		}
		d.bindErr = fmt.Errorf("radius listener %s: %w", d.cfg.RADIUS.Listen, cause)
		return d.bindErr
	}
	d.conn, d.bindErr = conn, nil
	d.log.Info("listening", "server", "radius", "addr", conn.LocalAddr().String(), "scheme", "udp")
	d.serving.Go(func() {
		if err := d.radius.Serve(conn); err != nil {
			d.log.Error("radius server failed", "err", err)
			d.mu.Lock()
			d.bindErr = err
			d.mu.Unlock()
		}
	})
	return nil
}

// waitForAgent binds the RADIUS socket once a RADIUS agent exists: at once
// for one this node created, within 30s for one another node created.
func (d *agentDoors) waitForAgent(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	gen, last := d.svc.AgentsGeneration(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.stop:
			return
		case <-tick.C:
		}
		if g := d.svc.AgentsGeneration(); g == gen && time.Since(last) < 30*time.Second {
			continue
		} else {
			gen, last = g, time.Now()
		}
		has, err := d.svc.HasRADIUSAgents(ctx)
		if err != nil || !has {
			continue
		}
		if err := d.bind(); err != nil {
			// /readyz reports it; the next check tries again.
			d.log.Error("cannot bind the RADIUS listener", "err", err)
			continue
		}
		return
	}
}

func (d *agentDoors) purgeLoop(ctx context.Context) {
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.stop:
			return
		case <-t.C:
			if d.isRunner != nil && !d.isRunner() {
				continue
			}
			if n, err := d.svc.PurgeExpiredAuthState(ctx); err != nil {
				d.log.Warn("purging expired authentication attempts", "err", err)
			} else if n > 0 {
				d.log.Debug("purged expired authentication attempts", "count", n)
			}
		}
	}
}

// ready fails while the RADIUS listener should be up and is not.
func (d *agentDoors) ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bindErr
}

// shutdown stops the RADIUS door, letting the requests being decided be
// answered (bounded by the shutdown timeout).
func (d *agentDoors) shutdown() error {
	d.mu.Lock()
	close(d.stop)
	conn := d.conn
	d.mu.Unlock()
	d.loops.Wait()
	if conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	err := d.radius.Shutdown(ctx)
	d.serving.Wait()
	return err
}

// restObserved adds per-route metrics and an access log line (the shared,
// rate-limited format: a flood of unauthenticated requests on this public
// door cannot flood the log) to the REST door. Routes are the three API
// paths or "unmatched" and methods as accesslog.Method names them, so
// labels stay bounded.
func restObserved(h http.Handler, rec metrics.HTTPRecorder, log *slog.Logger) http.Handler {
	access := accesslog.New(log, "rest_authn", 0, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := "unmatched"
		if call, ok := strings.CutPrefix(r.URL.Path, rsarest.BasePath); ok && (call == "initialize" || call == "verify" || call == "cancel") {
			route = r.URL.Path
		}
		d, method := time.Since(start), accesslog.Method(r.Method)
		rec.ObserveHTTP(route, method, sw.status, d)
		access.Request(r.Context(), method, route, sw.status, d, r.RemoteAddr)
	})
}
