package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
)

// allAudit returns the whole audit trail, oldest first.
func (e *env) allAudit() []appliance.AuditRecord {
	e.t.Helper()
	var out []appliance.AuditRecord
	after := ""
	for {
		page, err := e.svc.ListAudit(context.Background(), appliance.AuditQuery{After: after, Limit: 1000})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		after = page.NextCursor
	}
}

// TestRefusalsAreAudited: one rule for every refused admin action, whatever
// refused it: exactly one failure record per refusal, naming the reason,
// without the secret or the unbounded text the request carried.
func TestRefusalsAreAudited(t *testing.T) {
	e := newEnv(t)
	want(t, e.call("POST", "/api/v1/users", map[string]string{"user_name": "taken"}), http.StatusCreated, nil)
	long := strings.Repeat("9", 300)
	tests := []struct {
		name       string
		r          req
		status     int
		action     string
		reason     string
		serial     string // the record's serial, if any
		notInAudit string
	}{
		{name: "400 body that does not parse", r: req{method: "POST", path: "/api/v1/users", role: appliance.RoleSuperAdmin,
			body: strings.NewReader(`{"user_name":`)}, status: 400, action: "api.refused", reason: CodeMalformedJSON},
		{name: "400 unknown field named like a secret", r: req{method: "POST", path: "/api/v1/users", role: appliance.RoleSuperAdmin,
			body: strings.NewReader(`{"tkd_SecretLookingFieldName":"hunter2"}`)}, status: 400, action: "api.refused", reason: CodeUnknownField,
			notInAudit: "SecretLooking"},
		{name: "400 checked before the Service's transaction", r: req{method: "POST", path: "/api/v1/api-tokens", role: appliance.RoleSuperAdmin,
			body: strings.NewReader(`{"name":"","role":"root"}`)}, status: 400, action: "api.refused", reason: CodeInvalidRequest},
		{name: "403 role", r: req{method: "POST", path: "/api/v1/profiles", role: appliance.RoleHelpdesk,
			body: strings.NewReader(`{}`)}, status: 403, action: "api.refused", reason: CodeForbidden},
		{name: "404 unknown token", r: req{method: "POST", path: "/api/v1/tokens/999999999999/enable", role: appliance.RoleSuperAdmin},
			status: 404, action: "token.enable", reason: "not_found", serial: "999999999999"},
		{name: "400 malformed serial", r: req{method: "POST", path: "/api/v1/tokens/" + long + "/disable", role: appliance.RoleSuperAdmin},
			status: 400, action: "api.refused", reason: CodeInvalidRequest, notInAudit: long[:65]},
		{name: "404 unknown API token with a long id", r: req{method: "DELETE", path: "/api/v1/api-tokens/" + long, role: appliance.RoleSuperAdmin},
			status: 404, action: "api_token.revoke", reason: "not_found", notInAudit: long[:257]},
		{name: "409 user name taken", r: req{method: "POST", path: "/api/v1/users", role: appliance.RoleSuperAdmin,
			body: strings.NewReader(`{"user_name":"taken"}`)}, status: 409, action: "user.create", reason: "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.allAudit())
			if w := e.do(tt.r); w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body.String())
			}
			recs := e.allAudit()[before:]
			if len(recs) != 1 {
				t.Fatalf("%d audit records for one refusal, want 1: %+v", len(recs), recs)
			}
			r := recs[0]
			if r.Outcome != appliance.OutcomeFailure || r.Action != tt.action || r.Reason != tt.reason || r.Actor.Role != tt.r.role {
				t.Errorf("record %+v, want %s failure %s by %s", r, tt.action, tt.reason, tt.r.role)
			}
			if tt.serial != "" && r.Serial != tt.serial {
				t.Errorf("serial %q, want %q", r.Serial, tt.serial)
			}
			for _, field := range []string{r.Target, r.Serial, r.UserID, r.Detail} {
				if len(field) > 512 {
					t.Errorf("a field of %d bytes: %.80q…", len(field), field)
				}
				if tt.notInAudit != "" && strings.Contains(field, tt.notInAudit) {
					t.Errorf("the record carries the request's text: %q", field)
				}
			}
		})
	}
}

// TestRefusalFloodIsBounded: hundreds of bad requests of one kind by one
// actor within a minute add one record; the next one a minute later says
// how many were left out.
func TestRefusalFloodIsBounded(t *testing.T) {
	e := newEnv(t)
	before := len(e.allAudit())
	for range 300 {
		if w := e.do(req{method: "POST", path: "/api/v1/users", role: appliance.RoleSuperAdmin, body: strings.NewReader(`{`)}); w.Code != 400 {
			t.Fatalf("status %d", w.Code)
		}
		if w := e.call("POST", "/api/v1/tokens/123456789012/enable", nil); w.Code != 404 {
			t.Fatalf("status %d", w.Code)
		}
	}
	if n := len(e.allAudit()) - before; n != 2 {
		t.Errorf("600 refusals of two kinds in a minute: %d records, want 2", n)
	}
	e.clock.Advance(time.Minute)
	if w := e.do(req{method: "POST", path: "/api/v1/users", role: appliance.RoleSuperAdmin, body: strings.NewReader(`{`)}); w.Code != 400 {
		t.Fatalf("status %d", w.Code)
	}
	recs := e.allAudit()
	if n := len(recs) - before; n != 3 {
		t.Fatalf("a minute later: %d records, want 3", n)
	}
	if last := recs[len(recs)-1]; !strings.Contains(last.Detail, "299 earlier refusals") {
		t.Errorf("detail %q does not count the refusals left out", last.Detail)
	}
	// Another actor is not silenced by the first one's flood.
	if w := e.do(req{method: "POST", path: "/api/v1/users", role: appliance.RoleHelpdesk, body: strings.NewReader(`{`)}); w.Code != 400 {
		t.Fatalf("status %d", w.Code)
	}
	if n := len(e.allAudit()) - before; n != 4 {
		t.Errorf("another actor's refusal: %d records, want 4", n)
	}
}
