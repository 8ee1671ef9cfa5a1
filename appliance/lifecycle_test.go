package appliance_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/memstore"
	"tokend/appliance/otp"
)

const (
	oldSerial = "150000000000"
	newSerial = "150000000001"
)

var newSeed = bytes.Repeat([]byte{0x17}, 16)

// replacing returns the provisioned fixture (alice, 150000000000 under
// profile "p") with spare tokens 150000000001… imported, and the old
// token's generator.
func replacing(t *testing.T, spare int) (*fixture, appliance.UserView, otp.SecurID) {
	t.Helper()
	f, u, g := provisioned(t, appliance.PINModeNone)
	f.importCSV(t, serials(spare, 150000000001))
	return f, u, g
}

// stores are the backends the races run on: memstore and the bbolt store
// tokend ships with (group commit, fsync).
var stores = []struct {
	name string
	open func(t *testing.T) appliance.Store
}{
	{"memstore", func(*testing.T) appliance.Store { return memstore.New() }},
	{"bbolt", func(t *testing.T) appliance.Store {
		st, err := boltstore.Open(filepath.Join(t.TempDir(), "tokend.db"), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// replacingOn is replacing on the given store.
func replacingOn(t *testing.T, st appliance.Store, spare int) (*fixture, appliance.UserView, otp.SecurID) {
	t.Helper()
	f := newFixture(t, st)
	f.importCSV(t, serials(1+spare, 150000000000))
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone}); err != nil {
		t.Fatal(err)
	}
	u := f.user(t, "alice")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{oldSerial}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, oldSerial, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), testSeed); err != nil {
		t.Fatal(err)
	}
	return f, u, gen(t, testSeed, oldSerial)
}

func gen(t *testing.T, seed []byte, serial string) otp.SecurID {
	t.Helper()
	g, err := otp.NewSecurID(seed, serial, 8, 60)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (f *fixture) step() int64 { return f.clock.Now().Unix() / 60 }

func (f *fixture) token(t *testing.T, serial string) appliance.Token {
	t.Helper()
	tok, err := f.svc.GetToken(f.ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startReplacement replaces the old token with the new one through the
// CT-KIP profile and provisions the new token with newSeed.
func (f *fixture) startReplacement(t *testing.T) otp.SecurID {
	t.Helper()
	if err := f.tryReplacement(); err != nil {
		t.Fatal(err)
	}
	return gen(t, newSeed, newSerial)
}

func (f *fixture) tryReplacement() error {
	r, err := f.svc.ReplaceToken(f.ctx, oldSerial, appliance.ReplaceRequest{Serial: newSerial, Profile: "p"})
	if err != nil {
		return err
	}
	if r.Distribution == nil || r.Distribution.ActivationCode == "" {
		return fmt.Errorf("replacement without distribution: %+v", r)
	}
	_, err = f.svc.CompleteProvisioning(f.ctx, r.Distribution.ActivationCode.Reveal(), newSeed)
	return err
}

func (f *fixture) tryAuth(passcode string) (appliance.AuthResult, error) {
	return f.svc.Authenticate(f.ctx, appliance.AuthRequest{UserName: "alice", Passcode: passcode})
}

func (f *fixture) auditOf(t *testing.T, action string) []appliance.AuditRecord {
	t.Helper()
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return page.Items
}

func TestReplaceOldWorksUntilNewAuthenticates(t *testing.T) {
	f, u, oldGen := replacing(t, 1)
	newGen := f.startReplacement(t)
	old, nt := f.token(t, oldSerial), f.token(t, newSerial)
	if old.ReplacedBy != newSerial || nt.Replaces != oldSerial || nt.UserID != u.ID || nt.State != appliance.StateEnabled {
		t.Fatalf("links after replace: old %+v new %+v", old, nt)
	}
	if want := f.clock.Now().Add(appliance.DefaultReplacementGrace); !old.ReplaceUntil.Equal(want) {
		t.Fatalf("grace ends %v, want %v", old.ReplaceUntil, want)
	}
	// The old token still works, for as many codes as the user types.
	for range 3 {
		f.clock.Add(time.Minute)
		if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthAccept || r.Serial != oldSerial {
			t.Fatalf("old token during replacement: %+v", r)
		}
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, newGen, f.step()), ""); r.Result != appliance.AuthAccept || r.Serial != newSerial {
		t.Fatalf("new token: %+v", r)
	}
	old, nt = f.token(t, oldSerial), f.token(t, newSerial)
	if old.UserID != "" || old.State != appliance.StateDisabled || old.ReplacedBy != "" || len(old.Seed) != 0 {
		t.Fatalf("old token not retired: %+v", old)
	}
	if nt.Replaces != "" || nt.UserID != u.ID {
		t.Fatalf("new token after its first use: %+v", nt)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthReject {
		t.Fatalf("old token after retirement: %+v", r)
	}
	recs := f.auditOf(t, "token.replace.complete")
	if len(recs) != 1 || recs[0].Detail != "new_token_used" || recs[0].Serial != oldSerial || recs[0].Target != newSerial {
		t.Fatalf("completion audit: %+v", recs)
	}
	if _, err := f.svc.VerifyAudit(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReplaceGraceEnds(t *testing.T) {
	f, _, oldGen := replacing(t, 1)
	f.startReplacement(t)
	f.clock.Add(appliance.DefaultReplacementGrace - time.Minute)
	if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("old token a minute before the grace ends: %+v", r)
	}
	if n, err := f.svc.SweepReplacements(f.ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the end = %d, %v", n, err)
	}
	f.clock.Add(2 * time.Minute)
	// Refused at once (lazily), before any sweep.
	if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthReject {
		t.Fatalf("old token after the grace: %+v", r)
	}
	if n, err := f.svc.SweepReplacements(f.ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	if old := f.token(t, oldSerial); old.UserID != "" || old.State != appliance.StateDisabled {
		t.Fatalf("old token after the sweep: %+v", old)
	}
	if nt := f.token(t, newSerial); nt.Replaces != "" || nt.UserID == "" {
		t.Fatalf("new token after the sweep: %+v", nt)
	}
	if recs := f.auditOf(t, "token.replace.complete"); len(recs) != 1 || recs[0].Detail != "grace_ended" || recs[0].Actor.Name != "system" {
		t.Fatalf("audit: %+v", recs)
	}
	if n, err := f.svc.SweepReplacements(f.ctx); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v", n, err)
	}
}

func TestReplaceEndedByAdmin(t *testing.T) {
	tests := []struct {
		name              string
		end               func(f *fixture) error
		oldHeld, newHeld  bool
		action            string
		secondErrSentinel error
	}{
		{name: "complete retires the old token", end: func(f *fixture) error { return f.svc.CompleteReplacement(f.ctx, oldSerial) },
			oldHeld: false, newHeld: true, action: "token.replace.complete", secondErrSentinel: appliance.ErrNotFound},
		{name: "cancel gives the new token back", end: func(f *fixture) error { return f.svc.CancelReplacement(f.ctx, oldSerial) },
			oldHeld: true, newHeld: false, action: "token.replace.cancel", secondErrSentinel: appliance.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, u, oldGen := replacing(t, 1)
			f.startReplacement(t)
			if err := tc.end(f); err != nil {
				t.Fatal(err)
			}
			old, nt := f.token(t, oldSerial), f.token(t, newSerial)
			if (old.UserID == u.ID) != tc.oldHeld || (nt.UserID == u.ID) != tc.newHeld {
				t.Fatalf("old %+v new %+v", old, nt)
			}
			if old.ReplacedBy != "" || nt.Replaces != "" {
				t.Fatalf("links left: old %q new %q", old.ReplacedBy, nt.Replaces)
			}
			f.clock.Add(time.Minute)
			r := f.auth(t, codeAt(t, oldGen, f.step()), "")
			if (r.Result == appliance.AuthAccept) != tc.oldHeld {
				t.Fatalf("old token answers %+v", r)
			}
			if err := tc.end(f); !errors.Is(err, tc.secondErrSentinel) {
				t.Fatalf("second end = %v", err)
			}
			if recs := f.auditOf(t, tc.action); len(recs) < 1 || recs[0].Outcome != appliance.OutcomeSuccess {
				t.Fatalf("audit %+v", recs)
			}
		})
	}
}

func TestReplaceRefusals(t *testing.T) {
	f, u, _ := replacing(t, 3)
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000002"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		old  string
		req  appliance.ReplaceRequest
		want error
	}{
		{name: "itself", old: oldSerial, req: appliance.ReplaceRequest{Serial: oldSerial}, want: &appliance.ValidationError{}},
		{name: "bad serial", old: oldSerial, req: appliance.ReplaceRequest{Serial: "12"}, want: &appliance.ValidationError{}},
		{name: "unknown old", old: "999999999999", req: appliance.ReplaceRequest{Serial: newSerial}, want: appliance.ErrNotFound},
		{name: "unknown new", old: oldSerial, req: appliance.ReplaceRequest{Serial: "999999999999"}, want: appliance.ErrNotFound},
		{name: "old unassigned", old: "150000000003", req: appliance.ReplaceRequest{Serial: newSerial}, want: appliance.ErrInvalidState},
		{name: "new already assigned", old: oldSerial, req: appliance.ReplaceRequest{Serial: "150000000002"}, want: appliance.ErrConflict},
		{name: "unknown profile", old: oldSerial, req: appliance.ReplaceRequest{Serial: newSerial, Profile: "nope"}, want: appliance.ErrNotFound},
		{name: "seed password too long", old: oldSerial, req: appliance.ReplaceRequest{Serial: newSerial, Profile: "nope",
			Password: appliance.Secret(strings.Repeat("x", 41))}, want: &appliance.ValidationError{}},
		{name: "device id not hex", old: oldSerial, req: appliance.ReplaceRequest{Serial: newSerial, Profile: "nope", DeviceID: "not-a-device"},
			want: &appliance.ValidationError{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ReplaceToken(f.ctx, tc.old, tc.req)
			var ve *appliance.ValidationError
			if _, isVE := tc.want.(*appliance.ValidationError); isVE {
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v, want a validation error", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if nt := f.token(t, newSerial); nt.UserID != "" {
		t.Fatalf("a refused replacement assigned the new token: %+v", nt)
	}
}

// TestTwoAdminsReplaceSameToken: many admins replace the same token at
// once, each with a token of their own or all with the same one: exactly
// one wins, the others get a conflict and change nothing.
func TestTwoAdminsReplaceSameToken(t *testing.T) {
	tests := []struct {
		name     string
		sameNew  bool
		admins   int
		wantLose error
	}{
		{name: "different new tokens", admins: 8, wantLose: appliance.ErrConflict},
		{name: "the same new token", sameNew: true, admins: 8, wantLose: appliance.ErrConflict},
	}
	for _, st := range stores {
		for _, tc := range tests {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				f, u, _ := replacingOn(t, st.open(t), tc.admins)
				var (
					wg     sync.WaitGroup
					mu     sync.Mutex
					wins   []string
					losses int
				)
				for i := range tc.admins {
					sn := newSerial
					if !tc.sameNew {
						sn = serialN(150000000001 + i)
					}
					wg.Go(func() {
						_, err := f.svc.ReplaceToken(f.ctx, oldSerial, appliance.ReplaceRequest{Serial: sn})
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							wins = append(wins, sn)
						case errors.Is(err, tc.wantLose):
							losses++
						default:
							t.Errorf("replace with %s: %v", sn, err)
						}
					})
				}
				wg.Wait()
				if len(wins) != 1 || losses != tc.admins-1 {
					t.Fatalf("wins %v, losses %d", wins, losses)
				}
				view, err := f.svc.GetUser(f.ctx, u.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(view.Tokens) != 2 {
					t.Fatalf("alice holds %d tokens, want the old and the winner's", len(view.Tokens))
				}
				if old := f.token(t, oldSerial); old.ReplacedBy != wins[0] {
					t.Fatalf("old replaced by %q, winner %q", old.ReplacedBy, wins[0])
				}
			})
		}
	}
}

func serialN(n int) string {
	b := []byte("000000000000")
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}

// TestReplaceWhileOldAuthenticates runs the replacement, the new token's
// provisioning and its first authentication concurrently with the old
// token's authentications: the old token is never refused before the new
// one has worked, and never accepted after it is retired (audit order).
func TestReplaceWhileOldAuthenticates(t *testing.T) {
	for _, st := range stores {
		for round := range 5 {
			f, _, oldGen := replacingOn(t, st.open(t), 1)
			newGen := gen(t, newSeed, newSerial)
			var wg sync.WaitGroup
			f.clock.Add(time.Minute)
			code := codeAt(t, oldGen, f.step())
			wg.Go(func() {
				if r, err := f.tryAuth(code); err != nil || r.Result != appliance.AuthAccept {
					t.Errorf("round %d: old token refused while being replaced: %+v, %v", round, r, err)
				}
			})
			wg.Go(func() {
				if err := f.tryReplacement(); err != nil {
					t.Errorf("round %d: replace: %v", round, err)
				}
			})
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			f.clock.Add(time.Minute)
			oldCode, newCode := codeAt(t, oldGen, f.step()), codeAt(t, newGen, f.step())
			var oldRes, newRes appliance.AuthResult
			var oldErr, newErr error
			wg.Go(func() { oldRes, oldErr = f.tryAuth(oldCode) })
			wg.Go(func() { newRes, newErr = f.tryAuth(newCode) })
			wg.Wait()
			if oldErr != nil || newErr != nil {
				t.Fatal(oldErr, newErr)
			}
			if newRes.Result != appliance.AuthAccept {
				t.Fatalf("round %d: new token refused: %+v", round, newRes)
			}
			var oldSeq, completeSeq uint64
			for _, rec := range f.auditOf(t, "auth") {
				if rec.Serial == oldSerial && rec.Outcome == appliance.OutcomeSuccess {
					oldSeq = rec.Seq
				}
			}
			if recs := f.auditOf(t, "token.replace.complete"); len(recs) == 1 {
				completeSeq = recs[0].Seq
			} else {
				t.Fatalf("round %d: completions %+v", round, recs)
			}
			if oldSeq > completeSeq {
				t.Fatalf("round %d: old token accepted (seq %d) after its retirement (seq %d)", round, oldSeq, completeSeq)
			}
			if oldRes.Result == appliance.AuthAccept && oldSeq == 0 {
				t.Fatalf("round %d: old acceptance not audited", round)
			}
			if old := f.token(t, oldSerial); old.UserID != "" || old.State != appliance.StateDisabled {
				t.Fatalf("round %d: old token not retired: %+v", round, old)
			}
			f.clock.Add(time.Minute)
			if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthReject {
				t.Fatalf("%s round %d: retired token accepted: %+v", st.name, round, r)
			}
		}
	}
}

func TestLimitCountsPendingReplacementOnce(t *testing.T) {
	f, u, _ := replacing(t, 6)
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000001", "150000000002"}); err != nil {
		t.Fatal(err)
	}
	// At the limit (3): replacing one still works, and so does a second
	// replacement of another token — each pair counts once.
	if _, err := f.svc.ReplaceToken(f.ctx, oldSerial, appliance.ReplaceRequest{Serial: "150000000003"}); err != nil {
		t.Fatalf("replace at the limit: %v", err)
	}
	if _, err := f.svc.ReplaceToken(f.ctx, "150000000001", appliance.ReplaceRequest{Serial: "150000000004"}); err != nil {
		t.Fatalf("second replacement at the limit: %v", err)
	}
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000005"}); !errors.Is(err, appliance.ErrLimit) {
		t.Fatalf("assign beyond the limit with pending pairs = %v, want ErrLimit", err)
	}
	// Five tokens held, three counted: the store check agrees.
	if rep, err := f.svc.CheckConsistency(f.ctx); err != nil || rep.ProblemsTotal != 0 {
		t.Fatalf("consistency with pending replacements: %+v, %v", rep, err)
	}
	page, err := f.svc.Report(f.ctx, appliance.ReportQuery{Name: appliance.ReportUsersAtLimit})
	if err != nil || len(page.Items) != 1 || page.Items[0].Detail != "3 tokens" {
		t.Fatalf("users at limit = %+v, %v", page, err)
	}
	// Cancelling one pair frees nothing (the pair was one); unassigning a
	// token does.
	if err := f.svc.CancelReplacement(f.ctx, "150000000001"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000005"}); !errors.Is(err, appliance.ErrLimit) {
		t.Fatalf("assign after cancel = %v, want ErrLimit", err)
	}
	if err := f.svc.UnassignToken(f.ctx, u.ID, "150000000002"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"150000000005"}); err != nil {
		t.Fatalf("assign after unassign = %v", err)
	}
	// Unassigning one token of a pending pair ends the replacement.
	if err := f.svc.UnassignToken(f.ctx, u.ID, "150000000003"); err != nil {
		t.Fatal(err)
	}
	if old := f.token(t, oldSerial); old.ReplacedBy != "" {
		t.Fatalf("old token still linked to an unassigned replacement: %+v", old)
	}
}

func TestLostAndFound(t *testing.T) {
	f, u, g := provisioned(t, appliance.PINModeNone)
	res, err := f.svc.MarkLost(f.ctx, oldSerial, &appliance.EmergencyRequest{Kind: appliance.EmergencyOneTime, Count: 2, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Token.Lost || res.Token.State != appliance.StateDisabled || res.Emergency == nil || len(res.Emergency.Codes) != 2 {
		t.Fatalf("lost = %+v", res)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, g, f.step()), ""); r.Result != appliance.AuthReject {
		t.Fatalf("lost token accepted: %+v", r)
	}
	if r := f.auth(t, res.Emergency.Codes[0].Reveal(), ""); r.Result != appliance.AuthAccept || r.Detail != appliance.ReasonEmergency {
		t.Fatalf("emergency code granted with the loss: %+v", r)
	}
	if recs := f.auditOf(t, "user.emergency_access.issue"); len(recs) != 1 || recs[0].UserID != u.ID {
		t.Fatalf("emergency audit: %+v", recs)
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{name: "lost twice", do: func() error { _, err := f.svc.MarkLost(f.ctx, oldSerial, nil); return err }, want: appliance.ErrConflict},
		{name: "enable a lost token", do: func() error { _, err := f.svc.SetTokenEnabled(f.ctx, oldSerial, true); return err }, want: appliance.ErrInvalidState},
		{name: "found", do: func() error { _, err := f.svc.MarkFound(f.ctx, oldSerial); return err }},
		{name: "found twice", do: func() error { _, err := f.svc.MarkFound(f.ctx, oldSerial); return err }, want: appliance.ErrInvalidState},
		{name: "unknown token", do: func() error { _, err := f.svc.MarkLost(f.ctx, "999999999999", nil); return err }, want: appliance.ErrNotFound},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.want) && !(st.want == nil && err == nil) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
	}
	if tok := f.token(t, oldSerial); tok.Lost || tok.State != appliance.StateEnabled {
		t.Fatalf("found token: %+v", tok)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, g, f.step()), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("found token refused: %+v", r)
	}
	f.importCSV(t, serials(1, 160000000000))
	if _, err := f.svc.MarkLost(f.ctx, "160000000000", &appliance.EmergencyRequest{Kind: appliance.EmergencyFixed, Lifetime: time.Hour}); err == nil {
		t.Fatal("emergency access for an unassigned token's nobody")
	}
	if tok := f.token(t, "160000000000"); tok.Lost {
		t.Fatal("a refused loss was stored")
	}
	// A lost token that was unassigned cannot be handed to anyone (assigning
	// enables it) until it is found.
	if _, err := f.svc.MarkLost(f.ctx, "160000000000", nil); err != nil {
		t.Fatal(err)
	}
	bob := f.user(t, "bob")
	if _, err := f.svc.AssignTokens(f.ctx, bob.ID, []string{"160000000000"}); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("assign a lost token = %v, want ErrInvalidState", err)
	}
	if _, err := f.svc.MarkFound(f.ctx, "160000000000"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AssignTokens(f.ctx, bob.ID, []string{"160000000000"}); err != nil {
		t.Fatalf("assign after found = %v", err)
	}
}

func TestExtendToken(t *testing.T) {
	f, u, _ := provisioned(t, appliance.PINModeNone)
	if _, err := f.svc.UpdateProfile(f.ctx, "p", appliance.Profile{DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone, MaxLifetime: 365 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	f.importCSV(t, "serial,kind,digits,interval,expires_at\n170000000000,hardware,8,60,2026-12-31\n190000000000,software,8,60,2026-12-31\n")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"190000000000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Distribute(f.ctx, "190000000000", "p"); err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	tests := []struct {
		name   string
		serial string
		at     time.Time
		want   error
	}{
		{name: "within the profile's lifetime", serial: "190000000000", at: now.Add(300 * 24 * time.Hour)},
		{name: "earlier than the current expiry", serial: "190000000000", at: now.Add(200 * 24 * time.Hour), want: &appliance.ValidationError{}},
		{name: "beyond the profile's lifetime", serial: "190000000000", at: now.Add(366 * 24 * time.Hour), want: &appliance.ValidationError{}},
		{name: "in the past", serial: oldSerial, at: now.Add(-time.Hour), want: &appliance.ValidationError{}},
		{name: "missing", serial: oldSerial, want: &appliance.ValidationError{}},
		{name: "hardware", serial: "170000000000", at: now.Add(24 * time.Hour), want: appliance.ErrInvalidState},
		{name: "unknown", serial: "999999999999", at: now.Add(24 * time.Hour), want: appliance.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := f.svc.ExtendToken(f.ctx, tc.serial, tc.at)
			switch w := tc.want.(type) {
			case nil:
				if err != nil || !tok.ExpiresAt.Equal(tc.at) {
					t.Fatalf("extend = %v, %v", tok.ExpiresAt, err)
				}
			case *appliance.ValidationError:
				var ve *appliance.ValidationError
				if !errors.As(err, &ve) || ve.Problems[0].Field != "expires_at" {
					t.Fatalf("err = %v, want a validation error on expires_at", err)
				}
			default:
				if !errors.Is(err, w) {
					t.Fatalf("err = %v, want %v", err, w)
				}
			}
		})
	}
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "bad", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, MaxLifetime: -time.Hour}); err == nil {
		t.Fatal("negative max_lifetime accepted")
	}
}

func TestDeleteToken(t *testing.T) {
	f, u, _ := provisioned(t, appliance.PINModeNone)
	f.importCSV(t, serials(1, 180000000000))
	if err := f.svc.DeleteToken(f.ctx, oldSerial); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("delete assigned = %v", err)
	}
	before, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteToken(f.ctx, "180000000000"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetToken(f.ctx, "180000000000"); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("deleted token reads %v", err)
	}
	after, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{})
	if err != nil || after.Total != before.Total-1 || len(after.Items) != before.Total-1 {
		t.Fatalf("tokens after delete: total %d items %d (before %d), %v", after.Total, len(after.Items), before.Total, err)
	}
	if err := f.svc.DeleteToken(f.ctx, "180000000000"); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("delete twice = %v", err)
	}
	recs := f.auditOf(t, "token.delete")
	var ok bool
	for _, r := range recs {
		if r.Serial == "180000000000" && r.Outcome == appliance.OutcomeSuccess && r.Actor.Name == "tester" && !r.Time.IsZero() {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("no tombstone in %+v", recs)
	}
	// Unassigned, the old token can go too; the same serial can come back.
	if err := f.svc.UnassignToken(f.ctx, u.ID, oldSerial); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteToken(f.ctx, oldSerial); err != nil {
		t.Fatal(err)
	}
	if job := f.importCSV(t, serials(1, 150000000000)); job.Imported != 1 {
		t.Fatalf("re-import after delete: %+v", job)
	}
}

// TestReissueKeepsOldSeedUntilServerFinished: a new activation code for a
// provisioned token voids nothing the device holds; only the completed
// exchange (ServerFinished) replaces the seed.
func TestReissueKeepsOldSeedUntilServerFinished(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	d, err := f.svc.Distribute(f.ctx, oldSerial, "p")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, g, f.step()), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("old seed after re-issue: %+v", r)
	}
	if _, err := f.svc.BeginProvisioning(f.ctx, d.ActivationCode.Reveal()); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, g, f.step()), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("old seed mid-exchange: %+v", r)
	}
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), newSeed); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if r := f.auth(t, codeAt(t, g, f.step()), ""); r.Result != appliance.AuthReject {
		t.Fatalf("old seed after ServerFinished: %+v", r)
	}
	if r := f.auth(t, codeAt(t, gen(t, newSeed, oldSerial), f.step()), ""); r.Result != appliance.AuthAccept {
		t.Fatalf("new seed: %+v", r)
	}
}

// TestReplaceDeliversByEveryMethod: a replacement with a file or CTF
// profile hands out the new token's seed at once; one whose delivery
// fails (a password-bound CTF without a password) is cancelled whole.
func TestReplaceDeliversByEveryMethod(t *testing.T) {
	tests := []struct {
		name    string
		profile appliance.Profile
		req     appliance.ReplaceRequest
		method  string // "" when the delivery must fail
	}{
		{name: "token file", profile: appliance.Profile{Name: "f", DeviceType: appliance.DeviceWindows, DeliveryMethod: appliance.DeliveryFile, PINMode: appliance.PINModeNone},
			method: appliance.DeliveryFile},
		{name: "CTF string with its password", profile: appliance.Profile{Name: "c", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF, PINMode: appliance.PINModeNone},
			req: appliance.ReplaceRequest{Password: "correct horse"}, method: appliance.DeliveryCTF},
		{name: "CTF string without its password", profile: appliance.Profile{Name: "c", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF, PINMode: appliance.PINModeNone}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, u, oldGen := replacing(t, 1)
			if _, err := f.svc.CreateProfile(f.ctx, tc.profile); err != nil {
				t.Fatal(err)
			}
			req := tc.req
			req.Serial, req.Profile = newSerial, tc.profile.Name
			r, err := f.svc.ReplaceToken(f.ctx, oldSerial, req)
			if tc.method == "" {
				if err == nil {
					t.Fatal("a failed delivery left the replacement standing")
				}
				if old, nt := f.token(t, oldSerial), f.token(t, newSerial); old.ReplacedBy != "" || nt.UserID != "" || nt.Replaces != "" {
					t.Fatalf("not cancelled: old %+v new %+v", old, nt)
				}
				if recs := f.auditOf(t, "token.replace.cancel"); len(recs) != 1 || recs[0].Detail != "distribution_failed" {
					t.Fatalf("cancel audit: %+v", recs)
				}
				f.clock.Add(time.Minute)
				if r := f.auth(t, codeAt(t, oldGen, f.step()), ""); r.Result != appliance.AuthAccept {
					t.Fatalf("old token after a cancelled replacement: %+v", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.SeedDelivery == nil || r.SeedDelivery.Method != tc.method || r.Distribution != nil || !r.New.Provisioned ||
				r.New.UserID != u.ID || r.New.Replaces != oldSerial {
				t.Fatalf("replacement: %+v", r)
			}
			// The new seed works at once and retires the old token.
			seed, err := f.svc.TokenSeed(f.ctx, newSerial)
			if err != nil {
				t.Fatal(err)
			}
			f.clock.Add(time.Minute)
			if res := f.auth(t, codeAt(t, gen(t, seed, newSerial), f.step()), ""); res.Result != appliance.AuthAccept {
				t.Fatalf("new token: %+v", res)
			}
			if old := f.token(t, oldSerial); old.UserID != "" {
				t.Fatalf("old token not retired: %+v", old)
			}
		})
	}
}
