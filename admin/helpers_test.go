package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
)

const testCTKIPURL = "https://tokend.example:8444/ctkip/services/CtkipService"

// clock is a settable clock shared by the Service and the Server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder is an HTTPRecorder that remembers what it saw.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) ObserveHTTP(route, method string, status int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, method+" "+route+" "+http.StatusText(status))
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

type env struct {
	t       *testing.T
	svc     *appliance.Service
	srv     *Server
	clock   *clock
	logs    *syncBuffer
	metrics *recorder
	// tok holds one API token per role.
	tok map[string]string
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type envOption func(*Options)

// newEnv builds a real Service on memstore with a real sealer, and the
// admin Server in front of it, with one API token per role.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvWithConfig(t, appliance.Config{}, opts...)
}

// newEnvWithConfig is newEnv over a Service built from cfg, with the
// environment's CTKIPURL, Logger and Now set in it.
func newEnvWithConfig(t *testing.T, cfg appliance.Config, opts ...envOption) *env {
	t.Helper()
	clk := &clock{t: epoch}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.CTKIPURL, cfg.Logger, cfg.Now = testCTKIPURL, logger, clk.Now
	svc := appliancetest.Service(t, cfg)
	rec := &recorder{}
	o := Options{Logger: logger, Now: clk.Now, Metrics: rec, AccessLog: true}
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, svc: svc, srv: New(svc, o), clock: clk, logs: logs, metrics: rec, tok: map[string]string{}}
	for _, role := range []string{appliance.RoleSuperAdmin, appliance.RoleHelpdesk, appliance.RoleAuditor, appliance.RoleAgent} {
		_, secret, err := svc.CreateAPIToken(context.Background(), "test-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		e.tok[role] = secret.Reveal()
	}
	return e
}

// req describes one request.
type req struct {
	method, path string
	role         string // "" sends no Authorization header
	ctype        string // defaults to application/json when body is set
	body         io.Reader
	header       map[string]string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	hr := httptest.NewRequest(r.method, r.path, r.body)
	if r.body == nil {
		hr = httptest.NewRequest(r.method, r.path, http.NoBody)
	}
	if r.role != "" {
		hr.Header.Set("Authorization", "Bearer "+e.tok[r.role])
	}
	switch {
	case r.ctype != "":
		hr.Header.Set("Content-Type", r.ctype)
	case r.body != nil:
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, hr)
	return w
}

// call is do for a superadmin with a JSON body.
func (e *env) call(method, path string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = jsonBody(e.t, body)
	}
	return e.do(req{method: method, path: path, role: appliance.RoleSuperAdmin, body: rd})
}

// want checks the status and decodes the body into out (if not nil).
func want(t *testing.T, w *httptest.ResponseRecorder, status int, out any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body: %s", w.Code, status, w.Body.String())
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatalf("decode %s: %v", w.Body.String(), err)
		}
	}
}

// wantProblem checks a problem response and returns it.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string) Problem {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != mediaProblem {
		t.Errorf("Content-Type %q, want %q (body %s)", ct, mediaProblem, w.Body.String())
	}
	var p Problem
	want(t, w, status, &p)
	if p.Code != code || p.Status != status || p.Type != problemTypeBase+code || p.Title == "" || p.Detail == "" {
		t.Errorf("problem %+v, want code %s status %d with type, title and detail", p, code, status)
	}
	return p
}

// jsonBody encodes v as a request body.
func jsonBody(t *testing.T, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func csvBody(serials ...string) io.Reader {
	return strings.NewReader("serial\n" + strings.Join(serials, "\n") + "\n")
}

// The real Service satisfies the interface the admin API declares.
var _ Service = (*appliance.Service)(nil)
