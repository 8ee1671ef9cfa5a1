package appliance_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/argon2"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// signInCounter is an AdminSignInRecorder that remembers every count.
type signInCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *signInCounter) AdminSignIn(outcome, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[outcome+"/"+reason]++
}

func (c *signInCounter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

type signInFixture struct {
	*fixture
	rec *signInCounter
}

// newSignInFixture builds a Service with the given sign-in policy over
// store, sharing the clock so a "restart" keeps the time.
func newSignInFixture(t *testing.T, store appliance.Store, key []byte, clk *clock, pol appliance.AdminSignInPolicy) *signInFixture {
	t.Helper()
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec := &signInCounter{}
	pol.Recorder = rec
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now, AdminSignIn: pol})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return &signInFixture{fixture: &fixture{svc: svc, store: store, clock: clk, key: key, ctx: ctx}, rec: rec}
}

func testKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// putCheapAdmin stores an admin account whose password hash has small
// argon2id parameters, so a test can afford many failed sign-ins. The hash
// carries its parameters, so the Service checks it as it would any other.
func putCheapAdmin(t *testing.T, f *fixture, name, password string) {
	t.Helper()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	acc := appliance.AdminAccount{ID: "id-" + name, Name: name, Role: appliance.RoleSuperAdmin,
		PasswordHash: fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))}
	b, err := json.Marshal(acc)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Update(f.ctx, func(tx appliance.Tx) error { return tx.Put([]byte("adm/"+name), b) }); err != nil {
		t.Fatal(err)
	}
}

func auditActions(t *testing.T, f *fixture, action string) []string {
	t.Helper()
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range page.Items {
		out = append(out, r.Outcome+"/"+r.Reason)
	}
	return out
}

func TestAdminLockout(t *testing.T) {
	const password = "correct horse battery"
	tests := []struct {
		name     string
		duration time.Duration // policy's LockoutDuration
		wait     time.Duration // clock advance after the lockout
		open     bool          // whether the right password works after wait
	}{
		{name: "locked for the duration", duration: 30 * time.Minute, wait: 29 * time.Minute, open: false},
		{name: "lockout expires", duration: 30 * time.Minute, wait: 31 * time.Minute, open: true},
		{name: "until unlocked", duration: -1, wait: 365 * 24 * time.Hour, open: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, key := memstore.New(), testKey(t)
			clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
			pol := appliance.AdminSignInPolicy{MaxFailures: 3, LockoutDuration: tc.duration}
			f := newSignInFixture(t, store, key, clk, pol)
			putCheapAdmin(t, f.fixture, "root", password)
			for i := range 3 {
				if _, err := f.svc.AuthenticateAdmin(f.ctx, "root", "wrong password", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
					t.Fatalf("failure %d: %v", i+1, err)
				}
			}
			// The right password on a locked account: the same refusal.
			if _, err := f.svc.AuthenticateAdmin(f.ctx, "root", password, ""); !errors.Is(err, appliance.ErrUnauthenticated) {
				t.Fatalf("locked account signed in: %v", err)
			}
			// The lockout is stored: a new Service on the same store (a
			// restart) still refuses.
			f = newSignInFixture(t, store, key, clk, pol)
			clk.Add(tc.wait)
			_, err := f.svc.AuthenticateAdmin(f.ctx, "root", password, "")
			if tc.open != (err == nil) {
				t.Fatalf("after %s: err %v, want open=%v", tc.wait, err, tc.open)
			}
			if !tc.open {
				if _, err := f.svc.UnlockAdmin(f.ctx, "root"); err != nil {
					t.Fatal(err)
				}
				if _, err := f.svc.AuthenticateAdmin(f.ctx, "root", password, ""); err != nil {
					t.Fatalf("after unlock: %v", err)
				}
			}
			acc, err := f.svc.GetAdmin(f.ctx, "root")
			if err != nil || acc.Failures != 0 || acc.Locked(clk.Now()) {
				t.Fatalf("after sign-in: failures %d locked until %v, %v", acc.Failures, acc.LockedUntil, err)
			}
			if got := auditActions(t, f.fixture, "admin.lockout"); len(got) != 1 {
				t.Fatalf("lockout audited %d times, want once: %v", len(got), got)
			}
		})
	}
}

func TestUnlockAdminNotSelf(t *testing.T) {
	f := newSignInFixture(t, memstore.New(), testKey(t), &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)},
		appliance.AdminSignInPolicy{MaxFailures: 1})
	putCheapAdmin(t, f.fixture, "root", "correct horse battery")
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "root", "wrong", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatal(err)
	}
	self := appliance.WithActor(context.Background(), appliance.Actor{ID: "admin:id-root", Name: "root", Role: appliance.RoleSuperAdmin})
	if _, err := f.svc.UnlockAdmin(self, "root"); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("self-unlock: %v, want ErrInvalidState", err)
	}
	if _, err := f.svc.UnlockAdmin(f.ctx, "nobody"); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("unknown admin: %v", err)
	}
	if _, err := f.svc.UnlockAdmin(f.ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if got := auditActions(t, f.fixture, "admin.unlock"); !cmp.Equal(got, []string{"failure/invalid_state", "failure/not_found", "success/"}) {
		t.Fatalf("unlock audit %v", got)
	}
}

// TestAdminSignInFailuresAuditedBoundedly: a flood of refused sign-ins adds
// at most one audit record per account per minute plus the lockout; unknown
// names add none. Every refusal is counted by the recorder.
func TestAdminSignInFailuresAuditedBoundedly(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newSignInFixture(t, memstore.New(), testKey(t), clk, appliance.AdminSignInPolicy{MaxFailures: 10})
	putCheapAdmin(t, f.fixture, "root", "correct horse battery")
	const known, unknown = 40, 3 // unknown names cost 64 MiB of argon2id each
	for i := range known {
		if i == known/2 {
			clk.Add(time.Minute) // a new minute: one more record
		}
		if _, err := f.svc.AuthenticateAdmin(f.ctx, "root", fmt.Sprintf("guess %d", i), ""); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Fatal(err)
		}
	}
	for i := range unknown {
		if _, err := f.svc.AuthenticateAdmin(f.ctx, fmt.Sprintf("nobody%d", i), "guess", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Fatal(err)
		}
	}
	want := []string{"failure/bad_password", "failure/locked"} // oldest first
	if got := auditActions(t, f.fixture, "admin.login"); !cmp.Equal(got, want) {
		t.Fatalf("admin.login records %v, want %v", got, want)
	}
	if got := auditActions(t, f.fixture, "admin.lockout"); len(got) != 1 {
		t.Fatalf("lockout records %v, want one", got)
	}
	wantCounts := map[string]int{"failure/bad_password": 10, "failure/locked": known - 10, "failure/unknown_admin": unknown}
	if diff := cmp.Diff(wantCounts, f.rec.get()); diff != "" {
		t.Fatalf("recorded outcomes (-want +got):\n%s", diff)
	}
}

// TestAdminSignInThrottled: a door's own refusals are counted with the
// Service's and leave no audit record.
func TestAdminSignInThrottled(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newSignInFixture(t, memstore.New(), testKey(t), clk, appliance.AdminSignInPolicy{})
	for range 3 {
		f.svc.AdminSignInThrottled("rate_limited_client")
	}
	f.svc.AdminSignInThrottled("rate_limited_account")
	want := map[string]int{"failure/rate_limited_client": 3, "failure/rate_limited_account": 1}
	if diff := cmp.Diff(want, f.rec.get()); diff != "" {
		t.Fatalf("recorded outcomes (-want +got):\n%s", diff)
	}
	if got := auditActions(t, f.fixture, "admin.login"); len(got) != 0 {
		t.Fatalf("admin.login records %v for throttled sign-ins", got)
	}
}

// TestArgonPoolBoundsConcurrency runs many real admin sign-ins (64 MiB
// argon2id each) at once against one slot with a short wait: never more
// than the budget is in use, and the excess is refused with ErrBusy instead
// of queueing without bound.
func TestArgonPoolBoundsConcurrency(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newSignInFixture(t, memstore.New(), testKey(t), clk,
		appliance.AdminSignInPolicy{ArgonSlots: 1, ArgonWait: 50 * time.Millisecond})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var p int64
		for {
			select {
			case <-stop:
				peak <- p
				return
			default:
			}
			p = max(p, f.svc.ArgonStats().InUseKiB)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for i := range n {
		wg.Go(func() {
			_, err := f.svc.AuthenticateAdmin(f.ctx, fmt.Sprintf("nobody%d", i), "guess", "")
			errs <- err
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	busy := 0
	for err := range errs {
		switch {
		case errors.Is(err, appliance.ErrBusy):
			busy++
		case !errors.Is(err, appliance.ErrUnauthenticated):
			t.Fatalf("unexpected error %v", err)
		}
	}
	st := f.svc.ArgonStats()
	if p := <-peak; p > st.BudgetKiB || st.BudgetKiB != 64*1024 {
		t.Fatalf("peak in use %d KiB, budget %d KiB", p, st.BudgetKiB)
	}
	if busy == 0 || st.Refused != uint64(busy) || st.Evaluations != uint64(n-busy) || st.InUseKiB != 0 {
		t.Fatalf("busy %d, stats %+v", busy, st)
	}
	if got := f.rec.get()["failure/busy"]; got != busy {
		t.Fatalf("busy refusals counted %d, want %d", got, busy)
	}
}

// TestPINChecksShareArgonPool: PIN checks of the authentication API run in
// the same memory budget as admin passwords. While an admin sign-in holds
// the whole budget, a passcode with a PIN gets ErrBusy after the short
// wait, and that attempt is neither decided nor counted as a failure.
func TestPINChecksShareArgonPool(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := newSignInFixture(t, memstore.New(), testKey(t), clk,
		appliance.AdminSignInPolicy{ArgonSlots: 1, ArgonWait: time.Millisecond})
	f.importCSV(t, serials(1, 150000000000))
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeFob}); err != nil {
		t.Fatal(err)
	}
	u := f.user(t, "alice")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000000"}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, "150000000000", "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), testSeed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ChangePIN(f.ctx, "150000000000", appliance.PINChange{PIN: "1234"}); err != nil {
		t.Fatal(err)
	}
	wrongPIN := "9999" + "12345678" // a wrong PIN before any code: one PIN check

	busy := false
	for attempt := 0; attempt < 5 && !busy; attempt++ {
		done := make(chan struct{})
		go func() { // an admin check takes the whole budget (64 MiB) for a while
			defer close(done)
			_, _ = f.svc.AuthenticateAdmin(f.ctx, "nobody", "guess", "")
		}()
		for f.svc.ArgonStats().InUseKiB == 0 {
			select {
			case <-done:
			default:
				time.Sleep(50 * time.Microsecond)
				continue
			}
			break
		}
		before, err := f.svc.GetUser(f.ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.Authenticate(f.ctx, appliance.AuthRequest{UserName: "alice", Passcode: wrongPIN})
		<-done
		after, gerr := f.svc.GetUser(f.ctx, u.ID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		switch {
		case errors.Is(err, appliance.ErrBusy):
			busy = true
			if after.Failures != before.Failures {
				t.Fatalf("a PIN check refused as busy counted as a failure: %d -> %d", before.Failures, after.Failures)
			}
		case err != nil:
			t.Fatal(err)
		}
	}
	if !busy {
		t.Fatal("a PIN check never waited for the admin check's memory")
	}
	if st := f.svc.ArgonStats(); st.InUseKiB != 0 || st.Refused == 0 {
		t.Fatalf("stats %+v", st)
	}
}
