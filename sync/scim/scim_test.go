package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/sync/scim"
)

// env is a real Service on memstore behind the handler, mounted under Gin
// at /scim/v2 as main mounts it.
type env struct {
	svc    *appliance.Service
	source string
	token  string
	srv    *httptest.Server
}

func newService(t testing.TB) *appliance.Service {
	t.Helper()
	return appliancetest.Service(t, appliance.Config{})
}

func mount(t testing.TB, svc *appliance.Service) http.Handler {
	t.Helper()
	h, err := scim.New(svc, scim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	engine := gin.New()
	engine.Use(gin.Recovery())
	engine.Any("/scim/v2/*path", gin.WrapH(http.StripPrefix("/scim/v2", h)))
	return engine
}

func newEnv(t testing.TB, tls bool) *env {
	t.Helper()
	svc := newService(t)
	src, tok, err := svc.CreateIdentitySource(context.Background(), appliance.IdentitySource{Name: "Entra", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{svc: svc, source: src.ID, token: tok.Reveal()}
	if tls {
		e.srv = httptest.NewTLSServer(mount(t, svc))
	} else {
		e.srv = httptest.NewServer(mount(t, svc))
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) do(t testing.TB, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	return e.doToken(t, e.token, method, path, body)
}

func (e *env) doToken(t testing.TB, token, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	return e.doTokenH(t, token, method, path, body, nil)
}

// doTokenH is doToken with request headers.
func (e *env) doTokenH(t testing.TB, token, method, path, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+"/scim/v2"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func (e *env) user(t testing.TB, id string) appliance.SourceUser {
	t.Helper()
	su, err := e.svc.GetSourceUser(context.Background(), e.source, id)
	if err != nil {
		t.Fatal(err)
	}
	return su
}

// expect asserts a status and returns the body.
func expect(t testing.TB, want int) func(int, map[string]any, http.Header) map[string]any {
	return func(got int, body map[string]any, _ http.Header) map[string]any {
		t.Helper()
		if got != want {
			t.Fatalf("status %d, want %d; body %v", got, want, body)
		}
		return body
	}
}

// giveToken imports one token and assigns it to the user.
func giveToken(t *testing.T, svc *appliance.Service, userID, serial string) {
	t.Helper()
	ctx := context.Background()
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader("serial\n" + serial + "\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AssignTokens(ctx, userID, []string{serial}); err != nil {
		t.Fatal(err)
	}
}

func tokensOf(t *testing.T, svc *appliance.Service, userID string) []string {
	t.Helper()
	v, err := svc.GetUser(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tk := range v.Tokens {
		out = append(out, tk.Serial)
	}
	return out
}

type userState struct {
	UserName, DisplayName, Email, ExternalID string
	Active, Removed                          bool
}

func stateOf(su appliance.SourceUser) userState {
	return userState{su.UserName, su.DisplayName, su.Email, su.ExternalID, su.Active, !su.RemovedAt.IsZero()}
}

// TestEntraIDSequence replays what Entra ID sends (docs/sync.md §2.1).
func TestEntraIDSequence(t *testing.T) {
	e := newEnv(t, false)

	// Test connection: a filter that matches nothing is 200 with 0 results.
	body := expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+eq+%22e8f2c1d0-test%22`, ""))
	if body["totalResults"] != float64(0) || body["Resources"] == nil {
		t.Fatalf("test connection: %v", body)
	}
	// Create after a lookup.
	expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+eq+%22alice%40contoso.com%22`, ""))
	created := expect(t, 201)(e.do(t, "POST", "/Users", `{
		"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"externalId":"alice","userName":"alice@contoso.com","active":true,"displayName":"Alice Archer",
		"password":"S3cret!",
		"emails":[{"primary":true,"type":"work","value":"alice@contoso.com"}],
		"meta":{"resourceType":"User"},
		"name":{"formatted":"Alice Archer","familyName":"Archer","givenName":"Alice"},
		"roles":[],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","department":"Ops","manager":"bob-id"}}`))
	id, _ := created["id"].(string)
	if id == "" {
		t.Fatalf("no id: %v", created)
	}
	if _, ok := created["password"]; ok {
		t.Fatal("password echoed")
	}
	giveToken(t, e.svc, id, "000123456789")

	// Duplicate userName in another case: 409 uniqueness.
	dup := expect(t, 409)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ALICE@contoso.com"}`))
	if dup["scimType"] != "uniqueness" {
		t.Fatalf("409 body: %v", dup)
	}
	// Lookups find it case-insensitively.
	found := expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+eq+%22Alice%40Contoso.com%22`, ""))
	if found["totalResults"] != float64(1) {
		t.Fatalf("lookup: %v", found)
	}

	patches := []struct {
		name string
		body string
		want userState
	}{
		{"replace work email (filtered path)", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"alice.archer@contoso.com"}]}`,
			userState{"alice@contoso.com", "Alice Archer", "alice.archer@contoso.com", "alice", true, false}},
		{"replace family name and display name", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"name.familyName","value":"Smith"},{"op":"Replace","path":"displayName","value":"Alice Smith"}]}`,
			userState{"alice@contoso.com", "Alice Smith", "alice.archer@contoso.com", "alice", true, false}},
		{"manager as plain string", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"carol-id"}]}`,
			userState{"alice@contoso.com", "Alice Smith", "alice.archer@contoso.com", "alice", true, false}},
		{"path-less add with attribute-path keys", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","value":{"name.givenName":"Ally","emails[type eq \"work\"].value":"ally@contoso.com","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"Sec","displayName":"Ally Smith"}}]}`,
			userState{"alice@contoso.com", "Ally Smith", "ally@contoso.com", "alice", true, false}},
		{"rename userName", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"userName","value":"ally@contoso.com"}]}`,
			userState{"ally@contoso.com", "Ally Smith", "ally@contoso.com", "alice", true, false}},
		{"disable with string False", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
			userState{"ally@contoso.com", "Ally Smith", "ally@contoso.com", "alice", false, false}},
		{"enable with boolean", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":true}]}`,
			userState{"ally@contoso.com", "Ally Smith", "ally@contoso.com", "alice", true, false}},
	}
	for _, p := range patches {
		t.Run(p.name, func(t *testing.T) {
			expect(t, 200)(e.do(t, "PATCH", "/Users/"+id+"?aadOptscim062020", p.body))
			if diff := cmp.Diff(p.want, stateOf(e.user(t, id))); diff != "" {
				t.Errorf("stored user (-want +got):\n%s", diff)
			}
		})
	}
	got := expect(t, 200)(e.do(t, "GET", "/Users/"+id, ""))
	ext, _ := got["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
	if mgr, _ := ext["manager"].(map[string]any); mgr["value"] != "carol-id" || ext["department"] != "Sec" {
		t.Errorf("enterprise extension round trip: %v", ext)
	}
	if name, _ := got["name"].(map[string]any); name["givenName"] != "Ally" || name["familyName"] != "Smith" {
		t.Errorf("name: %v", got["name"])
	}
	emails, _ := got["emails"].([]any)
	if len(emails) != 1 {
		t.Errorf("emails: %v", got["emails"])
	}

	// Groups.
	expect(t, 200)(e.do(t, "GET", `/Groups?excludedAttributes=members&filter=displayName+eq+%22Ops%22`, ""))
	bob := expect(t, 201)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@contoso.com","externalId":"bob"}`))["id"].(string)
	grp := expect(t, 201)(e.do(t, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Ops","externalId":"g-ops","members":[]}`))["id"].(string)
	expect(t, 200)(e.do(t, "PATCH", "/Groups/"+grp, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":"`+id+`"}]}]}`))
	expect(t, 200)(e.do(t, "PATCH", "/Groups/"+grp, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":"`+bob+`"}]}]}`))
	expect(t, 200)(e.do(t, "PATCH", "/Groups/"+grp, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"`+bob+`"}]}]}`))
	expect(t, 200)(e.do(t, "PATCH", "/Groups/"+grp, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"displayName","value":"Operations"}]}`))
	g, err := e.svc.GetGroup(context.Background(), e.source, grp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(appliance.Group{DisplayName: "Operations", ExternalID: "g-ops", Members: []string{id}}, g,
		cmpIgnore("ID", "Source", "CreatedAt", "UpdatedAt")); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
	noMembers := expect(t, 200)(e.do(t, "GET", `/Groups?excludedAttributes=members&filter=displayName+eq+%22operations%22`, ""))
	res, _ := noMembers["Resources"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["members"] != nil {
		t.Errorf("excludedAttributes=members: %v", noMembers)
	}

	// Hard delete: 204, then 404; the user is inactive and keeps its token.
	expect(t, 204)(e.do(t, "DELETE", "/Users/"+id, ""))
	expect(t, 404)(e.do(t, "GET", "/Users/"+id, ""))
	expect(t, 404)(e.do(t, "DELETE", "/Users/"+id, ""))
	if st := stateOf(e.user(t, id)); st.Active || !st.Removed {
		t.Errorf("after DELETE: %+v", st)
	}
	if diff := cmp.Diff([]string{"000123456789"}, tokensOf(t, e.svc, id)); diff != "" {
		t.Errorf("tokens after DELETE (-want +got):\n%s", diff)
	}
	list := expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+eq+%22ally%40contoso.com%22`, ""))
	if list["totalResults"] != float64(0) {
		t.Errorf("deleted user still listed: %v", list)
	}
	// Re-provisioning the same user revives it with its token.
	again := expect(t, 201)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ally@contoso.com","externalId":"alice","active":true}`))
	if again["id"] != id {
		t.Errorf("revived with id %v, want %s", again["id"], id)
	}
	if diff := cmp.Diff([]string{"000123456789"}, tokensOf(t, e.svc, id)); diff != "" {
		t.Errorf("tokens after revival (-want +got):\n%s", diff)
	}
}

// TestOktaSequence replays what Okta sends (docs/sync.md §2.2).
func TestOktaSequence(t *testing.T) {
	e := newEnv(t, false)
	expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+eq+%22dana%40example.com%22&startIndex=1&count=100`, ""))
	c := expect(t, 201)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"dana@example.com",
		"name":{"givenName":"Dana","familyName":"Doe"},"emails":[{"primary":true,"value":"dana@example.com","type":"work"}],
		"displayName":"Dana Doe","locale":"en-US","externalId":"00u1","groups":[],"password":"hunter22","active":true}`))
	id := c["id"].(string)
	giveToken(t, e.svc, id, "000000000042")
	expect(t, 200)(e.do(t, "GET", "/Users/"+id, ""))
	put := expect(t, 200)(e.do(t, "PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"`+id+`","userName":"dana@example.com",
		"name":{"givenName":"Dana","familyName":"Dean"},"emails":[{"primary":true,"value":"dana.dean@example.com","type":"work"}],
		"displayName":"Dana Dean","externalId":"00u1","active":true,"password":"new"}`))
	if _, ok := put["password"]; ok {
		t.Error("password echoed on PUT")
	}
	if diff := cmp.Diff(userState{"dana@example.com", "Dana Dean", "dana.dean@example.com", "00u1", true, false}, stateOf(e.user(t, id))); diff != "" {
		t.Errorf("after PUT (-want +got):\n%s", diff)
	}
	// Deactivate: path-less replace {active:false}; tokens stay.
	expect(t, 200)(e.do(t, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"`+id+`","active":false}}]}`))
	if st := stateOf(e.user(t, id)); st.Active || st.Removed {
		t.Errorf("after deactivate: %+v", st)
	}
	if diff := cmp.Diff([]string{"000000000042"}, tokensOf(t, e.svc, id)); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	expect(t, 200)(e.do(t, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":true}}]}`))
	if st := stateOf(e.user(t, id)); !st.Active {
		t.Errorf("after reactivate: %+v", st)
	}
	// Import paging.
	for _, n := range []string{"erin", "finn", "gus"} {
		expect(t, 201)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+n+`@example.com"}`))
	}
	p1 := expect(t, 200)(e.do(t, "GET", "/Users?startIndex=1&count=3", ""))
	p2 := expect(t, 200)(e.do(t, "GET", "/Users?startIndex=4&count=3", ""))
	if p1["totalResults"] != float64(4) || len(p1["Resources"].([]any)) != 3 || len(p2["Resources"].([]any)) != 1 {
		t.Errorf("paging: %v / %v", p1, p2)
	}
	erin := expect(t, 200)(e.do(t, "GET", `/Users?filter=userName+sw+%22erin%22`, ""))["Resources"].([]any)[0].(map[string]any)["id"].(string)

	// Group push.
	grp := expect(t, 201)(e.do(t, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"VPN","members":[{"value":"`+id+`","display":"dana@example.com"}]}`))["id"].(string)
	steps := []struct {
		name, body string
		want       []string
	}{
		{"add members", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"` + erin + `","display":"erin@example.com"}]}]}`, []string{id, erin}},
		{"remove members[value eq]", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"` + id + `\"]"}]}`, []string{erin}},
		{"replace members", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[{"value":"` + id + `"},{"value":"` + erin + `"}]}]}`, []string{id, erin}},
		{"rename with id in value", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"` + grp + `","displayName":"VPN users"}}]}`, []string{id, erin}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			expect(t, 200)(e.do(t, "PATCH", "/Groups/"+grp, s.body))
			g, err := e.svc.GetGroup(context.Background(), e.source, grp)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.want, g.Members); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
		})
	}
	if g, _ := e.svc.GetGroup(context.Background(), e.source, grp); g.DisplayName != "VPN users" {
		t.Errorf("rename: %q", g.DisplayName)
	}
	expect(t, 204)(e.do(t, "DELETE", "/Groups/"+grp, ""))
	expect(t, 404)(e.do(t, "GET", "/Groups/"+grp, ""))
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, false)
	other := newEnv(t, false) // a token of another appliance
	for _, tc := range []struct{ name, token string }{
		{"no token", ""},
		{"wrong token", "tkds_nottherighttoken"},
		{"token of another service", other.token},
		{"api token shape", "tkd_abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := e.doToken(t, tc.token, "GET", "/Users", "")
			if status != 401 {
				t.Fatalf("status %d", status)
			}
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || hdr.Get("Content-Type") != "application/scim+json" {
				t.Errorf("headers: %v", hdr)
			}
			if s, _ := body["schemas"].([]any); len(s) != 1 || s[0] != "urn:ietf:params:scim:api:messages:2.0:Error" || body["status"] != "401" {
				t.Errorf("body: %v", body)
			}
		})
	}
}

func TestEndpointsAndQueries(t *testing.T) {
	e := newEnv(t, false)
	expect(t, 201)(e.do(t, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"OMalley","displayName":"Pat O'Malley",
		"emails":[{"type":"work","value":"pat@corp.example"},{"type":"home","value":"pat@home.example"}]}`))
	for _, tc := range []struct {
		name, path string
		status     int
		total      float64
	}{
		{"lowercase endpoint", "/users", 200, 1},
		{"trailing slash", "/Users/", 200, 1},
		{"serviceConfiguration alias", "/serviceConfiguration", 200, -1},
		{"ServiceProviderConfig", "/ServiceProviderConfig", 200, -1},
		{"schemas", "/schemas", 200, -1},
		{"resource types", "/ResourceTypes", 200, -1},
		{"userName is caseExact false", `/Users?filter=userName+eq+%22omalley%22`, 200, 1},
		{"emails.value co", `/Users?filter=emails.value+co+%22home.example%22`, 200, 1},
		{"emails co (library panics here)", `/Users?filter=emails+co+%22corp%22`, 200, 1},
		{"emails[type eq work].value", `/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22PAT%40corp.example%22`, 200, 1},
		{"emails[type eq home].value wrong", `/Users?filter=emails%5Btype+eq+%22home%22%5D.value+eq+%22pat%40corp.example%22`, 200, 0},
		{"active and displayName", `/Users?filter=active+eq+true+and+displayName+sw+%22pat%22`, 200, 1},
		{"or with pr", `/Users?filter=externalId+pr+or+userName+eq+%22x%22`, 200, 0},
		{"bad filter", `/Users?filter=userName+eq`, 400, -1},
		{"unknown user", "/Users/nope", 404, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := e.do(t, "GET", tc.path, "")
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/scim+json" {
				t.Errorf("content type %q", ct)
			}
			if tc.total >= 0 && body["totalResults"] != tc.total {
				t.Errorf("totalResults %v, want %v", body["totalResults"], tc.total)
			}
		})
	}
	b := expect(t, 200)(e.do(t, "GET", "/Users?attributes=userName,name.givenName", ""))
	r := b["Resources"].([]any)[0].(map[string]any)
	if r["userName"] != "OMalley" || r["emails"] != nil || r["displayName"] != nil || r["id"] == nil {
		t.Errorf("attributes projection: %v", r)
	}
}

func cmpIgnore(fields ...string) cmp.Option {
	set := map[string]bool{}
	for _, f := range fields {
		set[f] = true
	}
	return cmp.FilterPath(func(p cmp.Path) bool {
		return set[p.Last().String()[1:]]
	}, cmp.Ignore())
}
