package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// TestUnlockAdmin: an admin account locked by failed console sign-ins
// refuses its right password until a super admin unlocks it through
// POST /admins/{name}/unlock; the help desk and the auditor may not.
func TestUnlockAdmin(t *testing.T) {
	e := newEnv(t)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "setup", Role: appliance.RoleSuperAdmin})
	const pw = "root password 123"
	if _, _, err := e.svc.CreateAdmin(ctx, appliance.NewAdmin{Name: "root", Role: appliance.RoleSuperAdmin, Password: pw}); err != nil {
		t.Fatal(err)
	}
	for range 5 { // the default console.max_failures
		if _, err := e.svc.AuthenticateAdmin(ctx, "root", "wrong password", ""); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.AuthenticateAdmin(ctx, "root", pw, ""); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("locked admin signed in: %v", err)
	}
	for _, role := range []string{appliance.RoleHelpdesk, appliance.RoleAuditor, appliance.RoleAgent} {
		wantProblem(t, e.do(req{method: "POST", path: "/api/v1/admins/root/unlock", role: role}), http.StatusForbidden, CodeForbidden)
	}
	wantProblem(t, e.call("POST", "/api/v1/admins/nobody/unlock", nil), http.StatusNotFound, CodeNotFound)
	w := e.call("POST", "/api/v1/admins/ROOT/unlock", nil)
	var got AdminDTO
	want(t, w, http.StatusOK, &got)
	if got.Name != "root" || got.Locked || got.LockedUntil != nil || got.Failures != 0 {
		t.Fatalf("after unlock %+v", got)
	}
	if strings.Contains(w.Body.String(), "argon2") || strings.Contains(w.Body.String(), `"password`) {
		t.Fatalf("the answer shows the password hash: %s", w.Body.String())
	}
	if _, err := e.svc.AuthenticateAdmin(ctx, "root", pw, ""); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// TestBusyProblem: ErrBusy (the argon2id pool is full: an agent's PIN
// check could not start in time) is a 429 with Retry-After, not a 500.
func TestBusyProblem(t *testing.T) {
	e := newEnv(t)
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodPost, "/api/v1/authenticate", http.NoBody)
	e.srv.WriteError(c, fmt.Errorf("pin check: %w", appliance.ErrBusy))
	wantProblem(t, w, http.StatusTooManyRequests, CodeBusy)
	if got := w.Header().Get("Retry-After"); got != "2" {
		t.Fatalf("Retry-After %q, want 2", got)
	}
}

// TestAdminAccountsAPI drives the admin-account routes over real TLS as a
// superadmin API token: create (a generated password answered once and
// one-time), list, reset, disable/enable, second factor, delete, with the
// refusals as stable problem codes, and every change audited.
func TestAdminAccountsAPI(t *testing.T) {
	e := newEnv(t)
	own := e.provision("root", "180000000000", "none")
	bobs := e.provision("bob", "180000000001", "none")
	ts := httptest.NewTLSServer(e.srv)
	t.Cleanup(ts.Close)
	c := tlsClient{t: t, e: e, ts: ts}
	su := appliance.RoleSuperAdmin
	decode := func(b []byte, out any) {
		t.Helper()
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
	problem := func(st int, b []byte, status int, code string) {
		t.Helper()
		var p Problem
		decode(b, &p)
		if st != status || p.Code != code {
			t.Fatalf("got %d %s, want %d %s", st, b, status, code)
		}
	}

	st, b := c.do(su, "POST", "/api/v1/admins", map[string]string{"name": "jane", "role": "helpdesk"})
	var jane NewAdminDTO
	decode(b, &jane)
	if st != http.StatusCreated || len(jane.Password) != 23 || !jane.MustChangePassword || jane.Role != "helpdesk" {
		t.Fatalf("create jane: %d %s", st, b)
	}
	if _, err := e.svc.AuthenticateAdmin(t.Context(), "jane", jane.Password, ""); err != nil {
		t.Fatalf("the generated password does not sign in: %v", err)
	}
	st, b = c.do(su, "POST", "/api/v1/admins", map[string]string{"name": "JANE", "role": "auditor"})
	problem(st, b, http.StatusConflict, CodeExists)
	st, b = c.do(su, "POST", "/api/v1/admins", map[string]string{"name": "carl", "role": "superadmin",
		"password": "carl password 1", "second_factor_serial": bobs.serial})
	problem(st, b, http.StatusConflict, CodeSecondFactorRefused)
	st, b = c.do(su, "POST", "/api/v1/admins", map[string]any{"name": "root", "role": "superadmin",
		"password": "root password 1", "second_factor_serial": own.serial, "extra": 1})
	problem(st, b, http.StatusBadRequest, CodeUnknownField)
	st, b = c.do(su, "POST", "/api/v1/admins", map[string]string{"name": "root", "role": "superadmin",
		"password": "root password 1", "second_factor_serial": own.serial})
	if st != http.StatusCreated || bytes.Contains(b, []byte(`"password"`)) || !bytes.Contains(b, []byte(own.serial)) {
		t.Fatalf("create root with a chosen password: %d %s", st, b)
	}

	st, b = c.do(su, "GET", "/api/v1/admins", nil)
	var list List[AdminDTO]
	decode(b, &list)
	if st != http.StatusOK || len(list.Items) != 2 || list.Items[0].Name != "jane" || list.Items[1].Name != "root" ||
		bytes.Contains(b, []byte("argon2")) || list.Items[0].LastSignInAt == nil || list.Items[1].LastSignInAt != nil {
		t.Fatalf("list: %d %s", st, b)
	}
	st, b = c.do(su, "GET", "/api/v1/admins?name=jane", nil)
	if st != http.StatusBadRequest {
		t.Fatalf("unknown query parameter: %d %s", st, b)
	}

	// Reset: no body generates a one-time password; a chosen one is not.
	st, b = c.do(su, "POST", "/api/v1/admins/jane/password", nil)
	var reset NewAdminDTO
	decode(b, &reset)
	if st != http.StatusOK || reset.Password == "" || reset.Password == jane.Password || !reset.MustChangePassword {
		t.Fatalf("reset: %d %s", st, b)
	}
	st, b = c.do(su, "POST", "/api/v1/admins/jane/password", map[string]string{"password": "short"})
	problem(st, b, http.StatusBadRequest, CodeInvalidRequest)
	st, b = c.do(su, "POST", "/api/v1/admins/jane/password", map[string]string{"password": "jane chosen password"})
	if st != http.StatusOK || bytes.Contains(b, []byte(`"password"`)) || bytes.Contains(b, []byte(`"must_change_password":true`)) {
		t.Fatalf("chosen password: %d %s", st, b)
	}
	st, b = c.do(su, "POST", "/api/v1/admins/nobody/password", nil)
	problem(st, b, http.StatusNotFound, CodeNotFound)

	// The last enabled superadmin stays.
	st, b = c.do(su, "POST", "/api/v1/admins/root/disable", nil)
	problem(st, b, http.StatusConflict, CodeLastSuperAdmin)
	st, b = c.do(su, "DELETE", "/api/v1/admins/root", nil)
	problem(st, b, http.StatusConflict, CodeLastSuperAdmin)

	st, b = c.do(su, "POST", "/api/v1/admins/jane/disable", nil)
	if st != http.StatusOK || !bytes.Contains(b, []byte(`"disabled":true`)) {
		t.Fatalf("disable: %d %s", st, b)
	}
	if _, err := e.svc.AuthenticateAdmin(t.Context(), "jane", "jane chosen password", ""); err == nil {
		t.Fatal("a disabled admin signed in")
	}
	st, b = c.do(su, "POST", "/api/v1/admins/jane/enable", nil)
	if st != http.StatusOK || !bytes.Contains(b, []byte(`"disabled":false`)) {
		t.Fatalf("enable: %d %s", st, b)
	}
	if _, err := e.svc.AuthenticateAdmin(t.Context(), "jane", "jane chosen password", ""); err != nil {
		t.Fatalf("enabled admin: %v", err)
	}

	st, b = c.do(su, "PUT", "/api/v1/admins/jane/second-factor", map[string]string{"serial": bobs.serial})
	problem(st, b, http.StatusConflict, CodeSecondFactorRefused)
	st, b = c.do(su, "PUT", "/api/v1/admins/root/second-factor", map[string]string{"serial": ""})
	if st != http.StatusOK || bytes.Contains(b, []byte("second_factor_serial")) {
		t.Fatalf("remove the second factor: %d %s", st, b)
	}

	st, b = c.do(su, "DELETE", "/api/v1/admins/jane", nil)
	if st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, b)
	}
	st, b = c.do(su, "GET", "/api/v1/admins/jane", nil)
	problem(st, b, http.StatusNotFound, CodeNotFound)

	var got []string
	for _, action := range []string{"admin.create", "admin.password", "admin.disable", "admin.enable", "admin.second_factor", "admin.delete"} {
		st, b := c.do(su, "GET", "/api/v1/audit?limit=1000&action="+action, nil)
		var page AuditPageDTO
		decode(b, &page)
		if st != http.StatusOK {
			t.Fatalf("audit: %d %s", st, b)
		}
		for _, r := range page.Items {
			got = append(got, r.Action+"/"+r.Target+"/"+r.Outcome)
			for _, pw := range []string{jane.Password, reset.Password, "jane chosen password", "root password 1"} {
				if strings.Contains(r.Detail+r.Reason+r.Target, pw) {
					t.Fatal("a password is in the audit trail")
				}
			}
		}
	}
	want := []string{"admin.create/jane/success", "admin.create/JANE/failure", "admin.create/carl/failure", "admin.create/root/success",
		"admin.password/jane/success", "admin.password/jane/success", "admin.password/nobody/failure",
		"admin.disable/root/failure", "admin.disable/jane/success", "admin.enable/jane/success",
		"admin.second_factor/jane/failure", "admin.second_factor/root/success",
		"admin.delete/root/failure", "admin.delete/jane/success"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}
