package etcdstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/seal"
	"tokend/internal/etcdtest"
)

// nodesRun is what one run of twoNodeWrites measured.
type nodesRun struct {
	writes, conflicts int64
	elapsed           time.Duration
}

// twoNodeWrites runs two Services, each on its own store (its own etcd
// client, as two tokend processes) on one prefix, with node ids a and b;
// each creates users from `workers` goroutines. It checks the audit chains
// and the counters afterwards.
func twoNodeWrites(t *testing.T, c *etcdtest.Cluster, a, b string, lanes, workers, each int) nodesRun {
	t.Helper()
	prefix := fmt.Sprintf("/%s/%s-%s-%d/", t.Name(), a, b, lanes)
	sealer, key := appliancetest.Sealer(t)
	var counters [2]conflictCounter
	var svcs [2]*appliance.Service
	for i, id := range []string{a, b} {
		st := newStore(t, c, Options{Prefix: prefix, Observer: &counters[i]})
		if i == 1 {
			var err error
			if sealer, err = seal.New(key, rand.Reader); err != nil {
				t.Fatal(err)
			}
		}
		svcs[i] = appliancetest.Service(t, appliance.Config{Store: st, Sealer: sealer, NodeID: id, WriteLanes: lanes})
	}
	base := counters[0].conflicts.Load() + counters[1].conflicts.Load()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for n, svc := range svcs {
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("n%d-w%d-u%d", n, w, i)}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(2 * workers * each)
	rep, err := svcs[1].VerifyAudit(ctx)
	if err != nil || rep.Records != uint64(total) {
		t.Fatalf("audit verify: %d records (want %d), %v %q", rep.Records, total, err, rep.Problems)
	}
	cr, err := svcs[0].CheckConsistency(ctx)
	if err != nil || cr.Users != int(total) {
		t.Fatalf("store check: %+v, %v", cr, err)
	}
	if page, err := svcs[0].ListUsers(ctx, appliance.UserQuery{}); err != nil || page.Total != int(total) {
		t.Fatalf("users total %d, want %d (%v)", page.Total, total, err)
	}
	return nodesRun{writes: total, conflicts: counters[0].conflicts.Load() + counters[1].conflicts.Load() - base, elapsed: elapsed}
}

// TestNodesWriteApart: two nodes with their own node ids and write lanes
// (as tokend serve runs on etcd) audit and count on keys of their own, so
// their concurrent writes do not conflict; without lanes a node's own
// goroutines conflict on its chain head and counter share, and with one
// node id shared both nodes' do. Every run ends with every chain verified
// and the counters equal to the indexes.
func TestNodesWriteApart(t *testing.T) {
	c := etcdtest.Start(t)
	const workers, each = 8, 25
	runs := []struct {
		name  string
		a, b  string
		lanes int
		run   nodesRun
	}{
		{name: "distinct node ids, 16 lanes", a: "node-a", b: "node-b", lanes: 16},
		{name: "distinct node ids, no lanes", a: "node-a", b: "node-b"},
		{name: "one node id on both, 16 lanes", a: "same", b: "same", lanes: 16},
		{name: "one node id on both, no lanes", a: "same", b: "same"},
	}
	for i := range runs {
		r := &runs[i]
		r.run = twoNodeWrites(t, c, r.a, r.b, r.lanes, workers, each)
		t.Logf("%s: %d audited writes from 2×%d goroutines, %d conflicts (%.3f per write), %v (%.0f writes/s)", r.name, r.run.writes, workers,
			r.run.conflicts, float64(r.run.conflicts)/float64(r.run.writes), r.run.elapsed.Round(time.Millisecond), float64(r.run.writes)/r.run.elapsed.Seconds())
	}
	if apart, shared := runs[0].run, runs[3].run; apart.conflicts > apart.writes/100 || shared.conflicts <= apart.conflicts {
		t.Errorf("conflicts: %d with distinct node ids and lanes (want at most 1%% of %d writes), %d with one node id",
			apart.conflicts, apart.writes, shared.conflicts)
	}
}
