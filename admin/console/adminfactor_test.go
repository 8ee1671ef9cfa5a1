package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"tokend/admin/console"
	"tokend/appliance"
)

// TestAdminFactorRefusedInConsole: in a help desk session, the user page
// marks the token that is a super admin's second factor, and every action
// on it is refused with a message saying why; a super admin session may act.
func TestAdminFactorRefusedInConsole(t *testing.T) {
	f := newFixture(t, console.Options{})
	const serial = "100000000001"
	ann := f.user(t, "boss", "Ann Boss") // an admin's second factor is their own token
	if _, err := f.svc.AssignTokens(f.ctx, ann.ID, []string{serial}); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Distribute(f.ctx, serial, "android-ctkip")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CompleteProvisioning(f.ctx, d.ActivationCode.Reveal(), make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "boss", Role: appliance.RoleSuperAdmin,
		Password: "boss password 123", SecondFactorSerial: serial}); err != nil {
		t.Fatal(err)
	}
	const msg = "is an administrator&#39;s console second factor. Only a super admin can change it"

	help := f.browser(t)
	help.signIn("help", helpPW)
	if p := help.get("/console/users/" + ann.ID); p.status != http.StatusOK || !contains(p, "console second factor)</small>") {
		t.Errorf("user page does not mark the admin's factor: %s", p)
	}
	base := "/console/users/" + ann.ID + "/tokens/" + serial
	tests := []struct {
		name string
		path string
		form url.Values
	}{
		{"disable", base + "/disable", nil},
		{"unassign", base + "/unassign", nil},
		{"distribute", base + "/distribute", url.Values{"profile": {"android-ctkip"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			help.get("/console/users/" + ann.ID) // a fresh CSRF token
			p := help.post(tc.path, tc.form)
			if p.status != http.StatusForbidden || !contains(p, msg) {
				t.Fatalf("help desk %s: %s, want 403 with the reason", tc.name, p)
			}
			if strings.Contains(p.body, "boss") {
				t.Errorf("the refusal names the admin to the help desk")
			}
		})
	}
	tok, err := f.svc.GetToken(f.ctx, serial)
	if err != nil || tok.State != appliance.StateEnabled || tok.UserID != ann.ID || !tok.Provisioned || len(tok.CodeHash) != 0 {
		t.Fatalf("refused actions changed the token: %+v %v", tok, err)
	}

	root := f.browser(t)
	root.signIn("root", rootPW)
	root.get("/console/users/" + ann.ID)
	if p := root.post(base+"/disable", nil); p.status != http.StatusSeeOther {
		t.Fatalf("super admin disable: %s", p)
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "token.disable"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Items {
		got = append(got, r.Actor.Name+"/"+r.Outcome+"/"+r.Reason)
	}
	if want := "help/failure/admin_second_factor:boss root/success/admin_second_factor:boss"; strings.Join(got, " ") != want {
		t.Errorf("audit %q, want %q", strings.Join(got, " "), want)
	}
}
