package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder collects lifecycle events in order, safely across goroutines.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runGroup starts g.Run in the background; the returned func cancels and
// waits for its result (bounded, so a hang fails the test).
func runGroup(t *testing.T, g *serverGroup) (cancel func(), result func() error) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	var err error
	result = func() error {
		once.Do(func() {
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("serverGroup.Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { cancelCtx(); result() })
	return cancelCtx, result
}

// readyAddrs returns a Ready callback that records the bound addresses.
func readyAddrs(rec *recorder, addrs chan<- map[string]net.Addr) func(map[string]net.Addr) error {
	return func(m map[string]net.Addr) error {
		rec.add("ready")
		addrs <- m
		return nil
	}
}

func TestServerGroupPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	busyAddr := busy.Addr().String()

	// A free port for the first member, to check it is released again.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := probe.Addr().String()
	probe.Close()

	var rec recorder
	g := &serverGroup{
		Servers: []namedServer{
			{Name: "ctkip", Addr: freeAddr, Server: &http.Server{}},
			{Name: "admin", Addr: busyAddr, Server: &http.Server{}},
		},
		Logger: testLogger(t),
		Ready:  func(map[string]net.Addr) error { rec.add("ready"); return nil },
		Notify: rec.add,
	}
	err = g.Run(context.Background())
	if want := fmt.Sprintf("admin listener %s: address already in use", busyAddr); err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Error("error does not match syscall.EADDRINUSE")
	}
	if got := rec.get(); len(got) != 0 {
		t.Errorf("events %v: nothing may run when a bind fails", got)
	}
	again, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Errorf("the listener bound before the failure was not closed: %v", err)
	} else {
		again.Close()
	}
}

func TestServerGroupBadAddress(t *testing.T) {
	g := &serverGroup{Servers: []namedServer{{Name: "admin", Addr: "127.0.0.1:99999", Server: &http.Server{}}}, Notify: func(string) {}}
	err := g.Run(context.Background())
	if want := "admin listener 127.0.0.1:99999: invalid port"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestServerGroupReadyAfterBindThenNotify(t *testing.T) {
	var rec recorder
	addrs := make(chan map[string]net.Addr, 1)
	g := &serverGroup{
		Servers: []namedServer{
			{Name: "admin", Addr: "127.0.0.1:0", Server: &http.Server{Handler: http.NotFoundHandler()}},
			{Name: "ctkip", Addr: "127.0.0.1:0", Server: &http.Server{Handler: http.NotFoundHandler()}},
		},
		Logger: testLogger(t),
		Ready: func(m map[string]net.Addr) error {
			// Every listener is bound: a connection succeeds right now,
			// before anything serves.
			for name, a := range m {
				c, err := net.Dial("tcp", a.String())
				if err != nil {
					return fmt.Errorf("%s not bound in Ready: %w", name, err)
				}
				c.Close()
			}
			return readyAddrs(&rec, addrs)(m)
		},
		Notify: rec.add,
	}
	cancel, result := runGroup(t, g)
	m := <-addrs
	if len(m) != 2 || m["admin"] == nil || m["ctkip"] == nil {
		t.Fatalf("Ready got %v, want admin and ctkip", m)
	}
	resp, err := http.Get("http://" + m["ctkip"].String() + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := result(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"ready", "READY=1", "STOPPING=1"}, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestServerGroupReadyErrorAborts(t *testing.T) {
	var rec recorder
	var bound net.Addr
	g := &serverGroup{
		Servers: []namedServer{{Name: "admin", Addr: "127.0.0.1:0", Server: &http.Server{}}},
		Ready: func(m map[string]net.Addr) error {
			bound = m["admin"]
			return errors.New("store not ready")
		},
		Notify: rec.add,
	}
	if err := g.Run(context.Background()); err == nil || err.Error() != "store not ready" {
		t.Fatalf("Run = %v, want the Ready error", err)
	}
	if got := rec.get(); len(got) != 0 {
		t.Errorf("events %v, want no READY=1", got)
	}
	if ln, err := net.Listen("tcp", bound.String()); err != nil {
		t.Errorf("listener not closed after Ready failed: %v", err)
	} else {
		ln.Close()
	}
}

func TestServerGroupGracefulShutdownDrainsInFlight(t *testing.T) {
	entered := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
	})
	var rec recorder
	addrs := make(chan map[string]net.Addr, 1)
	g := &serverGroup{
		Servers:         []namedServer{{Name: "admin", Addr: "127.0.0.1:0", Server: &http.Server{Handler: handler}}},
		ShutdownTimeout: 5 * time.Second,
		Logger:          testLogger(t),
		Ready:           readyAddrs(&rec, addrs),
		Notify:          rec.add,
	}
	cancel, result := runGroup(t, g)
	url := "http://" + (<-addrs)["admin"].String() + "/slow"

	type response struct {
		body string
		err  error
	}
	got := make(chan response, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			got <- response{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- response{string(b), err}
	}()
	<-entered
	cancel() // SIGTERM while the request is running

	r := <-got
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: body %q, err %v; want it to finish", r.body, r.err)
	}
	if err := result(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("a new request succeeded after shutdown")
	}
	if diff := cmp.Diff([]string{"ready", "READY=1", "STOPPING=1"}, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestServerGroupShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered := make(chan struct{}, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	addrs := make(chan map[string]net.Addr, 1)
	var rec recorder
	g := &serverGroup{
		Servers:         []namedServer{{Name: "admin", Addr: "127.0.0.1:0", Server: &http.Server{Handler: handler}}},
		ShutdownTimeout: 100 * time.Millisecond,
		Logger:          testLogger(t),
		Ready:           readyAddrs(&rec, addrs),
		Notify:          rec.add,
	}
	cancel, result := runGroup(t, g)
	url := "http://" + (<-addrs)["admin"].String() + "/"
	go func() {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	start := time.Now()
	cancel()
	err := result()
	if want := "admin server: requests still running after the shutdown timeout of 100ms were cut off"; err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v, want about the timeout", d)
	}
}

// failingListener is bound nowhere; Accept fails at once.
type failingListener struct{}

func (l *failingListener) Accept() (net.Conn, error) { return nil, errors.New("accept: boom") }
func (l *failingListener) Close() error              { return nil }
func (l *failingListener) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestServerGroupOneFailureStopsAll(t *testing.T) {
	var rec recorder
	g := &serverGroup{
		Servers: []namedServer{
			{Name: "admin", Addr: "127.0.0.1:0", Server: &http.Server{Handler: http.NotFoundHandler()}},
			{Name: "ctkip", Server: &http.Server{}, Listener: &failingListener{}},
		},
		Logger: testLogger(t),
		Notify: rec.add,
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }() // never cancelled
	select {
	case err := <-done:
		if want := "ctkip server: accept: boom"; err == nil || err.Error() != want {
			t.Errorf("Run = %v, want %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a server failed")
	}
	if diff := cmp.Diff([]string{"READY=1", "STOPPING=1"}, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestServerGroupServesTLS(t *testing.T) {
	dir := t.TempDir()
	m, err := loadOrCreateTLS(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), certRequest{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	addrs := make(chan map[string]net.Addr, 1)
	var rec recorder
	g := &serverGroup{
		Servers: []namedServer{{
			Name: "admin", Addr: "127.0.0.1:0", TLS: serverTLSConfig(m.Certificate, true),
			Server: newHTTPServer("admin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Proto)
			}), testLogger(t)),
		}},
		Logger: testLogger(t),
		Ready:  readyAddrs(&rec, addrs),
		Notify: rec.add,
	}
	cancel, result := runGroup(t, g)
	addr := (<-addrs)["admin"].String()

	roots := x509.NewCertPool()
	roots.AddCert(m.Leaf)
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: roots}}
	client := &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Errorf("protocol %q, want HTTP/2.0 on the admin listener", body)
	}
	cancel()
	if err := result(); err != nil {
		t.Fatal(err)
	}
}

// newTestApp returns an app writing to buffers, with a fixed host name and
// environment, whose serve step records the serveEnv instead of running.
func newTestApp(t *testing.T, env map[string]string) (a *app, stdout, stderr *bytes.Buffer, got func() *serveEnv) {
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	a = newApp(strings.NewReader(""), stdout, stderr, mapEnv(env))
	a.hostname = func() (string, error) { return "box.example", nil }
	var captured *serveEnv
	a.serve = func(ctx context.Context, e *serveEnv) error {
		if ctx.Err() != nil {
			return errors.New("context already done")
		}
		captured = e
		return nil
	}
	return a, stdout, stderr, func() *serveEnv { return captured }
}

func TestServeCommandPreparesEnvironment(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	a, _, stderr, got := newTestApp(t, map[string]string{"TOKEND_DATA_DIR": dataDir})
	if code := a.execute(context.Background(), []string{"serve", "--log-format=json"}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	env := got()
	if env == nil {
		t.Fatal("serve did not run")
	}
	wantPaths := dataPaths{
		DataDir:    dataDir,
		DB:         filepath.Join(dataDir, "tokend.db"),
		AdminToken: filepath.Join(dataDir, "admin-token"),
		MasterKey:  filepath.Join(dataDir, "master.key"),
		TLSCert:    filepath.Join(dataDir, "tls.crt"),
		TLSKey:     filepath.Join(dataDir, "tls.key"),
	}
	if diff := cmp.Diff(wantPaths, env.Paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"config is the effective one", env.Config.DataDir == dataDir && env.Config.Log.Format == "json"},
		{"master key is 32 bytes", len(env.MasterKey) == 32},
		{"master key created", env.MasterKeyCreated && env.MasterKeySource == masterKeyFromFile && env.MasterKeyPath == wantPaths.MasterKey},
		{"TLS generated in the data dir", env.TLS.Generated && env.TLS.CertFile == wantPaths.TLSCert},
		{"TLS leaf parsed", env.TLS.Leaf != nil && env.TLS.Leaf.Subject.CommonName == "box.example"},
		{"admin TLS offers h2", cmp.Equal(env.AdminTLS.NextProtos, []string{"h2", "http/1.1"})},
		{"ctkip TLS http/1.1 only", cmp.Equal(env.CTKIPTLS.NextProtos, []string{"http/1.1"})},
		{"public URL derived from host name", env.CTKIPPublicURL == "https://box.example:8444"},
		{"host name", env.Hostname == "box.example"},
		{"clock and randomness", env.Now != nil && env.Rand != nil},
		{"streams", env.Stdout != nil && env.Stderr != nil},
		{"group uses the shutdown timeout", env.newServerGroup().ShutdownTimeout == 15*time.Second},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("serveEnv: %s: false", c.name)
		}
	}
	fi, err := os.Stat(dataDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v, mode %v; want 0700", err, fi.Mode())
	}
	logs := stderr.String()
	if strings.Contains(logs, fmt.Sprintf("%x", []byte(env.MasterKey))) {
		t.Error("the master key appears in the log")
	}
	for _, want := range []string{`"msg":"generated a new master key`, `"msg":"starting"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}

	// Second start: everything reused.
	first := env
	a, _, stderr, got = newTestApp(t, map[string]string{"TOKEND_DATA_DIR": dataDir})
	if code := a.execute(context.Background(), []string{"serve"}); code != 0 {
		t.Fatalf("second start: exit %d, stderr: %s", code, stderr)
	}
	second := got()
	if second.MasterKeyCreated || !bytes.Equal(second.MasterKey, first.MasterKey) {
		t.Error("second start did not reuse the master key")
	}
	if second.TLS.Generated || !bytes.Equal(second.TLS.Leaf.Raw, first.TLS.Leaf.Raw) {
		t.Error("second start did not reuse the TLS certificate")
	}
}

func TestServeCommandCredentialAndConfiguredTLS(t *testing.T) {
	dataDir := t.TempDir()
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, credentialName), []byte(testKeyHex+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := tlsPaths(t)
	writeCASignedPair(t, certFile, keyFile, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))

	a, _, stderr, got := newTestApp(t, map[string]string{"CREDENTIALS_DIRECTORY": creds})
	args := []string{"serve", "--data-dir", dataDir, "--tls-cert", certFile, "--tls-key", keyFile, "--ctkip-listen", "10.0.0.1:9444"}
	if code := a.execute(context.Background(), args); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	env := got()
	if env.MasterKeySource != masterKeyFromCredential || env.MasterKeyCreated {
		t.Errorf("master key source %s created %v, want the credential", env.MasterKeySource, env.MasterKeyCreated)
	}
	if fmt.Sprintf("%x", []byte(env.MasterKey)) != testKeyHex {
		t.Error("master key is not the credential's")
	}
	if env.TLS.Generated || env.TLS.CertFile != certFile || env.TLS.Leaf.Subject.CommonName != "operator.example" {
		t.Errorf("TLS: %+v, want the configured pair", env.TLS)
	}
	if env.CTKIPPublicURL != "https://10.0.0.1:9444" {
		t.Errorf("public URL %q", env.CTKIPPublicURL)
	}
	for _, name := range []string{"master.key", "tls.crt", "tls.key"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
			t.Errorf("%s was created in the data dir although not needed", name)
		}
	}
}

func TestServeCommandErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dataDir string)
		args    []string
		serve   error
		want    string // stderr, %s replaced by the data dir
	}{
		{
			name: "config problems",
			args: []string{"--log-level", "loud", "--admin-listen", "8443"},
			want: `tokend: invalid configuration: 2 problems: --admin-listen: admin_listen "8443": missing port in address; --log-level: log.level "loud": want one of "debug", "info", "warn", "error"` + "\n",
		},
		{
			name: "database without master key",
			prepare: func(t *testing.T, dataDir string) {
				os.WriteFile(filepath.Join(dataDir, "tokend.db"), []byte("db"), 0o600)
			},
			want: "tokend: master key DATA/master.key is missing but the database DATA/tokend.db exists; restore the key from backup (a new key cannot read the existing data)\n",
		},
		{
			name: "loose master key",
			prepare: func(t *testing.T, dataDir string) {
				os.WriteFile(filepath.Join(dataDir, "master.key"), []byte(testKeyHex), 0o644)
			},
			want: "tokend: master key DATA/master.key: mode 0644 lets group or others access it; run chmod 600 DATA/master.key\n",
		},
		{
			name:  "runtime error from serve",
			serve: errors.New("admin listener :8443: address already in use"),
			want:  "tokend: admin listener :8443: address already in use\n",
		},
		{
			name: "extra argument",
			args: []string{"now"},
			want: `tokend: unknown command "now" for "tokend serve"` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			if tt.prepare != nil {
				tt.prepare(t, dataDir)
			}
			a, stdout, stderr, _ := newTestApp(t, map[string]string{"TOKEND_DATA_DIR": dataDir, "TOKEND_LOG_LEVEL": "error"})
			if tt.serve != nil {
				a.serve = func(context.Context, *serveEnv) error { return tt.serve }
			}
			code := a.execute(context.Background(), append([]string{"serve"}, tt.args...))
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if want := strings.ReplaceAll(tt.want, "DATA", dataDir); stderr.String() != want {
				t.Errorf("stderr:\n got %q\nwant %q", stderr.String(), want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing (no usage on errors)", stdout)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // prefix
		wantStderr string // exact
	}{
		{name: "version", args: []string{"version"}, wantStdout: "tokend dev (go1."},
		{name: "unknown command", args: []string{"sevre"}, wantCode: 1, wantStderr: `tokend: unknown command "sevre" for "tokend" Did you mean this? serve` + "\n"},
		{name: "unknown flag", args: []string{"version", "--verbose"}, wantCode: 1, wantStderr: "tokend: unknown flag: --verbose (see 'tokend version --help')\n"},
		{name: "help", args: []string{"--help"}, wantStdout: "tokend runs the token appliance"},
		{name: "no arguments prints help", args: nil, wantStdout: "tokend runs the token appliance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, stdout, stderr, _ := newTestApp(t, nil)
			if code := a.execute(context.Background(), tt.args); code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if !strings.HasPrefix(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q, want prefix %q", stdout, tt.wantStdout)
			}
			if stderr.String() != tt.wantStderr {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
}
