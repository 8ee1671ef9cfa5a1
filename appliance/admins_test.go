package appliance_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

func TestCreateAndAuthenticateAdmin(t *testing.T) {
	f := newFixture(t, memstore.New())
	acc, pw, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "Ann", Role: appliance.RoleHelpdesk})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-z2-7]{5}(-[a-z2-7]{5}){3}$`).MatchString(pw.Reveal()) {
		t.Fatalf("generated password %q has the wrong shape", pw.Reveal())
	}
	if pw.String() != "[redacted]" || strings.Contains(acc.PasswordHash, pw.Reveal()) || !strings.HasPrefix(acc.PasswordHash, "$argon2id$") {
		t.Fatal("password leaks or is not an argon2id hash")
	}
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "ann", Role: appliance.RoleAuditor, Password: "another long password"}); !errors.Is(err, appliance.ErrExists) {
		t.Fatalf("duplicate name (case-insensitive): %v", err)
	}
	actor, err := f.svc.AuthenticateAdmin(f.ctx, "ANN", pw.Reveal(), "")
	if err != nil {
		t.Fatal(err)
	}
	if actor.Name != "Ann" || actor.Role != appliance.RoleHelpdesk || actor.ID != "admin:"+acc.ID {
		t.Fatalf("actor %+v", actor)
	}
	got, err := f.svc.GetAdmin(f.ctx, "ann")
	if err != nil || got.LastLoginAt.IsZero() {
		t.Fatalf("last login not recorded: %+v %v", got, err)
	}
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "ann", "wrong password!!"},
		{"unknown admin", "bob", pw.Reveal()},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.svc.AuthenticateAdmin(f.ctx, tc.user, tc.pass, ""); !errors.Is(err, appliance.ErrUnauthenticated) {
				t.Fatalf("got %v, want ErrUnauthenticated", err)
			}
		})
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "admin.login"})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, r := range page.Items {
		reasons = append(reasons, r.Outcome+"/"+r.Reason+"/"+r.Target)
		if strings.Contains(r.Detail+r.Target+r.Reason, pw.Reveal()) {
			t.Fatal("audit holds the password")
		}
	}
	// Unknown names are counted, not audited (anyone can make them).
	want := "success//Ann failure/bad_password/Ann"
	if strings.Join(reasons, " ") != want {
		t.Fatalf("audit %q, want %q", strings.Join(reasons, " "), want)
	}
}

func TestCreateAdminValidation(t *testing.T) {
	f := newFixture(t, memstore.New())
	_, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "a b", Role: appliance.RoleAgent, Password: "short", SecondFactorSerial: "12"})
	var v *appliance.ValidationError
	if !errors.As(err, &v) || len(v.Problems) != 4 {
		t.Fatalf("want four problems, got %v", err)
	}
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "x", Role: appliance.RoleAuditor, Password: "long enough password",
		SecondFactorSerial: "000000000001"}); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("unknown second-factor token: %v", err)
	}
}

func TestAdminSecondFactor(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	const pw = appliance.Secret("correct horse battery")
	// alice holds the token: the admin's second factor is their own.
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "alice", Role: appliance.RoleSuperAdmin, Password: pw,
		SecondFactorSerial: "150000000000"}); err != nil {
		t.Fatal(err)
	}
	step := f.clock.Now().Unix() / 60
	code := codeAt(t, g, step)
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", pw.Reveal(), ""); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("missing tokencode accepted: %v", err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", "wrong password!", code); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("wrong password accepted: %v", err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", pw.Reveal(), "00000000"); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("wrong tokencode accepted: %v", err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", pw.Reveal(), code); err != nil {
		t.Fatalf("good password and tokencode: %v", err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", pw.Reveal(), code); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("replayed tokencode accepted: %v", err)
	}
	// Removing the second factor makes the password enough again.
	if err := f.svc.SetAdminSecondFactor(f.ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "alice", pw.Reveal(), ""); err != nil {
		t.Fatal(err)
	}
}

func TestAdminPasswordChangeListDelete(t *testing.T) {
	f := newFixture(t, memstore.New())
	for _, n := range []string{"zed", "amy"} {
		if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: n, Role: appliance.RoleAuditor, Password: "first password!"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.svc.SetAdminPassword(f.ctx, "amy", "second password!"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "amy", "first password!", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatal("old password still works")
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "amy", "second password!", ""); err != nil {
		t.Fatal(err)
	}
	list, err := f.svc.ListAdmins(f.ctx)
	if err != nil || len(list) != 2 || list[0].Name != "amy" || list[1].Name != "zed" {
		t.Fatalf("list %v %v", list, err)
	}
	if err := f.svc.DeleteAdmin(f.ctx, "zed"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetAdmin(f.ctx, "zed"); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("deleted admin: %v", err)
	}
}
