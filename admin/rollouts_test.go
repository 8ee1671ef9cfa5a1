package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// rolloutEnv is an admin server on a real listener with a CT-KIP profile
// "phones", five users and pool tokens 17000000000x.
type rolloutEnv struct {
	*env
	url   string
	users []string
}

func newRolloutEnv(t *testing.T, pool int) *rolloutEnv {
	t.Helper()
	e := newEnv(t)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "t", Name: "t", Role: appliance.RoleSuperAdmin})
	if _, err := e.svc.CreateProfile(ctx, appliance.Profile{Name: "phones", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []appliance.Profile{
		{Name: "ctf-pw", DeviceType: appliance.DeviceIOS, DeliveryMethod: appliance.DeliveryCTF, PINMode: appliance.PINModeNone},
		{Name: "ctf-dev", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF, CTFBinding: appliance.CTFBindingDeviceID},
	} {
		if _, err := e.svc.CreateProfile(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var serials []string
	for i := range pool {
		serials = append(serials, fmt.Sprintf("%012d", 170000000000+i))
	}
	if _, err := e.svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: csvBody(serials...)}); err != nil {
		t.Fatal(err)
	}
	re := &rolloutEnv{env: e}
	for _, n := range []string{"ann", "ben", "cat", "dan", "eve"} {
		if _, err := e.svc.CreateUser(ctx, appliance.NewUser{UserName: n, Email: n + "@example.org"}); err != nil {
			t.Fatal(err)
		}
		re.users = append(re.users, n)
	}
	srv := httptest.NewServer(e.srv)
	t.Cleanup(srv.Close)
	re.url = srv.URL
	return re
}

// http sends a request over the listener as role.
func (e *rolloutEnv) http(method, path, role string, body any) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = jsonBody(e.t, body)
	}
	r, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Authorization", "Bearer "+e.tok[role])
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAs(t *testing.T, resp *http.Response, status int, out any) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
	return string(b)
}

func readProblem(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	var p Problem
	readAs(t, resp, status, &p)
	if p.Code != code || resp.Header.Get("Content-Type") != mediaProblem {
		t.Fatalf("problem %+v (%s), want %s", p, resp.Header.Get("Content-Type"), code)
	}
}

func TestRolloutAPI(t *testing.T) {
	e := newRolloutEnv(t, 4)
	const base = "/api/v1/rollouts"
	var plan RolloutDTO
	readAs(t, e.http("POST", base, appliance.RoleSuperAdmin, map[string]any{"users": e.users, "profile": "phones",
		"pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctkip"}), http.StatusCreated, &plan)
	if diff := cmp.Diff(RolloutPlanDTO{Users: 5, ToAssign: 4, PoolShortfall: 1}, plan.Plan); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	if plan.State != appliance.RolloutPlanned || plan.Progress != (RolloutProgressDTO{Total: 4}) {
		t.Fatalf("planned %+v", plan)
	}
	id := plan.ID

	// Paged users, in plan order.
	var p1, p2 RolloutDetailDTO
	readAs(t, e.http("GET", base+"/"+id+"?limit=2", appliance.RoleAuditor, nil), http.StatusOK, &p1)
	readAs(t, e.http("GET", fmt.Sprintf("%s/%s?after=%d&limit=10", base, id, p1.NextAfter), appliance.RoleAuditor, nil), http.StatusOK, &p2)
	var names []string
	for _, it := range append(p1.Items, p2.Items...) {
		names = append(names, it.UserName+":"+it.Status)
	}
	if diff := cmp.Diff([]string{"ann:assign", "ben:assign", "cat:assign", "dan:assign", "eve:no_token"}, names); diff != "" {
		t.Fatalf("items (-want +got):\n%s", diff)
	}
	if p2.NextAfter != 0 {
		t.Fatalf("last page next_after %d", p2.NextAfter)
	}
	var noToken RolloutDetailDTO
	readAs(t, e.http("GET", base+"/"+id+"?status=no_token", appliance.RoleHelpdesk, nil), http.StatusOK, &noToken)
	if len(noToken.Items) != 1 || noToken.Items[0].UserName != "eve" {
		t.Fatalf("status filter %+v", noToken.Items)
	}

	// Exports before the apply completes.
	readProblem(t, e.http("GET", base+"/"+id+"/export?part=links", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)

	var applying RolloutDTO
	readAs(t, e.http("POST", base+"/"+id+"/apply", appliance.RoleSuperAdmin, nil), http.StatusAccepted, &applying)
	e.svc.WaitRollouts()
	var done RolloutDetailDTO
	readAs(t, e.http("GET", base+"/"+id, appliance.RoleAuditor, nil), http.StatusOK, &done)
	if done.State != appliance.RolloutCompleted || done.Progress != (RolloutProgressDTO{Total: 4, Done: 4, Percent: 100}) {
		t.Fatalf("after apply %+v", done.RolloutDTO)
	}
	readProblem(t, e.http("POST", base+"/"+id+"/apply", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)

	// ann's delivery, once.
	var d RolloutDeliveryDTO
	resp := e.http("GET", base+"/"+id+"/items/1/delivery", appliance.RoleSuperAdmin, nil)
	readAs(t, resp, http.StatusOK, &d)
	if d.UserName != "ann" || len(d.ActivationCode) != 12 || !strings.Contains(d.DeviceURL, d.ActivationCode) ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("delivery %+v %v", d, resp.Header)
	}
	readProblem(t, e.http("GET", base+"/"+id+"/items/1/delivery", appliance.RoleSuperAdmin, nil), http.StatusNotFound, CodeNotFound)
	codes := []string{d.ActivationCode}

	// Two files, each once.
	resp = e.http("GET", base+"/"+id+"/export?part=links", appliance.RoleSuperAdmin, nil)
	links, err := csv.NewReader(strings.NewReader(readAs(t, resp, http.StatusOK, nil))).ReadAll()
	if err != nil || len(links) != 4 || links[1][0] != "ben" || links[1][3] != testCTKIPURL ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("links %v %v %v", links, err, resp.Header)
	}
	readProblem(t, e.http("GET", base+"/"+id+"/export?part=links", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)
	cs, err := csv.NewReader(strings.NewReader(readAs(t, e.http("GET", base+"/"+id+"/export?part=codes", appliance.RoleSuperAdmin, nil),
		http.StatusOK, nil))).ReadAll()
	if err != nil || len(cs) != 4 || cs[0][3] != "activation_code" {
		t.Fatalf("codes %v %v", cs, err)
	}
	for _, row := range cs[1:] {
		codes = append(codes, row[3])
	}
	readProblem(t, e.http("GET", base+"/"+id+"/export?part=codes", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)
	readProblem(t, e.http("GET", base+"/"+id+"/items/2/delivery", appliance.RoleSuperAdmin, nil), http.StatusNotFound, CodeNotFound)

	var list List[RolloutDTO]
	readAs(t, e.http("GET", base+"?limit=5", appliance.RoleHelpdesk, nil), http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].ID != id || list.Items[0].CodesExportedAt == nil {
		t.Fatalf("list %+v", list)
	}
	// No activation code in any log line.
	for _, c := range codes {
		if strings.Contains(e.logs.String(), c) {
			t.Errorf("an activation code is in the log")
		}
	}
}

// TestRolloutAPIProblems: every refusal is a problem with its stable code,
// and unknown or repeated query parameters are refused.
func TestRolloutAPIProblems(t *testing.T) {
	e := newRolloutEnv(t, 1)
	const base = "/api/v1/rollouts"
	var plan RolloutDTO
	readAs(t, e.http("POST", base, appliance.RoleSuperAdmin, map[string]any{"users": []string{"ann"}, "profile": "phones",
		"pool": map[string]any{"any_unassigned_software": true}, "delivery": "ctkip"}), http.StatusCreated, &plan)
	good := map[string]any{"users": []string{"ann"}, "profile": "phones", "pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctkip"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	// Explicit lists of long logins: 10,000 of 200 bytes (about 2 MiB, past
	// the 1 MiB of other JSON bodies) are read and checked; 45,000 are past
	// MaxRolloutBody.
	logins := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%05d", strings.Repeat("u", 195), i)
		}
		return out
	}
	tests := []struct {
		name   string
		method string
		path   string
		role   string
		body   any
		status int
		code   string
	}{
		{"2 MiB of logins is read (and the users are unknown)", "POST", base, appliance.RoleSuperAdmin, with("users", logins(appliance.MaxRolloutUsers)), 400, CodeInvalidRequest},
		{"9 MiB of logins is too large", "POST", base, appliance.RoleSuperAdmin, with("users", logins(45000)), 413, CodeBodyTooLarge},
		{"unknown field", "POST", base, appliance.RoleSuperAdmin, with("groups", "x"), 400, CodeUnknownField},
		{"unknown pool field", "POST", base, appliance.RoleSuperAdmin, with("pool", map[string]any{"prefix": "17"}), 400, CodeUnknownField},
		{"no group", "POST", base, appliance.RoleSuperAdmin, with("users", nil), 400, CodeInvalidRequest},
		{"bad delivery", "POST", base, appliance.RoleSuperAdmin, with("delivery", "fax"), 400, CodeInvalidRequest},
		{"delivery not the profile's", "POST", base, appliance.RoleSuperAdmin, with("delivery", "file"), 400, CodeInvalidRequest},
		{"ctf bound to a device", "POST", base, appliance.RoleSuperAdmin, map[string]any{"users": []string{"ann"}, "profile": "ctf-dev",
			"pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctf"}, 400, CodeInvalidRequest},
		{"unknown profile", "POST", base, appliance.RoleSuperAdmin, with("profile", "nope"), 404, CodeNotFound},
		{"unknown user", "POST", base, appliance.RoleSuperAdmin, with("users", []string{"zed"}), 400, CodeInvalidRequest},
		{"unknown group", "POST", base, appliance.RoleSuperAdmin, map[string]any{"group": map[string]any{"source": "nope", "id": "g"},
			"profile": "phones", "pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctkip"}, 404, CodeNotFound},
		{"unknown source", "POST", base, appliance.RoleSuperAdmin, map[string]any{"group": map[string]any{"source": "nope"},
			"profile": "phones", "pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctkip"}, 404, CodeNotFound},
		{"group and users", "POST", base, appliance.RoleSuperAdmin, with("group", map[string]any{"source": "x"}), 400, CodeInvalidRequest},
		{"help desk may not plan", "POST", base, appliance.RoleHelpdesk, good, 403, CodeForbidden},
		{"auditor may not apply", "POST", base + "/" + plan.ID + "/apply", appliance.RoleAuditor, nil, 403, CodeForbidden},
		{"help desk takes no delivery", "GET", base + "/" + plan.ID + "/items/1/delivery", appliance.RoleHelpdesk, nil, 403, CodeForbidden},
		{"unknown rollout", "GET", base + "/nope", appliance.RoleAuditor, nil, 404, CodeNotFound},
		{"apply unknown rollout", "POST", base + "/nope/apply", appliance.RoleSuperAdmin, nil, 404, CodeNotFound},
		{"cursor is not a parameter", "GET", base + "/" + plan.ID + "?cursor=1", appliance.RoleAuditor, nil, 400, CodeInvalidRequest},
		{"limit twice", "GET", base + "?limit=1&limit=2", appliance.RoleAuditor, nil, 400, CodeInvalidRequest},
		{"bad status", "GET", base + "/" + plan.ID + "?status=bogus", appliance.RoleAuditor, nil, 400, CodeInvalidRequest},
		{"bad after", "GET", base + "/" + plan.ID + "?after=-1", appliance.RoleAuditor, nil, 400, CodeInvalidRequest},
		{"bad seq", "GET", base + "/" + plan.ID + "/items/abc/delivery", appliance.RoleSuperAdmin, nil, 400, CodeInvalidRequest},
		{"no delivery before apply", "GET", base + "/" + plan.ID + "/items/1/delivery", appliance.RoleSuperAdmin, nil, 404, CodeNotFound},
		{"export without part", "GET", base + "/" + plan.ID + "/export", appliance.RoleSuperAdmin, nil, 400, CodeInvalidRequest},
		{"export of a bad part", "GET", base + "/" + plan.ID + "/export?part=all", appliance.RoleSuperAdmin, nil, 400, CodeInvalidRequest},
		{"export before apply", "GET", base + "/" + plan.ID + "/export?part=codes", appliance.RoleSuperAdmin, nil, 409, CodeInvalidState},
		{"export takes only part", "GET", base + "/" + plan.ID + "/export?part=codes&format=csv", appliance.RoleSuperAdmin, nil, 400, CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readProblem(t, e.http(tt.method, tt.path, tt.role, tt.body), tt.status, tt.code)
		})
	}
	// Applied before its schedule, a rollout waits as scheduled.
	var later, scheduled RolloutDTO
	readAs(t, e.http("POST", base, appliance.RoleSuperAdmin, with("schedule", epoch.Add(24*60*60*1e9))), http.StatusCreated, &later)
	readAs(t, e.http("POST", base+"/"+later.ID+"/apply", appliance.RoleSuperAdmin, nil), http.StatusAccepted, &scheduled)
	if scheduled.State != appliance.RolloutScheduled || scheduled.Schedule == nil || scheduled.Progress.Done != 0 {
		t.Fatalf("scheduled %+v", scheduled)
	}
	// A scheduled rollout can be cancelled, once, by a super admin.
	readProblem(t, e.http("POST", base+"/"+later.ID+"/cancel", appliance.RoleHelpdesk, nil), http.StatusForbidden, CodeForbidden)
	readProblem(t, e.http("POST", base+"/nope/cancel", appliance.RoleSuperAdmin, nil), http.StatusNotFound, CodeNotFound)
	var cancelled RolloutDTO
	readAs(t, e.http("POST", base+"/"+later.ID+"/cancel", appliance.RoleSuperAdmin, nil), http.StatusOK, &cancelled)
	if cancelled.State != appliance.RolloutCancelled {
		t.Fatalf("cancelled %+v", cancelled)
	}
	readProblem(t, e.http("POST", base+"/"+later.ID+"/cancel", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)
	readProblem(t, e.http("POST", base+"/"+later.ID+"/apply", appliance.RoleSuperAdmin, nil), http.StatusConflict, CodeInvalidState)
}

// TestRolloutAPICTF: a CTF rollout hands out each user's link and
// password once, and exports them as two files.
func TestRolloutAPICTF(t *testing.T) {
	e := newRolloutEnv(t, 5)
	const base = "/api/v1/rollouts"
	var plan RolloutDTO
	readAs(t, e.http("POST", base, appliance.RoleSuperAdmin, map[string]any{"users": e.users, "profile": "ctf-pw",
		"pool": map[string]any{"serial_prefix": "17"}, "delivery": "ctf"}), http.StatusCreated, &plan)
	readAs(t, e.http("POST", base+"/"+plan.ID+"/apply", appliance.RoleSuperAdmin, nil), http.StatusAccepted, nil)
	e.svc.WaitRollouts()
	var d RolloutDeliveryDTO
	readAs(t, e.http("GET", base+"/"+plan.ID+"/items/1/delivery", appliance.RoleSuperAdmin, nil), http.StatusOK, &d)
	if d.Method != "ctf" || len(d.Password) != 16 || !strings.HasPrefix(d.DeviceURL, "com.rsa.securid") || d.ActivationCode != "" {
		t.Fatalf("delivery %+v", d)
	}
	var detail RolloutDetailDTO
	readAs(t, e.http("GET", base+"/"+plan.ID, appliance.RoleAuditor, nil), http.StatusOK, &detail)
	if detail.Items[0].Delivery != "taken" || detail.Items[1].Delivery != "waiting" {
		t.Fatalf("delivery states %+v", detail.Items)
	}
	links, err := csv.NewReader(strings.NewReader(readAs(t, e.http("GET", base+"/"+plan.ID+"/export?part=links", appliance.RoleSuperAdmin, nil),
		http.StatusOK, nil))).ReadAll()
	if err != nil || len(links) != 5 || links[0][3] != "link" || !strings.HasPrefix(links[1][3], "com.rsa.securid") {
		t.Fatalf("links %v %v", links, err)
	}
	pws, err := csv.NewReader(strings.NewReader(readAs(t, e.http("GET", base+"/"+plan.ID+"/export?part=codes", appliance.RoleSuperAdmin, nil),
		http.StatusOK, nil))).ReadAll()
	if err != nil || len(pws) != 5 || pws[0][3] != "password" || len(pws[1][3]) != 16 {
		t.Fatalf("passwords %v %v", pws, err)
	}
	readAs(t, e.http("GET", base+"/"+plan.ID, appliance.RoleAuditor, nil), http.StatusOK, &detail)
	if detail.Items[1].Delivery != "exported" {
		t.Fatalf("after the exports %+v", detail.Items[1])
	}
	for _, row := range pws[1:] {
		if strings.Contains(e.logs.String(), row[3]) {
			t.Error("a password is in the log")
		}
	}
}
