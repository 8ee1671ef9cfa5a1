package admin

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// TestJSONKeysAreStrict: duplicate keys at any depth and field names that
// match only case-insensitively are refused (encoding/json would keep the
// last duplicate and fold the case); unknown fields stay unknown_field.
func TestJSONKeysAreStrict(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		status    int
		code      string
		wantField string
	}{
		{name: "plain body accepted", method: "POST", path: "/api/v1/users",
			body: `{"user_name":"alice","display_name":"Alice","email":"alice@example.org"}`, status: http.StatusCreated},
		{name: "duplicate top-level key", method: "POST", path: "/api/v1/api-tokens",
			body: `{"name":"ci","role":"auditor","role":"superadmin"}`, status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "role"},
		{name: "duplicate key spelled with an escape", method: "POST", path: "/api/v1/users",
			body: `{"user_name":"bob","user\u005fname":"root"}`, status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "user_name"},
		{name: "field name in another case", method: "POST", path: "/api/v1/users",
			body: `{"User_Name":"carol"}`, status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "User_Name"},
		{name: "field name in capitals beside the real one", method: "POST", path: "/api/v1/api-tokens",
			body: `{"name":"ci","role":"auditor","ROLE":"superadmin"}`, status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "ROLE"},
		{name: "field name folded by the Kelvin sign", method: "POST", path: "/api/v1/tokens/000000000001/distribution",
			body: `{"profile":"android","\u212a":1}`, status: http.StatusBadRequest, code: CodeUnknownField},
		{name: "duplicate key in a nested object", method: "POST", path: "/api/v1/identity-sources",
			body:   `{"name":"corp","type":"ldap","ldap":{"url":"ldaps://dc.example","url":"ldaps://evil.example","base_dn":"dc=example"}}`,
			status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "ldap.url"},
		{name: "nested field name in another case", method: "POST", path: "/api/v1/identity-sources",
			body:   `{"name":"corp","type":"ldap","ldap":{"URL":"ldaps://dc.example","base_dn":"dc=example"}}`,
			status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "ldap.URL"},
		{name: "duplicate key in a map", method: "POST", path: "/api/v1/identity-sources",
			body:   `{"name":"corp","type":"ldap","ldap":{"url":"ldaps://dc.example","base_dn":"dc=example","attributes":{"user_name":"uid","user_name":"cn"}}}`,
			status: http.StatusBadRequest, code: CodeInvalidRequest, wantField: "ldap.attributes.user_name"},
		{name: "unknown field stays unknown_field", method: "POST", path: "/api/v1/users",
			body: `{"user_name":"dave","admin":true}`, status: http.StatusBadRequest, code: CodeUnknownField},
		{name: "same key in two array elements is fine", method: "POST", path: "/api/v1/users",
			body: `{"user_name":"erin","display_name":"[{\"a\":1},{\"a\":1}]"}`, status: http.StatusCreated},
	}
	e := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(req{method: tt.method, path: tt.path, role: appliance.RoleSuperAdmin, body: strings.NewReader(tt.body)})
			if tt.code == "" {
				want(t, w, tt.status, nil)
				return
			}
			p := wantProblem(t, w, tt.status, tt.code)
			if tt.wantField != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.wantField) {
				t.Errorf("errors %+v, want one naming %q", p.Errors, tt.wantField)
			}
		})
	}
}

// TestUnknownQueryParameters: every endpoint refuses a query parameter
// its OpenAPI operation does not declare, and a parameter given twice.
func TestUnknownQueryParameters(t *testing.T) {
	tests := []struct {
		name   string
		role   string
		path   string
		status int
		field  string
	}{
		{name: "audit with cursor instead of after", role: appliance.RoleAuditor, path: "/api/v1/audit?cursor=x", status: http.StatusBadRequest, field: "cursor"},
		{name: "audit with after", role: appliance.RoleAuditor, path: "/api/v1/audit?after=20260102/0000000000000001&limit=5", status: http.StatusOK},
		{name: "audit with a malformed after", role: appliance.RoleAuditor, path: "/api/v1/audit?after=x&limit=5", status: http.StatusBadRequest, field: "after"},
		{name: "users with a typo", role: appliance.RoleHelpdesk, path: "/api/v1/users?search=al&serach=al", status: http.StatusBadRequest, field: "serach"},
		{name: "users with its parameters", role: appliance.RoleHelpdesk, path: "/api/v1/users?search=al&limit=5&cursor=&source=", status: http.StatusOK},
		{name: "limit given twice", role: appliance.RoleHelpdesk, path: "/api/v1/users?limit=1&limit=500", status: http.StatusBadRequest, field: "limit"},
		{name: "a parameter on a route that takes none", role: appliance.RoleHelpdesk, path: "/api/v1/profiles?name=x", status: http.StatusBadRequest, field: "name"},
		{name: "case matters", role: appliance.RoleHelpdesk, path: "/api/v1/tokens?Search=0001", status: http.StatusBadRequest, field: "Search"},
		{name: "public route too", path: "/api/v1/openapi.json?v=2", status: http.StatusBadRequest, field: "v"},
		{name: "unauthenticated is still 401", path: "/api/v1/audit?cursor=x", status: http.StatusUnauthorized},
	}
	e := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(req{method: "GET", path: tt.path, role: tt.role})
			switch tt.status {
			case http.StatusOK:
				want(t, w, http.StatusOK, nil)
			case http.StatusUnauthorized:
				wantProblem(t, w, tt.status, CodeUnauthenticated)
			default:
				p := wantProblem(t, w, tt.status, CodeInvalidRequest)
				if len(p.Errors) != 1 || p.Errors[0].Field != tt.field {
					t.Errorf("errors %+v, want one naming %q", p.Errors, tt.field)
				}
			}
		})
	}

	// Every route of the table, as a role it allows: an undeclared
	// parameter is refused before the handler runs, and no declared one
	// is called unknown.
	params := mustQueryParams()
	for _, r := range e.srv.routes() {
		key := r.method + " " + APIPrefix + r.path
		role := appliance.RoleSuperAdmin
		if len(r.roles) > 0 && !slices.Contains(r.roles, role) {
			role = r.roles[0]
		}
		t.Run(key+" undeclared", func(t *testing.T) {
			w := e.do(req{method: r.method, path: samplePath(APIPrefix+r.path) + "?zz_undeclared=1", role: role, body: strings.NewReader("")})
			p := wantProblem(t, w, http.StatusBadRequest, CodeInvalidRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != "zz_undeclared" {
				t.Errorf("errors %+v", p.Errors)
			}
		})
		for _, name := range params[key] {
			t.Run(key+" declared "+name, func(t *testing.T) {
				w := e.do(req{method: r.method, path: samplePath(APIPrefix+r.path) + "?" + name + "=1", role: role, body: strings.NewReader("")})
				var p Problem
				_ = json.Unmarshal(w.Body.Bytes(), &p)
				for _, fp := range p.Errors {
					if strings.HasPrefix(fp.Reason, "unknown query parameter") {
						t.Errorf("declared parameter %s refused: %s", name, w.Body)
					}
				}
			})
		}
	}
}

// TestStrictTransportSecurity: every answer over TLS on the admin listener
// carries HSTS (API, errors, probes); plain HTTP does not.
func TestStrictTransportSecurity(t *testing.T) {
	e := newEnv(t)
	// The console and SCIM mount on the same engine; a route added the
	// same way stands in for them here.
	e.srv.Engine().GET("/console/", func(c *gin.Context) { c.String(http.StatusOK, "console") })
	tlsSrv := httptest.NewUnstartedServer(e.srv)
	tlsSrv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := httptest.NewServer(e.srv)
	t.Cleanup(plain.Close)

	tests := []struct {
		name   string
		method string
		path   string
		auth   bool
		status int
	}{
		{name: "console page", method: "GET", path: "/console/", status: http.StatusOK},
		{name: "API answer", method: "GET", path: "/api/v1/users", auth: true, status: http.StatusOK},
		{name: "API refusal", method: "GET", path: "/api/v1/users", status: http.StatusUnauthorized},
		{name: "unknown route", method: "GET", path: "/nope", status: http.StatusNotFound},
		{name: "health probe", method: "GET", path: "/healthz", status: http.StatusOK},
		{name: "public document", method: "GET", path: "/api/v1/openapi.json", status: http.StatusOK},
	}
	for _, tt := range tests {
		for _, srv := range []struct {
			name   string
			url    string
			client *http.Client
			want   string
		}{{"https", tlsSrv.URL, tlsSrv.Client(), "max-age=31536000"}, {"http", plain.URL, plain.Client(), ""}} {
			t.Run(srv.name+" "+tt.name, func(t *testing.T) {
				r, err := http.NewRequest(tt.method, srv.url+tt.path, http.NoBody)
				if err != nil {
					t.Fatal(err)
				}
				if tt.auth {
					r.Header.Set("Authorization", "Bearer "+e.tok[appliance.RoleSuperAdmin])
				}
				resp, err := srv.client.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
				}
				if got := resp.Header.Get("Strict-Transport-Security"); got != srv.want {
					t.Errorf("Strict-Transport-Security %q, want %q", got, srv.want)
				}
			})
		}
	}
}

// TestCheckKeysManyKeys: a map-valued field may hold many keys; a
// duplicate is found wherever it falls, before or after the check switches
// from its small array to a set.
func TestCheckKeysManyKeys(t *testing.T) {
	object := func(n, dupOf int) []byte {
		var b strings.Builder
		b.WriteString(`{"ldap":{"attributes":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%d":""`, i)
		}
		if dupOf >= 0 {
			fmt.Fprintf(&b, `,"k%d":""`, dupOf)
		}
		b.WriteString(`}}}`)
		return []byte(b.String())
	}
	for _, n := range []int{1, 15, 16, 17, 40, 5000} {
		if err := checkKeys(object(n, -1), &identitySourceRequest{}); err != nil {
			t.Errorf("%d distinct keys: %v", n, err)
		}
		for _, dupOf := range []int{0, 14, 15, 16, n - 1} {
			if dupOf < 0 || dupOf >= n {
				continue
			}
			err := checkKeys(object(n, dupOf), &identitySourceRequest{})
			var re *requestError
			if !errors.As(err, &re) || len(re.p.Errors) != 1 || re.p.Errors[0].Field != fmt.Sprintf("ldap.attributes.k%d", dupOf) {
				t.Errorf("%d keys, k%d again: %v", n, dupOf, err)
			}
		}
	}
}

// typicalBody is a 200-byte profile request, a common JSON body.
const typicalBody = `{"name":"android","device_type":"android","delivery_method":"ctkip","digits":8,"interval":60,` +
	`"pin_mode":"none","activation_code_ttl":"24h","display_name":"Android phones","help_text":"Install the RSA app"}`

// BenchmarkCheckKeys measures the key check alone on a typical body: what
// every JSON request pays on top of encoding/json.
func BenchmarkCheckKeys(b *testing.B) {
	body := []byte(typicalBody)
	var dst profileRequest
	if err := json.Unmarshal(body, &dst); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := checkKeys(body, &dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJSON is the whole of decodeJSON on the same body, for
// scale.
func BenchmarkDecodeJSON(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("POST", "/api/v1/profiles", strings.NewReader(typicalBody))
		c.Request.Header.Set("Content-Type", "application/json")
		var dst profileRequest
		if err := decodeJSON(c, &dst); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCheckKeys: the key scanner meets only documents encoding/json
// accepted; none of them may make it panic or run past the input.
func FuzzCheckKeys(f *testing.F) {
	f.Add([]byte(typicalBody))
	f.Add([]byte(`{"name":"corp","ldap":{"url":"x","url":"y","attributes":{"a\u0022b":"c"}},"type":[1,{"x":[]}]}`))
	f.Add([]byte(`[{"a":1},{"a":"\\\""}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		_ = checkKeys(b, &identitySourceRequest{})
		_ = checkKeys(b, &map[string]any{})
	})
}
