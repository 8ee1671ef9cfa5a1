package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

func TestHealth(t *testing.T) {
	var ready error
	e := newEnv(t, func(o *Options) { o.Ready = func() error { return ready } })
	var got map[string]string
	want(t, e.do(req{method: "GET", path: "/healthz"}), http.StatusOK, &got)
	if got["status"] != "ok" {
		t.Errorf("healthz %v", got)
	}
	want(t, e.do(req{method: "GET", path: "/readyz"}), http.StatusOK, nil)
	ready = errors.New("store closed at /var/lib/tokend")
	p := wantProblem(t, e.do(req{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, CodeNotReady)
	if strings.Contains(p.Detail, "/var/lib") {
		t.Errorf("readyz leaks the cause: %q", p.Detail)
	}
	ready = nil
	want(t, e.do(req{method: "GET", path: "/healthz"}), http.StatusOK, nil)
}

// TestObserve checks that metrics use route patterns, never raw paths, and
// that the access log carries neither query strings nor headers.
func TestObserve(t *testing.T) {
	e := newEnv(t)
	e.do(req{method: "GET", path: "/api/v1/tokens/000000000042", role: appliance.RoleSuperAdmin})
	e.do(req{method: "GET", path: "/api/v1/users?search=secret-query", role: appliance.RoleSuperAdmin})
	e.do(req{method: "GET", path: "/no/such/000000000042"})
	e.do(req{method: "POST", path: "/api/v1/tokens/import?format=pskc", role: appliance.RoleSuperAdmin, ctype: "application/xml",
		body: strings.NewReader("<x/>"), header: map[string]string{"X-PSKC-Password": "hunter2-pskc"}})
	wantSeen := []string{
		"GET /api/v1/tokens/:serial Not Found",
		"GET /api/v1/users OK",
		"GET unmatched Not Found",
		"POST /api/v1/tokens/import Unprocessable Entity",
	}
	if diff := cmp.Diff(wantSeen, e.metrics.all()); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	logs := e.logs.String()
	for _, leak := range []string{"000000000042", "secret-query", "hunter2-pskc", e.tok[appliance.RoleSuperAdmin]} {
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q:\n%s", leak, logs)
		}
	}
	if n := strings.Count(logs, `"msg":"http request"`); n != 4 {
		t.Errorf("%d access log lines, want 4:\n%s", n, logs)
	}
}

func TestQRCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := newQRCache(2, 15*time.Minute)
	q.put("a", "link-a", now.Add(time.Hour), now)
	q.put("b", "link-b", now.Add(5*time.Minute), now) // the code expires first
	if l, ok := q.get("a", now.Add(14*time.Minute)); !ok || l != "link-a" {
		t.Errorf("a at 14m: %q %v", l, ok)
	}
	if _, ok := q.get("b", now.Add(5*time.Minute)); ok {
		t.Error("b outlived its activation code")
	}
	if _, ok := q.get("a", now.Add(15*time.Minute)); ok {
		t.Error("a outlived the cache TTL")
	}
	// Bounded: a third entry evicts the one closest to expiry.
	q.put("a", "link-a", now.Add(time.Hour), now)
	q.put("b", "link-b", now.Add(10*time.Minute), now)
	q.put("c", "link-c", now.Add(time.Hour), now)
	if q.len() != 2 {
		t.Errorf("cache holds %d entries, bound is 2", q.len())
	}
	if _, ok := q.get("b", now); ok {
		t.Error("b should have been evicted")
	}
	// Replacing keeps one entry per serial.
	q.put("c", "link-c2", now.Add(time.Hour), now)
	if l, _ := q.get("c", now); l != "link-c2" || q.len() != 2 {
		t.Errorf("after replace: %q, %d entries", l, q.len())
	}
	q.drop("c")
	if _, ok := q.get("c", now); ok {
		t.Error("dropped entry still there")
	}
}

// TestQRExpiresOverAPI uses the injected clock: the QR code disappears after
// the cache TTL although the activation code is still valid.
func TestQRExpiresOverAPI(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.QRCacheTTL = 10 * time.Minute })
	ctx := t.Context()
	if _, err := e.svc.ImportTokens(ctx, appliance.ImportRequest{Format: "csv", Body: csvBody("000100000001")}); err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.CreateUser(ctx, appliance.NewUser{UserName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AssignTokens(ctx, u.ID, []string{"000100000001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateProfile(ctx, appliance.Profile{Name: "ios", DeviceType: "ios", DeliveryMethod: "ctkip"}); err != nil {
		t.Fatal(err)
	}
	var d DistributionDTO
	want(t, e.call("POST", "/api/v1/tokens/000100000001/distribution", map[string]string{"profile": "ios"}), http.StatusCreated, &d)
	want(t, e.call("GET", d.QRCodeURL, nil), http.StatusOK, nil)
	e.clock.Advance(10 * time.Minute)
	wantProblem(t, e.call("GET", d.QRCodeURL, nil), http.StatusNotFound, CodeQRUnavailable)

	// A code consumed by provisioning is not drawn any more either.
	want(t, e.call("POST", "/api/v1/tokens/000100000001/distribution", map[string]string{"profile": "ios"}), http.StatusCreated, &d)
	if _, err := e.svc.CompleteProvisioning(ctx, d.ActivationCode, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, e.call("GET", d.QRCodeURL, nil), http.StatusNotFound, CodeQRUnavailable)
}

func TestAPITokens(t *testing.T) {
	e := newEnv(t)
	var nt NewAPITokenDTO
	w := e.call("POST", "/api/v1/api-tokens", map[string]string{"name": "ci", "role": "auditor"})
	want(t, w, http.StatusCreated, &nt)
	if !strings.HasPrefix(nt.Token, "tkd_") || nt.Role != "auditor" || nt.CreatedBy != "test-superadmin" {
		t.Fatalf("new token %+v", nt)
	}
	// The new token works, with its role.
	w = e.do(req{method: "GET", path: "/api/v1/audit", header: map[string]string{"Authorization": "Bearer " + nt.Token}})
	want(t, w, http.StatusOK, nil)
	w = e.call("GET", "/api/v1/api-tokens", nil)
	if strings.Contains(w.Body.String(), "hash") || strings.Contains(w.Body.String(), nt.Token) {
		t.Errorf("listing shows secrets: %s", w.Body)
	}
	var list List[APITokenDTO]
	want(t, w, http.StatusOK, &list)
	if len(list.Items) != 5 {
		t.Errorf("%d tokens listed, want 5", len(list.Items))
	}
	want(t, e.call("DELETE", "/api/v1/api-tokens/"+nt.ID, nil), http.StatusNoContent, nil)
	w = e.do(req{method: "GET", path: "/api/v1/audit", header: map[string]string{"Authorization": "Bearer " + nt.Token}})
	wantProblem(t, w, http.StatusUnauthorized, CodeUnauthenticated)
	wantProblem(t, e.call("DELETE", "/api/v1/api-tokens/"+nt.ID, nil), http.StatusNotFound, CodeNotFound)
}

func TestProfilesCRUD(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"name": "win", "device_type": "windows", "delivery_method": "ctkip", "activation_code_ttl": "24h"}
	want(t, e.call("POST", "/api/v1/profiles", body), http.StatusCreated, nil)
	wantProblem(t, e.call("POST", "/api/v1/profiles", body), http.StatusConflict, CodeExists)
	body["activation_code_ttl"] = "48h"
	body["digits"] = 6
	var p ProfileDTO
	want(t, e.call("PUT", "/api/v1/profiles/win", body), http.StatusOK, &p)
	if p.ActivationCodeTTL != "48h0m0s" || p.Digits != 6 {
		t.Errorf("updated %+v", p)
	}
	body["name"] = "other"
	wantProblem(t, e.call("PUT", "/api/v1/profiles/win", body), http.StatusBadRequest, CodeInvalidRequest)
	var list List[ProfileDTO]
	want(t, e.do(req{method: "GET", path: "/api/v1/profiles", role: appliance.RoleHelpdesk}), http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "win" {
		t.Errorf("profiles %+v", list)
	}
	want(t, e.call("DELETE", "/api/v1/profiles/win", nil), http.StatusNoContent, nil)
	wantProblem(t, e.call("GET", "/api/v1/profiles/win", nil), http.StatusNotFound, CodeNotFound)
}

// TestImportBodyLimit checks both the declared and the streamed oversize
// import body, on a small limit.
func TestImportBodyLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxImportBody = 1024 })
	var serials []string
	for i := range 200 {
		serials = append(serials, fmt.Sprintf("%012d", 500000000000+i))
	}
	body := "serial\n" + strings.Join(serials, "\n") + "\n"
	w := e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: appliance.RoleSuperAdmin, ctype: "text/csv", body: strings.NewReader(body)})
	wantProblem(t, w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge)

	// Streamed without a length (chunked): the reader stops at the limit.
	hr := httptest.NewRequest("POST", "/api/v1/tokens/import?format=pskc", io.MultiReader(strings.NewReader("<KeyContainer>"), strings.NewReader(strings.Repeat("<x/>", 1000))))
	hr.ContentLength = -1
	hr.Header.Set("Authorization", "Bearer "+e.tok[appliance.RoleSuperAdmin])
	hr.Header.Set("Content-Type", "application/xml")
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, hr)
	wantProblem(t, rec, http.StatusRequestEntityTooLarge, CodeBodyTooLarge)

	// Within the limit, a garbage CSV is rejected as a file.
	w = e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: appliance.RoleSuperAdmin, ctype: "text/csv", body: strings.NewReader("\x00\xff\xfe garbage,,\n")})
	wantProblem(t, w, http.StatusUnprocessableEntity, CodeImportFileRejected)
}
