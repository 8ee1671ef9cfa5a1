package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// TestErrorCodes drives every problem code through the real Service.
func TestErrorCodes(t *testing.T) {
	e := newEnv(t)
	const sa = appliance.RoleSuperAdmin
	ctx := context.Background()
	if _, err := e.svc.ImportTokens(ctx, appliance.ImportRequest{Format: "csv", Body: csvBody("000100000001", "000100000002", "000100000003", "000100000004", "000300000001")}); err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.CreateUser(ctx, appliance.NewUser{UserName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AssignTokens(ctx, u.ID, []string{"000100000001", "000100000002", "000100000003"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateProfile(ctx, appliance.Profile{Name: "file", DeviceType: "generic", DeliveryMethod: "file"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateProfile(ctx, appliance.Profile{Name: "ctkip", DeviceType: "ios", DeliveryMethod: "ctkip"}); err != nil {
		t.Fatal(err)
	}
	big := `{"user_name":"` + strings.Repeat("a", MaxJSONBody) + `"}`

	tests := []struct {
		name   string
		req    req
		status int
		code   string
		fields []FieldProblem // checked when set
		header [2]string      // checked when set
	}{
		{name: "validation lists every field", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":"","email":"nope"}`)},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"user_name", "required"}, {"email", "not a valid e-mail address"}}},
		{name: "malformed JSON", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":`)},
			status: 400, code: CodeMalformedJSON},
		{name: "JSON syntax error", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{user_name: 1}`)},
			status: 400, code: CodeMalformedJSON},
		{name: "empty body", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(``)},
			status: 400, code: CodeMalformedJSON},
		{name: "two JSON values", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":"x"} {}`)},
			status: 400, code: CodeMalformedJSON},
		{name: "array instead of object", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`[1,2]`)},
			status: 400, code: CodeMalformedJSON},
		{name: "wrong field type", req: req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: sa, body: strings.NewReader(`{"serials":"000100000004"}`)},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"serials", "must be an array"}}},
		{name: "unknown field", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":"x","is_admin":true}`)},
			status: 400, code: CodeUnknownField, fields: []FieldProblem{{"is_admin", "unknown field"}}},
		{name: "oversized JSON body", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(big)},
			status: 413, code: CodeBodyTooLarge},
		{name: "small value then oversized garbage", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":"x"}` + strings.Repeat(" ", MaxJSONBody))},
			status: 413, code: CodeBodyTooLarge},
		{name: "binary garbage", req: req{method: "POST", path: "/api/v1/profiles", role: sa, body: bytes.NewReader([]byte{0xff, 0xfe, 0, 1, 2, '{'})},
			status: 400, code: CodeMalformedJSON},
		{name: "JSON body without content type", req: req{method: "POST", path: "/api/v1/users", role: sa, ctype: "text/plain", body: strings.NewReader(`{"user_name":"x"}`)},
			status: 415, code: CodeUnsupportedMediaType},
		{name: "import as multipart", req: req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: sa, ctype: "multipart/form-data; boundary=x", body: csvBody("000100000009")},
			status: 415, code: CodeUnsupportedMediaType},
		{name: "bad serial in path", req: req{method: "GET", path: "/api/v1/tokens/12ab", role: sa},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"serial", "must be 12 digits"}}},
		{name: "bad serial in body", req: req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: sa, body: strings.NewReader(`{"serials":["12"]}`)},
			status: 400, code: CodeInvalidRequest},
		{name: "unknown serial", req: req{method: "GET", path: "/api/v1/tokens/999999999999", role: sa},
			status: 404, code: CodeNotFound},
		{name: "unknown user", req: req{method: "GET", path: "/api/v1/users/nobody", role: sa},
			status: 404, code: CodeNotFound},
		{name: "unknown profile", req: req{method: "POST", path: "/api/v1/tokens/000100000001/distribution", role: sa, body: strings.NewReader(`{"profile":"nope"}`)},
			status: 404, code: CodeNotFound},
		{name: "unknown import job", req: req{method: "GET", path: "/api/v1/import-jobs/nope", role: sa},
			status: 404, code: CodeNotFound},
		{name: "bad duration", req: req{method: "POST", path: "/api/v1/profiles", role: sa, body: strings.NewReader(`{"name":"p","device_type":"ios","delivery_method":"ctkip","activation_code_ttl":"7 days"}`)},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"activation_code_ttl", `must be a duration such as "168h" or "30m"`}}},
		{name: "duplicate user", req: req{method: "POST", path: "/api/v1/users", role: sa, body: strings.NewReader(`{"user_name":"ALICE"}`)},
			status: 409, code: CodeExists},
		{name: "token limit", req: req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: sa, body: strings.NewReader(`{"serials":["000100000004"]}`)},
			status: 409, code: CodeTokenLimit},
		{name: "token taken", req: req{method: "POST", path: "/api/v1/users/" + u.ID + "/tokens", role: sa, body: strings.NewReader(`{"serials":["000100000001"]}`)},
			status: 409, code: CodeConflict},
		{name: "password for a ctkip distribution", req: req{method: "POST", path: "/api/v1/tokens/000100000001/distribution", role: sa, body: strings.NewReader(`{"profile":"ctkip","password":"unused"}`)},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"password", "not used by a ctkip profile"}}},
		{name: "device id for a ctkip distribution", req: req{method: "POST", path: "/api/v1/tokens/000100000001/distribution", role: sa, body: strings.NewReader(`{"profile":"ctkip","device_id":"0123abcd"}`)},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"device_id", "not used by a ctkip profile"}}},
		{name: "distribute an unassigned token", req: req{method: "POST", path: "/api/v1/tokens/000300000001/distribution", role: sa, body: strings.NewReader(`{"profile":"file"}`)},
			status: 409, code: CodeInvalidState},
		{name: "import file rejected", req: req{method: "POST", path: "/api/v1/tokens/import?format=csv", role: sa, ctype: "text/csv", body: strings.NewReader("colour\nred\n")},
			status: 422, code: CodeImportFileRejected},
		{name: "import with a bad format", req: req{method: "POST", path: "/api/v1/tokens/import?format=xls", role: sa, ctype: "text/csv", body: csvBody()},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"format", "must be csv, pskc or rsa (alias sdtid)"}}},
		{name: "import with a bad dry_run", req: req{method: "POST", path: "/api/v1/tokens/import?format=csv&dry_run=maybe", role: sa, ctype: "text/csv", body: csvBody()},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"dry_run", "must be true or false"}}},
		{name: "PSKC key not 16 bytes", req: req{method: "POST", path: "/api/v1/tokens/import?format=pskc", role: sa, ctype: "application/xml", body: strings.NewReader("<x/>"), header: map[string]string{"X-PSKC-Key": "0011"}},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"X-PSKC-Key", "must be 32 hex digits (a 16-byte AES key)"}}},
		{name: "PSKC key not hex", req: req{method: "POST", path: "/api/v1/tokens/import?format=pskc", role: sa, ctype: "application/xml", body: strings.NewReader("<x/>"), header: map[string]string{"X-PSKC-Key": strings.Repeat("zz", 16)}},
			status: 400, code: CodeInvalidRequest},
		{name: "garbage PSKC", req: req{method: "POST", path: "/api/v1/tokens/import?format=pskc", role: sa, ctype: "application/xml", body: strings.NewReader("\x00\x01garbage<<<")},
			status: 422, code: CodeImportFileRejected},
		{name: "bad limit", req: req{method: "GET", path: "/api/v1/users?limit=-3", role: sa},
			status: 400, code: CodeInvalidRequest, fields: []FieldProblem{{"limit", "must be a non-negative integer"}}},
		{name: "no token", req: req{method: "GET", path: "/api/v1/users"},
			status: 401, code: CodeUnauthenticated, header: [2]string{"WWW-Authenticate", `Bearer realm="tokend"`}},
		{name: "unknown token", req: req{method: "GET", path: "/api/v1/users", header: map[string]string{"Authorization": "Bearer tkd_nope"}},
			status: 401, code: CodeUnauthenticated, header: [2]string{"WWW-Authenticate", `Bearer realm="tokend"`}},
		{name: "basic auth", req: req{method: "GET", path: "/api/v1/users", header: map[string]string{"Authorization": "Basic YTpi"}},
			status: 401, code: CodeUnauthenticated},
		{name: "wrong role", req: req{method: "POST", path: "/api/v1/profiles", role: appliance.RoleHelpdesk, body: strings.NewReader(`{}`)},
			status: 403, code: CodeForbidden},
		{name: "agent on the admin API", req: req{method: "GET", path: "/api/v1/tokens", role: appliance.RoleAgent},
			status: 403, code: CodeForbidden},
		{name: "unknown route", req: req{method: "GET", path: "/api/v1/nope", role: sa},
			status: 404, code: CodeNotFound},
		{name: "trailing slash is not redirected", req: req{method: "GET", path: "/api/v1/users/", role: sa},
			status: 404, code: CodeNotFound},
		{name: "wrong method", req: req{method: "PATCH", path: "/api/v1/users", role: sa},
			status: 405, code: CodeMethodNotAllowed, header: [2]string{"Allow", "GET, POST"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.req)
			p := wantProblem(t, w, tc.status, tc.code)
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, p.Errors); diff != "" {
					t.Errorf("field problems (-want +got):\n%s", diff)
				}
			}
			if tc.header[0] != "" && w.Header().Get(tc.header[0]) != tc.header[1] {
				t.Errorf("%s: %q, want %q", tc.header[0], w.Header().Get(tc.header[0]), tc.header[1])
			}
		})
	}
}

// TestInternalErrorIsGeneric checks that an unknown error becomes a 500
// whose detail hides the cause, and that the cause is logged with the route.
func TestInternalErrorIsGeneric(t *testing.T) {
	e := newEnv(t)
	e.srv.API().GET("/boom", func(c *gin.Context) { e.srv.WriteError(c, fmt.Errorf("disk on fire: %w", errors.New("EIO"))) })
	e.srv.API().GET("/panic", func(*gin.Context) { panic("handler bug") })
	for _, path := range []string{"/api/v1/boom", "/api/v1/panic"} {
		p := wantProblem(t, e.do(req{method: "GET", path: path}), http.StatusInternalServerError, CodeInternal)
		if strings.Contains(p.Detail, "fire") || strings.Contains(p.Detail, "bug") {
			t.Errorf("%s: detail leaks the cause: %q", path, p.Detail)
		}
	}
	logs := e.logs.String()
	for _, want := range []string{`"route":"/api/v1/boom"`, "disk on fire: EIO", `"route":"/api/v1/panic"`, "handler bug"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}
