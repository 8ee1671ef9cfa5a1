package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"tokend/appliance"
)

// tlsClient talks to the admin API over a real TLS listener on 127.0.0.1.
type tlsClient struct {
	t  *testing.T
	e  *env
	ts *httptest.Server
}

func (c tlsClient) do(role, method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = jsonBody(c.t, body)
	}
	r, err := http.NewRequestWithContext(c.t.Context(), method, c.ts.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+c.e.tok[role])
	resp, err := c.ts.Client().Do(r)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// lastAudit reads the newest audit record of an action over the API, as
// the super admin whose factor it concerns would.
func (c tlsClient) lastAudit(action string) AuditRecordDTO {
	c.t.Helper()
	st, b := c.do(appliance.RoleSuperAdmin, "GET", "/api/v1/audit?limit=1000&action="+url.QueryEscape(action), nil)
	var page AuditPageDTO
	if st != http.StatusOK || json.Unmarshal(b, &page) != nil || len(page.Items) == 0 {
		c.t.Fatalf("audit for %s: %d %s", action, st, b)
	}
	return page.Items[len(page.Items)-1]
}

// TestAdminSecondFactorTakeoverRefused plays the help desk's takeover of a
// super admin's console second factor through the admin API over TLS: every
// step is 403 admin_second_factor and audited naming the admin; a token that
// is nobody's factor stays the help desk's to manage; the super admin may do
// each step, audited naming the admin.
func TestAdminSecondFactorTakeoverRefused(t *testing.T) {
	type step struct {
		method string
		path   func(f fob) string
		body   func(f fob) any
	}
	tokenPath := func(suffix string) func(f fob) string {
		return func(f fob) string { return "/api/v1/tokens/" + f.serial + suffix }
	}
	userPath := func(suffix string) func(f fob) string {
		return func(f fob) string { return "/api/v1/users/" + f.userID + suffix }
	}
	// the profile e.provision creates for each token's holder
	profileOf := map[string]string{"160000000000": "p-root", "160000000001": "p-carol"}
	distribute := step{"POST", tokenPath("/distribution"), func(f fob) any {
		return map[string]string{"profile": profileOf[f.serial]}
	}}
	disable := step{"POST", tokenPath("/disable"), nil}
	unassign := step{"DELETE", func(f fob) string { return "/api/v1/users/" + f.userID + "/tokens/" + f.serial }, nil}
	issueEA := step{"POST", userPath("/emergency-access"), func(fob) any { return map[string]any{"kind": "fixed", "lifetime": "1h"} }}
	tests := []struct {
		name   string
		action string
		prep   *step // done by the super admin on both tokens first
		do     step
	}{
		{"distribute", "token.distribute", nil, distribute},
		{"void distribution", "token.distribution.void", &distribute, step{"DELETE", tokenPath("/distribution"), nil}},
		{"disable", "token.disable", nil, disable},
		{"enable", "token.enable", &disable, step{"POST", tokenPath("/enable"), nil}},
		{"unassign", "token.unassign", nil, unassign},
		{"assign", "token.assign", &unassign, step{"POST", userPath("/tokens"), func(f fob) any {
			return map[string][]string{"serials": {f.serial}}
		}}},
		{"pin reset", "token.pin.require_new", nil, step{"POST", tokenPath("/pin"), func(fob) any { return map[string]bool{"require_new": true} }}},
		{"resync", "token.resync", nil, step{"POST", tokenPath("/resync"), func(f fob) any {
			return map[string]string{"first": f.code(3), "second": f.code(4)}
		}}},
		{"unlock", "user.unlock", nil, step{"POST", userPath("/unlock"), nil}},
		{"emergency access", "user.emergency_access.issue", nil, issueEA},
		{"revoke emergency access", "user.emergency_access.revoke", &issueEA, step{"DELETE", userPath("/emergency-access"), nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			factor := e.provision("root", "160000000000", "none")
			other := e.provision("carol", "160000000001", "none")
			super := appliance.WithActor(t.Context(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
			if _, _, err := e.svc.CreateAdmin(super, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin,
				Password: "correct horse battery", SecondFactorSerial: factor.serial}); err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewTLSServer(e.srv)
			t.Cleanup(ts.Close)
			c := tlsClient{t: t, e: e, ts: ts}
			call := func(role string, s step, f fob) (int, []byte) {
				var body any
				if s.body != nil {
					body = s.body(f)
				}
				return c.do(role, s.method, s.path(f), body)
			}
			if tc.prep != nil {
				for _, f := range []fob{factor, other} {
					if st, b := call(appliance.RoleSuperAdmin, *tc.prep, f); st >= 300 {
						t.Fatalf("prep: %d %s", st, b)
					}
				}
			}

			// The help desk sees why it will be refused.
			st, b := c.do(appliance.RoleHelpdesk, "GET", "/api/v1/tokens/"+factor.serial, nil)
			var tok map[string]any
			if st != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok["admin_second_factor"] != true {
				t.Errorf("GET token as help desk: %d %s, want admin_second_factor: true", st, b)
			}

			st, b = call(appliance.RoleHelpdesk, tc.do, factor)
			var p Problem
			if st != http.StatusForbidden || json.Unmarshal(b, &p) != nil || p.Code != CodeAdminSecondFactor || p.Detail == "" {
				t.Fatalf("help desk on the admin's factor: %d %s, want 403 %s", st, b, CodeAdminSecondFactor)
			}
			if bytes.Contains(b, []byte("root")) {
				t.Errorf("the refusal names the admin to the help desk: %s", b)
			}
			if r := c.lastAudit(tc.action); r.Outcome != appliance.OutcomeFailure || r.Reason != "admin_second_factor:root" ||
				r.Actor.Role != appliance.RoleHelpdesk {
				t.Errorf("refusal audit %+v, want a help desk failure naming admin root", r)
			}

			if st, b := call(appliance.RoleHelpdesk, tc.do, other); st >= 300 {
				t.Fatalf("help desk on a token that is nobody's factor: %d %s", st, b)
			}
			if r := c.lastAudit(tc.action); r.Outcome != appliance.OutcomeSuccess || r.Reason != "" {
				t.Errorf("ordinary audit %+v", r)
			}

			if st, b := call(appliance.RoleSuperAdmin, tc.do, factor); st >= 300 {
				t.Fatalf("super admin on the admin's factor: %d %s", st, b)
			}
			if r := c.lastAudit(tc.action); r.Outcome != appliance.OutcomeSuccess || r.Reason != "admin_second_factor:root" ||
				r.Actor.Role != appliance.RoleSuperAdmin {
				t.Errorf("super admin audit %+v, want a success naming admin root", r)
			}
		})
	}
}

// TestAdminFactorQRCodeRefused: the QR code of an activation code a super
// admin re-issued for an admin's second factor carries the code; the help
// desk is refused it (and the refusal is audited), while it still gets the
// QR code of other tokens and the super admin gets this one.
func TestAdminFactorQRCodeRefused(t *testing.T) {
	e := newEnv(t)
	factor := e.provision("root", "160000000000", "none")
	other := e.provision("carol", "160000000001", "none")
	super := appliance.WithActor(t.Context(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if _, _, err := e.svc.CreateAdmin(super, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin,
		Password: "correct horse battery", SecondFactorSerial: factor.serial}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(e.srv)
	t.Cleanup(ts.Close)
	c := tlsClient{t: t, e: e, ts: ts}
	for serial, profile := range map[string]string{factor.serial: "p-root", other.serial: "p-carol"} {
		if st, b := c.do(appliance.RoleSuperAdmin, "POST", "/api/v1/tokens/"+serial+"/distribution", map[string]string{"profile": profile}); st != http.StatusCreated {
			t.Fatalf("re-issue %s: %d %s", serial, st, b)
		}
	}
	qr := func(f fob) string { return "/api/v1/tokens/" + f.serial + "/distribution/qr.png" }
	tests := []struct {
		name     string
		role     string
		tok      fob
		status   int
		wantCode string
	}{
		{"help desk, admin's factor", appliance.RoleHelpdesk, factor, http.StatusForbidden, CodeAdminSecondFactor},
		{"help desk, other token", appliance.RoleHelpdesk, other, http.StatusOK, ""},
		{"super admin, admin's factor", appliance.RoleSuperAdmin, factor, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, b := c.do(tc.role, "GET", qr(tc.tok), nil)
			if st != tc.status {
				t.Fatalf("%d %.200s, want %d", st, b, tc.status)
			}
			if tc.wantCode != "" {
				var p Problem
				if json.Unmarshal(b, &p) != nil || p.Code != tc.wantCode {
					t.Fatalf("problem %s, want %s", b, tc.wantCode)
				}
				return
			}
			if !bytes.HasPrefix(b, []byte("\x89PNG")) {
				t.Fatalf("not a PNG: %.40q", b)
			}
		})
	}
	if r := c.lastAudit("token.distribution.qr"); r.Outcome != appliance.OutcomeFailure || r.Reason != "admin_second_factor:root" ||
		r.Actor.Role != appliance.RoleHelpdesk || r.Serial != factor.serial {
		t.Errorf("refusal audit %+v, want a help desk failure naming admin root", r)
	}
}
