package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"tokend/agents/radius"
	"tokend/agents/rsarest"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/metrics"
	"tokend/appliance/seal"
	"tokend/ctkip"
	"tokend/internal/etcdtest"
)

// haNodes opens n Services on one etcd key space, as n tokend nodes with
// the same master key would, each with its CT-KIP door on a real TLS
// listener.
func haNodes(t *testing.T, c *etcdtest.Cluster, n int, clock *testClock) ([]*door, []*httptest.Server, *etcdstore.Store) {
	t.Helper()
	_, key := appliancetest.Sealer(t)
	prefix := fmt.Sprintf("/ha-%x/", rand.Text()[:8])
	var doors []*door
	var srvs []*httptest.Server
	var first *etcdstore.Store
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.Endpoints(), Prefix: prefix, PurgeInterval: -1})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if first == nil {
			first = st
		}
		sealer, err := seal.New(key, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d := &door{clock: clock, m: metrics.New("test"), logs: &syncBuffer{},
			ctx: appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})}
		d.svc = appliancetest.Service(t, appliance.Config{Store: st, Sealer: sealer, Now: clock.Now,
			CTKIPURL: "https://localhost/ctkip/services/CtkipService"})
		srv, err := newCTKIPServer(defaultConfig().CTKIP, d.svc, newCTKIPKey(t), d.m,
			slog.New(slog.NewTextHandler(d.logs, nil)), clock.Now, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d.srv = srv
		hs := httptest.NewTLSServer(srv)
		t.Cleanup(hs.Close)
		doors, srvs = append(doors, d), append(srvs, hs)
	}
	return doors, srvs, first
}

// route sends the i-th request of an exchange to the i-th server (the last
// one for any further request), as a load balancer without stickiness may.
type route struct {
	base  http.RoundTripper
	hosts []string
	n     atomic.Int32
}

func (r *route) RoundTrip(req *http.Request) (*http.Response, error) {
	i := min(int(r.n.Add(1))-1, len(r.hosts)-1)
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = r.hosts[i], r.hosts[i]
	return r.base.RoundTrip(req)
}

func hostOf(t *testing.T, s *httptest.Server) string {
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestCTKIPSessionAcrossNodes is issue 18's "a CT-KIP exchange whose first
// POST goes to node A and second to node B succeeds": two Services on one
// real etcd, each with its door on a real TLS listener. The session is in
// the store, sealed: the second POST is answered once, wherever it goes,
// and not after the session's TTL.
func TestCTKIPSessionAcrossNodes(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	clock := &testClock{}
	doors, srvs, st := haNodes(t, c, 2, clock)
	a, b := srvs[0], srvs[1]
	codes := doors[0].codes(t, 1, 3)
	provision := func(code string, hosts ...string) (ctkip.Result, error) {
		cl := &ctkip.Client{HTTP: &http.Client{Transport: &route{base: a.Client().Transport, hosts: hosts}}}
		return cl.Provision(context.Background(), "https://ctkip/ctkip/services/CtkipService", code)
	}

	tests := []struct {
		name    string
		code    string
		hosts   []string
		advance time.Duration // between the POSTs
		wantErr bool
	}{
		{"hello at A, finish at B", codes[0], []string{hostOf(t, a), hostOf(t, b)}, 0, false},
		{"hello at B, finish at A", codes[1], []string{hostOf(t, b), hostOf(t, a)}, 0, false},
		{"finish at B after the session expired", codes[2], []string{hostOf(t, a), hostOf(t, b)}, 6 * time.Minute, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res ctkip.Result
			var err error
			if tc.advance == 0 {
				res, err = provision(tc.code, tc.hosts...)
			} else {
				// Advance the clock between the POSTs: the transport
				// does it before the second request.
				tr := &route{base: a.Client().Transport, hosts: tc.hosts}
				cl := &ctkip.Client{HTTP: &http.Client{Transport: advancing{tr, clock, tc.advance}}}
				res, err = cl.Provision(context.Background(), "https://ctkip/ctkip/services/CtkipService", tc.code)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("provision: %v, want error %v\nA: %s\nB: %s", err, tc.wantErr, doors[0].logs.String(), doors[1].logs.String())
			}
			if err == nil && res.Serial == "" {
				t.Fatal("no serial in ServerFinished")
			}
		})
	}

	// The second POST replayed (captured and sent to the other node) finds
	// no session: a session is taken once across nodes.
	t.Run("second POST replayed at the other node", func(t *testing.T) {
		code := doors[1].codes(t, 10, 1)[0]
		rec := &bodyRecorder{base: &route{base: a.Client().Transport, hosts: []string{hostOf(t, a), hostOf(t, b)}}}
		cl := &ctkip.Client{HTTP: &http.Client{Transport: rec}}
		if _, err := cl.Provision(context.Background(), "https://ctkip/ctkip/services/CtkipService", code); err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, a.URL+ctkipPath, bytes.NewReader(rec.last))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = rec.header.Clone()
		resp, err := a.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body.Bytes(), []byte("Unknown or expired session")) {
			t.Fatalf("replayed second POST at A: %d %s", resp.StatusCode, body.String())
		}
	})

	// What the store holds is sealed: neither an activation code nor a
	// session id appears in any etcd value or key under the prefix.
	t.Run("stored sessions are sealed", func(t *testing.T) {
		code := doors[0].codes(t, 20, 1)[0]
		doors[0].ctkipSessions(t) // none left over
		rec := &bodyRecorder{base: &route{base: a.Client().Transport, hosts: []string{hostOf(t, a)}}, stopAfter: 1}
		cl := &ctkip.Client{HTTP: &http.Client{Transport: rec}}
		_, _ = cl.Provision(context.Background(), "https://ctkip/ctkip/services/CtkipService", code)
		resp, err := st.Client().Get(context.Background(), st.Prefix(), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, []byte(code)) || bytes.Contains(kv.Key, []byte(code)) {
				t.Fatalf("activation code in clear at %q", kv.Key)
			}
		}
		if got := doors[1].ctkipSessions(t); got != 1 {
			t.Fatalf("%d stored sessions after one ClientHello, want 1", got)
		}
	})
}

// advancing moves the clock before every request but the first.
type advancing struct {
	base  http.RoundTripper
	clock *testClock
	d     time.Duration
}

func (a advancing) RoundTrip(r *http.Request) (*http.Response, error) {
	if tr, ok := a.base.(*route); ok && tr.n.Load() > 0 {
		a.clock.Add(a.d)
	}
	return a.base.RoundTrip(r)
}

// bodyRecorder keeps the last request body, and fails requests after
// stopAfter (0: never).
type bodyRecorder struct {
	base      http.RoundTripper
	last      []byte
	header    http.Header
	n         int
	stopAfter int
}

func (r *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n++
	if r.stopAfter > 0 && r.n > r.stopAfter {
		return nil, errors.New("device gone")
	}
	var b bytes.Buffer
	if req.Body != nil {
		_, _ = b.ReadFrom(req.Body)
		req.Body.Close()
	}
	r.last, r.header = b.Bytes(), req.Header.Clone()
	req = req.Clone(req.Context())
	req.Body = http.NoBody
	if b.Len() > 0 {
		req.Body = readCloser{bytes.NewReader(r.last)}
		req.ContentLength = int64(b.Len())
	}
	return r.base.RoundTrip(req)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// ctkipSessions counts the CT-KIP sessions in the store, expired or not:
// the purge deletes them all once they are expired.
func (d *door) ctkipSessions(t *testing.T) int {
	t.Helper()
	d.clock.Add(time.Hour)
	defer d.clock.Add(-time.Hour)
	n, err := d.svc.PurgeExpiredAuthState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAgentChallengeAcrossNodes: a challenge one node issues is answered at
// the other (the challenge session and the REST attempt are in the store),
// and only once. Two Services on one real etcd, the RADIUS door on real
// UDP sockets and the REST door on real TLS listeners.
func TestAgentChallengeAcrossNodes(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	doors, _, _ := haNodes(t, c, 2, &testClock{})
	a, b := doors[0], doors[1]
	const secret = "radius-shared-secret"
	if _, _, err := a.svc.CreateAgent(a.ctx, appliance.AgentInput{Name: "vpn", Kind: appliance.AgentRADIUS,
		Address: "127.0.0.1", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	_, restKey, err := a.svc.CreateAgent(a.ctx, appliance.AgentInput{Name: "idp", Kind: appliance.AgentREST})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("RADIUS State", func(t *testing.T) {
		addrA, addrB := radiusDoor(t, a.svc), radiusDoor(t, b.svc)
		g := appliancetest.User(t, a.ctx, a.svc, "rad", "400000000001", appliance.PINModeNone)
		step := time.Now().Unix() / 60
		r := radiusAsk(t, addrA, secret, "rad", appliancetest.Code(t, g, step+5), "")
		if r.Code != layeh.CodeAccessChallenge {
			t.Fatalf("far code at A: %v, want a challenge", r.Code)
		}
		state := rfc2865.State_GetString(r)
		if r := radiusAsk(t, addrB, secret, "rad", appliancetest.Code(t, g, step+6), state); r.Code != layeh.CodeAccessAccept {
			t.Fatalf("next tokencode at B with A's State: %v", r.Code)
		}
		if r := radiusAsk(t, addrA, secret, "rad", appliancetest.Code(t, g, step+7), state); r.Code != layeh.CodeAccessReject {
			t.Fatalf("the State answered again at A: %v", r.Code)
		}
	})

	t.Run("REST attempt", func(t *testing.T) {
		urlA, urlB := restDoor(t, a.svc), restDoor(t, b.svc)
		g := appliancetest.User(t, a.ctx, a.svc, "rest", "400000000002", appliance.PINModeNone)
		step := time.Now().Unix() / 60
		init := rsarest.InitializeRequest{ClientID: "vpn-gw", SubjectName: "rest", Context: rsarest.Context{MessageID: "m-1"},
			SubjectCredentials: []rsarest.SubjectCredential{{MethodID: "SECURID",
				CollectedInputs: []rsarest.CollectedInput{{Name: "SECURID", Value: appliancetest.Code(t, g, step+5)}}}}}
		r := restCall(t, urlA, restKey.Reveal(), "initialize", init)
		if r.AttemptResponseCode != "CHALLENGE" {
			t.Fatalf("far code at A: %+v", r)
		}
		verify := func(url *httptest.Server, code string) rsarest.Response {
			return restCall(t, url, restKey.Reveal(), "verify", rsarest.VerifyRequest{
				SubjectCredentials: []rsarest.SubjectCredential{{MethodID: "SECURID_NEXT_TOKENCODE",
					CollectedInputs: []rsarest.CollectedInput{{Name: "SECURID_NEXT_TOKENCODE", Value: code}}}},
				Context: rsarest.Context{AuthnAttemptID: r.Context.AuthnAttemptID, MessageID: "m-2", InResponseTo: r.Context.MessageID}})
		}
		if v := verify(urlB, appliancetest.Code(t, g, step+6)); v.AttemptResponseCode != "SUCCESS" {
			t.Fatalf("next tokencode at B for A's attempt: %+v", v)
		}
		if v := verify(urlA, appliancetest.Code(t, g, step+7)); v.AttemptResponseCode == "SUCCESS" {
			t.Fatalf("the attempt answered again at A: %+v", v)
		}
	})
}

// radiusDoor serves svc's RADIUS door on a real UDP socket.
func radiusDoor(t *testing.T, svc *appliance.Service) string {
	t.Helper()
	srv, err := radius.New(radius.Config{Service: svc})
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
		_ = srv.Shutdown(context.Background())
		<-done
	})
	return conn.LocalAddr().String()
}

func radiusAsk(t *testing.T, addr, secret, user, pass, state string) *layeh.Packet {
	t.Helper()
	p := layeh.New(layeh.CodeAccessRequest, []byte(secret))
	_ = rfc2865.UserName_SetString(p, user)
	_ = rfc2865.UserPassword_SetString(p, pass)
	_ = rfc2865.NASIdentifier_SetString(p, "ha-test")
	if state != "" {
		_ = rfc2865.State_SetString(p, state)
	}
	if err := radius.AddMessageAuthenticator(p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := (&layeh.Client{Retry: 0, MaxPacketErrors: 1}).Exchange(ctx, p, addr)
	if err != nil {
		t.Fatalf("radius exchange: %v", err)
	}
	return resp
}

// restDoor serves svc's REST door on a real TLS listener.
func restDoor(t *testing.T, svc *appliance.Service) *httptest.Server {
	t.Helper()
	h, err := rsarest.New(rsarest.Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func restCall(t *testing.T, srv *httptest.Server, key, call string, body any) rsarest.Response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/mfa/v1_1/authn/"+call, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("client-key", key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out rsarest.Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: %d: %v", call, resp.StatusCode, err)
	}
	return out
}

// TestPerNodeGuessBudget: with store.nodes n each node's limiter gets 1/n
// of the total guess budget, so a guesser spreading unknown codes over
// every node gets the configured budget in all, not n times it.
func TestPerNodeGuessBudget(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	base := defaultConfig().CTKIP
	base.RateTotal, base.BurstTotal = 0.0001, 60
	tests := []struct {
		name  string
		nodes int
	}{
		{"one node", 1},
		{"two nodes", 2},
		{"three nodes", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := perNodeCTKIP(base, tc.nodes)
			within := 0
			for n := range tc.nodes {
				g := newGuessLimiter(1000, 1000, c.RateTotal, c.BurstTotal, func() time.Time { return now }, slog.New(slog.DiscardHandler))
				for i := range 500 {
					if g.Fail(fmt.Sprintf("192.0.2.%d", (i+n)%250)) {
						within++
					}
				}
			}
			if within < base.BurstTotal-tc.nodes || within > base.BurstTotal {
				t.Fatalf("%d failures within the budget over %d nodes, want about %d", within, tc.nodes, base.BurstTotal)
			}
		})
	}
}
