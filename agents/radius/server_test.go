package radius_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"

	tradius "tokend/agents/radius"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/otp"
)

const secret = "a-radius-secret-for-tests"

// counting wraps the real Service to count the verifications the door asks
// for.
type counting struct {
	*appliance.Service
	calls atomic.Int64
}

func (c *counting) AgentAuthenticate(ctx context.Context, a appliance.Agent, r appliance.AuthRequest) (appliance.AuthResult, error) {
	c.calls.Add(1)
	return c.Service.AgentAuthenticate(ctx, a, r)
}

type recorder struct {
	mu      sync.Mutex
	results map[string]int
	drops   map[string]int
}

func (r *recorder) AgentAuthentication(kind, result string) {
	r.mu.Lock()
	r.results[kind+"/"+result]++
	r.mu.Unlock()
}

func (r *recorder) RADIUSDropped(reason string) { r.mu.Lock(); r.drops[reason]++; r.mu.Unlock() }

func (r *recorder) dropped(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drops[reason]
}

type harness struct {
	svc  *counting
	rec  *recorder
	addr string
	ctx  context.Context
	srv  *tradius.Server
	n    atomic.Int64
	// serials maps user names to their token's serial.
	serials sync.Map
}

// start runs the door on 127.0.0.1:0 in front of a real Service on
// memstore with one RADIUS agent for 127.0.0.1.
func start(t *testing.T, policy appliance.AuthPolicy, agent appliance.AgentInput, cfg tradius.Config) *harness {
	t.Helper()
	svc := appliancetest.Service(t, appliance.Config{Auth: policy})
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})
	if agent.Name == "" {
		agent = appliance.AgentInput{Name: "pam", Kind: appliance.AgentRADIUS, Address: "127.0.0.1", Secret: secret}
	}
	if _, _, err := svc.CreateAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	h := &harness{svc: &counting{Service: svc}, rec: &recorder{results: map[string]int{}, drops: map[string]int{}}, ctx: ctx}
	cfg.Service, cfg.Recorder = h.svc, h.rec
	srv, err := tradius.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	h.addr, h.srv = conn.LocalAddr().String(), srv
	return h
}

// user gives the Service a user with a provisioned token of its own.
func (h *harness) user(t *testing.T, pinMode string) (string, otp.SecurID, int64) {
	t.Helper()
	n := h.n.Add(1)
	name := fmt.Sprintf("user%d", n)
	serial := fmt.Sprintf("2000000000%02d", n)
	gen := appliancetest.User(t, h.ctx, h.svc.Service, name, serial, pinMode)
	h.serials.Store(name, serial)
	return name, gen, time.Now().Unix() / 60
}

type ask struct {
	user, pass, state string
	secret            string // default: the agent's
	noMA              bool
}

// request builds an Access-Request as a PAM module or VPN sends it.
func request(t *testing.T, a ask) *radius.Packet {
	t.Helper()
	s := a.secret
	if s == "" {
		s = secret
	}
	p := radius.New(radius.CodeAccessRequest, []byte(s))
	if err := rfc2865.UserName_SetString(p, a.user); err != nil {
		t.Fatal(err)
	}
	if err := rfc2865.UserPassword_SetString(p, a.pass); err != nil {
		t.Fatal(err)
	}
	if err := rfc2865.NASIdentifier_SetString(p, "test"); err != nil {
		t.Fatal(err)
	}
	if a.state != "" {
		if err := rfc2865.State_SetString(p, a.state); err != nil {
			t.Fatal(err)
		}
	}
	if !a.noMA {
		if err := tradius.AddMessageAuthenticator(p); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// exchange sends one request with layeh's client; a dropped request is
// (nil, nil) after a short wait.
func (h *harness) exchange(t *testing.T, a ask) *radius.Packet {
	t.Helper()
	p := request(t, a)
	wait := 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c := radius.Client{Retry: 0, MaxPacketErrors: 1}
	resp, err := c.Exchange(ctx, p, h.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		t.Fatalf("exchange: %v", err)
	}
	if !tradius.ResponseMessageAuthenticatorFirst(resp, p.Authenticator) {
		t.Fatalf("response %v lacks a valid Message-Authenticator as its first attribute", resp.Code)
	}
	return resp
}

// dropped sends a request that must get no answer.
func (h *harness) dropped(t *testing.T, a ask) {
	t.Helper()
	p := request(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c := radius.Client{Retry: 0, MaxPacketErrors: 1, InsecureSkipVerify: true}
	if resp, err := c.Exchange(ctx, p, h.addr); err == nil {
		t.Fatalf("answered %v, want no answer", resp.Code)
	}
}

func code(t *testing.T, g otp.SecurID, step int64) string { return appliancetest.Code(t, g, step) }

func TestRADIUSBranches(t *testing.T) {
	h := start(t, appliance.AuthPolicy{}, appliance.AgentInput{}, tradius.Config{})

	t.Run("accept", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step)}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("got %v", r.Code)
		}
	})
	t.Run("reject wrong code", func(t *testing.T) {
		u, _, _ := h.user(t, appliance.PINModeNone)
		if r := h.exchange(t, ask{user: u, pass: "00000000"}); r.Code != radius.CodeAccessReject {
			t.Fatalf("got %v", r.Code)
		}
	})
	t.Run("replayed code", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		c := code(t, g, step)
		if r := h.exchange(t, ask{user: u, pass: c}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("first use: %v", r.Code)
		}
		if r := h.exchange(t, ask{user: u, pass: c}); r.Code != radius.CodeAccessReject {
			t.Fatalf("replay: %v", r.Code)
		}
	})
	t.Run("locked user", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		for range 5 {
			h.exchange(t, ask{user: u, pass: "00000000"})
		}
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step)}); r.Code != radius.CodeAccessReject {
			t.Fatalf("locked user accepted: %v", r.Code)
		}
	})
	t.Run("next tokencode via Access-Challenge", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		r := h.exchange(t, ask{user: u, pass: code(t, g, step+5)})
		if r.Code != radius.CodeAccessChallenge || rfc2865.ReplyMessage_GetString(r) != "Enter the next tokencode:" {
			t.Fatalf("far code: %v %q", r.Code, rfc2865.ReplyMessage_GetString(r))
		}
		state := rfc2865.State_GetString(r)
		if !strings.HasPrefix(state, "tkd1:") {
			t.Fatalf("State %q", state)
		}
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step+6), state: state}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("next tokencode: %v", r.Code)
		}
		// State is single use.
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step+7), state: state}); r.Code != radius.CodeAccessReject {
			t.Fatalf("State reused: %v", r.Code)
		}
	})
	t.Run("State bound to the user", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		other, og, _ := h.user(t, appliance.PINModeNone)
		r := h.exchange(t, ask{user: u, pass: code(t, g, step+5)})
		state := rfc2865.State_GetString(r)
		if r := h.exchange(t, ask{user: other, pass: code(t, og, step+6), state: state}); r.Code != radius.CodeAccessReject {
			t.Fatalf("another user continued the challenge: %v", r.Code)
		}
		for _, forged := range []string{"tkd1:forged", "tkd1:", "another server's state"} {
			if r := h.exchange(t, ask{user: u, pass: code(t, g, step+6), state: forged}); r.Code != radius.CodeAccessReject {
				t.Fatalf("forged State %q: %v", forged, r.Code)
			}
		}
		// Each was a decision of the Service, audited with the agent.
		page, err := h.svc.ListAudit(h.ctx, appliance.AuditQuery{Action: "auth", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for _, r := range page.Items {
			if r.Reason == appliance.ReasonBadSession && r.Actor.Name == "pam" {
				bad++
			}
		}
		if bad < 4 {
			t.Fatalf("%d bad_session audit records, want at least 4", bad)
		}
	})
	t.Run("new PIN user-chosen then fob PIN and tokencode", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeFob)
		r := h.exchange(t, ask{user: u, pass: code(t, g, step)})
		if r.Code != radius.CodeAccessChallenge || !strings.Contains(rfc2865.ReplyMessage_GetString(r), "new PIN of 4 to 8 digits") {
			t.Fatalf("no PIN yet: %v %q", r.Code, rfc2865.ReplyMessage_GetString(r))
		}
		r = h.exchange(t, ask{user: u, pass: "12", state: rfc2865.State_GetString(r)})
		if r.Code != radius.CodeAccessChallenge || !strings.HasPrefix(rfc2865.ReplyMessage_GetString(r), "PIN rejected") {
			t.Fatalf("short PIN: %v %q", r.Code, rfc2865.ReplyMessage_GetString(r))
		}
		r = h.exchange(t, ask{user: u, pass: "2468", state: rfc2865.State_GetString(r)})
		if r.Code != radius.CodeAccessChallenge || !strings.HasPrefix(rfc2865.ReplyMessage_GetString(r), "PIN accepted") {
			t.Fatalf("new PIN: %v %q", r.Code, rfc2865.ReplyMessage_GetString(r))
		}
		if r := h.exchange(t, ask{user: u, pass: "2468" + code(t, g, step+1), state: rfc2865.State_GetString(r)}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("PIN + next tokencode: %v", r.Code)
		}
	})
	t.Run("fob PIN and tokencode", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeFob)
		serial, _ := h.serials.Load(u)
		if _, err := h.svc.ChangePIN(h.ctx, serial.(string), appliance.PINChange{PIN: "2468"}); err != nil {
			t.Fatal(err)
		}
		if r := h.exchange(t, ask{user: u, pass: "1357" + code(t, g, step)}); r.Code != radius.CodeAccessReject {
			t.Fatalf("wrong PIN: %v", r.Code)
		}
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step)}); r.Code != radius.CodeAccessReject {
			t.Fatalf("tokencode without PIN: %v", r.Code)
		}
		if r := h.exchange(t, ask{user: u, pass: "2468" + code(t, g, step)}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("PIN + tokencode: %v", r.Code)
		}
	})
	t.Run("emergency code", func(t *testing.T) {
		u, _, _ := h.user(t, appliance.PINModeNone)
		page, err := h.svc.ListUsers(h.ctx, appliance.UserQuery{Search: u})
		if err != nil || len(page.Items) != 1 {
			t.Fatalf("user: %v", err)
		}
		ea, err := h.svc.IssueEmergencyAccess(h.ctx, page.Items[0].ID, appliance.EmergencyOneTime, 2, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if r := h.exchange(t, ask{user: u, pass: ea.Codes[0].Reveal()}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("emergency code: %v", r.Code)
		}
		if r := h.exchange(t, ask{user: u, pass: ea.Codes[0].Reveal()}); r.Code != radius.CodeAccessReject {
			t.Fatalf("one-time emergency code used twice: %v", r.Code)
		}
	})
	t.Run("unknown user rejected like a wrong code", func(t *testing.T) {
		u, _, _ := h.user(t, appliance.PINModeNone)
		wrong := h.exchange(t, ask{user: u, pass: "00000000"})
		unknown := h.exchange(t, ask{user: "nobody", pass: "00000000"})
		if wrong.Code != radius.CodeAccessReject || unknown.Code != wrong.Code {
			t.Fatalf("codes %v %v", wrong.Code, unknown.Code)
		}
		attrs := func(p *radius.Packet) []radius.Type {
			var out []radius.Type
			for _, a := range p.Attributes {
				out = append(out, a.Type)
			}
			return out
		}
		if diff := cmp.Diff(attrs(wrong), attrs(unknown)); diff != "" {
			t.Fatalf("attributes differ (-wrong code +unknown user):\n%s", diff)
		}
	})
	t.Run("wrong secret dropped", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		before := h.rec.dropped(tradius.DropBadAuth)
		h.dropped(t, ask{user: u, pass: code(t, g, step), secret: "not-the-secret-at-all"})
		if h.rec.dropped(tradius.DropBadAuth) != before+1 {
			t.Fatal("not counted")
		}
	})
	t.Run("missing Message-Authenticator dropped", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		before := h.rec.dropped(tradius.DropMissingMA)
		h.dropped(t, ask{user: u, pass: code(t, g, step), noMA: true})
		if h.rec.dropped(tradius.DropMissingMA) != before+1 {
			t.Fatal("not counted")
		}
		// The code was never verified: it still works.
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step)}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("got %v", r.Code)
		}
	})
	t.Run("retransmission answered from the cache", func(t *testing.T) {
		u, g, step := h.user(t, appliance.PINModeNone)
		p := request(t, ask{user: u, pass: code(t, g, step)})
		wire, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("udp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := h.svc.calls.Load()
		var answers [][]byte
		for range 3 {
			if _, err := conn.Write(wire); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, buf[:n])
		}
		if h.svc.calls.Load() != before+1 {
			t.Fatalf("%d verifications for one request sent three times", h.svc.calls.Load()-before)
		}
		if answers[0][0] != byte(radius.CodeAccessAccept) || !bytes.Equal(answers[0], answers[1]) || !bytes.Equal(answers[0], answers[2]) {
			t.Fatalf("answers differ or reject: %v", answers)
		}
	})
}

func TestRADIUSSystemGeneratedPIN(t *testing.T) {
	h := start(t, appliance.AuthPolicy{PIN: appliance.PINPolicy{SystemGenerated: true}}, appliance.AgentInput{}, tradius.Config{})
	u, g, step := h.user(t, appliance.PINModeFob)
	r := h.exchange(t, ask{user: u, pass: code(t, g, step)})
	msg := rfc2865.ReplyMessage_GetString(r)
	var pin string
	if _, err := fmt.Sscanf(msg, "Your new PIN is %4s.", &pin); err != nil || r.Code != radius.CodeAccessChallenge {
		t.Fatalf("system-generated PIN: %v %q", r.Code, msg)
	}
	if r := h.exchange(t, ask{user: u, pass: pin + code(t, g, step+1), state: rfc2865.State_GetString(r)}); r.Code != radius.CodeAccessAccept {
		t.Fatalf("PIN + next tokencode: %v", r.Code)
	}
}

func TestRADIUSDrops(t *testing.T) {
	t.Run("unknown source address", func(t *testing.T) {
		h := start(t, appliance.AuthPolicy{}, appliance.AgentInput{Name: "elsewhere", Kind: appliance.AgentRADIUS, Address: "192.0.2.0/24", Secret: secret}, tradius.Config{})
		h.dropped(t, ask{user: "alice", pass: "12345678"})
		if h.rec.dropped(tradius.DropUnknownClient) != 1 {
			t.Fatal("not counted")
		}
	})
	t.Run("old gear without Message-Authenticator when allowed", func(t *testing.T) {
		h := start(t, appliance.AuthPolicy{}, appliance.AgentInput{Name: "old", Kind: appliance.AgentRADIUS, Address: "127.0.0.0/8", Secret: secret,
			RequireMessageAuthenticator: new(bool)}, tradius.Config{})
		u, g, step := h.user(t, appliance.PINModeNone)
		if r := h.exchange(t, ask{user: u, pass: code(t, g, step), noMA: true}); r.Code != radius.CodeAccessAccept {
			t.Fatalf("got %v", r.Code)
		}
		// A Message-Authenticator sent anyway must still be right.
		h.dropped(t, ask{user: u, pass: code(t, g, step+1), secret: "not-the-secret-at-all"})
	})
	t.Run("rate limit per agent", func(t *testing.T) {
		h := start(t, appliance.AuthPolicy{MaxFailures: 100}, appliance.AgentInput{}, tradius.Config{RatePerAgent: 0.001, BurstPerAgent: 2})
		for range 2 {
			if r := h.exchange(t, ask{user: "nobody", pass: "1"}); r == nil {
				t.Fatal("within the burst: no answer")
			}
		}
		h.dropped(t, ask{user: "nobody", pass: "1"})
		if h.rec.dropped(tradius.DropRateLimited) != 1 {
			t.Fatal("not counted")
		}
	})
	t.Run("agents disabled or added while running", func(t *testing.T) {
		h := start(t, appliance.AuthPolicy{}, appliance.AgentInput{Name: "elsewhere", Kind: appliance.AgentRADIUS, Address: "192.0.2.1", Secret: secret}, tradius.Config{})
		h.dropped(t, ask{user: "nobody", pass: "1"})
		a, _, err := h.svc.CreateAgent(h.ctx, appliance.AgentInput{Name: "local", Kind: appliance.AgentRADIUS, Address: "127.0.0.1", Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		if r := h.exchange(t, ask{user: "nobody", pass: "1"}); r == nil || r.Code != radius.CodeAccessReject {
			t.Fatalf("a new agent is not served at once: %v", r)
		}
		if _, err := h.svc.UpdateAgent(h.ctx, a.ID, appliance.AgentInput{Name: "local", Address: "127.0.0.1", Enabled: new(bool)}); err != nil {
			t.Fatal(err)
		}
		h.dropped(t, ask{user: "nobody", pass: "1"})
	})
}

// TestRADIUSShutdownDrains checks that requests being decided when
// Shutdown starts are still answered.
func TestRADIUSShutdownDrains(t *testing.T) {
	svc := appliancetest.Service(t, appliance.Config{})
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})
	if _, _, err := svc.CreateAgent(ctx, appliance.AgentInput{Name: "pam", Kind: appliance.AgentRADIUS, Address: "127.0.0.1", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	slow := &slowService{Service: svc, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := tradius.New(tradius.Config{Service: slow})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(conn) }()
	answer := make(chan *radius.Packet, 1)
	go func() {
		c := radius.Client{Retry: 0}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, _ := c.Exchange(ctx, request(t, ask{user: "nobody", pass: "1"}), conn.LocalAddr().String())
		answer <- r
	}()
	<-slow.entered
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	select {
	case <-shut:
		t.Fatal("Shutdown returned while a request was being decided")
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.release)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if r := <-answer; r == nil || r.Code != radius.CodeAccessReject {
		t.Fatalf("the in-flight request got %v", r)
	}
}

type slowService struct {
	*appliance.Service
	entered, release chan struct{}
}

func (s *slowService) AgentAuthenticate(ctx context.Context, a appliance.Agent, r appliance.AuthRequest) (appliance.AuthResult, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Service.AgentAuthenticate(ctx, a, r)
}
