package appliance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/otp"
)

// factorFixture: the user root (field alice) holds 150000000000, the second
// factor of the super admin "root" (an admin's factor is their own); bob holds 150000000001, nobody's second factor. Both are
// provisioned software tokens.
type factorFixture struct {
	*fixture
	alice, bob       appliance.UserView
	aliceGen, bobGen otp.SecurID
	helpdesk         context.Context
}

const (
	factorSerial = "150000000000"
	otherSerial  = "150000000001"
)

func newFactorFixture(t *testing.T) *factorFixture {
	t.Helper()
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(2, 150000000000))
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP}); err != nil {
		t.Fatal(err)
	}
	ff := &factorFixture{fixture: f, alice: f.user(t, "root"), bob: f.user(t, "bob"),
		helpdesk: appliance.WithActor(context.Background(), appliance.Actor{ID: "hd", Name: "desk", Role: appliance.RoleHelpdesk})}
	for _, h := range []struct {
		user   string
		serial string
		gen    *otp.SecurID
	}{{ff.alice.ID, factorSerial, &ff.aliceGen}, {ff.bob.ID, otherSerial, &ff.bobGen}} {
		if _, err := f.svc.AssignTokens(f.ctx, h.user, []string{h.serial}); err != nil {
			t.Fatal(err)
		}
		d, err := f.svc.Distribute(f.ctx, h.serial, "p")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), testSeed); err != nil {
			t.Fatal(err)
		}
		if *h.gen, err = otp.NewSecurID(testSeed, h.serial, 8, 60); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin,
		Password: "correct horse battery", SecondFactorSerial: factorSerial}); err != nil {
		t.Fatal(err)
	}
	return ff
}

// lastAudit returns the newest audit record of an action.
func (f *factorFixture) lastAudit(t *testing.T, action string) appliance.AuditRecord {
	t.Helper()
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) == 0 {
		t.Fatalf("no %s audit record", action)
	}
	return page.Items[len(page.Items)-1]
}

// state is what a refused action must leave untouched.
func (f *factorFixture) state(t *testing.T) (appliance.Token, appliance.UserView) {
	t.Helper()
	tok, err := f.svc.GetToken(f.ctx, factorSerial)
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.svc.GetUser(f.ctx, f.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	return tok, u
}

// TestAdminSecondFactorIsSuperAdminOnly performs the help desk's takeover
// steps on a token that is a super admin's second factor: each is refused
// and audited naming the admin, changes nothing, and still works on a token
// that is nobody's factor; a super admin may do it and is audited naming
// the admin.
func TestAdminSecondFactorIsSuperAdminOnly(t *testing.T) {
	type target struct {
		userID, serial string
		gen            otp.SecurID
	}
	tests := []struct {
		name   string
		action string
		// prep runs as the super admin on both tokens first.
		prep func(f *factorFixture, tg target) error
		do   func(ctx context.Context, f *factorFixture, tg target) error
	}{
		{name: "distribute", action: "token.distribute",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.Distribute(ctx, tg.serial, "p")
				return err
			}},
		{name: "void distribution", action: "token.distribution.void",
			prep: func(f *factorFixture, tg target) error {
				_, err := f.svc.Distribute(f.ctx, tg.serial, "p")
				return err
			},
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				return f.svc.VoidDistribution(ctx, tg.serial)
			}},
		{name: "disable", action: "token.disable",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.SetTokenEnabled(ctx, tg.serial, false)
				return err
			}},
		{name: "enable", action: "token.enable",
			prep: func(f *factorFixture, tg target) error {
				_, err := f.svc.SetTokenEnabled(f.ctx, tg.serial, false)
				return err
			},
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.SetTokenEnabled(ctx, tg.serial, true)
				return err
			}},
		{name: "unassign", action: "token.unassign",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				return f.svc.UnassignToken(ctx, tg.userID, tg.serial)
			}},
		{name: "assign after a super admin unassigned it", action: "token.assign",
			prep: func(f *factorFixture, tg target) error {
				return f.svc.UnassignToken(f.ctx, tg.userID, tg.serial)
			},
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.AssignTokens(ctx, tg.userID, []string{tg.serial})
				return err
			}},
		{name: "pin require new", action: "token.pin.require_new",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.ChangePIN(ctx, tg.serial, appliance.PINChange{RequireNew: true})
				return err
			}},
		{name: "pin clear", action: "token.pin.clear",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.ChangePIN(ctx, tg.serial, appliance.PINChange{Clear: true})
				return err
			}},
		{name: "resync", action: "token.resync",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				step := f.clock.Now().Unix() / 60
				_, err := f.svc.Resync(ctx, tg.serial, codeAt(t, tg.gen, step+3), codeAt(t, tg.gen, step+4))
				return err
			}},
		{name: "unlock user", action: "user.unlock",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.UnlockUser(ctx, tg.userID)
				return err
			}},
		{name: "issue emergency access", action: "user.emergency_access.issue",
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				_, err := f.svc.IssueEmergencyAccess(ctx, tg.userID, appliance.EmergencyFixed, 1, time.Hour)
				return err
			}},
		{name: "revoke emergency access", action: "user.emergency_access.revoke",
			prep: func(f *factorFixture, tg target) error {
				_, err := f.svc.IssueEmergencyAccess(f.ctx, tg.userID, appliance.EmergencyOneTime, 2, time.Hour)
				return err
			},
			do: func(ctx context.Context, f *factorFixture, tg target) error {
				return f.svc.RevokeEmergencyAccess(ctx, tg.userID)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFactorFixture(t)
			factor := target{f.alice.ID, factorSerial, f.aliceGen}
			other := target{f.bob.ID, otherSerial, f.bobGen}
			if tc.prep != nil {
				for _, tg := range []target{factor, other} {
					if err := tc.prep(f, tg); err != nil {
						t.Fatalf("prep: %v", err)
					}
				}
			}

			beforeTok, beforeUser := f.state(t)
			if !beforeTok.AdminSecondFactor {
				t.Error("GetToken does not mark the admin's second factor")
			}
			err := tc.do(f.helpdesk, f, factor)
			var afe *appliance.AdminFactorError
			if !errors.Is(err, appliance.ErrForbidden) || !errors.As(err, &afe) || afe.Serial != factorSerial {
				t.Fatalf("help desk on the admin's factor: %v, want AdminFactorError (ErrForbidden)", err)
			}
			afterTok, afterUser := f.state(t)
			if diff := cmp.Diff(beforeTok, afterTok); diff != "" {
				t.Errorf("refused action changed the token (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(beforeUser, afterUser); diff != "" {
				t.Errorf("refused action changed the user (-before +after):\n%s", diff)
			}
			r := f.lastAudit(t, tc.action)
			if r.Outcome != appliance.OutcomeFailure || r.Reason != "admin_second_factor:root" || r.Actor.Role != appliance.RoleHelpdesk || r.Serial == "" {
				t.Errorf("refusal audit %+v, want failure naming admin root", r)
			}

			// No regression: the help desk manages other tokens as before.
			if err := tc.do(f.helpdesk, f, other); err != nil {
				t.Fatalf("help desk on a token that is nobody's factor: %v", err)
			}
			if r := f.lastAudit(t, tc.action); r.Outcome != appliance.OutcomeSuccess || r.Reason != "" {
				t.Errorf("ordinary audit %+v, want success without reason", r)
			}

			if err := tc.do(f.ctx, f, factor); err != nil {
				t.Fatalf("super admin on the admin's factor: %v", err)
			}
			r = f.lastAudit(t, tc.action)
			if r.Outcome != appliance.OutcomeSuccess || r.Reason != "admin_second_factor:root" || r.Actor.Role != appliance.RoleSuperAdmin {
				t.Errorf("super admin audit %+v, want success naming admin root", r)
			}
		})
	}
}

// TestAdminFactorGuardEdges: a refused resync is no oracle (wrong codes
// are refused the same way), a bulk assign with one factor token assigns
// nothing, binding a token with an outstanding activation code is refused,
// an unbound token is free again, and actors without a role (the system)
// are refused too.
func TestAdminFactorGuardEdges(t *testing.T) {
	f := newFactorFixture(t)
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"resync with wrong codes", func() error {
			_, err := f.svc.Resync(f.helpdesk, factorSerial, "00000000", "11111111")
			return err
		}, appliance.ErrForbidden},
		{"system actor", func() error {
			_, err := f.svc.SetTokenEnabled(context.Background(), factorSerial, false)
			return err
		}, appliance.ErrForbidden},
		{"auditor", func() error {
			ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "a", Name: "aud", Role: appliance.RoleAuditor})
			return f.svc.VoidDistribution(ctx, factorSerial)
		}, appliance.ErrForbidden},
		{"bind a token with an outstanding code", func() error {
			if _, err := f.svc.Distribute(f.ctx, factorSerial, "p"); err != nil {
				return err
			}
			err := f.svc.SetAdminSecondFactor(f.ctx, "root", factorSerial)
			var sfe *appliance.SecondFactorError
			if !errors.As(err, &sfe) || !strings.Contains(sfe.Reason, "outstanding activation code") {
				t.Errorf("refusal %v, want one for the outstanding code", err)
			}
			if verr := f.svc.VoidDistribution(f.ctx, factorSerial); verr != nil {
				t.Fatal(verr)
			}
			return err
		}, appliance.ErrInvalidState},
		{"bulk assign holding a factor assigns nothing", func() error {
			if err := f.svc.UnassignToken(f.ctx, f.alice.ID, factorSerial); err != nil {
				return err
			}
			f.importCSV(t, serials(1, 150000000002))
			_, err := f.svc.AssignTokens(f.helpdesk, f.bob.ID, []string{"150000000002", factorSerial})
			if tok, gerr := f.svc.GetToken(f.ctx, "150000000002"); gerr != nil || tok.UserID != "" {
				t.Errorf("bulk assign was partly applied: %+v %v", tok, gerr)
			}
			return err
		}, appliance.ErrForbidden},
		{"unbound token is the help desk's again", func() error {
			if err := f.svc.SetAdminSecondFactor(f.ctx, "root", ""); err != nil {
				return err
			}
			tok, err := f.svc.GetToken(f.ctx, factorSerial)
			if err == nil && tok.AdminSecondFactor {
				return fmt.Errorf("still marked after unbinding")
			}
			_, err = f.svc.AssignTokens(f.helpdesk, f.alice.ID, []string{factorSerial})
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestAdminFactorMarkedInReads: lists and user views say which token is an
// admin's second factor, so the help desk understands a refusal.
func TestAdminFactorMarkedInReads(t *testing.T) {
	f := newFactorFixture(t)
	page, err := f.svc.ListTokens(f.helpdesk, appliance.TokenQuery{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, tok := range page.Items {
		got[tok.Serial] = tok.AdminSecondFactor
	}
	if diff := cmp.Diff(map[string]bool{factorSerial: true, otherSerial: false}, got); diff != "" {
		t.Errorf("ListTokens marks (-want +got):\n%s", diff)
	}
	u, err := f.svc.GetUser(f.helpdesk, f.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Tokens) != 1 || !u.Tokens[0].AdminSecondFactor {
		t.Errorf("GetUser tokens %+v, want the factor marked", u.Tokens)
	}
}

// TestImportOverwriteSkipsAdminFactor: a help desk import with
// on_duplicate=overwrite cannot replace the seed of an admin's second
// factor (unassigned by a super admin but still bound); it still overwrites
// other unassigned tokens, and a super admin's import overwrites both.
func TestImportOverwriteSkipsAdminFactor(t *testing.T) {
	f := newFactorFixture(t)
	if err := f.svc.UnassignToken(f.ctx, f.alice.ID, factorSerial); err != nil {
		t.Fatal(err)
	}
	f.importCSV(t, serials(1, 150000000005))
	file := "serial\n" + factorSerial + "\n150000000005\n"
	before, err := f.svc.GetToken(f.ctx, factorSerial)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		ctx             context.Context
		wantOverwritten int
		wantSkipped     []appliance.RowReport
	}{
		{"help desk", f.helpdesk, 1, []appliance.RowReport{{Row: 2, Serial: factorSerial,
			Reason: "duplicate serial: an admin's second factor is overwritten by a superadmin only"}}},
		{"super admin", f.ctx, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.Add(time.Second)
			job, err := f.svc.ImportTokens(tc.ctx, appliance.ImportRequest{Format: appliance.FormatCSV,
				OnDuplicate: appliance.OnDuplicateOverwrite, Body: strings.NewReader(file)})
			if err != nil {
				t.Fatal(err)
			}
			if job.Overwritten != tc.wantOverwritten {
				t.Errorf("overwritten %d, want %d", job.Overwritten, tc.wantOverwritten)
			}
			if diff := cmp.Diff(tc.wantSkipped, job.SkippedRows, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("skipped rows (-want +got):\n%s", diff)
			}
		})
		if tc.ctx == f.helpdesk {
			after, err := f.svc.GetToken(f.ctx, factorSerial)
			if err != nil || !bytes.Equal(after.Seed, before.Seed) || after.ImportJob != before.ImportJob {
				t.Fatalf("help desk import replaced the admin's factor: %v", err)
			}
		}
	}
}

// TestAdminFactorRefusalsBounded: a help-desk account retrying a takeover
// step on an admin's second factor writes one refusal record a minute, and
// the next record counts the attempts left out, so the trail cannot be
// grown without bound while the protected admin still sees the attempts.
func TestAdminFactorRefusalsBounded(t *testing.T) {
	f := newFactorFixture(t)
	count := func() int {
		t.Helper()
		page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "token.disable", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Items)
	}
	before := count()
	for range 50 {
		if _, err := f.svc.SetTokenEnabled(f.helpdesk, factorSerial, false); !errors.Is(err, appliance.ErrForbidden) {
			t.Fatalf("help desk disabling the admin's factor: %v, want ErrForbidden", err)
		}
	}
	if got := count() - before; got != 1 {
		t.Fatalf("50 refusals in a minute wrote %d records, want 1", got)
	}
	f.clock.Add(time.Minute)
	if _, err := f.svc.SetTokenEnabled(f.helpdesk, factorSerial, false); !errors.Is(err, appliance.ErrForbidden) {
		t.Fatalf("refusal after a minute: %v", err)
	}
	r := f.lastAudit(t, "token.disable")
	if count()-before != 2 || r.Reason != "admin_second_factor:root" || !strings.Contains(r.Detail, "49") {
		t.Errorf("after a minute: %d records, last %+v; want a second record naming root and counting the 49 left out", count()-before, r)
	}
}
