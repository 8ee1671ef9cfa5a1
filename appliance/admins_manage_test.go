package appliance_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestAdminSecondFactorRefusals: a second factor must be a token with a
// seed, assigned to the user named like the admin, without an outstanding
// activation code; CreateAdmin and SetAdminSecondFactor refuse anything else
// with a reason, and take the admin's own provisioned token.
func TestAdminSecondFactorRefusals(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(6, 170000000000))
	f.profile(t)
	root, bob := f.user(t, "root"), f.user(t, "bob")
	// keeper lets root be deleted between rows (never the last superadmin).
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "keeper", Role: appliance.RoleSuperAdmin, Password: "a long password"}); err != nil {
		t.Fatal(err)
	}
	assign := func(u appliance.UserView, serial string) {
		t.Helper()
		if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{serial}); err != nil {
			t.Fatal(err)
		}
	}
	provision := func(serial string) {
		t.Helper()
		d, err := f.svc.Distribute(f.ctx, serial, "android-ctkip")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), testSeed); err != nil {
			t.Fatal(err)
		}
	}
	// 170000000000 is unassigned; …01 is bob's, provisioned; …02 is root's,
	// never provisioned (the README's old example); …03 is root's with an
	// outstanding code; …04 is root's and provisioned.
	assign(bob, "170000000001")
	provision("170000000001")
	assign(root, "170000000002")
	assign(root, "170000000003")
	if _, err := f.svc.Distribute(f.ctx, "170000000003", "android-ctkip"); err != nil {
		t.Fatal(err)
	}
	assign(root, "170000000004")
	provision("170000000004")

	tests := []struct {
		name, serial string
		want         error
		reason       string
	}{
		{"unknown token", "179999999999", appliance.ErrNotFound, ""},
		{"unassigned", "170000000000", appliance.ErrInvalidState, "not assigned to a user"},
		{"another user's", "170000000001", appliance.ErrInvalidState, "assigned to another user"},
		{"no seed", "170000000002", appliance.ErrInvalidState, "no seed"},
		{"outstanding code", "170000000003", appliance.ErrInvalidState, "outstanding activation code"},
		{"own and provisioned", "170000000004", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Fatalf("%s: got %v, want %v", how, err, tc.want)
				}
				var sfe *appliance.SecondFactorError
				if tc.reason != "" && (!errors.As(err, &sfe) || !strings.Contains(sfe.Reason, tc.reason) || sfe.Serial != tc.serial) {
					t.Fatalf("%s: got %v, want a SecondFactorError saying %q", how, err, tc.reason)
				}
			}
			_, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "ROOT", Role: appliance.RoleSuperAdmin,
				Password: "correct horse battery", SecondFactorSerial: tc.serial})
			check("create", err)
			if err == nil {
				if err := f.svc.DeleteAdmin(f.ctx, "root"); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin,
				Password: "correct horse battery"}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.svc.DeleteAdmin(f.ctx, "root") })
			check("set", f.svc.SetAdminSecondFactor(f.ctx, "root", tc.serial))
			a, err := f.svc.GetAdmin(f.ctx, "root")
			if err != nil {
				t.Fatal(err)
			}
			if got := a.SecondFactorSerial != ""; got != (tc.want == nil) {
				t.Fatalf("second factor after set: %q", a.SecondFactorSerial)
			}
		})
	}
}

// TestAdminOneTimePassword: a generated password (create or reset) must be
// changed; the change needs the current password (a wrong one counts
// toward the lockout), refuses the same password, and clears the flag; a
// chosen password is not one-time; a reset lifts a lockout.
func TestAdminOneTimePassword(t *testing.T) {
	f := newFixture(t, memstore.New())
	acc, otp, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "jane", Role: appliance.RoleHelpdesk})
	if err != nil {
		t.Fatal(err)
	}
	if !acc.MustChangePassword || otp == "" {
		t.Fatalf("generated password is not one-time: %+v", acc)
	}
	const next = appliance.Secret("jane's own password")
	if err := f.svc.ChangeAdminPassword(f.ctx, "jane", "not the password", next); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("wrong current password: %v", err)
	}
	if a, _ := f.svc.GetAdmin(f.ctx, "jane"); a.Failures != 1 || !a.MustChangePassword {
		t.Fatalf("a wrong current password did not count: %+v", a)
	}
	var v *appliance.ValidationError
	if err := f.svc.ChangeAdminPassword(f.ctx, "jane", otp, otp); !errors.As(err, &v) {
		t.Fatalf("same password: %v", err)
	}
	if err := f.svc.ChangeAdminPassword(f.ctx, "jane", otp, "short"); !errors.As(err, &v) {
		t.Fatalf("short password: %v", err)
	}
	if err := f.svc.ChangeAdminPassword(f.ctx, "jane", otp, next); err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.GetAdmin(f.ctx, "jane")
	if err != nil || a.MustChangePassword || a.Failures != 0 {
		t.Fatalf("after the change: %+v %v", a, err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", otp.Reveal(), ""); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatal("the one-time password still works")
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", next.Reveal(), ""); err != nil {
		t.Fatal(err)
	}

	// Locked out, then reset: the new one-time password signs in.
	for range 5 {
		_, _ = f.svc.AuthenticateAdmin(f.ctx, "jane", "wrong password!!", "")
	}
	if a, _ := f.svc.GetAdmin(f.ctx, "jane"); !a.Locked(f.clock.Now()) {
		t.Fatal("not locked")
	}
	a, otp2, err := f.svc.ResetAdminPassword(f.ctx, "jane", "")
	if err != nil || otp2 == "" || otp2 == otp || !a.MustChangePassword || a.Locked(f.clock.Now()) {
		t.Fatalf("reset: %+v %v", a, err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", otp2.Reveal(), ""); err != nil {
		t.Fatalf("reset password: %v", err)
	}
	a, shown, err := f.svc.ResetAdminPassword(f.ctx, "jane", "chosen by the root")
	if err != nil || shown != "" || a.MustChangePassword {
		t.Fatalf("chosen password: %+v %q %v", a, shown.Reveal(), err)
	}
	if _, _, err := f.svc.ResetAdminPassword(f.ctx, "nobody", ""); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("unknown admin: %v", err)
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Items {
		if strings.HasPrefix(r.Action, "admin.password") && r.Target == "jane" {
			got = append(got, r.Action+"/"+r.Outcome+"/"+r.Detail)
		}
		for _, s := range []appliance.Secret{otp, otp2, next} {
			if strings.Contains(r.Detail+r.Reason+r.Target, s.Reveal()) {
				t.Fatal("a password is in the audit trail")
			}
		}
	}
	if want := "admin.password.change/success/ admin.password/success/one-time admin.password/success/set"; strings.Join(got, " ") != want {
		t.Errorf("audit %q, want %q", strings.Join(got, " "), want)
	}
}

// TestAdminDisableDelete: an admin in the console cannot disable or delete
// their own account; the last enabled superadmin can be neither disabled
// nor deleted; a disabled admin cannot sign in (and the refusals do not
// lock the account), an enabled one can again.
func TestAdminDisableDelete(t *testing.T) {
	f := newFixture(t, memstore.New())
	for _, a := range []struct{ name, role string }{{"root", appliance.RoleSuperAdmin}, {"sam", appliance.RoleSuperAdmin}, {"help", appliance.RoleHelpdesk}} {
		if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: a.name, Role: a.role, Password: "a long password"}); err != nil {
			t.Fatal(err)
		}
	}
	rootAcc, err := f.svc.GetAdmin(f.ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	asRoot := appliance.WithActor(context.Background(), rootAcc.Actor())
	if _, err := f.svc.SetAdminDisabled(asRoot, "root", true); !errors.Is(err, appliance.ErrOwnAdminAccount) {
		t.Fatalf("self disable: %v", err)
	}
	if err := f.svc.DeleteAdmin(asRoot, "ROOT"); !errors.Is(err, appliance.ErrOwnAdminAccount) {
		t.Fatalf("self delete: %v", err)
	}
	if a, err := f.svc.SetAdminDisabled(asRoot, "sam", true); err != nil || !a.Disabled {
		t.Fatalf("disable sam: %+v %v", a, err)
	}
	// root is now the last enabled superadmin, even for the command line.
	if _, err := f.svc.SetAdminDisabled(f.ctx, "root", true); !errors.Is(err, appliance.ErrLastSuperAdmin) {
		t.Fatalf("disable the last superadmin: %v", err)
	}
	if err := f.svc.DeleteAdmin(f.ctx, "root"); !errors.Is(err, appliance.ErrLastSuperAdmin) {
		t.Fatalf("delete the last superadmin: %v", err)
	}
	for range 7 {
		if _, err := f.svc.AuthenticateAdmin(f.ctx, "sam", "a long password", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Fatalf("a disabled admin signed in: %v", err)
		}
	}
	if a, err := f.svc.SetAdminDisabled(asRoot, "sam", false); err != nil || a.Disabled || a.Locked(f.clock.Now()) {
		t.Fatalf("enable sam: %+v %v", a, err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "sam", "a long password", ""); err != nil {
		t.Fatalf("enabled again: %v", err)
	}
	if err := f.svc.DeleteAdmin(asRoot, "help"); err != nil {
		t.Fatal(err)
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Items {
		if r.Action == "admin.disable" || r.Action == "admin.enable" || r.Action == "admin.delete" {
			got = append(got, r.Action+"/"+r.Target+"/"+r.Outcome+"/"+r.Actor.Name)
		}
	}
	want := "admin.disable/root/failure/root admin.delete/ROOT/failure/root admin.disable/sam/success/root " +
		"admin.disable/root/failure/tester admin.delete/root/failure/tester admin.enable/sam/success/root admin.delete/help/success/root"
	if strings.Join(got, " ") != want {
		t.Errorf("audit\n%q, want\n%q", strings.Join(got, " "), want)
	}
}

// TestLastSuperAdminRace: two superadmins deleting each other at once:
// exactly one deletion succeeds, so one superadmin always remains.
func TestLastSuperAdminRace(t *testing.T) {
	for round := range 5 {
		f := newFixture(t, memstore.New())
		var actors [2]context.Context
		for i, n := range []string{"a", "b"} {
			acc, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: n, Role: appliance.RoleSuperAdmin, Password: "a long password"})
			if err != nil {
				t.Fatal(err)
			}
			actors[i] = appliance.WithActor(context.Background(), acc.Actor())
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, other := range []string{"b", "a"} {
			wg.Go(func() { errs[i] = f.svc.DeleteAdmin(actors[i], other) })
		}
		wg.Wait()
		list, err := f.svc.ListAdmins(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: %d admins left, errors %v", round, len(list), errs)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, appliance.ErrLastSuperAdmin) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
