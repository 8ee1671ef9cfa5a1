package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

func (e *env) asToken(method, path, token string) *httptest.ResponseRecorder {
	e.t.Helper()
	e.tok["custom"] = token
	return e.do(req{method: method, path: path, role: "custom"})
}

// TestAPITokenExpiryOverAPI: a token created with expires_at works until
// then and is refused afterwards with exactly the answer a revoked token
// gets; the list shows its expiry and last use.
func TestAPITokenExpiryOverAPI(t *testing.T) {
	e := newEnv(t)
	expires := epoch.Add(time.Hour)
	var created NewAPITokenDTO
	want(t, e.call("POST", "/api/v1/api-tokens", map[string]string{"name": "ci", "role": "auditor",
		"expires_at": expires.Format(time.RFC3339)}), http.StatusCreated, &created)
	if created.ExpiresAt == nil || !created.ExpiresAt.Equal(expires) || created.LastUsedAt != nil {
		t.Fatalf("created %+v", created.APITokenDTO)
	}
	var revoked NewAPITokenDTO
	want(t, e.call("POST", "/api/v1/api-tokens", map[string]string{"name": "gone", "role": "auditor"}), http.StatusCreated, &revoked)
	want(t, e.call("DELETE", "/api/v1/api-tokens/"+revoked.ID, nil), http.StatusNoContent, nil)

	e.clock.Advance(time.Minute)
	want(t, e.asToken("GET", "/api/v1/users", created.Token), http.StatusOK, nil)
	var list List[APITokenDTO]
	want(t, e.call("GET", "/api/v1/api-tokens", nil), http.StatusOK, &list)
	var got *APITokenDTO
	for i := range list.Items {
		if list.Items[i].ID == created.ID {
			got = &list.Items[i]
		}
	}
	if got == nil || got.LastUsedAt == nil || !got.LastUsedAt.Equal(epoch.Add(time.Minute)) || got.ExpiresAt == nil {
		t.Fatalf("listed %+v, want last_used_at %s and expires_at", got, epoch.Add(time.Minute))
	}

	e.clock.Advance(time.Hour)
	expired := e.asToken("GET", "/api/v1/users", created.Token)
	gone := e.asToken("GET", "/api/v1/users", revoked.Token)
	wantProblem(t, expired, http.StatusUnauthorized, CodeUnauthenticated)
	if diff := cmp.Diff(gone.Body.String(), expired.Body.String()); diff != "" {
		t.Errorf("expired and revoked answers differ (-revoked +expired):\n%s", diff)
	}
	if diff := cmp.Diff(gone.Header(), expired.Header()); diff != "" {
		t.Errorf("expired and revoked headers differ (-revoked +expired):\n%s", diff)
	}
}

func TestCreateAPITokenExpiryRefused(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		expires string
	}{
		{"not a time", "tomorrow"},
		{"no zone", "2027-01-01T00:00:00"},
		{"in the past", epoch.Add(-time.Second).Format(time.RFC3339)},
		{"now", epoch.Format(time.RFC3339)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := wantProblem(t, e.call("POST", "/api/v1/api-tokens", map[string]string{"name": "x", "role": "auditor", "expires_at": tt.expires}),
				http.StatusBadRequest, CodeInvalidRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != "expires_at" {
				t.Errorf("errors %+v, want one about expires_at", p.Errors)
			}
		})
	}
}

// TestRotateAPITokenOverAPI: the rotated secret works at once, the old one
// is refused at once, and the token keeps its id, name and role.
func TestRotateAPITokenOverAPI(t *testing.T) {
	e := newEnv(t)
	var old NewAPITokenDTO
	want(t, e.call("POST", "/api/v1/api-tokens", map[string]string{"name": "desk", "role": "helpdesk"}), http.StatusCreated, &old)
	var rotated NewAPITokenDTO
	want(t, e.call("POST", "/api/v1/api-tokens/"+old.ID+"/rotate", nil), http.StatusOK, &rotated)
	if rotated.ID != old.ID || rotated.Name != "desk" || rotated.Role != appliance.RoleHelpdesk || rotated.Token == "" || rotated.Token == old.Token {
		t.Fatalf("rotated %+v from %+v", rotated, old)
	}
	wantProblem(t, e.asToken("GET", "/api/v1/users", old.Token), http.StatusUnauthorized, CodeUnauthenticated)
	want(t, e.asToken("GET", "/api/v1/users", rotated.Token), http.StatusOK, nil)
	wantProblem(t, e.call("POST", "/api/v1/api-tokens/nope/rotate", nil), http.StatusNotFound, CodeNotFound)
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/api-tokens/" + old.ID + "/rotate", role: appliance.RoleHelpdesk}),
		http.StatusForbidden, CodeForbidden)
}
