package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tokend/admin/console"
)

var otpRE = regexp.MustCompile(`id="one-time-password">([^<]+)<`)

// separateBrowser is a browser with its own client: f.browser's share one
// *http.Client (srv.Client()), so the last one's cookie jar would serve all
// of them, and these tests interleave several admins.
func (f *fixture) separateBrowser(t *testing.T) *browser {
	b := f.browser(t)
	c := *b.c
	b.c = &c
	return b
}

// TestAdministratorsPage: the super admin lists, creates (the one-time
// password shown once), resets, disables, enables and deletes (after a
// confirmation page) admin accounts, but not their own; the help desk and
// the auditor are refused the page and its actions; a forged form is
// refused.
func TestAdministratorsPage(t *testing.T) {
	f := newFixture(t, console.Options{})
	root := f.separateBrowser(t)
	root.signIn("root", rootPW)
	p := root.get("/console/admins")
	if p.status != http.StatusOK || !contains(p, `data-admin="help"`) || !contains(p, `data-admin="audit"`) || !contains(p, `id="nav-admins"`) {
		t.Fatalf("administrators page: %s", p)
	}
	for _, who := range []struct{ name, pw string }{{"help", helpPW}, {"audit", auditPW}} {
		b := f.separateBrowser(t)
		b.signIn(who.name, who.pw)
		if p := b.get("/console/"); contains(p, `id="nav-admins"`) {
			t.Errorf("%s sees the Administrators link", who.name)
		}
		if p := b.get("/console/admins"); p.status != http.StatusForbidden {
			t.Errorf("%s reads administrators: %d", who.name, p.status)
		}
		b.get("/console/")
		if p := b.post("/console/admins", url.Values{"name": {"mallory"}, "role": {"superadmin"}}); p.status != http.StatusForbidden {
			t.Errorf("%s creates an admin: %d", who.name, p.status)
		}
		if p := b.post("/console/admins/password", url.Values{"name": {"root"}}); p.status != http.StatusForbidden {
			t.Errorf("%s resets root's password: %d", who.name, p.status)
		}
	}
	if p := root.post("/console/admins", url.Values{"csrf": {"forged"}, "name": {"mallory"}, "role": {"superadmin"}}); p.status != http.StatusForbidden {
		t.Fatalf("forged form: %d", p.status)
	}

	root.get("/console/admins")
	p = root.post("/console/admins", url.Values{"name": {"jane"}, "role": {"helpdesk"}})
	m := otpRE.FindStringSubmatch(p.body)
	if p.status != http.StatusCreated || m == nil || !contains(p, "Administrator jane created.") {
		t.Fatalf("create jane: %s", p)
	}
	if again := root.get("/console/admins"); strings.Contains(again.body, m[1]) || !contains(again, "(one-time password)") {
		t.Fatalf("the one-time password is shown again, or not marked: %s", again)
	}
	p = root.post("/console/admins", url.Values{"name": {"bad name"}, "role": {"helpdesk"}})
	if p.status != http.StatusBadRequest || !contains(p, "name:") || !contains(p, `value="bad name"`) {
		t.Fatalf("invalid name: %s", p)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", m[1], ""); err != nil {
		t.Fatalf("the password shown does not work: %v", err)
	}

	// Reset: a new one-time password, shown once.
	root.get("/console/admins")
	p = root.post("/console/admins/password", url.Values{"name": {"jane"}})
	m2 := otpRE.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m2 == nil || m2[1] == m[1] {
		t.Fatalf("reset: %s", p)
	}

	// Own account: no disable or delete, and the Service refuses it anyway.
	if p := root.get("/console/admins"); strings.Contains(p.body, `href="/console/admins/delete?name=root"`) {
		t.Errorf("the own row offers delete")
	}
	if p := root.post("/console/admins/disable", url.Values{"name": {"root"}}); p.status != http.StatusConflict || !contains(p, "their own account") {
		t.Errorf("disable self: %s", p)
	}
	root.get("/console/admins")
	if p := root.post("/console/admins/delete", url.Values{"name": {"root"}}); p.status != http.StatusConflict {
		t.Errorf("delete self: %s", p)
	}

	// Disable ends jane's session and her sign-ins; enable restores them.
	jane := f.separateBrowser(t)
	jane.get("/console/")
	if p := jane.post("/console/login", url.Values{"name": {"jane"}, "password": {m2[1]}}); p.status != http.StatusSeeOther {
		t.Fatalf("jane signs in: %s", p)
	}
	root.get("/console/admins")
	if p := root.post("/console/admins/disable", url.Values{"name": {"jane"}}); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %s", p)
	}
	if p := root.get("/console/admins"); !contains(p, "Administrator jane disabled.") {
		t.Fatalf("after disable: %s", p)
	}
	if p := jane.get("/console/password"); p.status != http.StatusForbidden || !contains(p, "disabled") {
		t.Fatalf("a disabled admin's session: %s", p)
	}
	if p := root.post("/console/admins/enable", url.Values{"name": {"jane"}}); p.status != http.StatusSeeOther {
		t.Fatalf("enable: %s", p)
	}

	// Delete after confirmation.
	p = root.get("/console/admins/delete?name=jane")
	if p.status != http.StatusOK || !contains(p, `id="confirm-delete"`) {
		t.Fatalf("confirmation page: %s", p)
	}
	if p := root.post("/console/admins/delete", url.Values{"name": {"jane"}}); p.status != http.StatusSeeOther {
		t.Fatalf("delete: %s", p)
	}
	if p := root.get("/console/admins"); contains(p, `data-admin="jane"`) || !contains(p, "Administrator jane deleted.") {
		t.Fatalf("after delete: %s", p)
	}
	if p := root.get("/console/admins/delete?name=jane"); p.status != http.StatusNotFound {
		t.Fatalf("confirmation of a deleted admin: %d", p.status)
	}
}

// TestOneTimePasswordMustChange: signed in with a one-time password, an
// admin reaches nothing but the password page (every other page redirects
// there, every other form is refused) until the password is changed, which
// needs the current one; API tokens are not concerned.
func TestOneTimePasswordMustChange(t *testing.T) {
	f := newFixture(t, console.Options{})
	root := f.separateBrowser(t)
	root.signIn("root", rootPW)
	root.get("/console/admins")
	m := otpRE.FindStringSubmatch(root.post("/console/admins", url.Values{"name": {"jane"}, "role": {"helpdesk"}}).body)
	if m == nil {
		t.Fatal("no one-time password")
	}
	otp := m[1]
	jane := f.separateBrowser(t)
	jane.get("/console/")
	if p := jane.post("/console/login", url.Values{"name": {"jane"}, "password": {otp}}); p.status != http.StatusSeeOther {
		t.Fatalf("sign-in with the one-time password: %s", p)
	}
	for _, path := range []string{"/console/", "/console/users?q=a", "/console/tokens", "/console/profiles", "/console/agents"} {
		if p := jane.get(path); p.status != http.StatusSeeOther || p.header.Get("Location") != "/console/password" {
			t.Errorf("GET %s: %d %s, want a redirect to the password page", path, p.status, p.header.Get("Location"))
		}
	}
	p := jane.get("/console/password")
	if p.status != http.StatusOK || !contains(p, `id="must-change"`) {
		t.Fatalf("password page: %s", p)
	}
	if p := jane.post("/console/tokens/import/apply", nil); p.status != http.StatusForbidden || !contains(p, "one-time password first") {
		t.Errorf("a form before the change: %s", p)
	}
	jane.get("/console/password")
	const next = "jane's own password"
	tests := []struct {
		name            string
		current, n1, n2 string
		status          int
		wantText        string
	}{
		{"wrong current password", "wrong password!!", next, next, http.StatusUnauthorized, "current password is wrong"},
		{"repetition differs", otp, next, next + "x", http.StatusBadRequest, "differ"},
		{"same password", otp, otp, otp, http.StatusBadRequest, "must differ"},
		{"too short", otp, "short", "short", http.StatusBadRequest, "at least 12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := jane.post("/console/password", url.Values{"current_password": {tc.current}, "new_password": {tc.n1}, "repeat_password": {tc.n2}})
			if p.status != tc.status || !contains(p, tc.wantText) {
				t.Fatalf("got %s, want %d saying %q", p, tc.status, tc.wantText)
			}
		})
	}
	if p := jane.get("/console/"); p.status != http.StatusSeeOther {
		t.Fatalf("a refused change opened the console: %d", p.status)
	}
	jane.get("/console/password")
	if p := jane.post("/console/password", url.Values{"current_password": {otp}, "new_password": {next}, "repeat_password": {next}}); p.status != http.StatusSeeOther {
		t.Fatalf("change: %s", p)
	}
	if p := jane.get("/console/"); p.status != http.StatusOK || !contains(p, "Quick Search") || !contains(p, "Your password has been changed.") {
		t.Fatalf("home after the change: %s", p)
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", otp, ""); err == nil {
		t.Fatal("the one-time password still signs in")
	}
	if _, err := f.svc.AuthenticateAdmin(f.ctx, "jane", next, ""); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	// A reset by the super admin sends jane's live session back to the
	// password page at her next request.
	root.get("/console/admins")
	root.post("/console/admins/password", url.Values{"name": {"jane"}})
	if p := jane.get("/console/users?q=a"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/console/password" {
		t.Fatalf("after a reset: %d %s", p.status, p.header.Get("Location"))
	}
}
