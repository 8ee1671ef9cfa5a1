package rsarest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokend/agents/rsarest"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/otp"
)

var admin = appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})

// door serves the REST API over real TLS on 127.0.0.1 in front of svc.
func door(t *testing.T, svc *appliance.Service) (*httptest.Server, *http.Client) {
	t.Helper()
	h, err := rsarest.New(rsarest.Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, srv.Client()
}

// agentKey registers a REST agent and returns its access key.
func agentKey(t *testing.T, svc *appliance.Service, name string) string {
	t.Helper()
	_, key, err := svc.CreateAgent(admin, appliance.AgentInput{Name: name, Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}
	return key.Reveal()
}

type client struct {
	t    *testing.T
	url  string
	http *http.Client
	key  string
}

// post sends a raw body and returns the status and the decoded answer.
func (c *client) post(call string, body []byte) (int, rsarest.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.url+"/mfa/v1_1/authn/"+call, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("client-key", c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out rsarest.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		c.t.Fatalf("%s: %d, body not JSON: %v: %s", call, resp.StatusCode, err, raw)
	}
	return resp.StatusCode, out, string(raw)
}

func (c *client) call(call string, v any) rsarest.Response {
	c.t.Helper()
	b, _ := json.Marshal(v)
	status, out, raw := c.post(call, b)
	if status != http.StatusOK {
		c.t.Fatalf("%s: %d: %s", call, status, raw)
	}
	return out
}

func initialize(user, passcode string) rsarest.InitializeRequest {
	r := rsarest.InitializeRequest{ClientID: "vpn-gw", SubjectName: user, Context: rsarest.Context{MessageID: "m-1"}}
	if passcode != "" {
		r.SubjectCredentials = []rsarest.SubjectCredential{{MethodID: "SECURID", CollectedInputs: []rsarest.CollectedInput{{Name: "SECURID", Value: passcode}}}}
	}
	return r
}

func verify(prev rsarest.Response, method, value string) rsarest.VerifyRequest {
	return rsarest.VerifyRequest{
		SubjectCredentials: []rsarest.SubjectCredential{{MethodID: method, CollectedInputs: []rsarest.CollectedInput{{Name: method, Value: value}}}},
		Context:            rsarest.Context{AuthnAttemptID: prev.Context.AuthnAttemptID, MessageID: "m-next", InResponseTo: prev.Context.MessageID},
	}
}

func required(t *testing.T, r rsarest.Response) (string, rsarest.Prompt) {
	t.Helper()
	if r.AttemptResponseCode != "CHALLENGE" || r.ChallengeMethods == nil || len(r.ChallengeMethods.Challenges) != 1 ||
		len(r.ChallengeMethods.Challenges[0].RequiredMethods) != 1 {
		t.Fatalf("not a challenge: %+v", r)
	}
	m := r.ChallengeMethods.Challenges[0].RequiredMethods[0]
	return m.MethodID, m.Versions[0].Prompt
}

func code(t *testing.T, g otp.SecurID, step int64) string { return appliancetest.Code(t, g, step) }

func TestRESTDoor(t *testing.T) {
	svc := appliancetest.Service(t, appliance.Config{})
	srv, hc := door(t, svc)
	key := agentKey(t, svc, "idp")
	c := &client{t: t, url: srv.URL, http: hc, key: key}
	n := 0
	user := func(pin string) (string, otp.SecurID, int64) {
		n++
		name := fmt.Sprintf("user%d", n)
		return name, appliancetest.User(t, admin, svc, name, fmt.Sprintf("3000000000%02d", n), pin), time.Now().Unix() / 60
	}

	t.Run("initialize SUCCESS", func(t *testing.T) {
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, code(t, g, step)))
		if r.AttemptResponseCode != "SUCCESS" || r.AttemptReasonCode != "CREDENTIAL_VERIFIED" || r.Context.InResponseTo != "m-1" ||
			r.Context.AuthnAttemptID == "" || r.Context.MessageID == "" || r.CredentialValidationResults[0].MethodResponseCode != "SUCCESS" {
			t.Fatalf("%+v", r)
		}
		// The same code again is a replay.
		if r := c.call("initialize", initialize(u, code(t, g, step))); r.AttemptResponseCode != "FAIL" {
			t.Fatalf("replay: %+v", r)
		}
	})
	t.Run("next tokencode CHALLENGE then verify SUCCESS", func(t *testing.T) {
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, code(t, g, step+5)))
		m, p := required(t, r)
		if m != "SECURID_NEXT_TOKENCODE" || p.PromptResourceID != "SecurID.Resource.Prompt.Next.Tokencode" || !p.Sensitive {
			t.Fatalf("challenge %s %+v", m, p)
		}
		v := c.call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6)))
		if v.AttemptResponseCode != "SUCCESS" || v.Context.AuthnAttemptID != r.Context.AuthnAttemptID || v.Context.InResponseTo != "m-next" {
			t.Fatalf("verify: %+v", v)
		}
		// The attempt is over.
		if v := c.call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+7))); v.AttemptResponseCode != "FAIL" {
			t.Fatalf("attempt reused: %+v", v)
		}
	})
	t.Run("no credential asks for the passcode", func(t *testing.T) {
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, ""))
		if m, p := required(t, r); m != "SECURID" || p.DefaultText != "Enter passcode:" {
			t.Fatalf("challenge %s %+v", m, p)
		}
		if v := c.call("verify", verify(r, "SECURID", code(t, g, step))); v.AttemptResponseCode != "SUCCESS" {
			t.Fatalf("verify: %+v", v)
		}
	})
	t.Run("wrong code FAIL, unknown user the same", func(t *testing.T) {
		u, _, _ := user(appliance.PINModeNone)
		wrong := c.call("initialize", initialize(u, "00000000"))
		unknown := c.call("initialize", initialize("nobody", "00000000"))
		if wrong.AttemptResponseCode != "FAIL" || unknown.AttemptResponseCode != "FAIL" || wrong.AttemptReasonCode != unknown.AttemptReasonCode {
			t.Fatalf("%+v / %+v", wrong, unknown)
		}
	})
	t.Run("new PIN round", func(t *testing.T) {
		u, g, step := user(appliance.PINModeFob)
		r := c.call("initialize", initialize(u, code(t, g, step)))
		m, p := required(t, r)
		if m != "SECURID_PIN" || !p.ValueBeingDefined || *p.MinLength != 4 || *p.MaxLength != 8 {
			t.Fatalf("new PIN challenge %s %+v", m, p)
		}
		r = c.call("verify", verify(r, "SECURID_PIN", "8642"))
		if m, p := required(t, r); m != "SECURID" || !strings.HasPrefix(p.DefaultText, "PIN accepted") {
			t.Fatalf("after the PIN %s %+v", m, p)
		}
		if v := c.call("verify", verify(r, "SECURID", "8642"+code(t, g, step+1))); v.AttemptResponseCode != "SUCCESS" {
			t.Fatalf("PIN + tokencode: %+v", v)
		}
	})
	t.Run("unknown attempt FAIL", func(t *testing.T) {
		v := c.call("verify", verify(rsarest.Response{Context: rsarest.Context{AuthnAttemptID: "no-such-attempt", MessageID: "x"}}, "SECURID", "12345678"))
		if v.AttemptResponseCode != "FAIL" || v.AttemptReasonCode != "AUTHN_ATTEMPT_NOT_FOUND" {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("wrong message sequence FAIL", func(t *testing.T) {
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, code(t, g, step+5)))
		req := verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6))
		req.Context.InResponseTo = "not-the-last-answer"
		if v := c.call("verify", req); v.AttemptResponseCode != "FAIL" {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, code(t, g, step+5)))
		if x := c.call("cancel", rsarest.CancelRequest{AuthnAttemptID: r.Context.AuthnAttemptID, Reason: "USER_CANCEL"}); x.AttemptResponseCode != "SUCCESS" {
			t.Fatalf("cancel: %+v", x)
		}
		if v := c.call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6))); v.AttemptResponseCode != "FAIL" {
			t.Fatalf("verify after cancel: %+v", v)
		}
		if x := c.call("cancel", rsarest.CancelRequest{AuthnAttemptID: r.Context.AuthnAttemptID}); x.AttemptResponseCode != "FAIL" {
			t.Fatalf("second cancel: %+v", x)
		}
	})
	t.Run("another agent cannot continue an attempt", func(t *testing.T) {
		other := &client{t: t, url: srv.URL, http: hc, key: agentKey(t, svc, "other")}
		u, g, step := user(appliance.PINModeNone)
		r := c.call("initialize", initialize(u, code(t, g, step+5)))
		if v := other.call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6))); v.AttemptResponseCode != "FAIL" {
			t.Fatalf("other agent: %+v", v)
		}
		if v := c.call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6))); v.AttemptResponseCode != "SUCCESS" {
			t.Fatalf("own agent after the other's try: %+v", v)
		}
	})
}

func TestRESTBadInput(t *testing.T) {
	svc := appliancetest.Service(t, appliance.Config{})
	srv, hc := door(t, svc)
	key := agentKey(t, svc, "idp")
	a, k, err := svc.CreateAgent(admin, appliance.AgentInput{Name: "off", Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.UpdateAgent(admin, a.ID, appliance.AgentInput{Name: "off", Enabled: new(bool)}); err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(initialize("alice", "12345678"))

	auth := []struct {
		name, key string
	}{
		{"no key", ""},
		{"unknown key", "tka_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"garbage key", "hello"},
		{"disabled agent", k.Reveal()},
	}
	var bodies []string
	for _, tc := range auth {
		t.Run(tc.name, func(t *testing.T) {
			c := &client{t: t, url: srv.URL, http: hc, key: tc.key}
			status, _, raw := c.post("initialize", good)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d: %s", status, raw)
			}
			bodies = append(bodies, raw)
		})
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Fatalf("401 answers differ: %q vs %q", bodies[0], b)
		}
	}

	c := &client{t: t, url: srv.URL, http: hc, key: key}
	bad := []struct {
		name, call, body string
		status           int
	}{
		{"malformed JSON", "initialize", `{"subjectName":`, http.StatusBadRequest},
		{"not an object", "initialize", `[1,2]`, http.StatusBadRequest},
		{"wrong type", "initialize", `{"subjectName":42}`, http.StatusBadRequest},
		{"empty body", "verify", ``, http.StatusBadRequest},
		{"two documents", "cancel", `{}{}`, http.StatusBadRequest},
		{"no subject", "initialize", `{"subjectCredentials":[]}`, http.StatusBadRequest},
		{"credential without SECURID", "initialize", `{"subjectName":"alice","subjectCredentials":[{"methodId":"FIDO"}]}`, http.StatusBadRequest},
		{"huge passcode", "initialize", `{"subjectName":"alice","subjectCredentials":[{"methodId":"SECURID","collectedInputs":[{"name":"SECURID","value":"` + strings.Repeat("9", 5000) + `"}]}]}`, http.StatusBadRequest},
		{"verify without attempt", "verify", `{"context":{}}`, http.StatusOK},
		{"cancel unknown", "cancel", `{"authnAttemptId":"` + strings.Repeat("x", 500) + `"}`, http.StatusOK},
		{"too large", "initialize", `{"subjectName":"` + strings.Repeat("a", 70000) + `"}`, http.StatusBadRequest},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			status, r, raw := c.post(tc.call, []byte(tc.body))
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, raw)
			}
			if status == http.StatusBadRequest && (r.AttemptResponseCode != "ERROR" || r.Message == "") {
				t.Fatalf("a 400 an RSA client cannot log: %s", raw)
			}
			if status == http.StatusOK && r.AttemptResponseCode != "FAIL" {
				t.Fatalf("%s", raw)
			}
			if strings.Contains(raw, "99999999") {
				t.Fatalf("the answer echoes the passcode: %s", raw)
			}
		})
	}
}

// TestRESTAttemptSurvivesRestart opens an attempt on one tokend, stops it
// and continues the attempt on a new one over the same store.
func TestRESTAttemptSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	sealer, _ := appliancetest.Sealer(t)
	node := func() (*appliance.Service, appliance.Store) {
		st, err := appliancetest.OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Init(admin); err != nil {
			t.Fatal(err)
		}
		return svc, st
	}
	svc1, st1 := node()
	key := agentKey(t, svc1, "idp")
	g := appliancetest.User(t, admin, svc1, "alice", "300000000099", appliance.PINModeNone)
	step := time.Now().Unix() / 60
	srv1, hc1 := door(t, svc1)
	r := (&client{t: t, url: srv1.URL, http: hc1, key: key}).call("initialize", initialize("alice", code(t, g, step+5)))
	if m, _ := required(t, r); m != "SECURID_NEXT_TOKENCODE" {
		t.Fatalf("challenge %s", m)
	}
	srv1.Close()
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}

	svc2, st2 := node()
	t.Cleanup(func() { st2.Close() })
	srv2, hc2 := door(t, svc2)
	v := (&client{t: t, url: srv2.URL, http: hc2, key: key}).call("verify", verify(r, "SECURID_NEXT_TOKENCODE", code(t, g, step+6)))
	if v.AttemptResponseCode != "SUCCESS" {
		t.Fatalf("after the restart: %+v", v)
	}
}
