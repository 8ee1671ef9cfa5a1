package admin

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/admin/internal/reportcsv"
	"tokend/appliance"
)

// tlsAPI is the admin API behind a real TLS listener on 127.0.0.1.
type tlsAPI struct {
	t   *testing.T
	e   *env
	srv *httptest.Server
}

func newTLSAPI(t *testing.T) *tlsAPI {
	t.Helper()
	e := newEnv(t)
	srv := httptest.NewTLSServer(e.srv)
	t.Cleanup(srv.Close)
	return &tlsAPI{t: t, e: e, srv: srv}
}

type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

func (a *tlsAPI) do(role, method, path, body string) apiResponse {
	a.t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequestWithContext(a.t.Context(), method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+a.e.tok[role])
	resp, err := a.srv.Client().Do(r)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return apiResponse{resp.StatusCode, resp.Header, b}
}

// lifecycleSetup: alice holds 400000000000 (provisioned by CT-KIP under
// "android"); 400000000001-3 are spare software tokens, 400000000009 a
// hardware token assigned to her.
func lifecycleSetup(t *testing.T, a *tlsAPI) string {
	t.Helper()
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "setup", Name: "setup", Role: appliance.RoleSuperAdmin})
	svc := a.e.svc
	for _, body := range []string{"serial\n400000000000\n400000000001\n400000000002\n400000000003\n",
		"serial,kind\n400000000009,hardware\n"} {
		if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "android", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone, MaxLifetime: 365 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AssignTokens(ctx, u.ID, []string{"400000000000", "400000000009"}); err != nil {
		t.Fatal(err)
	}
	d, err := svc.Distribute(ctx, "400000000000", "android")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), bytes.Repeat([]byte{1}, 16)); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func TestLifecycleAPI(t *testing.T) {
	a := newTLSAPI(t)
	userID := lifecycleSetup(t, a)
	soon := epoch.Add(30 * 24 * time.Hour).Format(time.RFC3339)
	far := epoch.Add(400 * 24 * time.Hour).Format(time.RFC3339)
	S, H, A := appliance.RoleSuperAdmin, appliance.RoleHelpdesk, appliance.RoleAuditor
	steps := []struct {
		name, role, method, path, body string
		status                         int
		code                           string // problem code, or ""
		check                          func(t *testing.T, b []byte)
	}{
		{name: "replace with a profile", role: H, method: "POST", path: "/api/v1/tokens/400000000000/replace",
			body: `{"serial":"400000000001","profile":"android"}`, status: 201, check: func(t *testing.T, b []byte) {
				var r ReplacementDTO
				mustJSON(t, b, &r)
				if r.Distribution == nil || len(r.Distribution.ActivationCode) != 12 || r.New.Serial != "400000000001" ||
					r.Old.ReplacedBy == nil || *r.Old.ReplacedBy != "400000000001" || r.New.Replaces == nil || r.Old.ReplacementEndsAt == nil {
					t.Fatalf("replacement %s", b)
				}
			}},
		{name: "old token shows the pending replacement", role: A, method: "GET", path: "/api/v1/tokens/400000000000", status: 200,
			check: func(t *testing.T, b []byte) {
				var tok TokenDTO
				mustJSON(t, b, &tok)
				if tok.ReplacedBy == nil || *tok.ReplacedBy != "400000000001" || tok.State != "enabled" || tok.UserID == nil {
					t.Fatalf("old token %s", b)
				}
			}},
		{name: "new token shows what it replaces", role: A, method: "GET", path: "/api/v1/tokens/400000000001", status: 200,
			check: func(t *testing.T, b []byte) {
				var tok TokenDTO
				mustJSON(t, b, &tok)
				if tok.Replaces == nil || *tok.Replaces != "400000000000" || tok.UserID == nil || *tok.UserID != userID {
					t.Fatalf("new token %s", b)
				}
			}},
		{name: "a second replacement conflicts", role: S, method: "POST", path: "/api/v1/tokens/400000000000/replace",
			body: `{"serial":"400000000002"}`, status: 409, code: CodeConflict},
		{name: "replacing with an assigned token conflicts", role: S, method: "POST", path: "/api/v1/tokens/400000000009/replace",
			body: `{"serial":"400000000001"}`, status: 409, code: CodeConflict},
		{name: "replace with an unknown field", role: S, method: "POST", path: "/api/v1/tokens/400000000009/replace",
			body: `{"serial":"400000000002","grace":"1h"}`, status: 400, code: CodeUnknownField},
		{name: "replace with a password for a ctkip profile", role: S, method: "POST", path: "/api/v1/tokens/400000000009/replace",
			body: `{"serial":"400000000002","profile":"android","password":"x"}`, status: 400, code: CodeInvalidRequest},
		{name: "auditor may not replace", role: A, method: "POST", path: "/api/v1/tokens/400000000009/replace",
			body: `{"serial":"400000000002"}`, status: 403, code: CodeForbidden},
		{name: "complete the replacement", role: H, method: "POST", path: "/api/v1/tokens/400000000000/replace/complete", status: 204},
		{name: "old token retired", role: A, method: "GET", path: "/api/v1/tokens/400000000000", status: 200,
			check: func(t *testing.T, b []byte) {
				var tok TokenDTO
				mustJSON(t, b, &tok)
				if tok.UserID != nil || tok.State != "disabled" || tok.ReplacedBy != nil {
					t.Fatalf("retired token %s", b)
				}
			}},
		{name: "nothing left to complete", role: H, method: "POST", path: "/api/v1/tokens/400000000000/replace/complete", status: 404, code: CodeNotFound},
		{name: "replace the hardware token, then cancel", role: H, method: "POST", path: "/api/v1/tokens/400000000009/replace",
			body: `{"serial":"400000000002"}`, status: 201},
		{name: "cancel", role: H, method: "DELETE", path: "/api/v1/tokens/400000000009/replace", status: 204},
		{name: "lost with emergency access", role: H, method: "POST", path: "/api/v1/tokens/400000000001/lost",
			body: `{"emergency_access":{"kind":"onetime","count":3,"lifetime":"8h"}}`, status: 200, check: func(t *testing.T, b []byte) {
				var l LostDTO
				mustJSON(t, b, &l)
				if l.Token.State != "lost" || l.Token.LostAt == nil || l.EmergencyAccess == nil || len(l.EmergencyAccess.Codes) != 3 {
					t.Fatalf("lost %s", b)
				}
			}},
		{name: "lost twice", role: H, method: "POST", path: "/api/v1/tokens/400000000001/lost", status: 409, code: CodeConflict},
		{name: "enable a lost token", role: H, method: "POST", path: "/api/v1/tokens/400000000001/enable", status: 409, code: CodeInvalidState},
		{name: "lost with a bad emergency lifetime", role: H, method: "POST", path: "/api/v1/tokens/400000000009/lost",
			body: `{"emergency_access":{"kind":"fixed","lifetime":"999h"}}`, status: 400, code: CodeInvalidRequest},
		{name: "found", role: H, method: "POST", path: "/api/v1/tokens/400000000001/found", status: 200, check: func(t *testing.T, b []byte) {
			var tok TokenDTO
			mustJSON(t, b, &tok)
			if tok.State != "enabled" || tok.LostAt != nil {
				t.Fatalf("found %s", b)
			}
		}},
		{name: "found when not lost", role: H, method: "POST", path: "/api/v1/tokens/400000000001/found", status: 409, code: CodeInvalidState},
		{name: "extend to before the current expiry", role: H, method: "POST", path: "/api/v1/tokens/400000000001/extend",
			body: `{"expires_at":"` + soon + `"}`, status: 400, code: CodeInvalidRequest}, // the import's default is 5 years
		{name: "extend beyond the profile's lifetime", role: H, method: "POST", path: "/api/v1/tokens/400000000001/extend",
			body: `{"expires_at":"` + far + `"}`, status: 400, code: CodeInvalidRequest},
		{name: "extend with a malformed date", role: H, method: "POST", path: "/api/v1/tokens/400000000001/extend",
			body: `{"expires_at":"tomorrow"}`, status: 400, code: CodeInvalidRequest},
		{name: "extend a hardware token", role: H, method: "POST", path: "/api/v1/tokens/400000000009/extend",
			body: `{"expires_at":"` + far + `"}`, status: 409, code: CodeInvalidState},
		{name: "delete an assigned token", role: S, method: "DELETE", path: "/api/v1/tokens/400000000001", status: 409, code: CodeInvalidState},
		{name: "help desk may not delete", role: H, method: "DELETE", path: "/api/v1/tokens/400000000003", status: 403, code: CodeForbidden},
		{name: "delete an unassigned token", role: S, method: "DELETE", path: "/api/v1/tokens/400000000003", status: 204},
		{name: "deleted token is gone", role: S, method: "GET", path: "/api/v1/tokens/400000000003", status: 404, code: CodeNotFound},
		{name: "tombstone in the audit trail", role: A, method: "GET", path: "/api/v1/audit?action=token.delete", status: 200,
			check: func(t *testing.T, b []byte) {
				if !strings.Contains(string(b), `"serial":"400000000003"`) || !strings.Contains(string(b), `"name":"test-superadmin"`) {
					t.Fatalf("no tombstone: %s", b)
				}
			}},
	}
	for _, st := range steps {
		r := a.do(st.role, st.method, st.path, st.body)
		if r.status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.status, st.status, r.body)
		}
		if st.code != "" {
			var p Problem
			mustJSON(t, r.body, &p)
			if p.Code != st.code || r.header.Get("Content-Type") != mediaProblem {
				t.Fatalf("%s: problem %s, want code %s", st.name, r.body, st.code)
			}
		}
		if st.check != nil {
			st.check(t, r.body)
		}
	}
	// Extending within the lifetime: a token whose expiry is near.
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "setup", Name: "setup", Role: appliance.RoleSuperAdmin})
	if _, err := a.e.svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV,
		Body: strings.NewReader("serial,kind,digits,interval,expires_at\n400000000005,software,8,60," + soon + "\n")}); err != nil {
		t.Fatal(err)
	}
	later := epoch.Add(200 * 24 * time.Hour).UTC().Format(time.RFC3339)
	r := a.do(H, "POST", "/api/v1/tokens/400000000005/extend", `{"expires_at":"`+later+`"}`)
	var tok TokenDTO
	if r.status != 200 {
		t.Fatalf("extend: %d %s", r.status, r.body)
	}
	mustJSON(t, r.body, &tok)
	if tok.ExpiresAt == nil || tok.ExpiresAt.UTC().Format(time.RFC3339) != later {
		t.Fatalf("extended token %s", r.body)
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func TestReportsAPI(t *testing.T) {
	a := newTLSAPI(t)
	lifecycleSetup(t, a)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "setup", Name: "setup", Role: appliance.RoleSuperAdmin})
	if _, err := a.e.svc.MarkLost(ctx, "400000000000", nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"=cmd", "bob"} {
		if _, err := a.e.svc.CreateUser(ctx, appliance.NewUser{UserName: n}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, path string
		status     int
		code       string
		want       string // a substring of the body
	}{
		{name: "lost tokens as JSON", path: "/api/v1/reports/lost-tokens", status: 200, want: `"serial":"400000000000","user_id":`},
		{name: "unknown report", path: "/api/v1/reports/everything", status: 404, code: CodeNotFound},
		{name: "unknown query parameter", path: "/api/v1/reports/lost-tokens?since=3", status: 400, code: CodeInvalidRequest},
		{name: "days on a report without", path: "/api/v1/reports/lost-tokens?days=3", status: 400, code: CodeInvalidRequest},
		{name: "days not a number", path: "/api/v1/reports/expiring-tokens?days=soon", status: 400, code: CodeInvalidRequest},
		{name: "bad format", path: "/api/v1/reports/lost-tokens?format=xlsx", status: 400, code: CodeInvalidRequest},
		{name: "bad cursor", path: "/api/v1/reports/lost-tokens?cursor=%21", status: 400, code: CodeInvalidRequest},
		{name: "days given twice", path: "/api/v1/reports/expiring-tokens?days=3&days=4", status: 400, code: CodeInvalidRequest},
		{name: "users without a token", path: "/api/v1/reports/users-without-token?limit=1", status: 200, want: `"user_name":"=cmd"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(appliance.RoleAuditor, "GET", tc.path, "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				var p Problem
				mustJSON(t, r.body, &p)
				if p.Code != tc.code {
					t.Fatalf("problem %s, want %s", r.body, tc.code)
				}
			}
			if !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("body lacks %s: %s", tc.want, r.body)
			}
		})
	}
	t.Run("CSV pages through everything and defuses formulas", func(t *testing.T) {
		want := []string{"'=cmd", "bob"}
		for i := range reportcsv.PageSize + 10 { // more than one page
			n := "u" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i)
			if _, err := a.e.svc.CreateUser(ctx, appliance.NewUser{UserName: n}); err != nil {
				t.Fatal(err)
			}
			want = append(want, n)
		}
		r := a.do(appliance.RoleHelpdesk, "GET", "/api/v1/reports/users-without-token?format=csv", "")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("csv: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, row := range rows[1:] {
			names = append(names, row[2])
		}
		if diff := cmp.Diff(want, names); diff != "" || strings.Join(rows[0], ",") != "serial,user_id,user_name,kind,at,detail" {
			t.Fatalf("csv rows (-want +got):\n%s\n%s", diff, r.body)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
