package appliance_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestRolloutOwnedByNode is issue 18's hazard: node B starting while node
// A applies a rollout on the same store must not interrupt it (nor resume
// it itself); once A stops writing (its apply hangs, as a killed node's
// would) for JobStale, B's sweep marks it interrupted and finishes it, and
// A's late chunk is refused.
func TestRolloutOwnedByNode(t *testing.T) {
	var names []string
	for i := range 35 {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	f := newRolloutFixture(t, st, 40, names...) // f.svc is node B
	r := f.plan(t)
	gate := &rolloutGateStore{Store: st, blocked: make(chan struct{})}
	gate.pass.Store(2) // the claim and one chunk
	a, err := appliance.New(appliance.Config{Store: gate, Sealer: mustSealer(t, f.key), Now: f.clock.Now,
		CTKIPURL: f.svc.CTKIPURL(), NodeID: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.StartRollout(f.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	<-gate.blocked // A's second chunk hangs: A writes nothing more

	// B starts: what serve does at start on a shared store.
	if got, err := f.svc.InterruptLeftoverJobs(f.ctx); err != nil || len(got.Rollouts) != 0 {
		t.Fatalf("B's start interrupted %+v (%v): A's live rollout", got, err)
	}
	if ids, err := f.svc.ResumeRollouts(f.ctx); err != nil || len(ids) != 0 {
		t.Fatalf("B's start resumed %v (%v)", ids, err)
	}
	f.clock.Add(appliance.JobStale - time.Second)
	if got, err := f.svc.InterruptStaleJobs(f.ctx); err != nil || len(got.Rollouts) != 0 {
		t.Fatalf("sweep before the bound: %+v %v", got, err)
	}
	mid, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || mid.State != appliance.RolloutApplying || mid.Node != "node-a" {
		t.Fatalf("before the bound: %+v %v", mid, err)
	}

	f.clock.Add(2 * time.Second) // A's heartbeat is now older than JobStale
	got, err := f.svc.InterruptStaleJobs(f.ctx)
	if err != nil || len(got.Rollouts) != 1 || len(got.Resumed) != 1 {
		t.Fatalf("sweep after the bound: %+v %v", got, err)
	}
	f.svc.WaitRollouts()
	done, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || done.State != appliance.RolloutCompleted || done.Done != 35 || done.Node == "node-a" {
		t.Fatalf("after the takeover: %+v %v", done, err)
	}
	// A wakes up: its held chunk is cancelled and it lost the claim, so
	// it neither applies nor marks anything.
	a.StopRollouts()
	after, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || after.State != appliance.RolloutCompleted || after.Done != 35 {
		t.Fatalf("after A stopped: %+v %v", after, err)
	}
	for n, c := range f.phones(t) {
		if c != 1 {
			t.Errorf("%s holds %d tokens of the profile", n, c)
		}
	}
}

// TestImportOwnedByNode: a starting node leaves another node's running
// import alone; once that node stops writing for JobStale the sweep marks
// the job interrupted, and the owner's late chunks are refused.
func TestImportOwnedByNode(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	f := newFixture(t, st) // node B (the default node id)
	gate := &rolloutGateStore{Store: st, blocked: make(chan struct{})}
	gate.pass.Store(2) // the job and its first chunk
	a, err := appliance.New(appliance.Config{Store: gate, Sealer: mustSealer(t, f.key), Now: f.clock.Now,
		CTKIPURL: f.svc.CTKIPURL(), NodeID: "node-a", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(f.ctx)
	defer cancelA()
	res := make(chan error, 1)
	go func() {
		_, err := a.ImportTokens(ctxA, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(serials(3000, 180000000000))})
		res <- err
	}()
	<-gate.blocked
	jobs, err := f.svc.ListImportJobs(f.ctx, 10)
	if err != nil || len(jobs) != 1 || jobs[0].Status != appliance.JobRunning || jobs[0].Node != "node-a" {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	if got, err := f.svc.InterruptLeftoverJobs(f.ctx); err != nil || len(got.Imports) != 0 {
		t.Fatalf("B's start interrupted %+v (%v): A's live import", got, err)
	}
	f.clock.Add(appliance.JobStale + time.Second)
	got, err := f.svc.InterruptStaleJobs(f.ctx)
	if err != nil || len(got.Imports) != 1 || got.Imports[0] != jobs[0].ID {
		t.Fatalf("sweep after the bound: %+v %v", got, err)
	}
	// A chunk of A's still in flight is refused from now on.
	swept, err := f.svc.GetImportJob(f.ctx, jobs[0].ID)
	if err != nil || swept.Status != appliance.JobInterrupted {
		t.Fatalf("job after the sweep: %+v %v", swept, err)
	}
	cancelA()
	if err := <-res; err == nil {
		t.Fatal("A's import finished after it was interrupted")
	}
	j, err := f.svc.GetImportJob(f.ctx, jobs[0].ID)
	if err != nil || j.Status != appliance.JobInterrupted || j.Imported != swept.Imported {
		t.Fatalf("job after A gave up: %+v (swept %+v) %v", j, swept, err)
	}
}

// failAfter lets n Updates through and fails every later one: a process
// killed mid-import leaves its job running.
type failAfter struct {
	appliance.Store
	n atomic.Int64
}

var errKilledNode = errors.New("killed")

func (s *failAfter) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if s.n.Add(-1) < 0 {
		return errKilledNode
	}
	return s.Store.Update(ctx, fn)
}

// TestLeftoverJobsAtStart: a node's start on a shared store marks its own
// leftover import (its previous run was killed) at once, without waiting
// for JobStale, and leaves another node's fresh one alone.
func TestLeftoverJobsAtStart(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	f := newFixture(t, st) // the restarted node: the default node id
	killed := func(node string, n int64) string {
		t.Helper()
		fs := &failAfter{Store: st}
		fs.n.Store(n)
		svc, err := appliance.New(appliance.Config{Store: fs, Sealer: mustSealer(t, f.key), Now: f.clock.Now,
			CTKIPURL: f.svc.CTKIPURL(), NodeID: node, SpoolDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		job, err := svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV,
			Body: strings.NewReader(serials(500, 181000000000+int(n)*1000))})
		if !errors.Is(err, errKilledNode) {
			t.Fatalf("killed import: %+v %v", job, err)
		}
		return job.ID
	}
	own := killed(appliance.DefaultNodeID, 3)
	other := killed("node-a", 2)
	got, err := f.svc.InterruptLeftoverJobs(f.ctx)
	if err != nil || len(got.Imports) != 1 || got.Imports[0] != own {
		t.Fatalf("start marked %+v (%v); want only %s", got, err, own)
	}
	if j, err := f.svc.GetImportJob(f.ctx, other); err != nil || j.Status != appliance.JobRunning {
		t.Fatalf("the other node's job: %+v %v", j, err)
	}
}
