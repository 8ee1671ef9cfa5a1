package main

import (
	"context"
	"errors"
	"fmt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/metrics"
	"tokend/internal/etcdtest"
	"tokend/sync/ldap"
)

func etcdClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestRunnerFailover: two nodes on one real etcd elect one runner; when
// the runner's node dies (its etcd client goes away without resigning, so
// its lease just stops being renewed) the other takes over within the
// lease TTL, and scheduled work then runs there and only there.
func TestRunnerFailover(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	const ttl = 2 * time.Second
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cliA := etcdClient(t, c)
	var leaderA, leaderB atomic.Int32
	a := startEtcdRunner(ctx, cliA, "/runner-test/", "a", ttl, log, func(v bool) { leaderA.Store(b2i(v)) })
	waitUntil(t, 10*time.Second, "a elected", a.IsLeader)
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	b := startEtcdRunner(ctxB, etcdClient(t, c), "/runner-test/", "b", ttl, log, func(v bool) { leaderB.Store(b2i(v)) })
	time.Sleep(3 * ttl / 2)
	if b.IsLeader() || leaderB.Load() != 0 {
		t.Fatal("two runners at once")
	}

	var ranA, ranB atomic.Int32
	go a.every(ctx, 50*time.Millisecond, func(context.Context) { ranA.Add(1) })
	go b.every(ctxB, 50*time.Millisecond, func(context.Context) { ranB.Add(1) })
	waitUntil(t, 5*time.Second, "work on the runner", func() bool { return ranA.Load() > 0 })
	if ranB.Load() != 0 {
		t.Fatal("scheduled work ran on the node that is not the runner")
	}

	// Node a dies: its client stops, no Resign reaches etcd.
	_ = cliA.Close()
	gap := waitUntil(t, ttl+5*time.Second, "b takes over after a's lease", b.IsLeader)
	t.Logf("takeover after %v (lease TTL %v)", gap, ttl)
	waitUntil(t, 5*time.Second, "a knows it lost the role", func() bool { return !a.IsLeader() })
	if leaderA.Load() != 0 || leaderB.Load() != 1 {
		t.Fatalf("leader gauges a=%d b=%d", leaderA.Load(), leaderB.Load())
	}
	before := ranA.Load()
	waitUntil(t, 5*time.Second, "work moves to b", func() bool { return ranB.Load() > 0 })
	time.Sleep(200 * time.Millisecond)
	if ranA.Load() != before {
		t.Fatal("the dead runner still runs scheduled work")
	}

	// A clean stop resigns: the role moves at once, not after the lease.
	c3 := startEtcdRunner(ctx, etcdClient(t, c), "/runner-test/", "c", 30*time.Second, log, nil)
	time.Sleep(500 * time.Millisecond)
	if c3.IsLeader() {
		t.Fatal("c elected while b holds the role")
	}
	stopped := time.Now()
	cancelB()
	<-b.Done()
	if b.IsLeader() {
		t.Fatal("a stopped runner still claims the role")
	}
	// b's lease is 2s but c's 30s: a takeover within 1s is b's resignation.
	waitUntil(t, ttl/2, "c takes over at once after b resigned", c3.IsLeader)
	t.Logf("after a clean stop the role moved in %v", time.Since(stopped).Round(time.Millisecond))
}

// TestLocalRunner: on bbolt the node is always the runner.
func TestLocalRunner(t *testing.T) {
	var got atomic.Int32
	r := newLocalRunner(func(v bool) { got.Store(b2i(v)) })
	if !r.IsLeader() || got.Load() != 1 {
		t.Fatal("the one node of a bbolt store is not the runner")
	}
}

func b2i(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

// TestEtcdConflictsCounted: two nodes' stores racing on one key of a real
// etcd lose attempts, and tokend_store_conflicts_total counts them.
func TestEtcdConflictsCounted(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	m := metrics.New("test")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: c.Endpoints(), Prefix: "/conflicts/", PurgeInterval: -1, Observer: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		for range 4 {
			wg.Go(func() {
				for range 25 {
					if err := st.Update(ctx, func(tx appliance.Tx) error {
						v, err := tx.Get([]byte("hot"))
						if err != nil && !errors.Is(err, appliance.ErrNotFound) {
							return err
						}
						return tx.Put([]byte("hot"), fmt.Appendf(nil, "%d", len(v)+1))
					}); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	wg.Wait()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var conflicts float64
	for _, f := range fams {
		if f.GetName() == "tokend_store_conflicts_total" {
			conflicts = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Logf("%v conflicts in 200 updates of one key from two stores", conflicts)
	if conflicts == 0 {
		t.Fatal("no conflicts counted for two stores' writers on one key")
	}
}

// TestScheduledSyncOnlyOnRunner: the sync schedule does nothing on a node
// that is not the runner and runs once it is; a manual sync runs on any
// node. The LDAP source points at a closed port, so every run is recorded
// as a failed run.
func TestScheduledSyncOnlyOnRunner(t *testing.T) {
	svc := appliancetest.Service(t, appliance.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldap://127.0.0.1:1", BindDN: "cn=r,dc=x", BindPassword: "pw", BaseDN: "dc=x"}})
	if err != nil {
		t.Fatal(err)
	}
	lastRun := func() *appliance.SyncRun {
		s, err := svc.GetIdentitySource(ctx, src.ID)
		if err != nil {
			t.Fatal(err)
		}
		return s.LastRun
	}
	var leader atomic.Bool
	r := newSyncRunner(svc, metrics.New("test"), slog.New(slog.DiscardHandler), time.Now)
	r.isRunner = leader.Load
	go r.loop(ctx, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	if lr := lastRun(); lr != nil {
		t.Fatalf("a node that is not the runner ran the schedule: %+v", lr)
	}
	leader.Store(true)
	waitUntil(t, 10*time.Second, "the runner's schedule runs", func() bool { return lastRun() != nil })
	scheduled := lastRun()
	leader.Store(false)
	if _, err := r.SyncNow(ctx, src.ID, false); err == nil {
		t.Fatal("a sync against a closed port succeeded")
	}
	if lr := lastRun(); lr == nil || !lr.StartedAt.After(scheduled.StartedAt) {
		t.Fatal("a manual sync on a node that is not the runner did not run")
	}
}

// TestEtcdRequestLatencyMetric: a store opened as serve opens it times every
// request to a real etcd in tokend_etcd_request_duration_seconds, by method.
func TestEtcdRequestLatencyMetric(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	m := metrics.New("test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openEtcd(ctx, StoreConfig{Backend: backendEtcd, EtcdEndpoints: c.Endpoints()[0], EtcdPrefix: "/latency/", Nodes: 1},
		storeOpenOptions{NoPurge: true, EtcdRequest: m.EtcdRequest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for i := range 3 {
		if err := st.Update(ctx, func(tx appliance.Tx) error { return tx.Put(fmt.Appendf(nil, "k%d", i), []byte("v")) }); err != nil {
			t.Fatal(err)
		}
	}
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "tokend_etcd_request_duration_seconds" {
			continue
		}
		for _, x := range f.GetMetric() {
			for _, l := range x.GetLabel() {
				counts[l.GetValue()] += x.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Logf("requests by method: %v", counts)
	if counts["KV/Txn"] < 3 || counts["KV/Range"] == 0 {
		t.Fatalf("requests by method %v: want at least 3 KV/Txn (one per Update) and the Ping's KV/Range", counts)
	}
}

// TestScheduleRecallsStoredRuns: a node that becomes the runner (or starts)
// takes the schedule from the runs in the store, so it neither repeats a
// full pass another node just made nor skips one that is due.
func TestScheduleRecallsStoredRuns(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	run := func(mode string, ago time.Duration, failed bool) appliance.SyncRun {
		r := appliance.SyncRun{Mode: mode, StartedAt: now.Add(-ago), FinishedAt: now.Add(-ago + time.Second)}
		if failed {
			r.Error = "ldap: connection refused"
		}
		return r
	}
	tests := []struct {
		name           string
		runs           []appliance.SyncRun // oldest first
		wantFull, want bool
	}{
		{name: "no runs", wantFull: true, want: true},
		{name: "full a minute ago", runs: []appliance.SyncRun{run(ldap.ModeFull, time.Minute, false)}},
		// The source's interval is the default 15 minutes.
		{name: "full 10 minutes ago", runs: []appliance.SyncRun{run(ldap.ModeFull, 10*time.Minute, false)}},
		{name: "full 20 minutes ago", runs: []appliance.SyncRun{run(ldap.ModeFull, 20*time.Minute, false)}, want: true},
		{name: "full 25 hours ago, incremental a minute ago", runs: []appliance.SyncRun{
			run(ldap.ModeFull, 25*time.Hour, false), run(ldap.ModeIncremental, time.Minute, false)}, wantFull: true},
		{name: "full an hour ago, incrementals since", runs: []appliance.SyncRun{
			run(ldap.ModeFull, time.Hour, false), run(ldap.ModeIncremental, 40*time.Minute, false), run(ldap.ModeIncremental, 16*time.Minute, false)},
			want: true},
		{name: "failed full a minute ago", runs: []appliance.SyncRun{run(ldap.ModeFull, time.Minute, true)}, wantFull: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := appliancetest.Service(t, appliance.Config{})
			ctx := context.Background()
			src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "corp", Type: appliance.SourceTypeLDAP,
				LDAP: &appliance.LDAPSourceConfig{URL: "ldap://127.0.0.1:1", BindDN: "cn=r,dc=x", BindPassword: "pw", BaseDN: "dc=x"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.runs {
				r.SourceID = src.ID
				if _, err := svc.RecordSyncRun(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if src, err = svc.GetIdentitySource(ctx, src.ID); err != nil {
				t.Fatal(err)
			}
			r := newSyncRunner(svc, metrics.New("test"), slog.New(slog.DiscardHandler), func() time.Time { return now })
			r.recall(ctx, src)
			full, due := r.due(src, now)
			if full != tc.wantFull || due != tc.want {
				t.Errorf("due = full %v, due %v; want full %v, due %v", full, due, tc.wantFull, tc.want)
			}
		})
	}
}

// TestAnnounceNodeSurvivesALostLease: a node's presence key comes back
// under a new lease when its lease ends while the node runs (an etcd outage
// longer than the TTL ends it; revoking it here does the same), and goes
// when the node stops.
func TestAnnounceNodeSurvivesALostLease(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	cli := etcdClient(t, c)
	ctx := context.Background()
	const prefix = "/announce/"
	presence := func() []*mvccpb.KeyValue {
		t.Helper()
		resp, err := cli.Get(ctx, nodesPrefix(prefix), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Kvs
	}
	leave, err := announceNode(ctx, cli, prefix, "node-a", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := presence()
	if len(first) != 1 || string(first[0].Value) != "node-a" {
		t.Fatalf("presence keys after announcing: %v", first)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(first[0].Lease)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the presence key is back under a new lease", func() bool {
		kvs := presence()
		return len(kvs) == 1 && kvs[0].Lease != first[0].Lease
	})
	leave()
	if kvs := presence(); len(kvs) != 0 {
		t.Fatalf("presence keys after the node left: %v", kvs)
	}
}
