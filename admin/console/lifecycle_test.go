package console_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tokend/admin/console"
	"tokend/appliance"
)

// ownBrowser is f.browser with a client of its own: f.browser sets its jar
// on the test server's one shared client, so two browsers would share it.
func (f *fixture) ownBrowser(t *testing.T) *browser {
	b := f.browser(t)
	c := *b.c
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar = jar
	b.c = &c
	return b
}

// TestConsoleTokenLifecycle drives the token page's actions as the help
// desk, the auditor and the super admin over TLS, CSRF included.
func TestConsoleTokenLifecycle(t *testing.T) {
	f := newFixture(t, console.Options{})
	alice := f.user(t, "alice", "Alice Example")
	if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000001"}); err != nil {
		t.Fatal(err)
	}
	help := f.ownBrowser(t)
	help.signIn("help", helpPW)
	audit := f.ownBrowser(t)
	audit.signIn("audit", auditPW)
	root := f.ownBrowser(t)
	root.signIn("root", rootPW)
	tok := "/console/tokens/100000000001"
	steps := []struct {
		name   string
		b      *browser
		method string
		path   string
		form   url.Values
		status int
		want   string // in the body, or the Location of a 303
	}{
		{name: "token page", b: help, method: "GET", path: tok, status: 200, want: "Replace with token"},
		{name: "auditor sees no actions", b: audit, method: "GET", path: tok, status: 200, want: "Holder"},
		{name: "replace without CSRF", b: help, method: "POST", path: tok + "/replace",
			form: url.Values{"new_serial": {"100000000002"}, "csrf": {"forged"}}, status: 403},
		{name: "auditor may not replace", b: audit, method: "POST", path: tok + "/replace",
			form: url.Values{"new_serial": {"100000000002"}}, status: 403},
		{name: "replace", b: help, method: "POST", path: tok + "/replace", form: url.Values{"new_serial": {"100000000002"}},
			status: 303, want: "/console/users/" + alice.ID + "/tokens/100000000002/distribute"},
		{name: "pending replacement shown", b: help, method: "GET", path: tok, status: 200, want: "Being replaced by"},
		{name: "the pair counts once on the user page", b: help, method: "GET", path: "/console/users/" + alice.ID, status: 200,
			want: "(1 of 3)"},
		{name: "second replacement refused", b: help, method: "POST", path: tok + "/replace",
			form: url.Values{"new_serial": {"100000000003"}}, status: 409},
		{name: "complete", b: help, method: "POST", path: tok + "/replace/complete", status: 303, want: tok},
		{name: "old token unassigned", b: help, method: "GET", path: tok, status: 200, want: "unassigned"},
		{name: "lost with emergency codes", b: help, method: "POST", path: "/console/tokens/100000000002/lost",
			form: url.Values{"emergency_codes": {"2"}, "emergency_hours": {"8"}}, status: 200, want: "Emergency codes for alice"},
		{name: "found", b: help, method: "POST", path: "/console/tokens/100000000002/found", status: 303},
		{name: "extend beyond the lifetime", b: help, method: "POST", path: "/console/tokens/100000000002/extend",
			form: url.Values{"expires_on": {"2199-01-01"}}, status: 400, want: "Please correct"},
		{name: "extend with no date", b: help, method: "POST", path: "/console/tokens/100000000002/extend", status: 400},
		{name: "help desk may not delete", b: help, method: "POST", path: "/console/tokens/100000000003/delete", status: 403},
		{name: "no delete for an assigned token", b: root, method: "GET", path: "/console/tokens/100000000002", status: 200, want: `id="lost"`},
		{name: "super admin deletes", b: root, method: "POST", path: "/console/tokens/100000000003/delete", status: 303, want: "/console/tokens"},
		{name: "deleted", b: root, method: "GET", path: "/console/tokens/100000000003", status: 404},
	}
	for _, st := range steps {
		var p page
		if st.method == "GET" {
			p = st.b.get(st.path)
		} else {
			p = st.b.post(st.path, st.form)
		}
		if p.status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.name, p.status, st.status, p.body)
		}
		if st.status == http.StatusSeeOther {
			if loc := p.header.Get("Location"); st.want != "" && loc != st.want {
				t.Fatalf("%s: Location %q, want %q", st.name, loc, st.want)
			}
		} else if !strings.Contains(p.body, st.want) {
			t.Fatalf("%s: page lacks %q: %s", st.name, st.want, p.body)
		}
		if st.name == "lost with emergency codes" {
			if codes := regexp.MustCompile(`<code class="big">[0-9]{10}</code>`).FindAllString(p.body, -1); len(codes) != 2 {
				t.Fatalf("emergency codes on the page: %v", codes)
			}
			if p.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("emergency codes cacheable: %q", p.header.Get("Cache-Control"))
			}
		}
	}
	if audit.get(tok).body == "" || strings.Contains(audit.get(tok).body, `action="/console/tokens/100000000001/lost"`) {
		t.Fatal("the auditor is offered lifecycle actions")
	}
	if tk, err := f.svc.GetToken(f.ctx, "100000000002"); err != nil || tk.Lost || tk.UserID != alice.ID || tk.Replaces != "" {
		t.Fatalf("token after the walk: %+v, %v", tk, err)
	}
}

func TestConsoleReports(t *testing.T) {
	f := newFixture(t, console.Options{})
	alice := f.user(t, "alice", "Alice Example")
	f.user(t, "+bob", "Bob")
	if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"100000000001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.MarkLost(f.ctx, "100000000001", nil); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	b.signIn("audit", auditPW)
	tests := []struct {
		name, path string
		status     int
		want       []string
	}{
		{name: "the list", path: "/console/reports", status: 200,
			want: []string{`href="/console/reports?name=lost-tokens"`, `href="/console/reports/expiring-tokens.csv"`}},
		{name: "lost tokens", path: "/console/reports?name=lost-tokens", status: 200,
			want: []string{`<a href="/console/tokens/100000000001">100000000001</a>`, "alice", `href="/console/reports/lost-tokens.csv"`}},
		{name: "expiring with days", path: "/console/reports?name=expiring-tokens&days=9", status: 200,
			want: []string{`value="9"`, "Nothing to report", `expiring-tokens.csv?days=9`}},
		{name: "unknown report", path: "/console/reports?name=nope", status: 404},
		{name: "lost tokens as CSV", path: "/console/reports/lost-tokens.csv", status: 200,
			want: []string{"serial,user_id,user_name,kind,at,detail\n100000000001," + alice.ID + ",alice,software,"}},
		{name: "formulas defused", path: "/console/reports/users-without-token.csv", status: 200, want: []string{",'+bob,"}},
		{name: "not a CSV name", path: "/console/reports/lost-tokens.xls", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := b.get(tc.path)
			if p.status != tc.status {
				t.Fatalf("status %d, want %d: %s", p.status, tc.status, p.body)
			}
			for _, w := range tc.want {
				if !strings.Contains(p.body, w) {
					t.Fatalf("lacks %q: %s", w, p.body)
				}
			}
		})
	}
	anon := f.ownBrowser(t)
	if p := anon.get("/console/reports/lost-tokens.csv"); p.status != http.StatusSeeOther || strings.Contains(p.body, "100000000001") {
		t.Fatalf("anonymous CSV: %s", p)
	}
	_ = appliance.ReportLostTokens
}
