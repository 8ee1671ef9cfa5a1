package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

func TestAgentsAPI(t *testing.T) {
	e := newEnv(t)
	const given = "a-shared-secret-of-24-ch"

	var vpn NewAgentDTO
	w := e.call("POST", "/api/v1/agents", map[string]any{"name": "vpn", "kind": "radius", "address": "127.0.0.1/32", "secret": given})
	want(t, w, http.StatusCreated, &vpn)
	if vpn.ID == "" || vpn.Secret != "" || vpn.AccessKey != "" || *vpn.Address != "127.0.0.1" || !*vpn.RequireMessageAuthenticator || !vpn.Enabled {
		t.Fatalf("radius agent with a given secret: %s", w.Body)
	}
	if strings.Contains(w.Body.String(), given) || w.Header().Get("Location") != "/api/v1/agents/"+vpn.ID {
		t.Fatalf("answer echoes the secret or lacks Location: %s", w.Body)
	}

	var gw NewAgentDTO
	w = e.call("POST", "/api/v1/agents", map[string]any{"name": "gw", "kind": "radius", "address": "10.0.0.0/8", "require_message_authenticator": false})
	want(t, w, http.StatusCreated, &gw)
	if len(gw.Secret) < 16 || *gw.RequireMessageAuthenticator || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("generated secret: %s", w.Body)
	}

	var idp NewAgentDTO
	w = e.call("POST", "/api/v1/agents", map[string]any{"name": "idp", "kind": "rest"})
	want(t, w, http.StatusCreated, &idp)
	if !strings.HasPrefix(idp.AccessKey, "tka_") || idp.Secret != "" || idp.Address != nil {
		t.Fatalf("rest agent: %s", w.Body)
	}
	if a, err := e.svc.AuthenticateAgentKey(t.Context(), idp.AccessKey); err != nil || a.ID != idp.ID {
		t.Fatalf("the key shown does not authenticate: %v", err)
	}

	// The auditor reads agents; no answer carries a secret.
	w = e.do(req{method: "GET", path: "/api/v1/agents", role: appliance.RoleAuditor})
	var list List[AgentDTO]
	want(t, w, http.StatusOK, &list)
	var names []string
	for _, a := range list.Items {
		names = append(names, a.Name+"/"+a.Kind)
	}
	if diff := cmp.Diff([]string{"gw/radius", "idp/rest", "vpn/radius"}, names); diff != "" {
		t.Fatalf("list (-want +got):\n%s", diff)
	}
	for _, s := range []string{given, gw.Secret, idp.AccessKey, `"secret"`, `"access_key"`} {
		if strings.Contains(w.Body.String(), s) {
			t.Fatalf("list shows a secret: %s", w.Body)
		}
	}
	w = e.do(req{method: "GET", path: "/api/v1/agents/" + gw.ID, role: appliance.RoleAuditor})
	if w.Code != http.StatusOK || strings.Contains(w.Body.String(), gw.Secret) {
		t.Fatalf("get: %d %s", w.Code, w.Body)
	}

	// PUT replaces the settings; the kind stays.
	var upd AgentDTO
	want(t, e.call("PUT", "/api/v1/agents/"+vpn.ID, map[string]any{"name": "vpn", "address": "127.0.0.1", "enabled": false}), http.StatusOK, &upd)
	if upd.Enabled || upd.Kind != "radius" {
		t.Fatalf("update: %+v", upd)
	}
	wantProblem(t, e.call("PUT", "/api/v1/agents/"+vpn.ID, map[string]any{"name": "vpn", "kind": "rest"}), http.StatusBadRequest, CodeInvalidRequest)
	wantProblem(t, e.call("PUT", "/api/v1/agents/nope", map[string]any{"name": "x"}), http.StatusNotFound, CodeNotFound)

	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"unknown kind", map[string]any{"name": "x", "kind": "tacacs"}, http.StatusBadRequest, CodeInvalidRequest},
		{"bad address", map[string]any{"name": "x", "kind": "radius", "address": "vpn.example"}, http.StatusBadRequest, CodeInvalidRequest},
		{"short secret", map[string]any{"name": "x", "kind": "radius", "address": "192.0.2.1", "secret": "short"}, http.StatusBadRequest, CodeInvalidRequest},
		{"unknown field", map[string]any{"name": "x", "kind": "rest", "access_key": "mine"}, http.StatusBadRequest, CodeUnknownField},
		{"duplicate name", map[string]any{"name": "VPN", "kind": "rest"}, http.StatusConflict, "conflict"},
		{"duplicate address", map[string]any{"name": "x", "kind": "radius", "address": "10.0.0.0/8"}, http.StatusConflict, "conflict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.call("POST", "/api/v1/agents", tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == http.StatusBadRequest {
				wantProblem(t, w, tc.status, tc.code)
			}
			if strings.Contains(w.Body.String(), "short") && tc.name == "short secret" {
				t.Fatalf("problem echoes the secret: %s", w.Body)
			}
		})
	}

	w = e.call("DELETE", "/api/v1/agents/"+idp.ID, nil)
	if w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if _, err := e.svc.AuthenticateAgentKey(t.Context(), idp.AccessKey); err == nil {
		t.Fatal("a deleted agent's key still authenticates")
	}
	// Every change is audited.
	w = e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", role: appliance.RoleAuditor})
	for _, action := range []string{"agent.create", "agent.update", "agent.delete"} {
		if !strings.Contains(w.Body.String(), `"action":"`+action+`"`) {
			t.Errorf("no %s audit record", action)
		}
	}
}
