package ctkip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestClientPrefix(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"IPv4 with port", "192.0.2.7:4711", "192.0.2.7"},
		{"IPv4 bare", "192.0.2.7", "192.0.2.7"},
		{"IPv6 with port", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"IPv6 same /64", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", "2001:db8:1:2::/64"},
		{"IPv6 next /64", "[2001:db8:1:3::1]:1", "2001:db8:1:3::/64"},
		{"IPv6 full address", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::/64"},
		{"IPv6 same /64, other host", "[2001:db8:1:2::1]:80", "2001:db8:1:2::/64"},
		{"IPv6 with zone", "[fe80::1%eth0]:1", "fe80::/64"},
		{"IPv6 with zone, other port", "[fe80::1%eth0]:80", "fe80::/64"},
		{"IPv4-mapped IPv6", "[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"not an address", "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientPrefix(tt.in); got != tt.want {
				t.Errorf("ClientPrefix(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// fromAddr serves a Client's requests straight from a handler, as if they
// came from addr: every real connection in a test is from 127.0.0.1.
type fromAddr struct {
	h    http.Handler
	addr string
}

func (t fromAddr) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.RemoteAddr = t.addr
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func clientFrom(h http.Handler, addr string) *Client {
	return &Client{HTTP: &http.Client{Transport: fromAddr{h, addr}}}
}

// helloFrom sends POST #1 for code from addr and returns the fault, or nil
// for a ServerHello.
func helloFrom(t *testing.T, h http.Handler, addr, code string) *FaultError {
	t.Helper()
	body := appendClientRequest(nil, code, []byte(clientPD), []byte(clientHello))
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.RemoteAddr = addr
	req.Header.Set("Content-Type", contentTypeCTKIP)
	req.Header.Set("Authorization", code)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var d xdoc
	sr, err := parseServerResponse(&d, rec.Body.Bytes())
	var fe *FaultError
	if errors.As(err, &fe) {
		return fe
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseServerHello(&d, sr.Message); err != nil {
		t.Fatal(err)
	}
	return nil
}

func manyCodes(n int) map[string]Token {
	codes := make(map[string]Token, n)
	for i := range n {
		tok := testToken
		tok.Serial = fmt.Sprintf("%012d", 500000000000+i)
		codes[fmt.Sprintf("%012d", 100000000000+i)] = tok
	}
	return codes
}

func code(i int) string { return fmt.Sprintf("%012d", 100000000000+i) }

// TestOneCodeHoldsOneSession is finding 5: one valid code sending hellos in
// a tight loop keeps a single pending session, and another device provisions
// meanwhile.
func TestOneCodeHoldsOneSession(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxHellosPerCode = 1 << 20; c.MaxSessions = 50 })
	stop := make(chan struct{})
	var hellos atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			body := appendClientRequest(nil, testCode, []byte(clientPD), []byte(clientHello))
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, f.ts.URL, bytes.NewReader(body))
				req.Header.Set("Content-Type", contentTypeCTKIP)
				req.Header.Set("Authorization", testCode)
				resp, err := f.ts.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var b bytes.Buffer
				_, _ = b.ReadFrom(resp.Body)
				resp.Body.Close()
				var d xdoc
				if _, err := parseServerResponse(&d, b.Bytes()); err != nil {
					t.Errorf("flood hello refused: %v", err)
					return
				}
				hellos.Add(1)
			}
		})
	}
	// Far more hellos than the table holds go through while the other
	// device provisions.
	for hellos.Load() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	res, err := f.client().Provision(context.Background(), f.ts.URL, otherCode)
	if err != nil {
		t.Errorf("the other device was refused during the flood: %v", err)
	} else if res.Serial != "000000000042" {
		t.Errorf("serial = %s", res.Serial)
	}
	for hellos.Load() < 400 {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	byCode, byClient := f.srv.pendingFor(testCode, "127.0.0.1")
	if byCode != 1 || byClient != 1 || f.srv.pendingSessions() != 1 {
		t.Errorf("after %d hellos: %d sessions for the code, %d for the client, %d in all; want 1, 1, 1",
			hellos.Load(), byCode, byClient, f.srv.pendingSessions())
	}
	// The flooding code still provisions: its last session is live.
	if _, err := f.client().Provision(context.Background(), f.ts.URL, testCode); err != nil {
		t.Errorf("the flooding code itself: %v", err)
	}
}

// TestHelloLimitPerCode: a valid code is refused by its own hello limit and
// by nothing that others do; the refusal is not charged as a guess.
func TestHelloLimitPerCode(t *testing.T) {
	lim := &testLimiter{fails: map[string]int{}, max: 1}
	f := newFixture(t, func(c *Config) { c.Limiter = lim; c.MaxHellosPerCode = 3 })
	for i := range 3 {
		if fe := helloFrom(t, f.srv, "192.0.2.1:1", testCode); fe != nil {
			t.Fatalf("hello %d: %v", i, fe)
		}
	}
	fe := helloFrom(t, f.srv, "198.51.100.1:1", testCode)
	if fe == nil || fe.Message != msgRateLimited {
		t.Fatalf("fourth hello within the minute: %v, want rate limited", fe)
	}
	if fe := helloFrom(t, f.srv, "198.51.100.1:1", otherCode); fe != nil {
		t.Errorf("another code from the same address: %v", fe)
	}
	f.skew.Store(int64(helloWindow + time.Second))
	if fe := helloFrom(t, f.srv, "192.0.2.1:1", testCode); fe != nil {
		t.Errorf("hello in the next minute: %v", fe)
	}
	if len(lim.fails) != 0 || f.rec.outcomes["hello/rate_limited"] != 1 {
		t.Errorf("limiter charged %v; outcomes %v", lim.fails, f.rec.outcomes)
	}
}

// TestPendingPerClientCap: one address (an IPv6 /64 counting as one) holds
// at most MaxPendingPerClient sessions and so cannot fill the table; at the
// cap it is refused before its code is checked, so the refusal tells nothing
// about the code.
func TestPendingPerClientCap(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Backend = newMemBackend(manyCodes(40))
		c.MaxPendingPerClient = 4
		c.MaxSessions = 10
	})
	b := f.srv.backend.(*memBackend)
	for i := range 4 {
		addr := fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)
		if fe := helloFrom(t, f.srv, addr, code(i)); fe != nil {
			t.Fatalf("hello %d: %v", i, fe)
		}
	}
	begins := b.begins.Load()
	for _, c := range []string{code(4), "999999999999"} {
		fe := helloFrom(t, f.srv, "[2001:db8:1:2:ffff::9]:443", c)
		if fe == nil || fe.Message != msgRateLimited {
			t.Errorf("fifth hello from the same /64 with %s: %v, want rate limited", c, fe)
		}
	}
	if got := b.begins.Load(); got != begins {
		t.Errorf("the code was checked %d times for a client at its cap", got-begins)
	}
	// Others still get sessions, up to the table's bound.
	for i := 4; i < 10; i++ {
		addr := fmt.Sprintf("192.0.2.%d:1", i)
		if fe := helloFrom(t, f.srv, addr, code(i)); fe != nil {
			t.Fatalf("hello from %s: %v", addr, fe)
		}
	}
	if n := f.srv.pendingSessions(); n != 10 {
		t.Fatalf("%d sessions, want 10", n)
	}
	// A full exchange from the /64 is refused too, until its sessions expire.
	res, err := clientFrom(f.srv, "[2001:db8:1:2::77]:1").Provision(context.Background(), "http://ctkip/", code(20))
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Message != msgRateLimited {
		t.Fatalf("provision at the cap: %+v, %v", res, err)
	}
	// Expired sessions are swept first when a client is at its cap.
	f.skew.Store(int64(6 * time.Minute))
	if _, err := clientFrom(f.srv, "[2001:db8:1:2::77]:1").Provision(context.Background(), "http://ctkip/", code(20)); err != nil {
		t.Errorf("after the sessions expired: %v", err)
	}
	if _, byClient := f.srv.pendingFor("", "2001:db8:1:2::/64"); byClient != 0 {
		t.Errorf("%d slots still held by the /64", byClient)
	}
}

type auditEntry struct {
	Serial, Step, Reason string
}

type recAuditor struct {
	mu      sync.Mutex
	entries []auditEntry
}

func (a *recAuditor) Refused(_ context.Context, serial string, step Step, reason string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, auditEntry{serial, string(step), reason})
	return nil
}

func (a *recAuditor) take() []auditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entries
	a.entries = nil
	return e
}

// budgetLimiter has no per-client limit and a total budget of failures.
type budgetLimiter struct{ budget atomic.Int32 }

func (*budgetLimiter) Allow(string) bool  { return true }
func (l *budgetLimiter) Fail(string) bool { return l.budget.Add(-1) >= 0 }

// TestOnlyRealTokensAreAudited is finding 4 on the protocol side: anonymous
// junk never reaches the Auditor; refusals about a real token do, with its
// serial, while the total budget has room.
func TestOnlyRealTokensAreAudited(t *testing.T) {
	aud := &recAuditor{}
	lim := &budgetLimiter{}
	lim.budget.Store(1 << 20)
	f := newFixture(t, func(c *Config) { c.Auditor = aud; c.Limiter = lim })
	rc := unhex(t, "0123456789abcdeffedcba9876543210")
	unknown := appendClientRequest(nil, "000000000000", []byte(clientPD), []byte(clientHello))
	for range 20 {
		post(t, f, http.MethodGet, "", testCode, nil)
		post(t, f, http.MethodPost, "text/plain", testCode, []byte("junk"))
		post(t, f, http.MethodPost, contentTypeCTKIP, testCode, []byte("<not-ctkip/>"))
		post(t, f, http.MethodPost, contentTypeCTKIP, "000000000000", unknown)
		post(t, f, http.MethodPost, contentTypeCTKIP, testCode, nonceRequest(t, &f.key.PublicKey, testCode, vbSessionID, rc, rc))
	}
	if got := aud.take(); len(got) != 0 {
		t.Fatalf("anonymous requests audited: %v", got)
	}
	if _, err := f.client().Provision(context.Background(), f.ts.URL, testCode); err != nil {
		t.Fatal(err)
	}
	// The used code again; a real session of another token with a wrong
	// nonce echo; one with a wrong code.
	if _, err := f.client().Provision(context.Background(), f.ts.URL, testCode); err == nil {
		t.Fatal("used code accepted")
	}
	sid, rs := hello(t, f, otherCode)
	rs[0] ^= 1
	post(t, f, http.MethodPost, contentTypeCTKIP, otherCode, nonceRequest(t, &f.key.PublicKey, otherCode, sid, rc, rs))
	sid, rs = hello(t, f, otherCode)
	post(t, f, http.MethodPost, contentTypeCTKIP, testCode, nonceRequest(t, &f.key.PublicKey, testCode, sid, rc, rs))
	want := []auditEntry{
		{testToken.Serial, "hello", "used"},
		{"000000000042", "finished", "nonce_mismatch"},
		{"000000000042", "finished", "code_mismatch"},
	}
	if diff := cmp.Diff(want, aud.take()); diff != "" {
		t.Errorf("audited (-want +got):\n%s", diff)
	}
	// Over the total budget a refused real code is answered rate-limited
	// and not audited.
	lim.budget.Store(0)
	_, err := f.client().Provision(context.Background(), f.ts.URL, testCode)
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Message != msgRateLimited {
		t.Errorf("used code over budget: %v", err)
	}
	if got := aud.take(); len(got) != 0 {
		t.Errorf("audited over budget: %v", got)
	}
}

// TestRefusalLogThrottled: a flood of junk is counted one by one but logged
// once per interval, the next line carrying the count.
func TestRefusalLogThrottled(t *testing.T) {
	f := newFixture(t, nil)
	const n = 300
	for range n {
		post(t, f, http.MethodPost, contentTypeCTKIP, testCode, []byte("garbage"))
	}
	if got := f.rec.outcomes["unknown/malformed"]; got != n {
		t.Errorf("recorded %d, want %d", got, n)
	}
	if got := strings.Count(f.logs.String(), "ctkip request refused"); got != 1 {
		t.Errorf("%d log lines for %d refusals, want 1", got, n)
	}
	f.skew.Store(int64(11 * time.Second))
	post(t, f, http.MethodGet, "", "", nil)
	logs := f.logs.String()
	if got := strings.Count(logs, "ctkip request refused"); got != 2 {
		t.Errorf("%d log lines after the interval, want 2", got)
	}
	if !strings.Contains(logs, fmt.Sprintf("unknown/malformed:%d", n)) {
		t.Errorf("the second line does not count the held-back refusals:\n%s", logs)
	}
}
