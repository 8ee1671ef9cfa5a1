package appliance_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

func ptr[T any](v T) *T { return &v }

func TestAgentLifecycle(t *testing.T) {
	st := memstore.New()
	f := newFixture(t, st)
	const given = "a-shared-secret-of-24-ch"
	vpn, shown, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "vpn", Kind: appliance.AgentRADIUS, Address: "127.0.0.1/32", Secret: given})
	if err != nil {
		t.Fatal(err)
	}
	if shown != "" || vpn.Address != "127.0.0.1" || !vpn.Enabled || !vpn.RequireMessageAuthenticator {
		t.Fatalf("radius agent with a given secret: %+v shown=%q", vpn, shown.Reveal())
	}
	gw, gwSecret, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "gw", Kind: appliance.AgentRADIUS, Address: "10.1.2.0/24",
		RequireMessageAuthenticator: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	if len(gwSecret.Reveal()) < 16 || gw.RequireMessageAuthenticator {
		t.Fatalf("generated secret %d characters, %+v", len(gwSecret.Reveal()), gw)
	}
	idp, key, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "idp", Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Reveal(), "tka_") || len(idp.KeyHash) == 0 {
		t.Fatalf("access key %q", key)
	}

	clients, err := f.svc.RADIUSClients(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range clients {
		got[c.Name] = c.Prefix.String() + " " + c.SharedSecret.Reveal()
	}
	if diff := cmp.Diff(map[string]string{"vpn": "127.0.0.1/32 " + given, "gw": "10.1.2.0/24 " + gwSecret.Reveal()}, got); diff != "" {
		t.Fatalf("RADIUS clients (-want +got):\n%s", diff)
	}
	if clients[0].Name != "vpn" {
		t.Fatalf("most specific prefix not first: %s", clients[0].Name)
	}

	if a, err := f.svc.AuthenticateAgentKey(f.ctx, key.Reveal()); err != nil || a.ID != idp.ID {
		t.Fatalf("access key: %+v %v", a, err)
	}
	for _, bad := range []string{"", "tka_nope", key.Reveal() + "x", strings.TrimPrefix(key.Reveal(), "tka_")} {
		if _, err := f.svc.AuthenticateAgentKey(f.ctx, bad); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Fatalf("key %q: %v", bad, err)
		}
	}
	if _, err := f.svc.UpdateAgent(f.ctx, idp.ID, appliance.AgentInput{Name: "idp", Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateAgentKey(f.ctx, key.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("disabled agent's key: %v", err)
	}
	if _, err := f.svc.UpdateAgent(f.ctx, vpn.ID, appliance.AgentInput{Name: "vpn", Address: "127.0.0.1", Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if clients, _ := f.svc.RADIUSClients(f.ctx); len(clients) != 1 {
		t.Fatalf("a disabled RADIUS agent is still a client: %d", len(clients))
	}
	if err := f.svc.DeleteAgent(f.ctx, gw.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetAgent(f.ctx, gw.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("deleted agent: %v", err)
	}
	// The name is free again.
	if _, _, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "gw", Kind: appliance.AgentREST}); err != nil {
		t.Fatal(err)
	}

	// Neither secret is in the store in the clear.
	var dump bytes.Buffer
	if err := st.View(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan(nil, nil, 0)
		for _, kv := range kvs {
			dump.Write(kv.Key)
			dump.Write(kv.Value)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"given secret": given, "generated secret": gwSecret.Reveal(), "access key": key.Reveal()} {
		if bytes.Contains(dump.Bytes(), []byte(s)) {
			t.Errorf("%s stored in the clear", name)
		}
	}

	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range page.Items {
		if strings.HasPrefix(r.Action, "agent.") {
			actions = append(actions, r.Action+" "+r.Outcome)
		}
	}
	want := []string{"agent.create success", "agent.create success", "agent.create success", "agent.update success",
		"agent.update success", "agent.delete success", "agent.create success"}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
}

func TestAgentValidation(t *testing.T) {
	f := newFixture(t, memstore.New())
	if _, _, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "vpn", Kind: appliance.AgentRADIUS, Address: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   appliance.AgentInput
		want error
	}{
		{"no name", appliance.AgentInput{Kind: appliance.AgentREST}, &appliance.ValidationError{}},
		{"unknown kind", appliance.AgentInput{Name: "x", Kind: "tacacs"}, &appliance.ValidationError{}},
		{"radius without address", appliance.AgentInput{Name: "x", Kind: appliance.AgentRADIUS}, &appliance.ValidationError{}},
		{"radius bad address", appliance.AgentInput{Name: "x", Kind: appliance.AgentRADIUS, Address: "host.example"}, &appliance.ValidationError{}},
		{"radius short secret", appliance.AgentInput{Name: "x", Kind: appliance.AgentRADIUS, Address: "192.0.2.9", Secret: "short"}, &appliance.ValidationError{}},
		{"rest with secret", appliance.AgentInput{Name: "x", Kind: appliance.AgentREST, Secret: "0123456789abcdef"}, &appliance.ValidationError{}},
		{"rest with address", appliance.AgentInput{Name: "x", Kind: appliance.AgentREST, Address: "192.0.2.9"}, &appliance.ValidationError{}},
		{"unknown source", appliance.AgentInput{Name: "x", Kind: appliance.AgentREST, Sources: []string{"nope"}}, &appliance.ValidationError{}},
		{"duplicate name", appliance.AgentInput{Name: "VPN", Kind: appliance.AgentREST}, appliance.ErrExists},
		{"duplicate address", appliance.AgentInput{Name: "x", Kind: appliance.AgentRADIUS, Address: "192.0.2.1/32"}, appliance.ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.svc.CreateAgent(f.ctx, tc.in)
			var ve *appliance.ValidationError
			if _, isVE := tc.want.(*appliance.ValidationError); isVE && !errors.As(err, &ve) || !isVE && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %T %v", err, tc.want, tc.want)
			}
		})
	}
}

func TestAgentAuthenticate(t *testing.T) {
	f, _, g := provisioned(t, appliance.PINModeNone)
	a, _, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "vpn", Kind: appliance.AgentRADIUS, Address: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "idp", Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}
	step := f.clock.Now().Unix() / 60
	r, err := f.svc.AgentAuthenticate(f.ctx, a, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+5)})
	if err != nil || r.Result != appliance.AuthNextTokencode {
		t.Fatalf("far code: %+v %v", r, err)
	}
	// Another agent, or the admin API, cannot continue agent a's challenge.
	if r2, _ := f.svc.AgentAuthenticate(f.ctx, b, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+6), Session: r.Session}); r2.Detail != appliance.ReasonBadSession {
		t.Fatalf("other agent continued the challenge: %+v", r2)
	}
	r, _ = f.svc.AgentAuthenticate(f.ctx, a, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+7)})
	if r.Result != appliance.AuthNextTokencode {
		t.Fatalf("far code again: %+v", r)
	}
	if r2 := f.auth(t, codeAt(t, g, step+8), r.Session); r2.Detail != appliance.ReasonBadSession {
		t.Fatalf("admin API continued an agent's challenge: %+v", r2)
	}
	r, _ = f.svc.AgentAuthenticate(f.ctx, a, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+9)})
	r2, err := f.svc.AgentAuthenticate(f.ctx, a, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+10), Session: r.Session})
	if err != nil || r2.Result != appliance.AuthAccept {
		t.Fatalf("next tokencode: %+v %v", r2, err)
	}
	// The session is single use.
	if r3, _ := f.svc.AgentAuthenticate(f.ctx, a, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step+11), Session: r.Session}); r3.Result != appliance.AuthReject {
		t.Fatalf("session reused: %+v", r3)
	}

	// The audit records name the agent.
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "auth", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	last := page.Items[len(page.Items)-1]
	if last.Actor.ID != "agent:"+a.ID || last.Actor.Name != "vpn" || last.Actor.Role != appliance.RoleAgent {
		t.Fatalf("audit actor %+v", last.Actor)
	}
	if got, _ := f.svc.GetAgent(f.ctx, a.ID); got.LastUsedAt.IsZero() {
		t.Fatal("last use not recorded")
	}

	// An agent restricted to another identity source rejects alice like a
	// wrong code, without counting a failure against her.
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	scoped, _, err := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "scoped", Kind: appliance.AgentREST, Sources: []string{src.ID}})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(15 * time.Minute)       // past the steps used above
	step = f.clock.Now().Unix()/60 + 10 // the token's clock runs 10 steps ahead (drift stored above)
	for range 6 {
		r, _ := f.svc.AgentAuthenticate(f.ctx, scoped, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step)})
		if r.Result != appliance.AuthReject || r.Reason != appliance.ReasonDenied || r.Detail != appliance.ReasonAgentScope {
			t.Fatalf("out of scope: %+v", r)
		}
	}
	inScope, _, _ := f.svc.CreateAgent(f.ctx, appliance.AgentInput{Name: "internal", Kind: appliance.AgentREST, Sources: []string{appliance.SourceInternal}})
	if r, _ := f.svc.AgentAuthenticate(f.ctx, inScope, appliance.AuthRequest{UserName: "alice", Passcode: codeAt(t, g, step)}); r.Result != appliance.AuthAccept {
		t.Fatalf("in scope after out-of-scope attempts: %+v", r)
	}
}

func TestAuthAttempts(t *testing.T) {
	f := newFixture(t, memstore.New())
	a := appliance.AuthAttempt{AgentID: "A", UserName: "alice", Expect: "SECURID", MessageID: "m1"}
	if err := f.svc.SaveAuthAttempt(f.ctx, &a); err != nil || a.ID == "" {
		t.Fatalf("save: %v %q", err, a.ID)
	}
	if _, err := f.svc.TakeAuthAttempt(f.ctx, "B", a.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("other agent took it: %v", err)
	}
	got, err := f.svc.TakeAuthAttempt(f.ctx, "A", a.ID)
	if err != nil || got.UserName != "alice" || got.MessageID != "m1" {
		t.Fatalf("take: %+v %v", got, err)
	}
	if _, err := f.svc.TakeAuthAttempt(f.ctx, "A", a.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("taken twice: %v", err)
	}
	old := appliance.AuthAttempt{AgentID: "A", UserName: "bob"}
	if err := f.svc.SaveAuthAttempt(f.ctx, &old); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(4 * time.Minute) // past the default session TTL of 3m
	fresh := appliance.AuthAttempt{AgentID: "A", UserName: "carol"}
	if err := f.svc.SaveAuthAttempt(f.ctx, &fresh); err != nil {
		t.Fatal(err)
	}
	if n, err := f.svc.PurgeExpiredAuthState(f.ctx); err != nil || n != 1 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if _, err := f.svc.TakeAuthAttempt(f.ctx, "A", old.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("expired attempt: %v", err)
	}
	if _, err := f.svc.TakeAuthAttempt(f.ctx, "A", fresh.ID); err != nil {
		t.Fatalf("fresh attempt: %v", err)
	}
	// An expired attempt that was not purged is not found either.
	if err := f.svc.SaveAuthAttempt(f.ctx, &old); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(4 * time.Minute)
	if _, err := f.svc.TakeAuthAttempt(f.ctx, "A", old.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("expired attempt: %v", err)
	}
}
