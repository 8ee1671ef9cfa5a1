package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tokend/admin/console"
	"tokend/appliance"
)

func TestAgentsPage(t *testing.T) {
	f := newFixture(t, console.Options{})
	root := f.browser(t)
	root.signIn("root", rootPW)
	if p := root.get("/console/agents"); p.status != http.StatusOK || !contains(p, `id="no-agents"`) || !contains(p, `id="add-agent"`) {
		t.Fatalf("empty agents page: %s", p)
	}

	const given = "a-shared-secret-of-24-ch"
	p := root.post("/console/agents", url.Values{"name": {"vpn"}, "kind": {"radius"}, "address": {"127.0.0.1"}, "secret": {given},
		"require_message_authenticator": {"on"}})
	if p.status != http.StatusCreated || !contains(p, `id="agent-created"`) || contains(p, `id="agent-secret"`) || contains(p, given) {
		t.Fatalf("radius agent with a given secret: %s", p)
	}
	p = root.post("/console/agents", url.Values{"name": {"idp"}, "kind": {"rest"}})
	m := regexp.MustCompile(`id="agent-secret">([^<]+)<`).FindStringSubmatch(p.body)
	if p.status != http.StatusCreated || m == nil {
		t.Fatalf("rest agent: %s", p)
	}
	idp, err := f.svc.AuthenticateAgentKey(f.ctx, m[1])
	if err != nil {
		t.Fatalf("the access key shown does not work: %v", err)
	}
	list := root.get("/console/agents")
	if strings.Contains(list.body, m[1]) || !contains(list, "vpn") || !contains(list, "idp") || !contains(list, "never") {
		t.Fatalf("list: %s", list)
	}
	// An invalid address is explained and the form keeps what was typed.
	p = root.post("/console/agents", url.Values{"name": {"gw"}, "kind": {"radius"}, "address": {"not-an-ip"}})
	if p.status != http.StatusBadRequest || !contains(p, "address") || !contains(p, `value="gw"`) {
		t.Fatalf("bad address: %s", p)
	}

	// Last use shows once the agent asked.
	if _, err := f.svc.AgentAuthenticate(f.ctx, idp, appliance.AuthRequest{UserName: "nobody", Passcode: "12345678"}); err != nil {
		t.Fatal(err)
	}
	if p := root.get("/console/agents"); strings.Count(p.body, "never") != 1 {
		t.Fatalf("last use not shown: %s", p)
	}

	// Disable, then the key stops working.
	root.get("/console/agents")
	if p := root.post("/console/agents/"+idp.ID+"/disable", nil); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %s", p)
	}
	if _, err := f.svc.AuthenticateAgentKey(f.ctx, m[1]); err == nil {
		t.Fatal("a disabled agent's key still works")
	}
	if p := root.get("/console/agents"); !contains(p, "Agent idp disabled.") || !contains(p, ">Enable<") {
		t.Fatalf("after disabling: %s", p)
	}

	// The auditor reads without the form; the help desk does not see agents.
	aud := f.browser(t)
	aud.signIn("audit", auditPW)
	if p := aud.get("/console/agents"); p.status != http.StatusOK || contains(p, `id="add-agent"`) || contains(p, ">Disable<") {
		t.Fatalf("auditor: %s", p)
	}
	if p := aud.post("/console/agents", url.Values{"name": {"x"}, "kind": {"rest"}}); p.status != http.StatusForbidden {
		t.Fatalf("auditor adds an agent: %d", p.status)
	}
	if p := aud.post("/console/agents/"+idp.ID+"/enable", nil); p.status != http.StatusForbidden {
		t.Fatalf("auditor enables an agent: %d", p.status)
	}
	help := f.browser(t)
	help.signIn("help", helpPW)
	if p := help.get("/console/agents"); p.status != http.StatusForbidden {
		t.Fatalf("help desk: %d", p.status)
	}
	if p := help.get("/console/"); contains(p, `href="/console/agents"`) {
		t.Fatal("the help desk sees the Agents link")
	}
}
