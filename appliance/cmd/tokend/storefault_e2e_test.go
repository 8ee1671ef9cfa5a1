package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/admin"
	"tokend/agents/radius"
	"tokend/agents/rsarest"
	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/internal/boltstore/storefault"
	"tokend/appliance/metrics"
	"tokend/appliance/seal"
	"tokend/internal/stoken"
	"tokend/sync/scim"
)

// TestFailingStoreEndToEnd: the real Service and admin API (HTTPS) and the
// CT-KIP door on a bbolt file whose writes fail (ENOSPC) or whose fsyncs
// fail. Every write route answers 503 store_unavailable, not 500; CT-KIP
// answers a SOAP fault and does not consume the activation code; reads keep
// working; once the file heals the same requests succeed without a restart
// and the store and the audit chain check clean.
func TestFailingStoreEndToEnd(t *testing.T) {
	for _, mode := range []struct {
		name string
		m    storefault.Mode
	}{{"no space", storefault.NoSpace}, {"fsync fails", storefault.SyncFails}} {
		t.Run(mode.name, func(t *testing.T) { testFailingStore(t, mode.m) })
	}
}

func testFailingStore(t *testing.T, mode storefault.Mode) {
	dir := t.TempDir()
	var ff storefault.File
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{OpenFile: ff.OpenFile, FailureHold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer, SpoolDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sys := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})
	if err := svc.Init(sys); err != nil {
		t.Fatal(err)
	}
	_, secret, err := svc.ReplaceNamedAPIToken(sys, adminTokenName, appliance.RoleSuperAdmin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	rsaKey, err := svc.CTKIPKey(sys, cfg.CTKIP.RSABits)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := newCTKIPServer(cfg.CTKIP, svc, rsaKey, metrics.New("test"), log, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctSrv := httptest.NewTLSServer(ct)
	t.Cleanup(ctSrv.Close)
	svc.SetCTKIPURL(ctSrv.URL + ctkipPath)
	// /readyz as serve wires it for bbolt: the store's write probe, here
	// without the hold after a refused commit, so the probe itself is seen.
	adm := admin.New(svc, admin.Options{Logger: log, Backup: st.Backup, Ready: func() error { return st.Ping(context.Background()) }})
	sc, err := scim.New(svc, scim.Options{Logger: log, Metrics: metrics.New("test")})
	if err != nil {
		t.Fatal(err)
	}
	adm.Engine().Any("/scim/v2/*path", gin.WrapH(http.StripPrefix("/scim/v2", sc)))
	admSrv := httptest.NewTLSServer(adm)
	t.Cleanup(admSrv.Close)
	rest, err := rsarest.New(rsarest.Config{Service: svc, Logger: log, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	restSrv := httptest.NewTLSServer(rest)
	t.Cleanup(restSrv.Close)
	in := &instance{dir: dir, admin: admSrv.URL, token: secret.Reveal(), client: admSrv.Client()}
	ctClient := ctkipClient(&instance{client: ctSrv.Client()})

	_, d := seedProcedure(t, in)
	// One provisioned token, to try an authentication on the failing store.
	var d2 distribution
	in.json(t, "POST", "/api/v1/tokens/000100000002/distribution", map[string]string{"profile": "android"}, http.StatusCreated, &d2)
	res, err := ctClient.Provision(context.Background(), d2.CTKIPURL, d2.ActivationCode)
	if err != nil {
		t.Fatalf("provision before the fault: %v", err)
	}

	var carol struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/users", map[string]string{"user_name": "carol"}, http.StatusCreated, &carol)
	in.json(t, "POST", "/api/v1/users/"+carol.ID+"/tokens", map[string]any{"serials": []string{"000100000004"}}, http.StatusOK, nil)

	var scimSrc struct {
		SCIMToken string `json:"scim_token"`
	}
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "entra", "type": "scim"}, http.StatusCreated, &scimSrc)
	scimPush := func() (int, string) {
		t.Helper()
		hr, _ := http.NewRequest("POST", in.admin+"/scim/v2/Users", strings.NewReader(
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"dave@example.org","externalId":"e-dave"}`))
		hr.Header.Set("Authorization", "Bearer "+scimSrc.SCIMToken)
		hr.Header.Set("Content-Type", "application/scim+json")
		resp, err := in.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	var radAgent struct {
		Secret string `json:"secret"`
	}
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "pam", "kind": "radius", "address": "127.0.0.1"}, http.StatusCreated, &radAgent)
	radSrv, err := radius.New(radius.Config{Service: svc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	radConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = radSrv.Serve(radConn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = radSrv.Shutdown(ctx)
	})
	radclientBin := requireTool(t, "radclient", "freeradius-utils")
	radAuth := func(code string) string {
		return radclientTries(t, radclientBin, radConn.LocalAddr().String(), radAgent.Secret,
			"User-Name=alice,User-Password="+code+",Message-Authenticator=0x00", 1, 2)
	}
	var restAgent struct {
		AccessKey string `json:"access_key"`
	}
	in.json(t, "POST", "/api/v1/agents", map[string]string{"name": "idp", "kind": "rest"}, http.StatusCreated, &restAgent)

	// Each is valid against the state before the fault, so a refusal can
	// only come from the store.
	type req struct {
		name, method, path, ctype, body string
		want                            int // once the file has healed
	}
	writes := []req{
		{"import", "POST", "/api/v1/tokens/import?format=csv", "text/csv", "serial\n000100000009\n", http.StatusCreated},
		{"create user", "POST", "/api/v1/users", "application/json", `{"user_name":"bob"}`, http.StatusCreated},
		{"assign", "POST", "/api/v1/users/" + carol.ID + "/tokens", "application/json", `{"serials":["000100000005"]}`, http.StatusOK},
		{"unassign", "DELETE", "/api/v1/users/" + carol.ID + "/tokens/000100000004", "", "", http.StatusNoContent},
		{"disable", "POST", "/api/v1/tokens/000100000002/disable", "", "", http.StatusOK},
		{"enable", "POST", "/api/v1/tokens/000100000002/enable", "", "", http.StatusOK},
		{"distribute", "POST", "/api/v1/tokens/000100000003/distribution", "application/json", `{"profile":"android"}`, http.StatusCreated},
		{"create profile", "POST", "/api/v1/profiles", "application/json",
			`{"name":"ios","device_type":"ios","delivery_method":"ctkip","digits":6,"interval":60,"pin_mode":"none"}`, http.StatusCreated},
		{"create API token", "POST", "/api/v1/api-tokens", "application/json", `{"name":"ops","role":"helpdesk"}`, http.StatusCreated},
	}
	do := func(r req) (int, http.Header, []byte) {
		t.Helper()
		var body io.Reader
		if r.body != "" {
			body = strings.NewReader(r.body)
		}
		hr, _ := http.NewRequest(r.method, in.admin+r.path, body)
		hr.Header.Set("Authorization", "Bearer "+in.token)
		if r.ctype != "" {
			hr.Header.Set("Content-Type", r.ctype)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a hang fails
		defer cancel()
		resp, err := in.client.Do(hr.WithContext(ctx))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	auditCount := func() int {
		var page struct {
			Total int `json:"total"`
		}
		in.call(t, "GET", "/api/v1/audit?limit=1", "", nil, http.StatusOK, &page)
		return page.Total
	}
	auditBefore := auditCount()

	if err := ff.Set(mode); err != nil {
		t.Fatal(err)
	}
	for _, r := range writes {
		status, h, b := do(r)
		var p admin.Problem
		_ = json.Unmarshal(b, &p)
		if status != http.StatusServiceUnavailable || p.Code != admin.CodeStoreUnavailable ||
			h.Get("Content-Type") != "application/problem+json" || h.Get("Retry-After") == "" {
			t.Errorf("%s on the failing store = %d %v: %s; want 503 %s with Retry-After", r.name, status, h.Get("Retry-After"), b, admin.CodeStoreUnavailable)
		}
	}
	// A load balancer stops sending here: nothing that writes can succeed.
	in.call(t, "GET", "/readyz", "", nil, http.StatusServiceUnavailable, nil)
	// SCIM allows no 503 (RFC 7644 §3.12): a 500 that says why.
	if status, b := scimPush(); status != http.StatusInternalServerError || !strings.Contains(b, "store unavailable") {
		t.Errorf("SCIM POST /Users on the failing store = %d: %s; want 500 saying store unavailable", status, b)
	}
	// Authentication writes a replay mark: it cannot be accepted (the mark
	// would be lost) and fails as unavailable, not as a reject.
	stoken.Require(t)
	code := stoken.Tokencode(t, res.Seed[:], res.Serial, res.Digits, res.Interval, stoken.NoPIN, time.Now())
	authReq := req{name: "authenticate", method: "POST", path: "/api/v1/authenticate", ctype: "application/json",
		body: `{"user_name":"alice","passcode":"` + code + `"}`}
	if status, _, b := do(authReq); status != http.StatusServiceUnavailable || !strings.Contains(string(b), admin.CodeStoreUnavailable) {
		t.Errorf("authenticate on the failing store = %d: %s; want 503 %s", status, b, admin.CodeStoreUnavailable)
	}
	// RADIUS drops the request (no answer, as for any internal error): the
	// agent retries or fails over instead of telling the user "wrong code".
	if out := radAuth(code); strings.Contains(out, "Received Access-") || !strings.Contains(out, "No reply") {
		t.Errorf("RADIUS on the failing store answered; want no reply:\n%s", out)
	}
	// The RSA REST door answers its own unavailable shape.
	hr, _ := http.NewRequest("POST", restSrv.URL+rsarest.BasePath+"initialize", strings.NewReader(
		`{"clientId":"idp","subjectName":"alice","subjectCredentials":[{"methodId":"SECURID","collectedInputs":[{"name":"SECURID","value":"`+code+`"}]}],`+
			`"context":{"authnAttemptId":"","messageId":"m-1","inResponseTo":""}}`))
	hr.Header.Set("client-key", restAgent.AccessKey)
	hr.Header.Set("Content-Type", "application/json")
	if resp, err := restSrv.Client().Do(hr); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"SERVICE_UNAVAILABLE"`) {
			t.Errorf("REST initialize on the failing store = %d: %s; want 503 SERVICE_UNAVAILABLE", resp.StatusCode, b)
		}
	}
	// CT-KIP: a SOAP fault, and the activation code is not used up.
	if _, err := ctClient.Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err == nil ||
		!strings.Contains(err.Error(), "InternalServerException") {
		t.Errorf("provision on the failing store: %v; want an InternalServerException fault", err)
	}
	// Reads go on.
	var tok struct {
		Provisioned bool   `json:"provisioned"`
		UserID      string `json:"user_id"`
	}
	in.call(t, "GET", "/api/v1/tokens/000100000002", "", nil, http.StatusOK, &tok)
	if !tok.Provisioned {
		t.Errorf("token 000100000002 read on the failing store: %+v", tok)
	}
	in.call(t, "GET", "/api/v1/users?search=bob", "", nil, http.StatusOK, nil)
	if n := auditCount(); n != auditBefore {
		t.Errorf("%d audit records after the failed writes, %d before: something was half-written", n, auditBefore)
	}

	if err := ff.Set(storefault.Healthy); err != nil {
		t.Fatal(err)
	}
	// Ready again before any write: the next probe (at most a second
	// after the last failed one) sees the file healed.
	waitUntil(t, 5*time.Second, "/readyz 200 after the file healed", func() bool {
		resp, err := in.client.Get(in.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	for _, r := range writes {
		if status, _, b := do(r); status != r.want {
			t.Errorf("%s after the fault cleared = %d: %s; want %d", r.name, status, b, r.want)
		}
	}
	if status, b := scimPush(); status != http.StatusCreated {
		t.Errorf("SCIM POST /Users after the fault cleared = %d: %s; want 201", status, b)
	}
	if status, _, b := do(authReq); status != http.StatusOK || !strings.Contains(string(b), `"accept"`) {
		t.Errorf("authenticate after the fault cleared = %d: %s; want accept (the failed try left no replay mark)", status, b)
	}
	next := stoken.Tokencode(t, res.Seed[:], res.Serial, res.Digits, res.Interval, stoken.NoPIN, time.Now().Add(time.Duration(res.Interval)*time.Second))
	if out := radAuth(next); !strings.Contains(out, "Received Access-Accept") {
		t.Errorf("RADIUS after the fault cleared; want Access-Accept:\n%s", out)
	}
	if got, err := ctClient.Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err != nil || got.Serial != "000100000001" {
		t.Errorf("provision after the fault cleared: %+v %v", got, err)
	}
	if err := svc.CheckStore(sys); err != nil {
		t.Errorf("CheckStore: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Errorf("bbolt check: %v", err)
	}
	rep, err := svc.VerifyAudit(sys)
	if err != nil || len(rep.Problems) != 0 {
		t.Errorf("VerifyAudit: %+v %v", rep, err)
	}
}
