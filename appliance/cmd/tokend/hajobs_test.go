package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/seal"
	"tokend/internal/etcdtest"
)

// holdStore lets the first pass cancellable Updates through and holds the
// next ones until their context ends: a node whose writes stop, as a
// killed one's do. Uncancellable Updates go through.
type holdStore struct {
	appliance.Store
	pass    atomic.Int64
	once    sync.Once
	blocked chan struct{}
}

func (s *holdStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if ctx.Done() != nil && s.pass.Add(-1) < 0 {
		s.once.Do(func() { close(s.blocked) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.Update(ctx, fn)
}

// etcdNodes opens one Service per node id on one fresh etcd key space, as
// tokend nodes with the same master key would; wrap, if set, wraps a
// node's store.
func etcdNodes(t *testing.T, c *etcdtest.Cluster, clock *testClock, wrap func(i int, st appliance.Store) appliance.Store, nodes ...string) []*appliance.Service {
	t.Helper()
	_, key := appliancetest.Sealer(t)
	prefix := fmt.Sprintf("/jobs-%s/", rand.Text()[:8])
	var out []*appliance.Service
	for i, node := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.Endpoints(), Prefix: prefix, PurgeInterval: -1})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		sealer, err := seal.New(key, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var store appliance.Store = st
		if wrap != nil {
			store = wrap(i, st)
		}
		out = append(out, appliancetest.Service(t, appliance.Config{Store: store, Sealer: sealer, Now: clock.Now, NodeID: node,
			SpoolDir: t.TempDir(), CTKIPURL: "https://localhost/ctkip/services/CtkipService"}))
	}
	return out
}

func csvSerials(n, first int) string {
	var b strings.Builder
	b.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&b, "%012d\n", first+i)
	}
	return b.String()
}

// heldNodeA starts two nodes, A and B, on one etcd member; A's store lets
// two Updates through and then holds the rest (a node that hangs).
func heldNodeA(t *testing.T) (*etcdtest.Cluster, *testClock, *holdStore, *appliance.Service, *appliance.Service) {
	t.Helper()
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	clock := &testClock{}
	hold := &holdStore{blocked: make(chan struct{})}
	hold.pass.Store(2)
	svcs := etcdNodes(t, c, clock, func(i int, st appliance.Store) appliance.Store {
		if i == 0 {
			hold.Store = st
			return hold
		}
		return st
	}, "node-a", "node-b")
	return c, clock, hold, svcs[0], svcs[1]
}

// TestImportOwnedByNodeOnEtcd is issue 18's first hazard on real etcd:
// node B starting (what serve runs at start) while node A runs an import
// does not interrupt it; once A's writes stop (A hangs or was killed) for
// appliance.JobStale, the runner's sweep marks the job interrupted, and
// A's late chunks are refused.
func TestImportOwnedByNodeOnEtcd(t *testing.T) {
	_, clock, hold, a, b := heldNodeA(t) // A: the job and one chunk get through
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})

	ctxA, cancelA := context.WithCancel(ctx)
	defer cancelA()
	res := make(chan error, 1)
	go func() {
		_, err := a.ImportTokens(ctxA, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csvSerials(2000, 190000000000))})
		res <- err
	}()
	select {
	case <-hold.blocked:
	case err := <-res:
		t.Fatalf("A's import ended before it was held: %v", err)
	}
	jobs, err := b.ListImportJobs(ctx, 10)
	if err != nil || len(jobs) != 1 || jobs[0].Status != appliance.JobRunning || jobs[0].Node != "node-a" {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	id := jobs[0].ID

	// B starts (what serve runs at start on etcd).
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := interruptAtStart(ctx, b, true, log); err != nil {
		t.Fatal(err)
	}
	if ids, err := b.ResumeRollouts(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("B's start resumed rollouts %v (%v)", ids, err)
	}
	sweepStaleJobs(ctx, b, log)
	if j, err := b.GetImportJob(ctx, id); err != nil || j.Status != appliance.JobRunning {
		t.Fatalf("after B's start and a sweep within the bound: %+v %v", j, err)
	}

	clock.Add(appliance.JobStale + time.Second) // A has written nothing since
	sweepStaleJobs(ctx, b, log)
	j, err := b.GetImportJob(ctx, id)
	if err != nil || j.Status != appliance.JobInterrupted {
		t.Fatalf("after the bound: %+v %v", j, err)
	}
	if !strings.Contains(logs.String(), "job="+id) {
		t.Errorf("the sweep logged no line for %s:\n%s", id, logs.String())
	}
	cancelA()
	if err := <-res; err == nil {
		t.Fatal("A's import finished after it was interrupted")
	}
	after, err := b.GetImportJob(ctx, id)
	if err != nil || after.Status != appliance.JobInterrupted || after.Imported != j.Imported {
		t.Fatalf("after A gave up: %+v (was %+v) %v", after, j, err)
	}
}

// TestBootstrapTokenOnSecondNode is issue 18's second hazard on real etcd:
// a node that finds no admin-token file while the shared store has the
// bootstrap token refuses to start rather than replace the token (which
// would lock out the first node's copy); with the copied file it starts.
func TestBootstrapTokenOnSecondNode(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	svcs := etcdNodes(t, c, &testClock{}, nil, "node-a", "node-b")
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})
	env := func(t *testing.T) *serveEnv {
		p, err := newDataPaths(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return &serveEnv{Paths: p, Stdout: io.Discard}
	}
	envA, envB := env(t), env(t)
	if err := ensureAdminToken(ctx, svcs[0], envA, true); err != nil {
		t.Fatal(err)
	}
	tokA, err := os.ReadFile(envA.Paths.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	secretA := strings.TrimSpace(string(tokA))

	err = ensureAdminToken(ctx, svcs[1], envB, true)
	if !errors.Is(err, errBootstrapTokenShared) || !strings.Contains(err.Error(), "copy admin-token") {
		t.Fatalf("second node without the file: %v", err)
	}
	if strings.Contains(err.Error(), secretA) {
		t.Fatal("the error shows the token")
	}
	if _, err := os.Stat(envB.Paths.AdminToken); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused node wrote %s: %v", envB.Paths.AdminToken, err)
	}
	for i, svc := range svcs {
		if _, err := svc.AuthenticateAPIToken(ctx, secretA); err != nil {
			t.Fatalf("node %d refuses the first node's token: %v", i, err)
		}
	}

	// The operator copies the file: the node starts, the token unchanged.
	if err := os.WriteFile(envB.Paths.AdminToken, tokA, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ensureAdminToken(ctx, svcs[1], envB, true); err != nil {
		t.Fatalf("with the copied file: %v", err)
	}
	if _, err := svcs[0].AuthenticateAPIToken(ctx, secretA); err != nil {
		t.Fatalf("the token after the second node started: %v", err)
	}
}

// TestBootstrapTokenFirstStartRace: two nodes start at once on an empty
// shared store, neither with an admin-token file. The check and the create
// are one transaction, so exactly one creates the bootstrap token and the
// other refuses to start; the store holds one token of that name. Each
// round uses its own key prefix, so every round starts empty.
func TestBootstrapTokenFirstStartRace(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})
	for round := range 8 {
		svcs := etcdNodes(t, c, &testClock{}, nil, "node-a", "node-b")
		envs := make([]*serveEnv, 2)
		errs := make([]error, 2)
		for i := range envs {
			p, err := newDataPaths(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			envs[i] = &serveEnv{Paths: p, Stdout: io.Discard}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range svcs {
			wg.Go(func() {
				<-start
				errs[i] = ensureAdminToken(ctx, svcs[i], envs[i], true)
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i, err := range errs {
			switch {
			case err == nil:
				created++
				if _, err := os.Stat(envs[i].Paths.AdminToken); err != nil {
					t.Fatalf("round %d: node %d started without its file: %v", round, i, err)
				}
			case errors.Is(err, errBootstrapTokenShared):
				if _, err := os.Stat(envs[i].Paths.AdminToken); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("round %d: the refused node %d wrote its file: %v", round, i, err)
				}
			default:
				t.Fatalf("round %d: node %d: %v", round, i, err)
			}
		}
		toks, err := svcs[0].ListAPITokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		named := 0
		for _, tok := range toks {
			if tok.Name == adminTokenName {
				named++
			}
		}
		if created != 1 || named != 1 {
			t.Fatalf("round %d: %d nodes created the token, the store holds %d (%v)", round, created, named, errs)
		}
	}
}

// TestBootstrapTokenSingleNode keeps the single-node rule: on a store of
// its own (bbolt), a node whose admin-token file is gone makes a new token
// and the old one is refused.
func TestBootstrapTokenSingleNode(t *testing.T) {
	svc := appliancetest.Service(t, appliance.Config{})
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})
	p, err := newDataPaths(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := &serveEnv{Paths: p, Stdout: io.Discard}
	if err := ensureAdminToken(ctx, svc, env, false); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(p.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.AdminToken); err != nil {
		t.Fatal(err)
	}
	if err := ensureAdminToken(ctx, svc, env, false); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(p.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateAPIToken(ctx, strings.TrimSpace(string(old))); err == nil {
		t.Error("the replaced token still authenticates")
	}
	if _, err := svc.AuthenticateAPIToken(ctx, strings.TrimSpace(string(cur))); err != nil {
		t.Errorf("the new token: %v", err)
	}
}

// TestREADMEHAConfig decodes the README's three-node example config
// strictly and validates it, so the example cannot drift from the keys.
func TestREADMEHAConfig(t *testing.T) {
	raw, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "# /etc/tokend/tokend.yaml on host A"
	_, rest, ok := strings.Cut(string(raw), start)
	_, rest, _ = strings.Cut(rest, "\n") // the heading comment's end
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README has no High availability config example")
	}
	cfg, err := decodeConfig(strings.NewReader(block), "README", defaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != "a" || cfg.Store.Backend != "etcd" || cfg.Store.Nodes != 3 || len(strings.Split(cfg.Store.EtcdEndpoints, ",")) != 3 {
		t.Errorf("decoded %+v", cfg.Store)
	}
}

// TestRolloutTakenOverByRunnerOnEtcd: node A applies a rollout on real
// etcd and stops writing mid-way (hung or killed); node B's start leaves
// the rollout alone, and B, elected runner, sweeps: once A's heartbeat is
// older than appliance.JobStale the rollout is marked interrupted and
// applied to the end on B, each user getting exactly one token.
func TestRolloutTakenOverByRunnerOnEtcd(t *testing.T) {
	c, clock, hold, a, b := heldNodeA(t) // A: the claim and one chunk get through
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})

	if _, err := b.CreateProfile(ctx, appliance.Profile{Name: "phones", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csvSerials(40, 170000000000))}); err != nil {
		t.Fatal(err)
	}
	src, _, err := b.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Entra", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 25 {
		n := fmt.Sprintf("user%02d", i)
		u, err := b.CreateSourceUser(ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: n, Email: n + "@example.org", Active: true}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	g, err := b.CreateGroup(ctx, src.ID, appliance.Group{DisplayName: "Staff", Members: ids})
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.PlanRollout(ctx, appliance.RolloutRequest{Group: &appliance.RolloutGroup{Source: src.ID, ID: g.ID},
		Profile: "phones", Pool: appliance.RolloutPool{SerialPrefix: "1700"}, Delivery: appliance.DeliveryCTKIP})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := a.StartRollout(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	<-hold.blocked
	defer a.StopRollouts()

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := interruptAtStart(ctx, b, true, log); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ResumeRollouts(ctx); err != nil || len(got) != 0 {
		t.Fatalf("B's start resumed %v (%v)", got, err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	run := startEtcdRunner(runCtx, etcdClient(t, c), fmt.Sprintf("/jobs-runner-%s/", rand.Text()[:8]), "node-b", 2*time.Second, log, func(bool) {})
	waitUntil(t, 10*time.Second, "B elected runner", run.IsLeader)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		run.runNowAndEvery(runCtx, 50*time.Millisecond, func(ctx context.Context) { sweepStaleJobs(ctx, b, log) })
	}()
	defer func() { stop(); <-swept }()

	time.Sleep(300 * time.Millisecond) // several sweeps within the bound
	if mid, err := b.GetRollout(ctx, r.ID); err != nil || mid.State != appliance.RolloutApplying || mid.Node != "node-a" {
		t.Fatalf("within the bound: %+v %v", mid, err)
	}
	clock.Add(appliance.JobStale + time.Second)
	waitUntil(t, 30*time.Second, "the rollout completed on B", func() bool {
		cur, err := b.GetRollout(ctx, r.ID)
		return err == nil && cur.State == appliance.RolloutCompleted
	})
	b.WaitRollouts()
	done, err := b.GetRollout(ctx, r.ID)
	if err != nil || done.Node != "node-b" || done.Done != 25 || done.Failed != 0 {
		t.Fatalf("after the takeover: %+v %v", done, err)
	}
	if !strings.Contains(logs.String(), "rollouts interrupted: their node stopped writing") {
		t.Errorf("no sweep log line:\n%s", logs.String())
	}
	a.StopRollouts() // A wakes up: it lost the claim and changes nothing
	after, err := b.GetRollout(ctx, r.ID)
	if err != nil || after.State != appliance.RolloutCompleted || after.Done != 25 {
		t.Fatalf("after A stopped: %+v %v", after, err)
	}
	for _, id := range ids {
		uv, err := b.GetUser(ctx, id)
		if err != nil || len(uv.Tokens) != 1 {
			t.Errorf("user %s holds %d tokens (%v)", id, len(uv.Tokens), err)
		}
	}
}
