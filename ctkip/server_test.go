package ctkip

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// memBackend is an in-memory Backend with a correct consume-once Complete.
type memBackend struct {
	mu        sync.Mutex
	codes     map[string]*memEntry
	begins    atomic.Int32
	completes atomic.Int32
}

type memEntry struct {
	tok  Token
	used bool
	seed Seed
}

func newMemBackend(codes map[string]Token) *memBackend {
	b := &memBackend{codes: make(map[string]*memEntry)}
	for c, t := range codes {
		b.codes[c] = &memEntry{tok: t}
	}
	return b
}

func (b *memBackend) Begin(_ context.Context, code string) (Token, error) {
	b.begins.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.codes[code]
	switch {
	case !ok:
		return Token{}, ErrInvalidCode
	case e.used:
		return Token{}, &CodeError{Serial: e.tok.Serial, Err: ErrCodeUsed}
	}
	return e.tok, nil
}

func (b *memBackend) Complete(_ context.Context, code string, seed Seed) (Token, error) {
	b.completes.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.codes[code]
	switch {
	case !ok:
		return Token{}, ErrInvalidCode
	case e.used:
		return Token{}, &CodeError{Serial: e.tok.Serial, Err: ErrCodeUsed}
	}
	e.used, e.seed = true, seed
	return e.tok, nil
}

func (b *memBackend) seed(code string) Seed {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.codes[code].seed
}

type countRecorder struct {
	mu        sync.Mutex
	outcomes  map[string]int
	exchanges int
}

func (r *countRecorder) Outcome(step Step, o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes == nil {
		r.outcomes = make(map[string]int)
	}
	r.outcomes[string(step)+"/"+string(o)]++
}

func (r *countRecorder) Exchange(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges++
}

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

const (
	testCode  = "123456789012"
	otherCode = "987654321098"
)

var testToken = Token{Serial: "000123456789", UserID: "alice", Digits: 8, Interval: 60,
	ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}

type fixture struct {
	srv     *Server
	backend *memBackend
	rec     *countRecorder
	logs    *syncBuffer
	ts      *httptest.Server
	key     *rsa.PrivateKey
	skew    atomic.Int64 // added to the server's clock
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{
		backend: newMemBackend(map[string]Token{
			testCode:  testToken,
			otherCode: {Serial: "000000000042", Digits: 6, Interval: 30, ExpiresAt: time.Date(2031, 6, 30, 12, 0, 0, 0, time.UTC)},
		}),
		rec:  &countRecorder{},
		logs: &syncBuffer{},
		key:  testKey(t),
	}
	cfg := Config{
		Key: f.key, Backend: f.backend, Recorder: f.rec,
		Now:    func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) },
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.ts = httptest.NewTLSServer(srv)
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fixture) client() *Client { return &Client{HTTP: f.ts.Client()} }

func TestExchange(t *testing.T) {
	tests := []struct {
		name string
		code string
		want Token
	}{
		{"8 digits 60 s with user", testCode, testToken},
		{"6 digits 30 s no user", otherCode, Token{Serial: "000000000042", Digits: 6, Interval: 30, ExpiresAt: time.Date(2031, 6, 30, 0, 0, 0, 0, time.UTC)}},
	}
	f := newFixture(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.client().Provision(context.Background(), f.ts.URL+"/ctkip/services/CtkipService", tt.code)
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Serial: tt.want.Serial, Seed: f.backend.seed(tt.code), Digits: tt.want.Digits, Interval: tt.want.Interval,
				ExpiresAt: tt.want.ExpiresAt, UserID: tt.want.UserID, ServiceID: DefaultServiceID}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if res.Seed == (Seed{}) {
				t.Error("zero seed")
			}
			// A second attempt with the same code fails: it was consumed.
			_, err = f.client().Provision(context.Background(), f.ts.URL, tt.code)
			var fe *FaultError
			if !errors.As(err, &fe) || fe.Message != msgInvalidCode || fe.Exception != excPrivilege {
				t.Errorf("reuse: err = %v", err)
			}
		})
	}
	if f.srv.pendingSessions() != 0 {
		t.Errorf("%d sessions left", f.srv.pendingSessions())
	}
	if f.rec.exchanges != 2 || f.rec.outcomes["finished/success"] != 2 || f.rec.outcomes["hello/used"] != 2 {
		t.Errorf("recorder = %+v", f.rec)
	}
	for _, c := range []string{testCode, otherCode} {
		if strings.Contains(f.logs.String(), c) {
			t.Errorf("log contains the activation code")
		}
	}
}

func TestSessionIDShape(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{34}-[A-Za-z0-9+/]{75}A$`)
	for range 5 {
		var rnd [73]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			t.Fatal(err)
		}
		id := sessionID(rnd[:17], rnd[17:])
		if !re.MatchString(id) || len(id) != 111 {
			t.Errorf("SessionID %q has the wrong shape", id)
		}
	}
	if got := sessionID(unhex(t, "8f0e1d2c3b4a59687766554433221100ff"), func() []byte {
		b := make([]byte, 56)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()); got != vbSessionID {
		t.Errorf("sessionID = %s", got)
	}
}

// TestConcurrentSameCode races devices holding one code: exactly one
// provisions. The others are refused at POST #1 (code used), or at POST #2
// because their session was replaced by a later hello (one pending session
// per code) or the code was consumed meanwhile.
func TestConcurrentSameCode(t *testing.T) {
	f := newFixture(t, nil)
	const n = 6
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := f.client().Provision(context.Background(), f.ts.URL, testCode)
			var fe *FaultError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &fe) && (fe.Message == msgInvalidCode || fe.Message == "Unknown or expired session."):
				refused.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != 1 || refused.Load() != n-1 {
		t.Errorf("successes = %d, refusals = %d; want 1 and %d", ok.Load(), refused.Load(), n-1)
	}
	if n := f.srv.pendingSessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// hello runs POST #1 by hand and returns session ID and R_S.
func hello(t *testing.T, f *fixture, code string) (sid string, rs []byte) {
	t.Helper()
	body := appendClientRequest(nil, code, []byte(clientPD), []byte(clientHello))
	resp := post(t, f, http.MethodPost, contentTypeCTKIP, code, body)
	var d xdoc
	sr, err := parseServerResponse(&d, resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(sr.ProvisioningData) != clientPD {
		t.Errorf("PD not echoed verbatim: %q", sr.ProvisioningData)
	}
	h, err := parseServerHello(&d, sr.Message)
	if err != nil {
		t.Fatal(err)
	}
	return h.SessionID, h.Nonce
}

func post(t *testing.T, f *fixture, method, ctype, auth string, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost {
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status %d, want 405", resp.StatusCode)
		}
		return data
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentTypeXML || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	return data
}

func nonceRequest(t *testing.T, key *rsa.PublicKey, code, sid string, rc, rs []byte) []byte {
	inner := appendClientNonce(nil, sid, encryptOAEP(t, key, rc), rs)
	return appendClientRequest(nil, code, []byte(clientPD), inner)
}

func TestBadRequests(t *testing.T) {
	rc := unhex(t, "0123456789abcdeffedcba9876543210")
	helloBody := appendClientRequest(nil, testCode, []byte(clientPD), []byte(clientHello))
	type req struct {
		method, ctype, auth string
		body                []byte
	}
	simple := func(r req) func(*testing.T, *fixture) req { return func(*testing.T, *fixture) req { return r } }
	tests := []struct {
		name      string
		build     func(*testing.T, *fixture) req
		exception string // "" = expect 405
		outcome   string
	}{
		{"GET method", simple(req{method: http.MethodGet, auth: testCode}), "", "unknown/malformed"},
		{"wrong content type", simple(req{ctype: "text/xml", auth: testCode, body: helloBody}), excInvalid, "unknown/malformed"},
		{"body over 64 KiB", simple(req{auth: testCode, body: append(bytes.Clone(helloBody), bytes.Repeat([]byte(" "), MaxBodySize)...)}), excInvalid, "unknown/malformed"},
		{"not XML", simple(req{auth: testCode, body: []byte("hello " + testCode)}), excInvalid, "unknown/malformed"},
		{"XML with DTD", simple(req{auth: testCode, body: bytes.Replace(helloBody, []byte("?>"), []byte(`?><!DOCTYPE x [<!ENTITY a "b">]>`), 1)}), excInvalid, "unknown/malformed"},
		{"XML with entity", simple(req{auth: testCode, body: []byte(`<!ENTITY x "` + testCode + `"><x/>`)}), excInvalid, "unknown/malformed"},
		{"inner DTD", simple(req{auth: testCode, body: appendClientRequest(nil, testCode, nil, []byte(`<!DOCTYPE ClientHello><ClientHello/>`))}), excInvalid, "unknown/malformed"},
		{"wrong namespace", simple(req{auth: testCode, body: bytes.Replace(helloBody, []byte(nsService), []byte("http://example.com/ctkip"), 1)}), excInvalid, "unknown/malformed"},
		{"unknown inner message", simple(req{auth: testCode, body: appendClientRequest(nil, testCode, nil, []byte(`<Trigger/>`))}), excInvalid, "unknown/malformed"},
		{"Authorization != AuthData", simple(req{auth: otherCode, body: helloBody}), excInvalid, "hello/malformed"},
		{"no Authorization", simple(req{body: helloBody}), excPrivilege, "hello/bad_code"},
		{"unknown code", simple(req{auth: "000000000000", body: appendClientRequest(nil, "000000000000", []byte(clientPD), []byte(clientHello))}), excPrivilege, "hello/bad_code"},
		{"POST 2 without POST 1", func(t *testing.T, f *fixture) req {
			return req{auth: testCode, body: nonceRequest(t, &f.key.PublicKey, testCode, vbSessionID, rc, unhex(t, vbRS))}
		}, excInvalid, "finished/malformed"},
		{"unknown SessionID", func(t *testing.T, f *fixture) req {
			_, rs := hello(t, f, testCode)
			return req{auth: testCode, body: nonceRequest(t, &f.key.PublicKey, testCode, vbSessionID, rc, rs)}
		}, excInvalid, "finished/malformed"},
		{"R_S echo mismatch", func(t *testing.T, f *fixture) req {
			sid, rs := hello(t, f, testCode)
			rs[0] ^= 1
			return req{auth: testCode, body: nonceRequest(t, &f.key.PublicKey, testCode, sid, rc, rs)}
		}, excInvalid, "finished/malformed"},
		{"ciphertext of 15 bytes", func(t *testing.T, f *fixture) req {
			sid, rs := hello(t, f, testCode)
			return req{auth: testCode, body: nonceRequest(t, &f.key.PublicKey, testCode, sid, rc[:15], rs)}
		}, excInvalid, "finished/malformed"},
		{"ciphertext PKCS1 v1.5", func(t *testing.T, f *fixture) req {
			sid, rs := hello(t, f, testCode)
			inner := appendClientNonce(nil, sid, encryptPKCS1v15(t, &f.key.PublicKey, rc), rs)
			return req{auth: testCode, body: appendClientRequest(nil, testCode, nil, inner)}
		}, excInvalid, "finished/malformed"},
		{"POST 2 with another valid code", func(t *testing.T, f *fixture) req {
			sid, rs := hello(t, f, testCode)
			return req{auth: otherCode, body: nonceRequest(t, &f.key.PublicKey, otherCode, sid, rc, rs)}
		}, excPrivilege, "finished/bad_code"},
		{"expired session", func(t *testing.T, f *fixture) req {
			sid, rs := hello(t, f, testCode)
			f.skew.Store(int64(6 * time.Minute))
			return req{auth: testCode, body: nonceRequest(t, &f.key.PublicKey, testCode, sid, rc, rs)}
		}, excInvalid, "finished/malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			r := tt.build(t, f)
			if r.method == "" {
				r.method = http.MethodPost
			}
			if r.ctype == "" {
				r.ctype = contentTypeCTKIP
			}
			resp := post(t, f, r.method, r.ctype, r.auth, r.body)
			if tt.exception != "" {
				var d xdoc
				_, err := parseServerResponse(&d, resp)
				var fe *FaultError
				if !errors.As(err, &fe) || fe.Exception != tt.exception {
					t.Errorf("got %v, want a %s fault", err, tt.exception)
				}
			}
			if n := f.backend.completes.Load(); n != 0 {
				t.Errorf("Backend.Complete called %d times", n)
			}
			if f.rec.outcomes[tt.outcome] != 1 {
				t.Errorf("outcomes = %v, want %s", f.rec.outcomes, tt.outcome)
			}
			logs := f.logs.String()
			for _, secret := range []string{testCode, otherCode, hex.EncodeToString(rc)} {
				if strings.Contains(string(resp), secret) || strings.Contains(logs, secret) {
					t.Errorf("response or log contains a secret:\n%s\n%s", resp, logs)
				}
			}
		})
	}
}

type testLimiter struct {
	mu    sync.Mutex
	fails map[string]int
	max   int
}

func (l *testLimiter) Allow(remote string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fails[remote] < l.max
}

func (l *testLimiter) Fail(remote string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[remote]++
	return true
}

func TestRateLimit(t *testing.T) {
	lim := &testLimiter{fails: map[string]int{}, max: 2}
	f := newFixture(t, func(c *Config) { c.Limiter = lim })
	for i, wantMsg := range []string{msgInvalidCode, msgInvalidCode, msgRateLimited} {
		_, err := f.client().Provision(context.Background(), f.ts.URL, "11111111111"+string(rune('0'+i)))
		var fe *FaultError
		if !errors.As(err, &fe) || fe.Message != wantMsg {
			t.Fatalf("attempt %d: %v, want %q", i, err, wantMsg)
		}
	}
	if f.rec.outcomes["hello/rate_limited"] != 1 || lim.fails["127.0.0.1"] != 2 {
		t.Errorf("outcomes %v, fails %v", f.rec.outcomes, lim.fails)
	}
}

type failingBackend struct{ memBackend }

func (*failingBackend) Complete(context.Context, string, Seed) (Token, error) {
	return Token{}, errors.New("disk full")
}

func TestCompleteFailureIsFault(t *testing.T) {
	b := &failingBackend{memBackend: *newMemBackend(map[string]Token{testCode: testToken})}
	f := newFixture(t, func(c *Config) { c.Backend = b })
	_, err := f.client().Provision(context.Background(), f.ts.URL, testCode)
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Exception != excInternal {
		t.Fatalf("err = %v, want internal fault", err)
	}
	if f.rec.outcomes["finished/internal"] != 1 {
		t.Errorf("outcomes = %v", f.rec.outcomes)
	}
}

func TestContentTypeMatching(t *testing.T) {
	tests := []struct {
		name, v string
		ok      bool
	}{
		{"exact", "application/vnd.otps.ct-kip", true},
		{"case", "Application/VND.otps.CT-KIP", true},
		{"parameter", "application/vnd.otps.ct-kip; charset=utf-8", true},
		{"xml", "text/xml", false},
		{"empty", "", false},
		{"prefix", "application/vnd.otps.ct-kipx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isCTKIPMediaType(tt.v); got != tt.ok {
				t.Errorf("isCTKIPMediaType(%q) = %v", tt.v, got)
			}
		})
	}
}

func TestNewServerRejects(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{Backend: newMemBackend(nil)}},
		{"no backend", Config{Key: small}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewServer(tt.cfg); err == nil {
				t.Error("NewServer accepted it")
			}
		})
	}
}
