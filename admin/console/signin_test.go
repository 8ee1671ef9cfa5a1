package console_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/admin/console"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
)

// signInCounts is an appliance.AdminSignInRecorder; the console's own
// refusals reach it through the Service.
type signInCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *signInCounts) AdminSignIn(outcome, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[outcome+"/"+reason]++
}

func (c *signInCounts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func (c *signInCounts) total(outcome string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := 0
	for k, v := range c.n {
		if strings.HasPrefix(k, outcome+"/") {
			sum += v
		}
	}
	return sum
}

// signInFixture is a real Service (memstore) with one superadmin "root"
// and one helpdesk admin "help" behind the console on a TLS listener.
func signInFixture(t *testing.T, pol appliance.AdminSignInPolicy, opts console.Options) (*fixture, *signInCounts) {
	t.Helper()
	rec := &signInCounts{}
	pol.Recorder = rec
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	svc := appliancetest.Service(t, appliance.Config{Now: clk.Now, AdminSignIn: pol})
	f := &fixture{svc: svc, clock: clk,
		ctx: appliance.WithActor(t.Context(), appliance.Actor{ID: "test", Name: "setup", Role: appliance.RoleSuperAdmin})}
	for _, a := range []struct{ name, role, pw string }{{"root", appliance.RoleSuperAdmin, rootPW}, {"help", appliance.RoleHelpdesk, helpPW}} {
		if _, _, err := svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: a.name, Role: a.role, Password: appliance.Secret(a.pw)}); err != nil {
			t.Fatal(err)
		}
	}
	opts.Now = clk.Now
	f.srv = httptest.NewTLSServer(newHandler(svc, opts))
	t.Cleanup(f.srv.Close)
	return f, rec
}

func (f *fixture) auditCount(t *testing.T, action string) int {
	t.Helper()
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Items)
}

const failedMsg = "Sign-in failed. Check your name, password and tokencode."

// procStatusKiB reads a field such as VmRSS or VmHWM of /proc/self/status.
func procStatusKiB(t *testing.T, field string) int64 {
	t.Helper()
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// goMemory is the memory the Go runtime holds from the OS and has not
// released: heap, stacks and runtime structures (not the race detector's
// shadow memory).
func goMemory() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// TestSignInMemoryBounded: 32 clients send a wrong password at the same
// moment to a real console listener, with the address and account limits
// out of the way so every request reaches the password check, under the
// daemon's GOGC=400. The memory the process takes meanwhile must stay
// below 512 MiB over the baseline: the Go runtime's own memory, sampled
// every millisecond, and (without -race) the peak resident set, VmHWM.
//
// Without the argon2id pool each request allocates its own 64 MiB at once:
// 32 x 64 MiB = 2 GiB live, and with GOGC=400 the heap may grow to five
// times the live set before a collection; that is what the finding
// measured (433 MB to 2.7 GB for 8 attempts, 6.5 GB for 32). With the pool
// at most ArgonSlots evaluations (2 here) hold memory, each one's memory is
// reclaimed before the next starts, and the rest wait up to ArgonWait and
// are refused with 429.
func TestSignInMemoryBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // as tokend serve
	f, rec := signInFixture(t, appliance.AdminSignInPolicy{ArgonSlots: 2},
		console.Options{LoginLimits: console.LoginLimits{BurstPerClient: 1000, BurstPerAccount: 1000}})
	const attackers = 32
	browsers := make([]*browser, attackers)
	for i := range browsers {
		// Each attacker its own client and cookie jar (f.browser shares
		// the server's one client).
		b := f.browser(t)
		c := *b.c
		c.Jar, _ = cookiejar.New(nil)
		b.c = &c
		browsers[i] = b
		b.get("/console/") // session and CSRF token
	}
	before := f.svc.ArgonStats()

	runtime.GC()
	debug.FreeOSMemory()
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+);
	// if that is not allowed the peak so far stands, which only makes the
	// check stricter.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	baseRSS := procStatusKiB(t, "VmRSS") << 10
	baseGo := goMemory()
	stop, peakGo := make(chan struct{}), make(chan int64)
	go func() {
		peak := baseGo
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peakGo <- peak
				return
			case <-tick.C:
				peak = max(peak, goMemory())
			}
		}
	}()

	statuses := make([]int, attackers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range browsers {
		wg.Go(func() {
			<-start
			name := "root"
			if i%2 == 1 {
				name = fmt.Sprintf("nobody%d", i)
			}
			form := url.Values{"name": {name}, "password": {fmt.Sprintf("wrong password %d", i)}, "csrf": {b.csrf}}
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/console/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	growthGo := <-peakGo - baseGo
	growthRSS := procStatusKiB(t, "VmHWM")<<10 - baseRSS
	t.Logf("growth: Go runtime memory %d MiB, peak RSS %d MiB (race detector: %v)", growthGo>>20, growthRSS>>20, raceEnabled)

	after := f.svc.ArgonStats()
	refused, failed := 0, 0
	for i, s := range statuses {
		switch s {
		case http.StatusTooManyRequests:
			refused++
		case http.StatusUnauthorized:
			failed++
		default:
			t.Errorf("attacker %d: status %d", i, s)
		}
	}
	evals := after.Evaluations - before.Evaluations
	t.Logf("%d refused (429), %d checked and refused (401), %d argon2id evaluations", refused, failed, evals)
	if evals < 2 || uint64(failed) != evals {
		t.Fatalf("the attack did not reach the password check: %d evaluations, %d 401s", evals, failed)
	}
	const limit = 512 << 20
	if growthGo >= limit {
		t.Errorf("Go runtime memory grew by %d MiB under %d concurrent sign-ins, want < 512 MiB", growthGo>>20, attackers)
	}
	if !raceEnabled && growthRSS >= limit {
		t.Errorf("peak RSS grew by %d MiB under %d concurrent sign-ins, want < 512 MiB", growthRSS>>20, attackers)
	}
	// Bounded audit: at most one failure record for root in this minute and
	// at most one lockout; the unknown names are only counted.
	if n := f.auditCount(t, "admin.login"); n > 1 {
		t.Errorf("%d admin.login audit records, want at most 1", n)
	}
	if n := f.auditCount(t, "admin.lockout"); n > 1 {
		t.Errorf("%d admin.lockout audit records, want at most 1", n)
	}
	if got := rec.total("failure"); got != attackers {
		t.Errorf("%d refusals counted, want %d", got, attackers)
	}
}

// TestSignInLockout: after max_failures wrong passwords the right one is
// refused with the same page as a wrong one; unlocking the account (as
// another superadmin or the command line would) lets it sign in again.
func TestSignInLockout(t *testing.T) {
	f, rec := signInFixture(t, appliance.AdminSignInPolicy{MaxFailures: 3, LockoutDuration: -1}, console.Options{})
	b := f.browser(t)
	b.get("/console/")
	var pages []page
	for i := range 3 {
		pages = append(pages, b.post("/console/login", url.Values{"name": {"root"}, "password": {fmt.Sprintf("wrong %d", i)}}))
	}
	locked := b.post("/console/login", url.Values{"name": {"root"}, "password": {rootPW}})
	pages = append(pages, locked)
	for i, p := range pages {
		if p.status != http.StatusUnauthorized || !contains(p, failedMsg) {
			t.Fatalf("attempt %d: %s", i+1, p)
		}
	}
	// No oracle: the locked refusal is the wrong-password page (but for
	// the CSRF token each page carries).
	strip := func(p page) string { return csrfRE.ReplaceAllString(p.body, "") }
	if strip(pages[0]) != strip(locked) {
		t.Fatal("a locked account's refusal differs from a wrong password's")
	}
	f.clock.Add(24 * time.Hour)
	b.get("/console/") // a fresh sign-in form: the old one expired
	if p := b.post("/console/login", url.Values{"name": {"root"}, "password": {rootPW}}); p.status != http.StatusUnauthorized {
		t.Fatalf("lockout without a duration ended by itself: %s", p)
	}
	if _, err := f.svc.UnlockAdmin(f.ctx, "root"); err != nil {
		t.Fatal(err)
	}
	b.signIn("root", rootPW)
	if n := f.auditCount(t, "admin.lockout"); n != 1 {
		t.Fatalf("%d lockout records, want 1", n)
	}
	if n := f.auditCount(t, "admin.unlock"); n != 1 {
		t.Fatalf("%d unlock records, want 1", n)
	}
	if got := rec.get("failure/locked"); got != 2 {
		t.Fatalf("locked refusals counted %d, want 2", got)
	}
}

// TestSignInRateLimitedBeforeHashing: once a client's (or an account's)
// bucket is empty the console answers 429 with Retry-After, and no argon2id
// evaluation runs for that attempt.
func TestSignInRateLimitedBeforeHashing(t *testing.T) {
	tests := []struct {
		name   string
		limits console.LoginLimits
		// attempts on root; the last is the one refused
		attempts int
		reason   string
		other    int // status of a following attempt on "help"
	}{
		{name: "per client", limits: console.LoginLimits{BurstPerClient: 3, RatePerClient: 0.001, BurstPerAccount: 100},
			attempts: 4, reason: "rate_limited_client", other: http.StatusTooManyRequests},
		{name: "per account", limits: console.LoginLimits{BurstPerClient: 100, BurstPerAccount: 2, RatePerAccount: 0.001},
			attempts: 3, reason: "rate_limited_account", other: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, rec := signInFixture(t, appliance.AdminSignInPolicy{MaxFailures: 100}, console.Options{LoginLimits: tc.limits})
			b := f.browser(t)
			b.get("/console/")
			for i := range tc.attempts - 1 {
				if p := b.post("/console/login", url.Values{"name": {"root"}, "password": {"wrong"}}); p.status != http.StatusUnauthorized {
					t.Fatalf("attempt %d: %s", i+1, p)
				}
			}
			before := f.svc.ArgonStats().Evaluations
			p := b.post("/console/login", url.Values{"name": {"ROOT"}, "password": {rootPW}})
			if p.status != http.StatusTooManyRequests || !contains(p, "Too many sign-in attempts") {
				t.Fatalf("over the limit: %s", p)
			}
			if ra, err := strconv.Atoi(p.header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("Retry-After %q", p.header.Get("Retry-After"))
			}
			if after := f.svc.ArgonStats().Evaluations; after != before {
				t.Fatalf("%d argon2id evaluations for a throttled attempt", after-before)
			}
			if got := rec.get("failure/" + tc.reason); got != 1 {
				t.Fatalf("%s counted %d times, want 1", tc.reason, got)
			}
			if p := b.post("/console/login", url.Values{"name": {"help"}, "password": {"wrong"}}); p.status != tc.other {
				t.Fatalf("another account from the same client: %d, want %d", p.status, tc.other)
			}
		})
	}
}
