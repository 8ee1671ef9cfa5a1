package appliance_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

var testSeed = bytes.Repeat([]byte{0x42}, 16)

// provisioned returns a fixture with user "alice" holding one provisioned
// SecurID token 150000000000 under a profile with the given PIN mode.
func provisioned(t *testing.T, pinMode string) (*fixture, appliance.UserView, otp.SecurID) {
	t.Helper()
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(1, 150000000000))
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: pinMode}); err != nil {
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
	gen, err := otp.NewSecurID(testSeed, "150000000000", 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	return f, u, gen
}

func codeAt(t *testing.T, g otp.SecurID, step int64) string {
	t.Helper()
	c, err := g.CodeAt(step)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) auth(t *testing.T, passcode, session string) appliance.AuthResult {
	t.Helper()
	r, err := f.svc.Authenticate(f.ctx, appliance.AuthRequest{UserName: "alice", Passcode: passcode, Session: session})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAuthenticateTokencode(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	step := f.clock.Now().Unix() / 60
	tests := []struct {
		name, passcode string
		want, detail   string
	}{
		{"current code", codeAt(t, g, step), appliance.AuthAccept, appliance.ReasonOK},
		{"same code again is a replay", codeAt(t, g, step), appliance.AuthReject, appliance.ReasonBadPasscode},
		{"next interval's code", codeAt(t, g, step+1), appliance.AuthAccept, appliance.ReasonOK},
		{"earlier code after a later one", codeAt(t, g, step-1), appliance.AuthReject, appliance.ReasonBadPasscode},
		{"garbage", "12345678", appliance.AuthReject, appliance.ReasonBadPasscode},
		{"wrong length", "1234", appliance.AuthReject, appliance.ReasonBadPasscode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.auth(t, tc.passcode, "")
			if r.Result != tc.want || r.Detail != tc.detail {
				t.Fatalf("got %s/%s, want %s/%s", r.Result, r.Detail, tc.want, tc.detail)
			}
			if r.Result == appliance.AuthReject && r.Reason != appliance.ReasonDenied {
				t.Fatalf("reject reveals %q", r.Reason)
			}
		})
	}
}

func TestSameCodeFromManyGoroutinesAcceptedOnce(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	code := codeAt(t, g, f.clock.Now().Unix()/60)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			r, err := f.svc.Authenticate(f.ctx, appliance.AuthRequest{UserName: "alice", Passcode: code})
			if err != nil {
				t.Error(err)
			}
			if r.Result == appliance.AuthAccept {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("accepted %d times", accepted.Load())
	}
}

func TestNextTokencodeModeStoresDrift(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	step := f.clock.Now().Unix() / 60
	r := f.auth(t, codeAt(t, g, step+5), "")
	if r.Result != appliance.AuthNextTokencode || r.Session == "" {
		t.Fatalf("drifted code: %+v", r)
	}
	if r2 := f.auth(t, codeAt(t, g, step+7), r.Session); r2.Result != appliance.AuthReject {
		t.Fatalf("a code that is not the next one: %+v", r2)
	}
	r = f.auth(t, codeAt(t, g, step+5), "")
	if r.Result != appliance.AuthNextTokencode {
		t.Fatalf("second challenge: %+v", r)
	}
	if r2 := f.auth(t, codeAt(t, g, step+6), r.Session); r2.Result != appliance.AuthAccept {
		t.Fatalf("next code: %+v", r2)
	}
	tok, _ := f.svc.GetToken(f.ctx, "150000000000")
	if tok.Drift != 6 {
		t.Fatalf("drift = %d, want 6", tok.Drift)
	}
	// The offset is used from then on: a code 7 steps ahead is now current.
	if r := f.auth(t, codeAt(t, g, step+7), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("after drift: %+v", r)
	}
	// Far outside the large window: rejected.
	if r := f.auth(t, codeAt(t, g, step+60), ""); r.Result != appliance.AuthReject {
		t.Fatalf("far code: %+v", r)
	}
}

func TestFobNewPINMode(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeFob)
	step := f.clock.Now().Unix() / 60
	r := f.auth(t, codeAt(t, g, step), "")
	if r.Result != appliance.AuthNewPIN || r.Session == "" {
		t.Fatalf("first use: %+v", r)
	}
	if r2 := f.auth(t, "12", r.Session); r2.Result != appliance.AuthNewPIN || r2.Detail != appliance.ReasonPINPolicy || r2.Session != r.Session {
		t.Fatalf("too short a PIN: %+v", r2)
	}
	r = f.auth(t, "4321", r.Session)
	if r.Result != appliance.AuthNextTokencode || r.Session == "" {
		t.Fatalf("PIN set: %+v", r)
	}
	if r2 := f.auth(t, "4321"+codeAt(t, g, step+1), r.Session); r2.Result != appliance.AuthAccept {
		t.Fatalf("PIN + next code: %+v", r2)
	}
	if r := f.auth(t, "9999"+codeAt(t, g, step-1+3), ""); r.Result != appliance.AuthReject {
		t.Fatalf("wrong PIN: %+v", r)
	}
	tok, _ := f.svc.GetToken(f.ctx, "150000000000")
	if tok.PINHash == "" || bytes.Contains([]byte(tok.PINHash), []byte("4321")) {
		t.Fatal("PIN not stored as a hash")
	}
}

func TestPINPadPasscode(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModePINPad)
	if _, err := f.svc.ChangePIN(f.ctx, "150000000000", appliance.PINChange{PIN: "1234"}); err != nil {
		t.Fatal(err)
	}
	step := f.clock.Now().Unix() / 60
	fold := func(code, pin string) string {
		p, err := otp.AddPIN(code, pin)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if r := f.auth(t, fold(codeAt(t, g, step), "1235"), ""); r.Result != appliance.AuthReject {
		t.Fatalf("wrong PIN folded in: %+v", r)
	}
	if r := f.auth(t, fold(codeAt(t, g, step), "1234"), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("right PIN folded in: %+v", r)
	}
	if r := f.auth(t, codeAt(t, g, step+1), ""); r.Result != appliance.AuthReject {
		t.Fatalf("bare tokencode without PIN: %+v", r)
	}
}

func TestLockoutAndUnlock(t *testing.T) {
	f, u, g := provisioned(t, appliance.PINModeNone)
	for range 5 {
		if r := f.auth(t, "00000000", ""); r.Result != appliance.AuthReject {
			t.Fatal(r)
		}
	}
	step := f.clock.Now().Unix() / 60
	if r := f.auth(t, codeAt(t, g, step), ""); r.Result != appliance.AuthReject || r.Detail != appliance.ReasonLocked {
		t.Fatalf("locked user: %+v", r)
	}
	if _, err := f.svc.UnlockUser(f.ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if r := f.auth(t, codeAt(t, g, step), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("after unlock: %+v", r)
	}
	for range 5 {
		f.auth(t, "00000000", "")
	}
	f.clock.Add(31 * time.Minute)
	if r := f.auth(t, codeAt(t, g, f.clock.Now().Unix()/60), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("after the lockout time: %+v", r)
	}
}

func TestDisabledTokenNeverAuthenticates(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	if _, err := f.svc.SetTokenEnabled(f.ctx, "150000000000", false); err != nil {
		t.Fatal(err)
	}
	if r := f.auth(t, codeAt(t, g, f.clock.Now().Unix()/60), ""); r.Result != appliance.AuthReject {
		t.Fatalf("disabled token: %+v", r)
	}
	if r, _ := f.svc.Authenticate(f.ctx, appliance.AuthRequest{UserName: "nobody", Passcode: "12345678"}); r.Result != appliance.AuthReject || r.Reason != appliance.ReasonDenied {
		t.Fatalf("unknown user: %+v", r)
	}
}

func TestEmergencyAccess(t *testing.T) {
	f, u, _ := provisioned(t, appliance.PINModeNone)
	if _, err := f.svc.IssueEmergencyAccess(f.ctx, u.ID, appliance.EmergencyFixed, 1, 100*time.Hour); err == nil {
		t.Fatal("lifetime over the hard maximum accepted")
	}
	ea, err := f.svc.IssueEmergencyAccess(f.ctx, u.ID, appliance.EmergencyOneTime, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	one := ea.Codes[0].Reveal()
	if r := f.auth(t, one, ""); r.Result != appliance.AuthAccept || r.Detail != appliance.ReasonEmergency {
		t.Fatalf("one-time code: %+v", r)
	}
	if r := f.auth(t, one, ""); r.Result != appliance.AuthReject {
		t.Fatalf("one-time code reused: %+v", r)
	}
	f.clock.Add(time.Hour)
	if r := f.auth(t, ea.Codes[1].Reveal(), ""); r.Result != appliance.AuthReject {
		t.Fatalf("expired code: %+v", r)
	}
}

func TestResync(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	step := f.clock.Now().Unix() / 60
	if _, err := f.svc.Resync(f.ctx, "150000000000", codeAt(t, g, step+40), codeAt(t, g, step+42)); !errors.Is(err, appliance.ErrConflict) {
		t.Fatalf("non-consecutive codes: %v", err)
	}
	tok, err := f.svc.Resync(f.ctx, "150000000000", codeAt(t, g, step+40), codeAt(t, g, step+41))
	if err != nil || tok.Drift != 41 {
		t.Fatalf("resync: drift %d, %v", tok.Drift, err)
	}
	if r := f.auth(t, codeAt(t, g, step+42), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("after resync: %+v", r)
	}
}

func TestSystemGeneratedPIN(t *testing.T) {
	f := newFixture(t, memstore.New())
	svc, err := appliance.New(appliance.Config{Store: f.store, Sealer: mustSealer(t, f.key), Now: f.clock.Now,
		Auth: appliance.AuthPolicy{PIN: appliance.PINPolicy{MinLength: 6, SystemGenerated: true}}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.importCSV(t, serials(1, 170000000000))
	if _, err := svc.CreateProfile(f.ctx, appliance.Profile{Name: "fob", DeviceType: appliance.DeviceGeneric,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeFob}); err != nil {
		t.Fatal(err)
	}
	u := f.user(t, "alice")
	if _, err := svc.AssignTokens(f.ctx, u.ID, []string{"170000000000"}); err != nil {
		t.Fatal(err)
	}
	d, err := svc.Distribute(f.ctx, "170000000000", "fob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), testSeed); err != nil {
		t.Fatal(err)
	}
	g, _ := otp.NewSecurID(testSeed, "170000000000", 8, 60)
	step := f.clock.Now().Unix() / 60
	r := f.auth(t, codeAt(t, g, step), "")
	pin := r.PIN.Reveal()
	if r.Result != appliance.AuthNewPIN || len(pin) != 6 || strings.Trim(pin, "0123456789") != "" || r.Session == "" {
		t.Fatalf("first use: %+v (pin %d chars)", r, len(pin))
	}
	if fmt.Sprint(r.PIN) == pin {
		t.Fatal("the PIN prints itself")
	}
	if r2 := f.auth(t, pin+codeAt(t, g, step+1), r.Session); r2.Result != appliance.AuthAccept {
		t.Fatalf("PIN + next code: %+v", r2)
	}
}

func mustSealer(t *testing.T, key []byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
