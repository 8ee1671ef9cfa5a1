package admin

import (
	"bytes"
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

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

// normalise replaces random ids; times are fixed by the test clock.
func normalise(b []byte) []byte { return uuidRE.ReplaceAll(b, []byte("<uuid>")) }

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
