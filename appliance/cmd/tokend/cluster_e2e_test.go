package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/otp"
	"tokend/ctkip"
	"tokend/internal/etcdtest"
)

// cluster is two tokend processes on a three-member etcd cluster.
type cluster struct {
	etcd      *etcdtest.Cluster
	bin       string
	dirs      [2]string
	nodes     [2]*haNode
	args      [2][]string
	storeArgs []string
	pool      *x509.CertPool
}

// do sends one admin API request with the node's bootstrap token (the same
// on both nodes) and reads the whole answer.
func (n *haNode) do(ctx context.Context, method, path, bearer, ctype string, body []byte) (int, []byte, error) {
	if bearer == "" {
		bearer = n.token
	}
	return doRequest(ctx, n.client, method, n.admin+path, bearer, ctype, body)
}

func (n *haNode) postJSON(ctx context.Context, path string, v any) (int, []byte, error) {
	b, _ := json.Marshal(v)
	return n.do(ctx, http.MethodPost, path, "", "application/json", b)
}

// device is a CT-KIP client that sends both POSTs to one node, whatever
// URL the distribution names.
func (c *cluster) device(n *haNode) *ctkip.Client {
	u, _ := url.Parse(n.ctkipURL)
	tr := &route{base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}, hosts: []string{u.Host}}
	return &ctkip.Client{HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	etcdtest.Require(t)
	c := &cluster{etcd: etcdtest.StartCluster(t, 3), bin: buildTokend(t), dirs: [2]string{t.TempDir(), t.TempDir()}}
	cfg := filepath.Join(t.TempDir(), "tokend.yaml")
	// store.nodes divides the per-node CT-KIP guess budget between the two.
	if err := os.WriteFile(cfg, []byte("store:\n  nodes: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.storeArgs = []string{"--store", "etcd", "--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","), "--etcd-prefix", "/cluster/"}
	for i, id := range []string{"node-a", "node-b"} {
		c.args[i] = append([]string{"--config", cfg, "--node-id", id}, c.storeArgs...)
	}
	c.nodes[0] = startHANode(t, c.bin, c.dirs[0], c.args[0]...)
	// The same master key and bootstrap token on both nodes, before the
	// second node's first start (it would otherwise replace the token).
	for _, f := range []string{"master.key", "admin-token"} {
		b, err := os.ReadFile(filepath.Join(c.dirs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.dirs[1], f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.nodes[1] = startHANode(t, c.bin, c.dirs[1], c.args[1]...)
	c.pool = x509.NewCertPool()
	for _, dir := range c.dirs {
		pem, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		c.pool.AppendCertsFromPEM(pem)
	}
	return c
}

// race runs fn(0) and fn(1) at once: node A's and node B's request.
func race(fn func(node int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 {
		wg.Go(func() { <-start; fn(i) })
	}
	close(start)
	wg.Wait()
}

// clusterToken is a provisioned token as its device holds it.
type clusterToken struct {
	user string
	gen  otp.SecurID
}

type userID struct {
	ID string `json:"id"`
}

// TestClusterOnEtcd is issue 18's cluster test: three etcd members, two
// tokend processes. The invariants hold when both nodes race for the same
// thing (an activation code, a tokencode, the token limit, a SCIM user
// name); then, under load on both nodes, one etcd member (the leader) and
// one tokend node are killed with SIGKILL: the other node keeps serving,
// no acknowledged write is lost or duplicated, and after both restart the
// store verifies (audit chains, counters against indexes).
func TestClusterOnEtcd(t *testing.T) {
	c := startCluster(t)
	a, b := c.nodes[0], c.nodes[1]
	ctx := context.Background()

	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range 40 {
		fmt.Fprintf(&csv, "%012d\n", 300_000_000_000+i)
	}
	a.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader(csv.String()), http.StatusCreated, nil)
	a.json(t, "POST", "/api/v1/profiles", map[string]any{"name": "android", "device_type": "android", "delivery_method": "ctkip",
		"digits": 8, "interval": 60, "pin_mode": "none", "activation_code_ttl": "24h"}, http.StatusCreated, nil)
	serial := func(i int) string { return fmt.Sprintf("%012d", 300_000_000_000+i) }
	next := 0 // next unused serial

	var provisioned []clusterToken

	t.Run("same activation code at both nodes", func(t *testing.T) {
		for k := range 4 {
			name := fmt.Sprintf("race-p-%02d", k)
			var u userID
			a.json(t, "POST", "/api/v1/users", map[string]string{"user_name": name}, http.StatusCreated, &u)
			s := serial(next)
			next++
			b.json(t, "POST", "/api/v1/users/"+u.ID+"/tokens", map[string]any{"serials": []string{s}}, http.StatusOK, nil)
			var d distribution
			a.json(t, "POST", "/api/v1/tokens/"+s+"/distribution", map[string]string{"profile": "android"}, http.StatusCreated, &d)
			var res [2]ctkip.Result
			var errs [2]error
			race(func(i int) {
				res[i], errs[i] = c.device(c.nodes[i]).Provision(ctx, d.CTKIPURL, d.ActivationCode)
			})
			won := -1
			for i, err := range errs {
				if err == nil {
					if won >= 0 {
						t.Fatalf("code %d: both nodes provisioned %s (seeds equal: %v)", k, s, bytes.Equal(res[0].Seed[:], res[1].Seed[:]))
					}
					won = i
				}
			}
			if won < 0 {
				t.Fatalf("code %d: neither node provisioned: A: %v; B: %v", k, errs[0], errs[1])
			}
			t.Logf("code %d: node %d won; the other: %v", k, won, errs[1-won])
			gen, err := otp.NewSecurID(res[won].Seed[:], res[won].Serial, res[won].Digits, res[won].Interval)
			if err != nil {
				t.Fatal(err)
			}
			provisioned = append(provisioned, clusterToken{user: name, gen: gen})
		}
	})

	t.Run("same tokencode at both nodes", func(t *testing.T) {
		if len(provisioned) == 0 {
			t.Skip("nothing provisioned")
		}
		for k, dv := range provisioned {
			now := dv.gen.Step(time.Now())
			// Two steps of each token: the winner's seed is the one stored
			// (a loser's seed would be refused by both).
			for _, step := range []int64{now, now + 1} {
				code, err := dv.gen.CodeAt(step)
				if err != nil {
					t.Fatal(err)
				}
				var results [2]string
				race(func(i int) {
					st, body, err := c.nodes[i].postJSON(ctx, "/api/v1/authenticate", map[string]string{"user_name": dv.user, "passcode": code})
					var r struct {
						Result string `json:"result"`
					}
					if err != nil || st != http.StatusOK || json.Unmarshal(body, &r) != nil {
						results[i] = fmt.Sprintf("%d %v %s", st, err, body)
						return
					}
					results[i] = r.Result
				})
				accepts := 0
				for _, r := range results {
					if r == appliance.AuthAccept {
						accepts++
					}
				}
				if accepts != 1 {
					t.Errorf("token %d step %d: %d accepts (A: %s, B: %s), want exactly 1", k, step, accepts, results[0], results[1])
				}
			}
		}
	})

	t.Run("token limit with assignments on both nodes", func(t *testing.T) {
		for k := range 3 {
			var u userID
			a.json(t, "POST", "/api/v1/users", map[string]string{"user_name": fmt.Sprintf("race-l-%02d", k)}, http.StatusCreated, &u)
			var ok, limit atomic.Int32
			var other sync.Map
			var wg sync.WaitGroup
			start := make(chan struct{})
			for j := range 6 {
				s := serial(next)
				next++
				wg.Go(func() {
					<-start
					st, body, err := c.nodes[j%2].postJSON(ctx, "/api/v1/users/"+u.ID+"/tokens", map[string]any{"serials": []string{s}})
					switch {
					case err == nil && st == http.StatusOK:
						ok.Add(1)
					case err == nil && st == http.StatusConflict && bytes.Contains(body, []byte("token_limit")):
						limit.Add(1)
					default:
						other.Store(s, fmt.Sprintf("%d %v %s", st, err, body))
					}
				})
			}
			close(start)
			wg.Wait()
			other.Range(func(k, v any) bool { t.Errorf("assign %v: %v", k, v); return true })
			var got struct {
				Tokens []json.RawMessage `json:"tokens"`
			}
			b.call(t, "GET", "/api/v1/users/"+u.ID, "", nil, http.StatusOK, &got)
			if ok.Load() != 3 || limit.Load() != 3 || len(got.Tokens) != 3 {
				t.Errorf("user %d: %d assigned, %d refused at the limit, %d tokens held; want 3, 3, 3", k, ok.Load(), limit.Load(), len(got.Tokens))
			}
		}
	})

	t.Run("SCIM pushes to both nodes", func(t *testing.T) {
		var src struct {
			SCIMToken string `json:"scim_token"`
		}
		a.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "entra", "type": "scim"}, http.StatusCreated, &src)
		push := func(n *haNode, name string) (int, []byte, error) {
			body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
				"userName": name, "externalId": "ext-" + name, "active": true})
			return n.do(ctx, "POST", "/scim/v2/Users", src.SCIMToken, "application/scim+json", body)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := map[string]int{}
		var problems []string
		record := func(name string, st int, body []byte, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && st == http.StatusCreated:
				created[name]++
			case err == nil && st == http.StatusConflict:
			default:
				problems = append(problems, fmt.Sprintf("%s: %d %v %s", name, st, err, body))
			}
		}
		var names []string
		for i := range 10 {
			for n := range 2 {
				name := fmt.Sprintf("scim-%c-%02d@example.org", 'a'+n, i)
				names = append(names, name)
				wg.Go(func() { st, body, err := push(c.nodes[n], name); record(name, st, body, err) })
			}
		}
		for i := range 6 {
			name := fmt.Sprintf("scim-same-%02d@example.org", i)
			names = append(names, name)
			for n := range 2 {
				wg.Go(func() { st, body, err := push(c.nodes[n], name); record(name, st, body, err) })
			}
		}
		wg.Wait()
		for _, p := range problems {
			t.Error(p)
		}
		for _, name := range names {
			if created[name] != 1 {
				t.Errorf("%s created %d times, want 1", name, created[name])
			}
			var list struct {
				Total int `json:"total"`
			}
			b.call(t, "GET", "/api/v1/users?search="+url.QueryEscape(name), "", nil, http.StatusOK, &list)
			if list.Total != 1 {
				t.Errorf("%s: %d users by that name, want 1", name, list.Total)
			}
		}
	})

	// Fresh tokens for the load's authenticators (each code is accepted
	// once, and a 60 s token has three in its window).
	var fresh []clusterToken
	for k := range 8 {
		name := fmt.Sprintf("load-t-%02d", k)
		var u userID
		a.json(t, "POST", "/api/v1/users", map[string]string{"user_name": name}, http.StatusCreated, &u)
		s := serial(next)
		next++
		a.json(t, "POST", "/api/v1/users/"+u.ID+"/tokens", map[string]any{"serials": []string{s}}, http.StatusOK, nil)
		var d distribution
		a.json(t, "POST", "/api/v1/tokens/"+s+"/distribution", map[string]string{"profile": "android"}, http.StatusCreated, &d)
		res, err := c.device(c.nodes[k%2]).Provision(ctx, d.CTKIPURL, d.ActivationCode)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := otp.NewSecurID(res.Seed[:], res.Serial, res.Digits, res.Interval)
		if err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, clusterToken{user: name, gen: gen})
	}

	t.Run("kill an etcd member and a tokend node under load", func(t *testing.T) {
		killAndConverge(t, c, fresh)
	})
}

// loadLedger is what the load's clients asked for and what was
// acknowledged (201 received in full).
type loadLedger struct {
	mu       sync.Mutex
	asked    []string
	acked    map[string]bool
	problems []string
	lastOK   [2]time.Time
	maxGap   [2]time.Duration
	// unavailable counts 503 store_unavailable answers per node.
	unavailable [2]int

	nextStep map[int]int64 // token → lowest step not yet sent
	busy     map[int]bool  // tokens with a request in flight
	accepted [][2]string   // user name, code
}

// takeCode picks a token with no request in flight and its next code in
// the window (previous, current, next step).
func (l *loadLedger) takeCode(tokens []clusterToken) (int, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy == nil {
		l.busy = map[int]bool{}
	}
	for k, tok := range tokens {
		now := tok.gen.Step(time.Now())
		step := max(l.nextStep[k], now-1)
		if l.busy[k] || step > now+1 {
			continue
		}
		code, err := tok.gen.CodeAt(step)
		if err != nil {
			continue
		}
		l.busy[k], l.nextStep[k] = true, step+1
		return k, code, true
	}
	return 0, "", false
}

func (l *loadLedger) success(node int, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lastOK[node].IsZero() {
		l.maxGap[node] = max(l.maxGap[node], at.Sub(l.lastOK[node]))
	}
	l.lastOK[node] = at
}

func killAndConverge(t *testing.T, c *cluster, tokens []clusterToken) {
	ctx := context.Background()
	led := &loadLedger{acked: map[string]bool{}, nextStep: map[int]int64{}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// One authenticator per node: each code of a token sent once, in
	// increasing steps, one request per token at a time. An accept is an
	// acknowledged write (the replay mark): after the restart every accepted
	// code is replayed and must be refused.
	for node := range 2 {
		n := c.nodes[node]
		wg.Go(func() {
			for loadCtx.Err() == nil {
				k, code, ok := led.takeCode(tokens)
				if !ok {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				rctx, cancel := context.WithTimeout(loadCtx, 10*time.Second)
				st, body, err := n.postJSON(rctx, "/api/v1/authenticate", map[string]string{"user_name": tokens[k].user, "passcode": code})
				cancel()
				led.mu.Lock()
				delete(led.busy, k)
				var r struct {
					Result string `json:"result"`
				}
				switch {
				case err != nil:
				case st == http.StatusOK && json.Unmarshal(body, &r) == nil:
					if r.Result == appliance.AuthAccept {
						led.accepted = append(led.accepted, [2]string{tokens[k].user, code})
					}
				case st == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"store_unavailable"`)):
					led.unavailable[node]++
				default:
					led.problems = append(led.problems, fmt.Sprintf("node %d: authenticate answered %d: %s", node, st, body))
				}
				led.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	// Two writers per node, each creating users with names of its own: a
	// user is a write through the Service (record, name index, counter
	// share, audit record) on whichever node gets it.
	for node := range 2 {
		for w := range 2 {
			n := c.nodes[node]
			wg.Go(func() {
				for i := 0; loadCtx.Err() == nil; i++ {
					name := fmt.Sprintf("load-%d-%d-%05d", node, w, i)
					led.mu.Lock()
					led.asked = append(led.asked, name)
					led.mu.Unlock()
					rctx, cancel := context.WithTimeout(loadCtx, 10*time.Second)
					st, body, err := n.postJSON(rctx, "/api/v1/users", map[string]string{"user_name": name})
					cancel()
					switch {
					case err != nil:
						// No answer (the node was killed, the load ended): not
						// acknowledged, checked below as "at most once".
						if loadCtx.Err() == nil {
							time.Sleep(20 * time.Millisecond)
						}
					case st == http.StatusCreated:
						led.mu.Lock()
						led.acked[name] = true
						led.mu.Unlock()
						led.success(node, time.Now())
					case st == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"store_unavailable"`)):
						// While etcd elects a leader a commit's outcome is
						// unknown: not acknowledged, the client retries.
						led.mu.Lock()
						led.unavailable[node]++
						led.mu.Unlock()
						time.Sleep(20 * time.Millisecond)
					default:
						led.mu.Lock()
						led.problems = append(led.problems, fmt.Sprintf("node %d: create %s answered %d: %s", node, name, st, body))
						led.mu.Unlock()
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}
	}

	time.Sleep(2 * time.Second)
	leader := etcdLeader(t, c.etcd)
	killed := time.Now()
	leader.Kill()
	time.Sleep(300 * time.Millisecond)
	if err := c.nodes[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.nodes[1].done
	// Longer than etcdstore's request timeout (5 s), which bounds what a
	// commit caught in the etcd leader's death waits.
	time.Sleep(8 * time.Second)
	led.mu.Lock()
	afterKill := led.lastOK[0]
	led.mu.Unlock()
	stopLoad()
	wg.Wait()

	led.mu.Lock()
	t.Logf("etcd leader %s and node B killed; node A's longest time without a successful write: %v; %d of %d creates acknowledged; "+
		"503 store_unavailable: %d at A, %d at B", leader.Name, led.maxGap[0].Round(time.Millisecond), len(led.acked), len(led.asked),
		led.unavailable[0], led.unavailable[1])
	for _, p := range led.problems {
		t.Error(p)
	}
	led.mu.Unlock()
	if !afterKill.After(killed.Add(time.Second)) {
		t.Errorf("node A had no successful write in the last seconds of the load after the kills (last at %v after them)", afterKill.Sub(killed))
	}

	// Restart both; B serves again, on the same node id.
	leader.Restart(t)
	c.nodes[1] = startHANode(t, c.bin, c.dirs[1], c.args[1]...)
	c.nodes[1].json(t, "POST", "/api/v1/users", map[string]string{"user_name": "after-restart"}, http.StatusCreated, nil)

	// Every accepted tokencode's replay mark survived: replayed at either
	// node, none is accepted again.
	if len(led.accepted) == 0 {
		t.Error("no tokencode was accepted during the load")
	}
	for i, acc := range led.accepted {
		var r struct {
			Result string `json:"result"`
		}
		c.nodes[i%2].json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": acc[0], "passcode": acc[1]}, http.StatusOK, &r)
		if r.Result == appliance.AuthAccept {
			t.Errorf("an accepted tokencode of %s was accepted again after the restart", acc[0])
		}
	}
	t.Logf("%d tokencodes accepted during the load; none accepted again after the restart", len(led.accepted))

	// Every acknowledged user is there once; an unacknowledged one at most
	// once (the name index is unique, and CheckConsistency below matches
	// records against it).
	for _, name := range led.asked {
		var list struct {
			Total int `json:"total"`
		}
		c.nodes[1].call(t, "GET", "/api/v1/users?search="+name, "", nil, http.StatusOK, &list)
		switch {
		case led.acked[name] && list.Total != 1:
			t.Errorf("acknowledged user %s: %d present, want 1", name, list.Total)
		case list.Total > 1:
			t.Errorf("user %s present %d times", name, list.Total)
		}
	}

	// Stop both nodes cleanly, then check the store as an operator would.
	for _, n := range c.nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("node did not stop within 30s:\n%s", n.logs.String())
		}
	}
	out, err := exec.Command(c.bin, append([]string{"audit", "verify", "--data-dir", c.dirs[0]}, c.storeArgs...)...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("audit chain intact")) {
		t.Errorf("tokend audit verify: %v\n%s", err, out)
	} else {
		t.Logf("tokend audit verify: %s", bytes.TrimSpace(out))
	}
	checkEtcdConsistency(t, c)
}

// etcdLeader returns the member that is the cluster's leader.
func etcdLeader(t *testing.T, c *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, m := range c.Members {
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.MemberId == st.Leader {
			return m
		}
	}
	t.Fatal("no etcd member is the leader")
	return nil
}

// checkEtcdConsistency runs the Service's consistency check (indexes,
// counters summed over the node shares against the indexes, the token
// limit) on the cluster's store.
func checkEtcdConsistency(t *testing.T, c *cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.etcd.Endpoints(), Prefix: "/cluster/", PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := readMasterKey(filepath.Join(c.dirs[0], "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	svc := serviceWithKey(t, st, key)
	if err := svc.CheckStore(ctx); err != nil {
		t.Fatalf("CheckStore: %v", err)
	}
	rep, err := svc.CheckConsistency(ctx)
	if err != nil {
		t.Errorf("CheckConsistency: %v\n%s", err, strings.Join(rep.Problems, "\n"))
	}
}
