package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

// scimTokenRE matches a SCIM bearer token (tkds_ and 32 random bytes).
var scimTokenRE = regexp.MustCompile(`tkds_[A-Za-z0-9_-]{43}`)

// normalise replaces random ids and tokens; times are fixed by the test
// clock.
func normalise(b []byte) []byte {
	return scimTokenRE.ReplaceAll(uuidRE.ReplaceAll(b, []byte("<uuid>")), []byte("<scim-token>"))
}

// golden compares a response (status, content type, indented body) with
// testdata/<name>.golden.
func golden(t *testing.T, name string, w interface {
	Result() *http.Response
}) {
	t.Helper()
	res := w.Result()
	var body bytes.Buffer
	raw := new(bytes.Buffer)
	if _, err := raw.ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&body, raw.Bytes(), "", "  "); err != nil {
		t.Fatalf("%s: body is not JSON: %v: %s", name, err, raw)
	}
	got := normalise([]byte(fmt.Sprintf("%d %s\nContent-Type: %s\n\n%s", res.StatusCode, http.StatusText(res.StatusCode),
		res.Header.Get("Content-Type"), strings.TrimSpace(body.String())+"\n")))
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	wantB, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(wantB), string(got)); diff != "" {
		t.Errorf("%s (-golden +got):\n%s", path, diff)
	}
}

// TestGoldenResponses pins the wire format of representative endpoints.
func TestGoldenResponses(t *testing.T) {
	e := newEnv(t)
	const sa = appliance.RoleSuperAdmin

	w := e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: sa, ctype: "text/csv",
		body: strings.NewReader("serial,kind,digits,interval,expires_at\n000100000001,software,8,60,2030-06-30\n000100000002,hardware,6,30,2031-01-01\n000100000003,,,,\n000100000004,,,,\nnot-a-serial\n")})
	golden(t, "import_csv", w)
	e.clock.Advance(time.Minute)

	golden(t, "create_user", e.do(req{method: "POST", path: "/api/v1/users", role: sa,
		body: strings.NewReader(`{"user_name":"alice","display_name":"Alice Liddell","email":"alice@example.com"}`)}))
	e.clock.Advance(time.Minute)

	var page Page[UserDTO]
	want(t, e.call("GET", "/api/v1/users?search=alice", nil), http.StatusOK, &page)
	userID := page.Items[0].ID
	golden(t, "assign", e.do(req{method: "POST", path: "/api/v1/users/" + userID + "/tokens", role: sa, body: strings.NewReader(`{"serials":["000100000001"]}`)}))
	golden(t, "get_token", e.do(req{method: "GET", path: "/api/v1/tokens/000100000002", role: sa}))

	golden(t, "create_profile", e.do(req{method: "POST", path: "/api/v1/profiles", role: sa,
		body: strings.NewReader(`{"name":"android","device_type":"android","delivery_method":"ctkip","digits":8,"interval":60,"pin_mode":"pinpad","activation_code_ttl":"72h","display_name":"RSA app","help_text":"Scan the QR code."}`)}))

	golden(t, "problem_token_limit", e.do(req{method: "POST", path: "/api/v1/users/" + userID + "/tokens", role: sa,
		body: strings.NewReader(`{"serials":["000100000002","000100000003","000100000004"]}`)}))
	golden(t, "problem_validation", e.do(req{method: "POST", path: "/api/v1/profiles", role: sa,
		body: strings.NewReader(`{"name":"","device_type":"nokia","delivery_method":"ctkip","digits":7}`)}))
	golden(t, "problem_unknown_route", e.do(req{method: "GET", path: "/api/v1/nope", role: sa}))

	// The authentication API: a rejection never says why, and five of them
	// lock the user out, which the user document shows.
	for i := range 5 {
		w := e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent,
			body: strings.NewReader(`{"user_name":"alice","passcode":"00000000"}`)})
		if i == 0 {
			golden(t, "authenticate_reject", w)
		}
	}
	golden(t, "get_user_locked", e.do(req{method: "GET", path: "/api/v1/users/" + userID, role: sa}))
	golden(t, "problem_authenticate_validation", e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent,
		body: strings.NewReader(`{"user_name":"","passcode":"` + strings.Repeat("1", maxPasscode+1) + `"}`)}))
	golden(t, "unlock_user", e.do(req{method: "POST", path: "/api/v1/users/" + userID + "/unlock", role: appliance.RoleHelpdesk}))
	golden(t, "problem_backup_not_supported", e.do(req{method: "GET", path: "/api/v1/backup", role: sa}))
}

// TestGoldenIdentitySources pins the wire format of the identity source
// endpoints, with a sync function shaped like main's: it records the run
// and wraps the brake refusal in an error implementing SyncBrake.
func TestGoldenIdentitySources(t *testing.T) {
	var (
		svc  *appliance.Service
		runs int
	)
	e := newEnv(t, func(o *Options) {
		o.Sync = func(ctx context.Context, id string, force bool) (appliance.SyncRun, error) {
			runs++ // one run a minute, so the order of the listing is fixed
			end := epoch.Add(time.Duration(runs) * time.Minute)
			run := appliance.SyncRun{SourceID: id, Mode: "full", StartedAt: end.Add(-2 * time.Second), FinishedAt: end,
				Added: 3, Updated: 2, Deactivated: 30, Reactivated: 1, Unchanged: 70, DurationMS: 2000}
			var err error
			if !force {
				err = fmt.Errorf("sync: %w", brakeErr{30, 100})
				run.Deactivated, run.Error = 0, err.Error()
			}
			rec, rerr := svc.RecordSyncRun(ctx, run)
			if rerr != nil {
				t.Error(rerr)
			}
			return rec, err
		}
	})
	svc = e.svc
	const sa = appliance.RoleSuperAdmin
	w := e.do(req{method: "POST", path: "/api/v1/identity-sources", role: sa, body: jsonBody(t, ldapSourceBody("Corp AD"))})
	golden(t, "create_identity_source_ldap", w)
	var ldapSrc IdentitySourceDTO
	if err := json.Unmarshal(w.Body.Bytes(), &ldapSrc); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	golden(t, "create_identity_source_scim", e.do(req{method: "POST", path: "/api/v1/identity-sources", role: sa,
		body: strings.NewReader(`{"name":"Entra ID","type":"scim"}`)}))

	src := "/api/v1/identity-sources/" + ldapSrc.ID
	golden(t, "problem_sync_brake", e.do(req{method: "POST", path: src + "/sync", role: sa}))
	golden(t, "sync_run", e.do(req{method: "POST", path: src + "/sync?force=true", role: sa}))
	golden(t, "list_sync_runs", e.do(req{method: "GET", path: src + "/runs", role: appliance.RoleAuditor}))
	// The listing is ordered by (random) id; one source shows the format.
	golden(t, "get_identity_source_synced", e.do(req{method: "GET", path: src, role: appliance.RoleAuditor}))
	golden(t, "problem_identity_source_validation", e.do(req{method: "POST", path: "/api/v1/identity-sources", role: sa,
		body: strings.NewReader(`{"name":"x","type":"ldap","grace_period":"a month","deactivate_threshold":0,"ldap":{"url":"","base_dn":"dc=example,dc=com"}}`)}))
}
