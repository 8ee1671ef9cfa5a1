package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

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
	if strings.Contains(w.Body.String(), "argon2") || strings.Contains(w.Body.String(), "password") {
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
