package admin

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/otp"
)

// testSeed is the known seed the test "device" commits through CT-KIP.
var testSeed = []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// fob is a provisioned token in a user's hand: its generator runs on the
// test clock, so every code is deterministic.
type fob struct {
	e      *env
	userID string
	serial string
	gen    otp.SecurID
}

// step is the time step the appliance's clock is in.
func (f fob) step() int64 { return f.gen.Step(f.e.clock.Now()) }

// code returns the tokencode of the current step plus offset.
func (f fob) code(offset int64) string {
	f.e.t.Helper()
	c, err := f.gen.CodeAt(f.step() + offset)
	if err != nil {
		f.e.t.Fatal(err)
	}
	return c
}

// provision walks the seed procedure over the API (import, profile, user,
// assign, distribute) as a super admin, then plays the device: the CT-KIP
// exchange ends in Service.CompleteProvisioning with the known seed.
func (e *env) provision(userName, serial, pinMode string) fob {
	e.t.Helper()
	w := e.do(req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: appliance.RoleSuperAdmin, ctype: "text/csv", body: csvBody(serial)})
	want(e.t, w, http.StatusCreated, nil)
	e.clock.Advance(time.Second) // import job ids come from the start time
	profile := "p-" + userName
	want(e.t, e.call("POST", "/api/v1/profiles", map[string]any{"name": profile, "device_type": "android",
		"delivery_method": "ctkip", "pin_mode": pinMode}), http.StatusCreated, nil)
	var u UserViewDTO
	want(e.t, e.call("POST", "/api/v1/users", map[string]any{"user_name": userName}), http.StatusCreated, &u)
	want(e.t, e.call("POST", "/api/v1/users/"+u.ID+"/tokens", map[string]any{"serials": []string{serial}}), http.StatusOK, nil)
	var d DistributionDTO
	want(e.t, e.call("POST", "/api/v1/tokens/"+serial+"/distribution", map[string]any{"profile": profile}), http.StatusCreated, &d)
	if _, err := e.svc.CompleteProvisioning(e.t.Context(), d.ActivationCode, testSeed); err != nil {
		e.t.Fatal(err)
	}
	gen, err := otp.NewSecurID(testSeed, serial, 8, 60)
	if err != nil {
		e.t.Fatal(err)
	}
	return fob{e: e, userID: u.ID, serial: serial, gen: gen}
}

// auth sends one authentication attempt as the agent.
func (e *env) auth(user, passcode, session string) AuthResultDTO {
	e.t.Helper()
	body := map[string]string{"user_name": user, "passcode": passcode}
	if session != "" {
		body["session"] = session
	}
	w := e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent, body: jsonBody(e.t, body)})
	var res AuthResultDTO
	want(e.t, w, http.StatusOK, &res)
	return res
}

func (e *env) token(serial string) TokenDTO {
	e.t.Helper()
	var t TokenDTO
	want(e.t, e.call("GET", "/api/v1/tokens/"+serial, nil), http.StatusOK, &t)
	return t
}

func (e *env) user(id string) UserViewDTO {
	e.t.Helper()
	var u UserViewDTO
	want(e.t, e.call("GET", "/api/v1/users/"+id, nil), http.StatusOK, &u)
	return u
}

var (
	accept = AuthResultDTO{Result: appliance.AuthAccept, Reason: appliance.ReasonOK}
	denied = AuthResultDTO{Result: appliance.AuthReject, Reason: appliance.ReasonDenied}
)

// wrongCode is a tokencode that is not code (each digit moved by one).
func wrongCode(code string) string {
	b := []byte(code)
	for i := range b {
		b[i] = '0' + (b[i]-'0'+1)%10
	}
	return string(b)
}

// TestAuthenticationFlow provisions a token over the API and then drives
// the authentication API and the help desk's tools against it: replay,
// next tokencode mode, lockout and unlock, resynchronisation, a fob-style
// PIN and emergency access.
func TestAuthenticationFlow(t *testing.T) {
	e := newEnv(t)
	const hd = appliance.RoleHelpdesk
	alice := e.provision("alice", "000100000001", appliance.PINModeNone)
	if tok := e.token(alice.serial); !tok.Provisioned || tok.PINSet || tok.NewPINRequired || tok.Drift != 0 {
		t.Fatalf("provisioned token %+v", tok)
	}

	t.Log("the current code is accepted once")
	code := alice.code(0)
	if diff := cmp.Diff(accept, e.auth("alice", code, "")); diff != "" {
		t.Fatalf("current code (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(denied, e.auth("alice", code, "")); diff != "" {
		t.Fatalf("replayed code (-want +got):\n%s", diff)
	}
	if tok := e.token(alice.serial); tok.LastUsedAt == nil || !tok.LastUsedAt.Equal(e.clock.Now()) {
		t.Errorf("last_used_at %v, want %v", tok.LastUsedAt, e.clock.Now())
	}

	t.Log("a code five steps ahead asks for the next one, which sets the drift")
	e.clock.Advance(time.Minute)
	res := e.auth("alice", alice.code(5), "")
	if res.Result != appliance.AuthNextTokencode || res.Reason != appliance.ReasonNextCode || res.Session == "" {
		t.Fatalf("drifted code: %+v", res)
	}
	e.clock.Advance(time.Minute) // the user waits for the next code
	if diff := cmp.Diff(accept, e.auth("alice", alice.code(5), res.Session)); diff != "" {
		t.Fatalf("next tokencode (-want +got):\n%s", diff)
	}
	if tok := e.token(alice.serial); tok.Drift != 5 {
		t.Errorf("drift %d after next tokencode mode, want 5", tok.Drift)
	}
	// The session was used up.
	e.clock.Advance(time.Minute)
	if diff := cmp.Diff(denied, e.auth("alice", alice.code(6), res.Session)); diff != "" {
		t.Errorf("reused session (-want +got):\n%s", diff)
	}
	// The drift now centres the window: the token's code is accepted.
	e.clock.Advance(time.Minute)
	if diff := cmp.Diff(accept, e.auth("alice", alice.code(5), "")); diff != "" {
		t.Fatalf("code after drift (-want +got):\n%s", diff)
	}

	t.Log("five bad passcodes lock the user out until the help desk unlocks")
	e.clock.Advance(time.Minute)
	for i := range 5 {
		if diff := cmp.Diff(denied, e.auth("alice", wrongCode(alice.code(5)), "")); diff != "" {
			t.Fatalf("bad passcode %d (-want +got):\n%s", i+1, diff)
		}
	}
	u := e.user(alice.userID)
	wantUntil := e.clock.Now().Add(30 * time.Minute)
	if !u.Locked || u.Failures != 5 || u.LockedUntil == nil || !u.LockedUntil.Equal(wantUntil) {
		t.Fatalf("after five failures: locked %v failures %d until %v; want locked until %v", u.Locked, u.Failures, u.LockedUntil, wantUntil)
	}
	good := alice.code(5)
	if diff := cmp.Diff(denied, e.auth("alice", good, "")); diff != "" {
		t.Fatalf("good code while locked (-want +got):\n%s", diff)
	}
	var unlocked UserDTO
	want(t, e.do(req{method: "POST", path: "/api/v1/users/" + alice.userID + "/unlock", role: hd}), http.StatusOK, &unlocked)
	if unlocked.Locked || unlocked.LockedUntil != nil || unlocked.Failures != 0 || unlocked.ID != alice.userID {
		t.Fatalf("after unlock %+v", unlocked)
	}
	if diff := cmp.Diff(accept, e.auth("alice", good, "")); diff != "" {
		t.Fatalf("after unlock (-want +got):\n%s", diff)
	}
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/users/nobody/unlock", role: hd}), http.StatusNotFound, CodeNotFound)

	t.Log("resync from two consecutive codes far from the token's clock")
	e.clock.Advance(time.Minute)
	var tok TokenDTO
	w := e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/resync", role: hd,
		body: jsonBody(t, map[string]string{"first": alice.code(40), "second": alice.code(41)})})
	want(t, w, http.StatusOK, &tok)
	if tok.Drift != 41 {
		t.Errorf("drift %d after resync, want 41", tok.Drift)
	}
	// The second code is used; the one after it is accepted.
	if diff := cmp.Diff(denied, e.auth("alice", alice.code(41), "")); diff != "" {
		t.Errorf("resync code reused (-want +got):\n%s", diff)
	}
	e.clock.Advance(time.Minute)
	if diff := cmp.Diff(accept, e.auth("alice", alice.code(41), "")); diff != "" {
		t.Errorf("code after resync (-want +got):\n%s", diff)
	}
	first, third := alice.code(3), alice.code(5)
	p := wantProblem(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/resync", role: hd,
		body: jsonBody(t, map[string]string{"first": first, "second": third})}), http.StatusConflict, CodeConflict)
	if strings.Contains(p.Detail, first) || strings.Contains(p.Detail, third) {
		t.Errorf("resync problem echoes a code: %q", p.Detail)
	}

	t.Log("a fob-style token: the help desk sets the PIN, the user types PIN + code")
	bob := e.provision("bob", "000100000002", appliance.PINModeFob)
	if tok := e.token(bob.serial); tok.PINSet || !tok.NewPINRequired || tok.PINMode == nil || *tok.PINMode != appliance.PINModeFob {
		t.Fatalf("fob token before its PIN %+v", tok)
	}
	const pin = "86421357"
	w = e.do(req{method: "POST", path: "/api/v1/tokens/" + bob.serial + "/pin", role: hd, body: jsonBody(t, map[string]string{"pin": pin})})
	want(t, w, http.StatusOK, &tok)
	if !tok.PINSet || tok.NewPINRequired {
		t.Errorf("after setting the PIN %+v", tok)
	}
	if strings.Contains(w.Body.String(), pin) || strings.Contains(w.Body.String(), "argon2") {
		t.Errorf("PIN response shows the PIN or its hash: %s", w.Body)
	}
	if diff := cmp.Diff(denied, e.auth("bob", bob.code(0), "")); diff != "" {
		t.Errorf("code without PIN (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(denied, e.auth("bob", "1111"+bob.code(0), "")); diff != "" {
		t.Errorf("wrong PIN (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(accept, e.auth("bob", pin+bob.code(0), "")); diff != "" {
		t.Errorf("PIN + code (-want +got):\n%s", diff)
	}
	// Require a new PIN: the next good code starts new PIN mode.
	want(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + bob.serial + "/pin", role: hd,
		body: strings.NewReader(`{"require_new":true}`)}), http.StatusOK, &tok)
	if tok.PINSet || !tok.NewPINRequired {
		t.Errorf("after require_new %+v", tok)
	}
	e.clock.Advance(time.Minute)
	res = e.auth("bob", bob.code(0), "")
	if res.Result != appliance.AuthNewPIN || res.Session == "" {
		t.Errorf("code in new PIN mode: %+v", res)
	}
	want(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + bob.serial + "/pin", role: hd,
		body: strings.NewReader(`{"clear":true}`)}), http.StatusOK, &tok)
	if tok.PINSet {
		t.Errorf("after clear %+v", tok)
	}

	t.Log("emergency access: one-time codes, each accepted once")
	var ea EmergencyAccessDTO
	w = e.do(req{method: "POST", path: "/api/v1/users/" + alice.userID + "/emergency-access", role: hd,
		body: strings.NewReader(`{"kind":"onetime","count":3,"lifetime":"8h"}`)})
	want(t, w, http.StatusCreated, &ea)
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("emergency access Cache-Control %q", cc)
	}
	if ea.Kind != appliance.EmergencyOneTime || len(ea.Codes) != 3 || !ea.ExpiresAt.Equal(e.clock.Now().Add(8*time.Hour)) {
		t.Fatalf("emergency access %+v", ea)
	}
	for _, c := range ea.Codes {
		if !regexp.MustCompile(`^[0-9]{10}$`).MatchString(c) {
			t.Errorf("emergency code %q is not 10 digits", c)
		}
	}
	if diff := cmp.Diff(accept, e.auth("alice", ea.Codes[0], "")); diff != "" {
		t.Errorf("one-time code (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(denied, e.auth("alice", ea.Codes[0], "")); diff != "" {
		t.Errorf("one-time code reused (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(accept, e.auth("alice", ea.Codes[1], "")); diff != "" {
		t.Errorf("second one-time code (-want +got):\n%s", diff)
	}
	want(t, e.do(req{method: "DELETE", path: "/api/v1/users/" + alice.userID + "/emergency-access", role: hd}), http.StatusNoContent, nil)
	if diff := cmp.Diff(denied, e.auth("alice", ea.Codes[2], "")); diff != "" {
		t.Errorf("code after revocation (-want +got):\n%s", diff)
	}
	wantProblem(t, e.do(req{method: "DELETE", path: "/api/v1/users/" + alice.userID + "/emergency-access", role: hd}), http.StatusNotFound, CodeNotFound)

	t.Log("a fixed emergency code works until it expires")
	want(t, e.do(req{method: "POST", path: "/api/v1/users/" + alice.userID + "/emergency-access", role: hd,
		body: strings.NewReader(`{"kind":"fixed","lifetime":"1h"}`)}), http.StatusCreated, &ea)
	if len(ea.Codes) != 1 {
		t.Fatalf("fixed emergency access %+v", ea)
	}
	for range 2 {
		if diff := cmp.Diff(accept, e.auth("alice", ea.Codes[0], "")); diff != "" {
			t.Errorf("fixed code (-want +got):\n%s", diff)
		}
	}
	e.clock.Advance(time.Hour)
	if diff := cmp.Diff(denied, e.auth("alice", ea.Codes[0], "")); diff != "" {
		t.Errorf("expired fixed code (-want +got):\n%s", diff)
	}

	t.Log("every decision and admin action is audited, attributed and without secrets")
	var audit AuditPageDTO
	want(t, e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", role: appliance.RoleAuditor}), http.StatusOK, &audit)
	actions := map[string]int{}
	for _, r := range audit.Items {
		actions[r.Actor.Role+" "+r.Action]++
	}
	for _, a := range []string{"agent auth", "helpdesk user.unlock", "helpdesk token.resync", "helpdesk token.pin.set",
		"helpdesk token.pin.require_new", "helpdesk token.pin.clear", "helpdesk user.emergency_access.issue", "helpdesk user.emergency_access.revoke"} {
		if actions[a] == 0 {
			t.Errorf("no audit record %q in %v", a, actions)
		}
	}
	raw := e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", role: appliance.RoleAuditor}).Body.String()
	for _, secret := range append([]string{pin, good}, ea.Codes...) {
		if strings.Contains(raw, secret) {
			t.Errorf("the audit trail holds a secret")
		}
	}
}

// TestAuthenticateInput checks the shape of authentication requests. No
// problem echoes the passcode, and an unknown user is an ordinary reject,
// not a 404 that would reveal which names exist.
func TestAuthenticateInput(t *testing.T) {
	e := newEnv(t)
	const passcode = "31415926535"
	long := strings.Repeat("7", maxPasscode+1)
	tests := []struct {
		name   string
		ctype  string
		body   string
		status int
		code   string
		fields []FieldProblem
	}{
		{name: "missing user name", body: `{"passcode":"` + passcode + `"}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"user_name", "required"}}},
		{name: "missing passcode", body: `{"user_name":"alice"}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"passcode", "required"}}},
		{name: "passcode too long", body: `{"user_name":"alice","passcode":"` + long + `"}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"passcode", "must be at most 64 characters"}}},
		{name: "every problem at once", body: `{"user_name":"","passcode":"` + long + `","session":"` + strings.Repeat("s", 65) + `"}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"user_name", "required"},
				{"passcode", "must be at most 64 characters"}, {"session", "must be at most 64 characters"}}},
		{name: "user name too long", body: `{"user_name":"` + strings.Repeat("u", 257) + `","passcode":"` + passcode + `"}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"user_name", "must be at most 256 characters"}}},
		{name: "unknown field", body: `{"user_name":"alice","passcode":"` + passcode + `","pin":"1234"}`,
			status: 400, code: CodeUnknownField, fields: []FieldProblem{{"pin", "unknown field"}}},
		{name: "passcode as a number", body: `{"user_name":"alice","passcode":` + passcode + `}`,
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"passcode", "must be a string"}}},
		{name: "truncated JSON", body: `{"user_name":"alice","passcode":"` + passcode,
			status: 400, code: CodeMalformedJSON},
		{name: "not JSON", ctype: "application/x-www-form-urlencoded", body: "user_name=alice&passcode=" + passcode,
			status: 415, code: CodeUnsupportedMediaType},
		{name: "unknown user is a plain reject", body: `{"user_name":"nobody","passcode":"` + passcode + `"}`, status: 200},
		{name: "unknown session is a plain reject", body: `{"user_name":"nobody","passcode":"` + passcode + `","session":"nope"}`, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent, ctype: tc.ctype, body: strings.NewReader(tc.body)})
			if strings.Contains(w.Body.String(), passcode) || strings.Contains(w.Body.String(), long) {
				t.Errorf("the response echoes the passcode: %s", w.Body)
			}
			if tc.status == http.StatusOK {
				var res AuthResultDTO
				want(t, w, http.StatusOK, &res)
				if diff := cmp.Diff(denied, res); diff != "" {
					t.Errorf("decision (-want +got):\n%s", diff)
				}
				return
			}
			p := wantProblem(t, w, tc.status, tc.code)
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, p.Errors); diff != "" {
					t.Errorf("field problems (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestTokenAdminInput checks the PIN, resync and emergency access routes'
// refusals, through the one error mapper.
func TestTokenAdminInput(t *testing.T) {
	e := newEnv(t)
	alice := e.provision("alice", "000100000001", appliance.PINModeNone)
	bob := e.provision("bob", "000100000002", appliance.PINModeFob)
	const hd = appliance.RoleHelpdesk
	pinPath := "/api/v1/tokens/" + bob.serial + "/pin"
	resyncPath := "/api/v1/tokens/" + alice.serial + "/resync"
	eaPath := "/api/v1/users/" + alice.userID + "/emergency-access"
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
		fields       []FieldProblem
	}{
		{name: "pin: nothing asked", path: pinPath, body: `{}`, status: 400, code: CodeInvalidRequest},
		{name: "pin: two things asked", path: pinPath, body: `{"pin":"2468","clear":true}`, status: 400, code: CodeInvalidRequest},
		{name: "pin: too short", path: pinPath, body: `{"pin":"24"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"pin", "must be 4 to 8 characters"}}},
		{name: "pin: letters", path: pinPath, body: `{"pin":"abcdef"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"pin", "digits only"}}},
		{name: "pin: as a number", path: pinPath, body: `{"pin":97531}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"pin", "must be a string"}}},
		{name: "pin: token without PIN mode", path: "/api/v1/tokens/" + alice.serial + "/pin", body: `{"pin":"97531"}`, status: 409, code: CodeInvalidState},
		{name: "pin: unknown token", path: "/api/v1/tokens/999999999999/pin", body: `{"pin":"97531"}`, status: 404, code: CodeNotFound},
		{name: "pin: bad serial", path: "/api/v1/tokens/12/pin", body: `{"pin":"97531"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"serial", "must be 12 digits"}}},
		{name: "pin: unknown field", path: pinPath, body: `{"new_pin":"97531"}`, status: 400, code: CodeUnknownField},
		{name: "resync: missing codes", path: resyncPath, body: `{}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"first", "required"}, {"second", "required"}}},
		{name: "resync: not digits", path: resyncPath, body: `{"first":"12ab5678","second":"123456789012"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"first", "must be a tokencode of at most 10 digits, without PIN"}, {"second", "must be a tokencode of at most 10 digits, without PIN"}}},
		{name: "resync: codes not consecutive", path: resyncPath, body: `{"first":"` + alice.code(1) + `","second":"` + alice.code(3) + `"}`,
			status: 409, code: CodeConflict},
		{name: "resync: unknown token", path: "/api/v1/tokens/999999999999/resync", body: `{"first":"1","second":"2"}`, status: 404, code: CodeNotFound},
		{name: "emergency: onetime without count", path: eaPath, body: `{"kind":"onetime","lifetime":"8h"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"count", "must be 1 to 20"}}},
		{name: "emergency: too many codes", path: eaPath, body: `{"kind":"onetime","count":21,"lifetime":"8h"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"count", "must be 1 to 20"}}},
		{name: "emergency: lifetime past the maximum", path: eaPath, body: `{"kind":"fixed","lifetime":"100h"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"lifetime", "must be positive and at most 72h0m0s"}}},
		{name: "emergency: every problem at once", path: eaPath, body: `{"kind":"forever"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"kind", "must be fixed or onetime"}, {"lifetime", "must be positive and at most 72h0m0s"}}},
		{name: "emergency: lifetime not a duration", path: eaPath, body: `{"kind":"fixed","lifetime":"8 hours"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"lifetime", `must be a duration such as "8h" or "90m"`}}},
		{name: "emergency: count as a string", path: eaPath, body: `{"kind":"onetime","count":"3","lifetime":"8h"}`, status: 400, code: CodeInvalidRequest,
			fields: []FieldProblem{{"count", "must be a number"}}},
		{name: "emergency: unknown user", path: "/api/v1/users/nobody/emergency-access", body: `{"kind":"fixed","lifetime":"8h"}`, status: 404, code: CodeNotFound},
		{name: "emergency: revoke when there is none", method: "DELETE", path: eaPath, status: 404, code: CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "POST"
			}
			r := req{method: method, path: tc.path, role: hd}
			if tc.body != "" {
				r.body = strings.NewReader(tc.body)
			}
			p := wantProblem(t, e.do(r), tc.status, tc.code)
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, p.Errors); diff != "" {
					t.Errorf("field problems (-want +got):\n%s", diff)
				}
			}
			for _, secret := range []string{"97531", "2468", "abcdef"} {
				if strings.Contains(p.Detail, secret) {
					t.Errorf("problem echoes a PIN: %q", p.Detail)
				}
			}
		})
	}
}

// TestSecretsNeverLogged runs passcodes and PINs through every path that
// logs (the access log, internal errors, the Service's own logging, at
// debug level) and checks none of them reaches the log.
func TestSecretsNeverLogged(t *testing.T) {
	e := newEnv(t)
	alice := e.provision("alice", "000100000001", appliance.PINModeFob)
	const pin, badPIN, wrongPasscode = "86420135", "1357913579", "99887766554433"
	w := e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/pin", role: appliance.RoleHelpdesk,
		body: jsonBody(t, map[string]string{"pin": pin})})
	want(t, w, http.StatusOK, nil)
	// A PIN the policy refuses, and one sent with a syntax error after it.
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/pin", role: appliance.RoleHelpdesk,
		body: jsonBody(t, map[string]string{"pin": badPIN})}), http.StatusBadRequest, CodeInvalidRequest)
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/pin", role: appliance.RoleHelpdesk,
		body: strings.NewReader(`{"pin":"` + badPIN + `",}`)}), http.StatusBadRequest, CodeMalformedJSON)

	passcode := pin + alice.code(0)
	if diff := cmp.Diff(accept, e.auth("alice", passcode, "")); diff != "" {
		t.Fatalf("PIN + code (-want +got):\n%s", diff)
	}
	e.auth("alice", passcode, "")      // replay
	e.auth("alice", wrongPasscode, "") // wrong
	e.auth("nobody", wrongPasscode, "")
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent,
		body: strings.NewReader(`{"user_name":"alice","passcode":"` + wrongPasscode + strings.Repeat("0", 64) + `"}`)}), http.StatusBadRequest, CodeInvalidRequest)
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/authenticate", role: appliance.RoleAgent,
		body: strings.NewReader(`{"user_name":"alice","passcode":"` + wrongPasscode + `"`)}), http.StatusBadRequest, CodeMalformedJSON)
	// An agent key on a forbidden route, with a passcode in the body.
	wantProblem(t, e.do(req{method: "POST", path: "/api/v1/tokens/" + alice.serial + "/resync", role: appliance.RoleAgent,
		body: jsonBody(t, map[string]string{"first": wrongPasscode})}), http.StatusForbidden, CodeForbidden)

	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"/api/v1/authenticate"`) || !strings.Contains(logs, `"route":"/api/v1/tokens/:serial/pin"`) {
		t.Fatalf("the access log did not see the requests:\n%s", logs)
	}
	for name, secret := range map[string]string{"PIN": pin, "refused PIN": badPIN, "passcode": passcode, "wrong passcode": wrongPasscode} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the logs:\n%s", name, logs)
		}
	}
	// The redacting types hold if someone logs a request by mistake.
	for _, v := range []any{authenticateRequest{UserName: "alice", Passcode: appliance.Secret(passcode)}, pinRequest{PIN: appliance.Secret(pin)}} {
		if s := fmt.Sprintf("%v %+v", v, v); strings.Contains(s, passcode) || strings.Contains(s, pin) {
			t.Errorf("%T prints its secret: %s", v, s)
		}
	}
}

// TestUserDTOLockout checks that locked follows the server's clock, not
// the stored lockout alone.
func TestUserDTOLockout(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	until := now.Add(10 * time.Minute)
	tests := []struct {
		name       string
		user       appliance.User
		locked     bool
		lockedTill *time.Time
	}{
		{name: "never locked", user: appliance.User{}, locked: false},
		{name: "failures below the limit", user: appliance.User{Failures: 3}, locked: false},
		{name: "locked", user: appliance.User{Failures: 5, LockedUntil: until}, locked: true, lockedTill: &until},
		{name: "lockout ran out", user: appliance.User{Failures: 5, LockedUntil: now}, locked: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := userDTO(tc.user, now)
			if got.Locked != tc.locked || !cmp.Equal(got.LockedUntil, tc.lockedTill) || got.Failures != tc.user.Failures {
				t.Errorf("locked %v until %v failures %d; want %v until %v failures %d",
					got.Locked, got.LockedUntil, got.Failures, tc.locked, tc.lockedTill, tc.user.Failures)
			}
		})
	}
}
