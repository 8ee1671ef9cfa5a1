package admin

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// TestSeedProcedure walks domain.md's seed procedure over the API as a help
// desk operator would, after a super admin prepared profiles.
func TestSeedProcedure(t *testing.T) {
	e := newEnv(t)
	const hd = appliance.RoleHelpdesk

	// 1. Preconditions: seedless software tokens from a CSV list of serials,
	// first as a dry run, then for real.
	var job ImportJobDTO
	w := e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv&dry_run=true", role: hd, ctype: "text/csv",
		body: csvBody("000100000001", "000100000002", "000100000003", "000100000004", "000100000005", "bad")})
	want(t, w, http.StatusOK, &job)
	// Import job ids are derived from the start time: keep them apart.
	e.clock.Advance(time.Second)
	if job.Imported != 5 || job.RejectedTotal != 1 || !job.DryRun || len(job.Rejected) != 1 || job.Rejected[0].Row != 7 {
		t.Fatalf("dry run report %+v", job)
	}
	w = e.do(req{method: "GET", path: "/api/v1/tokens", role: hd})
	var toks Page[TokenDTO]
	want(t, w, http.StatusOK, &toks)
	if toks.Total != 0 {
		t.Fatalf("dry run wrote %d tokens", toks.Total)
	}
	w = e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: hd, ctype: "text/csv",
		body: csvBody("000100000001", "000100000002", "000100000003", "000100000004", "000100000005")})
	want(t, w, http.StatusCreated, &job)
	e.clock.Advance(time.Second)
	if job.Imported != 5 || job.DryRun || job.Status != "completed" || w.Header().Get("Location") != "/api/v1/import-jobs/"+job.JobID {
		t.Fatalf("import report %+v, Location %q", job, w.Header().Get("Location"))
	}
	// The same file again: every row is a reported duplicate.
	w = e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: hd, ctype: "text/csv", body: csvBody("000100000001")})
	want(t, w, http.StatusCreated, &job)
	e.clock.Advance(time.Second)
	if job.Skipped != 1 || len(job.SkippedRows) != 1 || job.SkippedRows[0].Serial != "000100000001" {
		t.Fatalf("duplicate report %+v", job)
	}

	// A plain PSKC file with seeds.
	pskc, err := os.ReadFile("testdata/plain.pskc.xml")
	if err != nil {
		t.Fatal(err)
	}
	w = e.do(req{method: "POST", path: "/api/v1/tokens/import?format=pskc&kind=hardware", role: hd, ctype: "application/pskc+xml", body: bytes.NewReader(pskc)})
	want(t, w, http.StatusCreated, &job)
	if job.Imported != 2 || job.RejectedTotal != 0 {
		t.Fatalf("PSKC report %+v", job)
	}
	var tok TokenDTO
	want(t, e.do(req{method: "GET", path: "/api/v1/tokens/000200000002", role: hd}), http.StatusOK, &tok)
	if tok.Kind != "hardware" || tok.Algorithm != appliance.AlgTOTP || tok.Digits != 6 || tok.Interval != 30 ||
		!tok.Provisioned || tok.State != "disabled" || tok.UserID != nil {
		t.Fatalf("PSKC token %+v", tok)
	}
	var jobs List[ImportJobDTO]
	want(t, e.do(req{method: "GET", path: "/api/v1/import-jobs", role: appliance.RoleAuditor}), http.StatusOK, &jobs)
	if len(jobs.Items) != 4 || jobs.Items[0].JobID == "" {
		t.Fatalf("import jobs %+v", jobs)
	}
	var one ImportJobDTO
	want(t, e.do(req{method: "GET", path: "/api/v1/import-jobs/" + jobs.Items[0].JobID, role: hd}), http.StatusOK, &one)

	// Software token profiles (super admin only).
	for _, dev := range []string{"android", "windows"} {
		var p ProfileDTO
		w = e.call("POST", "/api/v1/profiles", map[string]any{"name": dev, "device_type": dev, "delivery_method": "ctkip",
			"activation_code_ttl": "168h", "display_name": "Phone"})
		want(t, w, http.StatusCreated, &p)
		if p.ActivationCodeTTL != "168h0m0s" || p.Digits != 8 || p.Interval != 60 || p.PINMode != "pinpad" {
			t.Fatalf("profile %+v", p)
		}
	}

	// 2. Find the user by a quick search.
	var u UserViewDTO
	w = e.do(req{method: "POST", path: "/api/v1/users", role: hd,
		body: strings.NewReader(`{"user_name":"alice","display_name":"Alice Liddell","email":"alice@example.com"}`)})
	want(t, w, http.StatusCreated, &u)
	if u.Tokens == nil || len(u.Tokens) != 0 || !u.Active || u.Source != "internal" {
		t.Fatalf("created user %+v", u)
	}
	e.do(req{method: "POST", path: "/api/v1/users", role: hd, body: strings.NewReader(`{"user_name":"bob","email":"bob@example.com"}`)})
	for _, search := range []string{"ali", "Alice L", "alice@ex"} {
		var users Page[UserDTO]
		want(t, e.do(req{method: "GET", path: "/api/v1/users?search=" + strings.ReplaceAll(search, " ", "%20"), role: hd}), http.StatusOK, &users)
		if users.Total != 1 || len(users.Items) != 1 || users.Items[0].ID != u.ID {
			t.Errorf("search %q: %+v", search, users)
		}
	}

	// 3. Pick unassigned tokens by serial prefix and assign three.
	want(t, e.do(req{method: "GET", path: "/api/v1/tokens?assigned=false&search=0001&kind=software&limit=3", role: hd}), http.StatusOK, &toks)
	if toks.Total != 5 || len(toks.Items) != 3 || toks.NextCursor == "" {
		t.Fatalf("unassigned tokens %+v", toks)
	}
	serials := []string{toks.Items[0].Serial, toks.Items[1].Serial, toks.Items[2].Serial}
	w = e.do(req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: hd,
		body: strings.NewReader(fmt.Sprintf(`{"serials":[%q,%q,%q]}`, serials[0], serials[1], serials[2]))})
	want(t, w, http.StatusOK, &u)
	if len(u.Tokens) != 3 || u.Tokens[0].State != "enabled" || *u.Tokens[0].UserID != u.ID {
		t.Fatalf("after assignment %+v", u)
	}
	// The fourth is refused with the contract code.
	w = e.do(req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: hd, body: strings.NewReader(`{"serials":["000100000004"]}`)})
	wantProblem(t, w, http.StatusConflict, CodeTokenLimit)
	want(t, e.do(req{method: "GET", path: "/api/v1/users/" + u.ID, role: appliance.RoleAuditor}), http.StatusOK, &u)
	if len(u.Tokens) != 3 {
		t.Fatalf("user holds %d tokens after the refused fourth", len(u.Tokens))
	}

	// 4-5. Distribute with a CT-KIP profile for Android.
	var d DistributionDTO
	w = e.do(req{method: "POST", path: "/api/v1/tokens/" + serials[0] + "/distribution", role: hd, body: strings.NewReader(`{"profile":"android"}`)})
	want(t, w, http.StatusCreated, &d)
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("distribution Cache-Control %q", w.Header().Get("Cache-Control"))
	}
	if !regexp.MustCompile(`^[0-9]{12}$`).MatchString(d.ActivationCode) {
		t.Errorf("activation code %q is not 12 digits", d.ActivationCode)
	}
	if d.CTKIPURL != testCTKIPURL || !d.ExpiresAt.Equal(e.clock.Now().Add(168*time.Hour)) ||
		d.QRCodeURL != "/api/v1/tokens/"+serials[0]+"/distribution/qr.png" {
		t.Errorf("distribution %+v", d)
	}
	if !strings.HasPrefix(d.DeviceURL, "com.rsa.securid://ctkip?") || !strings.Contains(d.DeviceURL, "activationCode="+d.ActivationCode) {
		t.Errorf("android device URL %q lacks the code", d.DeviceURL)
	}
	want(t, e.do(req{method: "GET", path: "/api/v1/tokens/" + serials[0], role: hd}), http.StatusOK, &tok)
	if !tok.ActivationPending || tok.Profile == nil || *tok.Profile != "android" {
		t.Errorf("token after distribution %+v", tok)
	}

	// The QR code is a PNG of the device link.
	w = e.do(req{method: "GET", path: d.QRCodeURL, role: hd})
	want(t, w, http.StatusOK, nil)
	if w.Header().Get("Content-Type") != "image/png" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("qr headers %v", w.Header())
	}
	img, err := png.Decode(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("qr.png does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 256 || b.Dy() != 256 {
		t.Errorf("qr.png is %v, want 256x256", b)
	}

	// Re-issue voids the previous code: the service knows it, and the
	// device-link cache holds the new one.
	var d2 DistributionDTO
	w = e.do(req{method: "POST", path: "/api/v1/tokens/" + serials[0] + "/distribution", role: hd, body: strings.NewReader(`{"profile":"windows"}`)})
	want(t, w, http.StatusCreated, &d2)
	if d2.ActivationCode == d.ActivationCode {
		t.Fatal("re-issue returned the same code")
	}
	if _, err := e.svc.BeginProvisioning(t.Context(), d.ActivationCode); err == nil {
		t.Error("the first code still works after re-issue")
	}
	if _, err := e.svc.BeginProvisioning(t.Context(), d2.ActivationCode); err != nil {
		t.Errorf("the new code does not work: %v", err)
	}
	if link, ok := e.srv.qr.get(serials[0], e.clock.Now()); !ok || link != d2.DeviceURL {
		t.Errorf("QR cache holds %q, %v; want the new device link", link, ok)
	}

	// Voiding: the code stops working, the QR code is gone, voiding again
	// finds nothing.
	want(t, e.do(req{method: "DELETE", path: "/api/v1/tokens/" + serials[0] + "/distribution", role: hd}), http.StatusNoContent, nil)
	if _, err := e.svc.BeginProvisioning(t.Context(), d2.ActivationCode); err == nil {
		t.Error("the voided code still works")
	}
	p := wantProblem(t, e.do(req{method: "GET", path: d.QRCodeURL, role: hd}), http.StatusNotFound, CodeQRUnavailable)
	if !strings.Contains(p.Detail, "re-issue") {
		t.Errorf("qr_unavailable detail %q does not say to re-issue", p.Detail)
	}
	wantProblem(t, e.do(req{method: "DELETE", path: "/api/v1/tokens/" + serials[0] + "/distribution", role: hd}), http.StatusNotFound, CodeNotFound)

	// Disable/enable and unassign.
	want(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + serials[1] + "/disable", role: hd}), http.StatusOK, &tok)
	if tok.State != "disabled" {
		t.Errorf("after disable: %+v", tok)
	}
	want(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + serials[1] + "/enable", role: hd}), http.StatusOK, &tok)
	if tok.State != "enabled" {
		t.Errorf("after enable: %+v", tok)
	}
	want(t, e.do(req{method: "DELETE", path: "/api/v1/users/" + u.ID + "/tokens/" + serials[2], role: hd}), http.StatusNoContent, nil)
	want(t, e.do(req{method: "GET", path: "/api/v1/users/" + u.ID, role: hd}), http.StatusOK, &u)
	if len(u.Tokens) != 2 {
		t.Errorf("after unassign the user holds %d tokens", len(u.Tokens))
	}

	// The audit trail names the help desk operator.
	var audit AuditPageDTO
	want(t, e.do(req{method: "GET", path: "/api/v1/audit?action=token.assign", role: appliance.RoleAuditor}), http.StatusOK, &audit)
	var got []string
	for _, r := range audit.Items {
		got = append(got, r.Actor.Name+" "+r.Actor.Role+" "+r.Outcome+" "+r.Reason)
	}
	if diff := cmp.Diff([]string{"test-helpdesk helpdesk success ", "test-helpdesk helpdesk failure limit"}, got); diff != "" {
		t.Errorf("audit of token.assign (-want +got):\n%s", diff)
	}
	if audit.Items[0].Hash == "" || audit.Items[1].Prev == "" {
		t.Errorf("audit records without hash chain: %+v", audit.Items)
	}

	// Neither activation code nor any API token ever reaches the logs.
	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"/api/v1/tokens/:serial/distribution"`) {
		t.Errorf("no access log line for the distribution route in:\n%s", logs)
	}
	for _, secret := range []string{d.ActivationCode, d2.ActivationCode, e.tok[hd], e.tok[appliance.RoleSuperAdmin]} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret appears in the logs")
		}
	}
}
