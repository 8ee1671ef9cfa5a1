package admin

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/appliance"
)

// wantRoles is the authorisation table written out independently of
// routes.go: S superadmin, H helpdesk, A auditor, G agent; "public" for no
// authentication.
var wantRoles = map[string]string{
	"GET /api/v1/openapi.json":                       "public",
	"POST /api/v1/authenticate":                      "SG",
	"POST /api/v1/users":                             "SH",
	"GET /api/v1/users":                              "SHA",
	"GET /api/v1/users/:id":                          "SHA",
	"POST /api/v1/users/:id/tokens":                  "SH",
	"DELETE /api/v1/users/:id/tokens/:serial":        "SH",
	"POST /api/v1/users/:id/unlock":                  "SH",
	"POST /api/v1/users/:id/emergency-access":        "SH",
	"DELETE /api/v1/users/:id/emergency-access":      "SH",
	"POST /api/v1/tokens/import":                     "SH",
	"GET /api/v1/import-jobs":                        "SHA",
	"GET /api/v1/import-jobs/:id":                    "SHA",
	"GET /api/v1/tokens":                             "SHA",
	"GET /api/v1/tokens/:serial":                     "SHA",
	"POST /api/v1/tokens/:serial/enable":             "SH",
	"POST /api/v1/tokens/:serial/disable":            "SH",
	"POST /api/v1/tokens/:serial/distribution":       "SH",
	"DELETE /api/v1/tokens/:serial/distribution":     "SH",
	"GET /api/v1/tokens/:serial/distribution/qr.png": "SH",
	"POST /api/v1/tokens/:serial/pin":                "SH",
	"POST /api/v1/tokens/:serial/resync":             "SH",
	"POST /api/v1/profiles":                          "S",
	"GET /api/v1/profiles":                           "SHA",
	"GET /api/v1/profiles/:name":                     "SHA",
	"PUT /api/v1/profiles/:name":                     "S",
	"DELETE /api/v1/profiles/:name":                  "S",
	"GET /api/v1/audit":                              "SA",
	"POST /api/v1/identity-sources":                  "S",
	"GET /api/v1/identity-sources":                   "SA",
	"GET /api/v1/identity-sources/:id":               "SA",
	"PUT /api/v1/identity-sources/:id":               "S",
	"DELETE /api/v1/identity-sources/:id":            "S",
	"POST /api/v1/identity-sources/:id/sync":         "S",
	"GET /api/v1/identity-sources/:id/runs":          "SA",
	"POST /api/v1/identity-sources/:id/scim-token":   "S",
	"POST /api/v1/agents":                            "S",
	"GET /api/v1/agents":                             "SA",
	"GET /api/v1/agents/:id":                         "SA",
	"PUT /api/v1/agents/:id":                         "S",
	"DELETE /api/v1/agents/:id":                      "S",
	"POST /api/v1/api-tokens":                        "S",
	"GET /api/v1/api-tokens":                         "S",
	"DELETE /api/v1/api-tokens/:id":                  "S",
	"POST /api/v1/api-tokens/:id/rotate":             "S",
	"GET /api/v1/backup":                             "S",
	"POST /api/v1/admins/:name/unlock":               "S",
	"GET /api/v1/admins":                             "S",
	"POST /api/v1/admins":                            "S",
	"GET /api/v1/admins/:name":                       "S",
	"DELETE /api/v1/admins/:name":                    "S",
	"POST /api/v1/admins/:name/password":             "S",
	"POST /api/v1/admins/:name/disable":              "S",
	"POST /api/v1/admins/:name/enable":               "S",
	"PUT /api/v1/admins/:name/second-factor":         "S",

	// RSA token files (seeddelivery.go).
	"GET /api/v1/tokens/:serial/distribution/token.sdtid": "SH",

	// Rollouts (rollouts.go).
	"POST /api/v1/rollouts":                        "S",
	"GET /api/v1/rollouts":                         "SHA",
	"GET /api/v1/rollouts/:id":                     "SHA",
	"POST /api/v1/rollouts/:id/apply":              "S",
	"POST /api/v1/rollouts/:id/cancel":             "S",
	"GET /api/v1/rollouts/:id/items/:seq/delivery": "S",
	"GET /api/v1/rollouts/:id/export":              "S",

	// Token lifecycle and reports (lifecycle.go, reports.go).
	"POST /api/v1/tokens/:serial/replace":          "SH",
	"POST /api/v1/tokens/:serial/replace/complete": "SH",
	"DELETE /api/v1/tokens/:serial/replace":        "SH",
	"POST /api/v1/tokens/:serial/lost":             "SH",
	"POST /api/v1/tokens/:serial/found":            "SH",
	"POST /api/v1/tokens/:serial/extend":           "SH",
	"DELETE /api/v1/tokens/:serial":                "S",
	"GET /api/v1/reports/:name":                    "SHA",
}

var roleLetters = map[string]string{
	appliance.RoleSuperAdmin: "S", appliance.RoleHelpdesk: "H", appliance.RoleAuditor: "A", appliance.RoleAgent: "G",
}

var pathParam = regexp.MustCompile(`:([a-z]+)`)

func samplePath(p string) string {
	return pathParam.ReplaceAllStringFunc(p, func(m string) string {
		if m == ":serial" {
			return "000000000001"
		}
		return "x"
	})
}

// TestRoles requests every route as every role and checks that exactly the
// roles of the table get past authorisation, and that no role-less request
// gets past authentication.
func TestRoles(t *testing.T) {
	e := newEnv(t)
	var seen []string
	for _, r := range e.srv.Engine().Routes() {
		if !strings.HasPrefix(r.Path, APIPrefix) {
			continue
		}
		key := r.Method + " " + r.Path
		seen = append(seen, key)
		allowed, ok := wantRoles[key]
		if !ok {
			t.Errorf("route %s is not in the expected role table", key)
			continue
		}
		for role, letter := range roleLetters {
			t.Run(key+" as "+role, func(t *testing.T) {
				w := e.do(req{method: r.Method, path: samplePath(r.Path), role: role, body: strings.NewReader("")})
				switch {
				case allowed == "public" || strings.Contains(allowed, letter):
					if w.Code == http.StatusForbidden || w.Code == http.StatusUnauthorized {
						t.Errorf("%s is refused (%d) but should be allowed: %s", role, w.Code, w.Body)
					}
				default:
					wantProblem(t, w, http.StatusForbidden, CodeForbidden)
				}
			})
		}
		t.Run(key+" anonymously", func(t *testing.T) {
			w := e.do(req{method: r.Method, path: samplePath(r.Path), body: strings.NewReader("")})
			if allowed == "public" {
				if w.Code != http.StatusOK {
					t.Errorf("public route answered %d", w.Code)
				}
				return
			}
			wantProblem(t, w, http.StatusUnauthorized, CodeUnauthenticated)
		})
	}
	var want []string
	for k := range wantRoles {
		want = append(want, k)
	}
	sort.Strings(want)
	sort.Strings(seen)
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("routes (-table +router):\n%s", diff)
	}
}

// TestOpenAPIMatchesRouter keeps openapi.json in step with the router and
// the role table: every route has an operation with the same roles, and
// every operation has a route.
func TestOpenAPIMatchesRouter(t *testing.T) {
	e := newEnv(t)
	w := e.do(req{method: "GET", path: "/api/v1/openapi.json"})
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			OperationID string   `json:"operationId"`
			Roles       []string `json:"x-tokend-roles"`
		} `json:"paths"`
	}
	want(t, w, http.StatusOK, &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	docRoles := map[string][]string{}
	ids := map[string]bool{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			ginPath := regexp.MustCompile(`\{([a-z_]+)\}`).ReplaceAllString(p, ":$1")
			docRoles[strings.ToUpper(method)+" "+ginPath] = op.Roles
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: operationId %q missing or repeated", method, p, op.OperationID)
			}
			ids[op.OperationID] = true
		}
	}
	routerRoles := map[string][]string{"GET /healthz": {}, "GET /readyz": {}}
	for _, r := range e.srv.routes() {
		roles := slices.Clone(r.roles)
		if roles == nil {
			roles = []string{}
		}
		routerRoles[r.method+" "+APIPrefix+r.path] = roles
	}
	for _, r := range e.srv.Engine().Routes() {
		if _, ok := routerRoles[r.Method+" "+r.Path]; !ok {
			t.Errorf("route %s %s is mounted but not in the route table", r.Method, r.Path)
		}
	}
	if len(e.srv.Engine().Routes()) != len(routerRoles) {
		t.Errorf("router has %d routes, table %d", len(e.srv.Engine().Routes()), len(routerRoles))
	}
	if diff := cmp.Diff(routerRoles, docRoles); diff != "" {
		t.Errorf("OpenAPI operations and their x-tokend-roles (-router +document):\n%s", diff)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(openAPIDoc), &raw); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPIProblemCodes keeps the document's list of problem codes in
// step with the codes the package can answer.
func TestOpenAPIProblemCodes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(openAPIDoc), &doc); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for c := range problemTitles {
		codes = append(codes, c)
	}
	got := doc.Components.Schemas.Problem.Properties.Code.Enum
	if diff := cmp.Diff(codes, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("problem codes (-package +document):\n%s", diff)
	}
}
