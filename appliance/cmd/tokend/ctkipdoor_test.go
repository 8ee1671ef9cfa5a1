package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/metrics"
	"tokend/ctkip"
)

func TestGuessLimiter(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	g := newGuessLimiter(0.0001, 3, 0.0001, 5, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	a, c := "192.0.2.1", "198.51.100.7"
	for i := range 3 {
		if !g.Allow(a) {
			t.Fatalf("refused before the per-client burst was used (%d)", i)
		}
		if !g.Fail(a) {
			t.Fatalf("failure %d reported over the total budget", i)
		}
	}
	if g.Allow(a) {
		t.Fatal("a client with an empty bucket may still have codes checked")
	}
	if !g.Allow(c) {
		t.Fatal("another client was throttled")
	}
	if !g.Fail(c) || !g.Fail(c) {
		t.Fatal("the total budget ran out early")
	}
	if g.Fail(c) {
		t.Fatal("a failure over the total budget was reported within it")
	}
	if !g.Allow("203.0.113.9") {
		t.Fatal("an empty total budget stops a fresh client's code being checked")
	}
}

func TestCTKIPErrorTranslation(t *testing.T) {
	tests := []struct {
		name       string
		in         error
		want       error
		wantSerial string
	}{
		{"unknown code", &appliance.CodeError{Reason: appliance.ProvisionBadCode}, ctkip.ErrInvalidCode, ""},
		{"expired code", &appliance.CodeError{Reason: appliance.ProvisionExpired, Serial: "000000000001"}, ctkip.ErrCodeExpired, "000000000001"},
		{"used code", &appliance.CodeError{Reason: appliance.ProvisionUsed, Serial: "000000000002"}, ctkip.ErrCodeUsed, "000000000002"},
		{"store failure stays internal", appliance.ErrClosed, appliance.ErrClosed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ctkipError(tc.in)
			if !errors.Is(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			var serial string
			if ce, ok := errors.AsType[*ctkip.CodeError](got); ok {
				serial = ce.Serial
			}
			if serial != tc.wantSerial {
				t.Errorf("serial %q, want %q", serial, tc.wantSerial)
			}
		})
	}
}

func TestAuthPolicyFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		lockout time.Duration
		want    time.Duration
	}{
		{"timed lockout", 30 * time.Minute, 30 * time.Minute},
		{"zero means until an admin unlocks", 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := defaultConfig().Auth
			a.LockoutDuration = tc.lockout
			p := authPolicy(a)
			if p.LockoutDuration != tc.want || p.MaxFailures != 5 || p.LargeWindow != 10 || p.PIN.MaxLength != 8 {
				t.Fatalf("policy = %+v", p)
			}
		})
	}
}

// testClock is an adjustable clock shared by the Service and the door.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time            { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Add(d time.Duration)       { c.off.Add(int64(d)) }
func newCTKIPKey(t *testing.T) *rsa.PrivateKey { return mustKey(t) }

var ctkipTestKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 1024) })

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := ctkipTestKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// door is the CT-KIP door as serve wires it, on a real Service.
type door struct {
	svc   *appliance.Service
	srv   *ctkip.Server
	m     *metrics.Metrics
	clock *testClock
	logs  *syncBuffer
	ctx   context.Context
}

func newDoor(t *testing.T, store appliance.Store) *door {
	t.Helper()
	d := &door{clock: &testClock{}, m: metrics.New("test"), logs: &syncBuffer{},
		ctx: appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})}
	d.svc = appliancetest.Service(t, appliance.Config{Store: store, Now: d.clock.Now,
		CTKIPURL: "https://localhost/ctkip/services/CtkipService"})
	log := slog.New(slog.NewTextHandler(d.logs, nil))
	srv, err := newCTKIPServer(defaultConfig().CTKIP, d.svc, newCTKIPKey(t), d.m, log, d.clock.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d.srv = srv
	return d
}

// codes issues n activation codes for tokens first, first+1, …
func (d *door) codes(t *testing.T, first, n int) []string {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&csv, "%012d\n", first+i)
	}
	if _, err := d.svc.ImportTokens(d.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateProfile(d.ctx, appliance.Profile{Name: fmt.Sprintf("p%d", first), DeviceType: appliance.DeviceGeneric,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone, ActivationCodeTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for i := range n {
		serial := fmt.Sprintf("%012d", first+i)
		u, err := d.svc.CreateUser(d.ctx, appliance.NewUser{UserName: fmt.Sprintf("u%d", first+i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.svc.AssignTokens(d.ctx, u.ID, []string{serial}); err != nil {
			t.Fatal(err)
		}
		dist, err := d.svc.Distribute(d.ctx, serial, fmt.Sprintf("p%d", first))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = dist.ActivationCode.Reveal()
	}
	return out
}

func (d *door) auditRecords(t *testing.T) uint64 {
	t.Helper()
	rep, err := d.svc.VerifyAudit(d.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Records
}

// outcomes reads tokend_ctkip_requests_total by "step/outcome".
func (d *door) outcomes(t *testing.T) map[string]int {
	t.Helper()
	fams, err := d.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range fams {
		if f.GetName() != "tokend_ctkip_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var step, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "step":
					step = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			out[step+"/"+outcome] += int(m.GetCounter().GetValue())
		}
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// fromAddr serves a client's requests straight from the door's handler as
// if they came from addr: every real connection in a test is from 127.0.0.1.
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

func provisionFrom(h http.Handler, addr, code string) (ctkip.Result, error) {
	c := &ctkip.Client{HTTP: &http.Client{Transport: fromAddr{h, addr}}}
	return c.Provision(context.Background(), "http://ctkip/ctkip/services/CtkipService", code)
}

// TestCTKIPNoiseIsNotAudited is finding 4: thousands of anonymous requests
// (garbage, GET, wrong type, malformed, unknown and rate-limited codes)
// against a real TLS listener on a bbolt-backed Service leave the audit
// chain as it was and are counted in the metric; a used or expired real
// code is audited with its serial and never the code.
func TestCTKIPNoiseIsNotAudited(t *testing.T) {
	d := newDoor(t, appliancetest.BoltStore(t))
	codes := d.codes(t, 710000000000, 2)
	ts := httptest.NewTLSServer(d.srv)
	t.Cleanup(ts.Close)
	ts.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 8 // keep-alive for every worker
	client := &ctkip.Client{HTTP: ts.Client()}

	// The real-token refusals first, while 127.0.0.1's own bucket is full.
	before := d.auditRecords(t)
	if _, err := client.Provision(context.Background(), ts.URL, codes[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Provision(context.Background(), ts.URL, codes[0]); err == nil {
		t.Fatal("a used code provisioned again")
	}
	d.clock.Add(2 * time.Hour)
	if _, err := client.Provision(context.Background(), ts.URL, codes[1]); err == nil {
		t.Fatal("an expired code provisioned")
	}
	page, err := d.svc.ListAudit(d.ctx, appliance.AuditQuery{Actor: "ctkip"})
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ Action, Serial, Outcome, Reason string }
	var got []rec
	for _, r := range page.Items {
		got = append(got, rec{r.Action, r.Serial, r.Outcome, r.Reason})
		for _, c := range codes {
			if strings.Contains(fmt.Sprintf("%+v", r), c) {
				t.Errorf("audit record holds an activation code: %+v", r)
			}
		}
	}
	want := []rec{
		{"ctkip.hello", "710000000000", appliance.OutcomeFailure, "used"},
		{"ctkip.hello", "710000000001", appliance.OutcomeFailure, "expired"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ctkip audit records (-want +got):\n%s", diff)
	}
	// Plus the success, audited in the provisioning transaction.
	if n := d.auditRecords(t); n != before+3 {
		t.Errorf("audit records %d -> %d, want 3 more", before, n)
	}

	// Now the noise.
	counted, chain := total(d.outcomes(t)), d.auditRecords(t)
	unknown := func(i int) string { return fmt.Sprintf("%012d", 900000000000+i) }
	kinds := []func(i int) (method, ctype, auth string, body []byte){
		func(int) (string, string, string, []byte) { return http.MethodGet, "", "", nil },
		func(int) (string, string, string, []byte) {
			return http.MethodPost, "text/xml", "", []byte("<x/>")
		},
		func(i int) (string, string, string, []byte) {
			return http.MethodPost, "application/vnd.otps.ct-kip", unknown(i), bytes.Repeat([]byte{byte(i)}, i%300)
		},
		func(int) (string, string, string, []byte) {
			return http.MethodPost, "application/vnd.otps.ct-kip", "", []byte(`<Envelope><Body><ClientRequest/></Body></Envelope>`)
		},
	}
	const n = 2500
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				if i%5 == 0 { // a well-formed ClientHello with an unknown code
					if _, err := client.Provision(context.Background(), ts.URL, unknown(i)); err == nil {
						t.Error("an unknown code provisioned")
					}
					continue
				}
				method, ctype, auth, body := kinds[i%len(kinds)](i)
				req, _ := http.NewRequest(method, ts.URL+"/ctkip/services/CtkipService", bytes.NewReader(body))
				if ctype != "" {
					req.Header.Set("Content-Type", ctype)
				}
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if got := d.auditRecords(t); got != chain {
		t.Errorf("the audit chain grew by %d records for %d anonymous requests", got-chain, n)
	}
	o := d.outcomes(t)
	if got := total(o) - counted; got != n {
		t.Errorf("the metric counted %d requests, want %d (%v)", got, n, o)
	}
	if o["hello/rate_limited"] == 0 || o["hello/bad_code"] == 0 || o["unknown/malformed"] == 0 {
		t.Errorf("outcomes %v lack rate-limited, bad-code or malformed requests", o)
	}
	if lines := strings.Count(d.logs.String(), "ctkip request refused"); lines > 10 {
		t.Errorf("%d log lines for %d refusals", lines, n)
	}
}

// TestCTKIPGuessersDoNotStarveValidCodes is finding 6: guessers from many
// addresses spend the total budget, yet every device with a valid code
// from an address of its own provisions meanwhile; an address whose own
// bucket is empty is refused before its code is checked, and IPv6
// addresses of one /64 share one bucket.
func TestCTKIPGuessersDoNotStarveValidCodes(t *testing.T) {
	d := newDoor(t, nil)
	const devices = 20
	codes := d.codes(t, 720000000000, devices+3)
	guess := func(addr string, i int) string {
		c := fmt.Sprintf("%012d", 900000000000+i)
		_, err := provisionFrom(d.srv, addr, c)
		fe, ok := errors.AsType[*ctkip.FaultError](err)
		if !ok {
			t.Errorf("guess from %s: %v", addr, err)
			return ""
		}
		return fe.Message
	}
	// 250 addresses spend their own buckets, and the total budget with them.
	var i int
	for a := range 250 {
		for range 10 {
			i++
			guess(fmt.Sprintf("10.%d.%d.1:5000", a/200, a%200), i)
		}
	}
	if msg := guess("192.0.2.200:1", 0); !strings.Contains(msg, "Too many") {
		t.Fatalf("the total budget is not spent: a fresh guess got %q", msg)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var guesses atomic.Int64
	for g := range 2 {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				guess(fmt.Sprintf("10.1.%d.%d:5000", g, j%250), 100000+j)
				guesses.Add(1)
			}
		})
	}
	var ok atomic.Int32
	var dev sync.WaitGroup
	for k := range devices {
		dev.Go(func() {
			res, err := provisionFrom(d.srv, fmt.Sprintf("198.51.100.%d:443", k+1), codes[k])
			if err != nil {
				t.Errorf("device %d: %v", k, err)
				return
			}
			if res.Serial != fmt.Sprintf("%012d", 720000000000+k) {
				t.Errorf("device %d got %s", k, res.Serial)
			}
			ok.Add(1)
		})
	}
	dev.Wait()
	close(stop)
	wg.Wait()
	if ok.Load() != devices {
		t.Errorf("%d of %d devices provisioned during %d guesses", ok.Load(), devices, guesses.Load())
	}

	// An address that spent its own bucket is refused, valid code or not.
	if _, err := provisionFrom(d.srv, "10.0.0.1:5000", codes[devices]); err == nil || !strings.Contains(err.Error(), "Too many") {
		t.Errorf("a client with an empty bucket: %v", err)
	}
	// One /64 is one client.
	for j := range 10 {
		guess(fmt.Sprintf("[2001:db8:a:b::%x]:1", j+1), 200000+j)
	}
	if _, err := provisionFrom(d.srv, "[2001:db8:a:b:ffff::1]:1", codes[devices+1]); err == nil || !strings.Contains(err.Error(), "Too many") {
		t.Errorf("another address of a guessing /64: %v", err)
	}
	if _, err := provisionFrom(d.srv, "[2001:db8:a:c::1]:1", codes[devices+2]); err != nil {
		t.Errorf("the neighbouring /64: %v", err)
	}
}

// oneAddressConfig writes a config file for benchmarks whose many devices
// all come from 127.0.0.1: the per-address cap on pending CT-KIP exchanges
// is raised above provisionDevices.
func oneAddressConfig(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "tokend.yaml")
	yaml := fmt.Sprintf("ctkip:\n  max_pending_per_client: %d\n", 2*provisionDevices)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}
