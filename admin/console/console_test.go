package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tokend/admin/console"
	"tokend/appliance"
)

func TestSignIn(t *testing.T) {
	f := newFixture(t, console.Options{})
	b := f.browser(t)
	p := b.get("/console")
	if p.status != http.StatusMovedPermanently || p.header.Get("Location") != "/console/" {
		t.Fatalf("/console: %d %s", p.status, p.header.Get("Location"))
	}
	p = b.get("/console/")
	if p.status != http.StatusOK || !contains(p, "Sign in") {
		t.Fatalf("sign-in page: %s", p)
	}
	ck := p.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-tokend_session=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(ck, want) {
			t.Errorf("cookie %q lacks %s", ck, want)
		}
	}
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "root", "not the password"},
		{"unknown admin", "nobody", rootPW},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post("/console/login", url.Values{"name": {tc.user}, "password": {tc.pw}})
			if p.status != http.StatusUnauthorized || !contains(p, "Sign-in failed. Check your name, password and tokencode.") {
				t.Fatalf("got %s", p)
			}
		})
	}
	if p := b.get("/console/users?q=a"); p.status != http.StatusSeeOther {
		t.Fatalf("signed-out page: %d", p.status)
	}
	before := b.c.Jar.Cookies(mustURL(f.srv.URL))[0].Value
	b.signIn("root", rootPW)
	if after := b.c.Jar.Cookies(mustURL(f.srv.URL))[0].Value; after == before {
		t.Fatal("the session id did not change at sign-in")
	}
}

func mustURL(s string) *url.URL { u, _ := url.Parse(s); return u }

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, console.Options{})
	b := f.browser(t)
	for _, path := range []string{"/console/", "/console/static/console.css"} {
		p := b.get(path)
		csp := p.header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "img-src 'self' data:", "default-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline script", path, csp)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, p.header)
		}
	}
	if p := b.get("/console/"); strings.Contains(p.body, "<script>") || strings.Contains(p.body, " on") && strings.Contains(p.body, "onclick") {
		t.Fatal("inline script in the page")
	}
}

func TestCSRFRejected(t *testing.T) {
	f := newFixture(t, console.Options{})
	u := f.user(t, "alice", "Alice")
	b := f.browser(t)
	b.signIn("help", helpPW)
	for _, tc := range []struct{ name, csrf string }{{"missing", ""}, {"wrong", "Zm9yZ2Vk"}} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post("/console/users/"+u.ID+"/assign", url.Values{"csrf": {tc.csrf}, "serial": {"100000000001"}})
			if p.status != http.StatusForbidden || !contains(p, "CSRF check failed") {
				t.Fatalf("got %s", p)
			}
		})
	}
	if got, _ := f.svc.GetUser(f.ctx, u.ID); len(got.Tokens) != 0 {
		t.Fatal("a forged request assigned a token")
	}
	// The sign-in form is protected too.
	anon := f.browser(t)
	anon.get("/console/")
	if p := anon.post("/console/login", url.Values{"csrf": {"x"}, "name": {"root"}, "password": {rootPW}}); p.status != http.StatusForbidden {
		t.Fatalf("login without the form's token: %s", p)
	}
}

func TestRolesPerPage(t *testing.T) {
	f := newFixture(t, console.Options{})
	u := f.user(t, "alice", "Alice")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"100000000001"}); err != nil {
		t.Fatal(err)
	}
	const ok, no = http.StatusOK, http.StatusForbidden
	pages := []struct {
		path                string
		super, help, auditr int
	}{
		{"/console/users?q=al", ok, ok, ok},
		{"/console/users/" + u.ID, ok, ok, ok},
		{"/console/users/" + u.ID + "/assign", ok, ok, no},
		{"/console/users/" + u.ID + "/tokens/100000000001/distribute", ok, ok, no},
		{"/console/tokens", ok, ok, ok},
		{"/console/tokens/import", ok, ok, no},
		{"/console/profiles", ok, ok, ok},
		{"/console/profiles/new", ok, no, no},
		{"/console/profiles/edit/android-ctkip", ok, no, no},
		{"/console/sources", ok, ok, ok},
		{"/console/audit", ok, no, ok},
	}
	for _, r := range []struct{ name, pw string }{{"root", rootPW}, {"help", helpPW}, {"audit", auditPW}} {
		b := f.browser(t)
		b.signIn(r.name, r.pw)
		for _, pg := range pages {
			want := map[string]int{"root": pg.super, "help": pg.help, "audit": pg.auditr}[r.name]
			if p := b.get(pg.path); p.status != want {
				t.Errorf("%s GET %s: %d, want %d", r.name, pg.path, p.status, want)
			}
		}
		// Actions: an auditor changes nothing; only the super admin edits profiles.
		b.get("/console/users/" + u.ID)
		wantOp, wantSuper := http.StatusSeeOther, http.StatusSeeOther
		if r.name == "audit" {
			wantOp = no
		}
		if r.name != "root" {
			wantSuper = no
		}
		if p := b.post("/console/users/"+u.ID+"/tokens/100000000001/disable", nil); p.status != wantOp {
			t.Errorf("%s disable: %d, want %d", r.name, p.status, wantOp)
		}
		if p := b.post("/console/profiles/edit/android-ctkip", url.Values{"device_type": {"android"}, "delivery_method": {"ctkip"},
			"digits": {"8"}, "interval": {"60"}, "pin_mode": {"none"}, "ttl_hours": {"24"}}); p.status != wantSuper {
			t.Errorf("%s edit profile: %d, want %d (%s)", r.name, p.status, wantSuper, p.body)
		}
		// Links to forbidden pages are not shown.
		prof := b.get("/console/profiles")
		if got := contains(prof, "New profile"); got != (r.name == "root") {
			t.Errorf("%s sees the profile editor link: %v", r.name, got)
		}
		if got := contains(b.get("/console/users/"+u.ID), "Assign More Tokens"); got != (r.name != "audit") {
			t.Errorf("%s sees Assign More Tokens: %v", r.name, got)
		}
	}
	// The audit trail names the console admin who acted.
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "token.disable"})
	if err != nil || len(page.Items) == 0 || page.Items[0].Actor.Name != "root" {
		t.Fatalf("audit actor: %+v %v", page.Items, err)
	}
}

func TestDisplayNameIsEscaped(t *testing.T) {
	f := newFixture(t, console.Options{})
	const evil = `<script>alert(1)</script>`
	u := f.user(t, "mallory", evil)
	b := f.browser(t)
	b.signIn("help", helpPW)
	for _, path := range []string{"/console/users/" + u.ID, "/console/users?q=mallory"} {
		p := b.get(path)
		if strings.Contains(p.body, evil) || !strings.Contains(p.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Fatalf("%s: display name not escaped:\n%s", path, p.body)
		}
	}
}

func TestTokenLimitMessage(t *testing.T) {
	f := newFixture(t, console.Options{})
	u := f.user(t, "alice", "Alice")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"100000000001", "100000000002", "100000000003"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	b.signIn("help", helpPW)
	p := b.get("/console/users/" + u.ID + "/assign")
	if !contains(p, "holds 3 of at most 3") || !contains(p, "unassign a token before assigning another") {
		t.Fatalf("limit not shown before: %s", p)
	}
	p = b.post("/console/users/"+u.ID+"/assign", url.Values{"serial": {"100000000004"}})
	if p.status != http.StatusConflict || !contains(p, "more than 3 hardware or software tokens") {
		t.Fatalf("4th assignment: %s", p)
	}
	if got, _ := f.svc.GetUser(f.ctx, u.ID); len(got.Tokens) != 3 {
		t.Fatalf("user holds %d tokens", len(got.Tokens))
	}
}

func TestSignOutAndIdleTimeout(t *testing.T) {
	f := newFixture(t, console.Options{SessionIdle: 10 * time.Minute, SessionMax: time.Hour})
	b := f.browser(t)
	b.signIn("audit", auditPW)
	if p := b.post("/console/logout", nil); p.status != http.StatusSeeOther {
		t.Fatalf("logout: %s", p)
	}
	if p := b.get("/console/tokens"); p.status != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", p.status)
	}

	b.signIn("audit", auditPW)
	f.clock.Add(9 * time.Minute)
	if p := b.get("/console/tokens"); p.status != http.StatusOK {
		t.Fatalf("within the idle timeout: %d", p.status)
	}
	f.clock.Add(11 * time.Minute)
	if p := b.get("/console/tokens"); p.status != http.StatusSeeOther {
		t.Fatalf("after the idle timeout: %d", p.status)
	}
	// The absolute limit holds even for a busy admin.
	b.signIn("audit", auditPW)
	for i := 0; i < 6; i++ {
		f.clock.Add(9 * time.Minute)
		if p := b.get("/console/tokens"); p.status != http.StatusOK {
			t.Fatalf("busy admin signed out after %d min", 9*(i+1))
		}
	}
	f.clock.Add(9 * time.Minute)
	if p := b.get("/console/tokens"); p.status != http.StatusSeeOther {
		t.Fatalf("past the absolute timeout: %d", p.status)
	}
}

func TestImportPreviewThenApply(t *testing.T) {
	f := newFixture(t, console.Options{})
	b := f.browser(t)
	b.signIn("help", helpPW)
	b.get("/console/tokens/import")
	body := "serial\n200000000001\n200000000002\nnot-a-serial\n100000000001\n"
	var buf strings.Builder
	const boundary = "XbOuNdArY"
	for _, kv := range [][2]string{{"csrf", b.csrf}, {"format", "csv"}, {"on_duplicate", "skip"}} {
		fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, kv[0], kv[1])
	}
	fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\nContent-Type: text/csv\r\n\r\n%s\r\n--%s--\r\n", boundary, body, boundary)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/console/tokens/import", strings.NewReader(buf.String()))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	p := b.do(req)
	if p.status != http.StatusOK || !contains(p, "Import Preview") || !contains(p, `<dd id="imported">2</dd>`) || !contains(p, "not-a-serial") {
		t.Fatalf("preview: %s", p)
	}
	if _, err := f.svc.GetToken(f.ctx, "200000000001"); err == nil {
		t.Fatal("the dry run wrote a token")
	}
	p = b.post("/console/tokens/import/apply", nil)
	if p.status != http.StatusOK || !contains(p, "Import Report") {
		t.Fatalf("apply: %s", p)
	}
	if _, err := f.svc.GetToken(f.ctx, "200000000002"); err != nil {
		t.Fatalf("applied import: %v", err)
	}
	if p := b.post("/console/tokens/import/apply", nil); p.status != http.StatusConflict {
		t.Fatalf("second apply: %d", p.status)
	}
}

type fakeSources struct{ ran []string }

func (s *fakeSources) ListIdentitySources(context.Context) ([]console.SourceStatus, error) {
	return []console.SourceStatus{{ID: "s1", Name: "corp <ldap>", Type: "ldap", LastRunAt: time.Unix(1700000000, 0), LastRunOK: true,
		LastRunSummary: "3 added"}}, nil
}
func (s *fakeSources) RunSync(_ context.Context, id string) error {
	s.ran = append(s.ran, id)
	return nil
}

func TestSourcesPage(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		f := newFixture(t, console.Options{})
		b := f.browser(t)
		b.signIn("root", rootPW)
		if p := b.get("/console/sources"); !contains(p, "No identity sources configured") {
			t.Fatalf("%s", p)
		}
	})
	t.Run("run now", func(t *testing.T) {
		src := &fakeSources{}
		f := newFixture(t, console.Options{Sources: src})
		b := f.browser(t)
		b.signIn("root", rootPW)
		if p := b.get("/console/sources"); !contains(p, "corp &lt;ldap&gt;") || !contains(p, "Run now") {
			t.Fatalf("%s", p)
		}
		if p := b.post("/console/sources/s1/run", nil); p.status != http.StatusSeeOther || len(src.ran) != 1 {
			t.Fatalf("run: %s %v", p, src.ran)
		}
		h := f.browser(t)
		h.signIn("help", helpPW)
		if p := h.get("/console/sources"); contains(p, "Run now") {
			t.Fatal("help desk sees Run now")
		}
		if p := h.post("/console/sources/s1/run", nil); p.status != http.StatusForbidden {
			t.Fatalf("help desk run: %d", p.status)
		}
	})
}
