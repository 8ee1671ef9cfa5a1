package appliance_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
	"tokend/appliance/tokenfile"
)

// rolloutFixture is a SCIM source with a group of users, a CT-KIP profile
// "phones" and pool tokens 1700000000xx.
type rolloutFixture struct {
	*fixture
	src   appliance.IdentitySource
	users map[string]appliance.SourceUser
	group appliance.Group
}

func newRolloutFixture(t *testing.T, store appliance.Store, pool int, names ...string) *rolloutFixture {
	t.Helper()
	f := &rolloutFixture{fixture: newFixture(t, store), users: map[string]appliance.SourceUser{}}
	if _, err := f.svc.CreateProfile(f.ctx, appliance.Profile{Name: "phones", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP}); err != nil {
		t.Fatal(err)
	}
	if pool > 0 {
		f.importCSV(t, serials(pool, 170000000000))
	}
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Entra", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	f.src = src
	var ids []string
	for _, n := range names {
		u, err := f.svc.CreateSourceUser(f.ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: n,
			Email: n + "@example.org", Active: true}})
		if err != nil {
			t.Fatal(err)
		}
		f.users[n] = u
		ids = append(ids, u.ID)
	}
	if f.group, err = f.svc.CreateGroup(f.ctx, src.ID, appliance.Group{DisplayName: "Staff", Members: ids}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *rolloutFixture) plan(t *testing.T) appliance.Rollout {
	t.Helper()
	r, err := f.svc.PlanRollout(f.ctx, appliance.RolloutRequest{Group: &appliance.RolloutGroup{Source: f.src.ID, ID: f.group.ID},
		Profile: "phones", Pool: appliance.RolloutPool{SerialPrefix: "1700"}, Delivery: appliance.DeliveryCTKIP})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return r
}

func (f *rolloutFixture) items(t *testing.T, id string) map[string]appliance.RolloutItem {
	t.Helper()
	out := map[string]appliance.RolloutItem{}
	after := 0
	for {
		p, err := f.svc.ListRolloutItems(f.ctx, id, after, 7, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			if len(it.Code) > 0 {
				t.Errorf("item %d lists its sealed code", it.Seq)
			}
			out[it.UserName] = it
		}
		if p.NextAfter == 0 {
			return out
		}
		after = p.NextAfter
	}
}

// assignedProfileTokens counts, per user, the tokens of profile "phones".
func (f *rolloutFixture) phones(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for n, u := range f.users {
		uv, err := f.svc.GetUser(f.ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range uv.Tokens {
			if tok.Profile == "phones" {
				out[n]++
			}
		}
	}
	return out
}

type rolloutCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *rolloutCounter) RolloutUsers(result string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[result] += n
}

func TestRolloutPlanIsADryRunThenApplyDelivers(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 3, "alice", "bob", "carol", "dave", "erin", "frank")
	// bob holds a token of the profile, carol three tokens, dave is gone.
	f.importCSV(t, serials(4, 160000000000))
	if _, err := f.svc.AssignTokens(f.ctx, f.users["bob"].ID, []string{"160000000000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Distribute(f.ctx, "160000000000", "phones"); err != nil {
		t.Fatal(err)
	}
	// carol is at the limit with tokens outside the pool.
	f.importCSV(t, serials(3, 180000000000))
	if _, err := f.svc.AssignTokens(f.ctx, f.users["carol"].ID, []string{"180000000000", "180000000001", "180000000002"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeactivateSourceUser(f.ctx, f.src.ID, f.users["dave"].ID, false); err != nil {
		t.Fatal(err)
	}
	r := f.plan(t)
	want := appliance.Rollout{State: appliance.RolloutPlanned, Users: 6, ToAssign: 3, HasProfile: 1, AtLimit: 1, Inactive: 1, PoolShortfall: 0}
	got := appliance.Rollout{State: r.State, Users: r.Users, ToAssign: r.ToAssign, HasProfile: r.HasProfile, AtLimit: r.AtLimit,
		Inactive: r.Inactive, PoolShortfall: r.PoolShortfall}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	items := f.items(t, r.ID)
	status := map[string]string{}
	for n, it := range items {
		status[n] = it.Status + " " + it.Serial
	}
	wantStatus := map[string]string{"alice": "assign 170000000000", "bob": "has_profile ", "carol": "at_limit ",
		"dave": "inactive ", "erin": "assign 170000000001", "frank": "assign 170000000002"}
	if diff := cmp.Diff(wantStatus, status); diff != "" {
		t.Fatalf("items (-want +got):\n%s", diff)
	}
	// A dry run: nothing assigned.
	if tok, err := f.svc.GetToken(f.ctx, "170000000000"); err != nil || tok.UserID != "" {
		t.Fatalf("planned token is assigned before apply: %+v %v", tok, err)
	}

	done, err := f.svc.ApplyRollout(f.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != appliance.RolloutCompleted || done.Done != 3 || done.Failed != 0 {
		t.Fatalf("applied %+v", done)
	}
	if diff := cmp.Diff(map[string]int{"alice": 1, "bob": 1, "erin": 1, "frank": 1}, f.phones(t)); diff != "" {
		t.Fatalf("tokens of the profile (-want +got):\n%s", diff)
	}
	if _, err := f.svc.ApplyRollout(f.ctx, r.ID); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("apply of a completed rollout: %v", err)
	}

	// alice's delivery, once; the code provisions.
	items = f.items(t, r.ID)
	d, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["alice"].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial != "170000000000" || len(d.ActivationCode.Reveal()) != appliance.CodeDigits || d.UserName != "alice" {
		t.Fatalf("delivery %+v", d)
	}
	if tk, err := f.svc.BeginProvisioning(context.Background(), d.ActivationCode.Reveal()); err != nil || tk.Serial != d.Serial {
		t.Fatalf("the delivered code does not provision: %+v %v", tk, err)
	}
	if _, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["alice"].Seq); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
	if _, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["bob"].Seq); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("take of a skipped user: %v", err)
	}

	// Two parts, each once; alice's delivery was taken already.
	links := exportRolloutPart(t, f.fixture, r.ID, appliance.ExportLinks)
	wantLinks := [][]string{{"user_name", "email", "serial", "ctkip_url", "expires_at"},
		{"erin", "erin@example.org", "170000000001", f.svc.CTKIPURL(), "2026-12-03T12:00:00Z"},
		{"frank", "frank@example.org", "170000000002", f.svc.CTKIPURL(), "2026-12-03T12:00:00Z"}}
	if diff := cmp.Diff(wantLinks, links); diff != "" {
		t.Fatalf("links (-want +got):\n%s", diff)
	}
	codes := exportRolloutPart(t, f.fixture, r.ID, appliance.ExportCodes)
	if len(codes) != 3 || codes[1][0] != "erin" || codes[2][0] != "frank" {
		t.Fatalf("codes %v", codes)
	}
	for _, row := range codes[1:] {
		if tk, err := f.svc.BeginProvisioning(context.Background(), row[3]); err != nil || tk.Serial != row[2] {
			t.Fatalf("exported code of %s does not provision: %v", row[0], err)
		}
		assertRolloutSecretGone(t, f.store, row[3])
	}
	assertRolloutSecretGone(t, f.store, d.ActivationCode.Reveal())
	for _, part := range []string{appliance.ExportLinks, appliance.ExportCodes} {
		err := f.svc.ExportRollout(f.ctx, r.ID, part, func(string, string) io.Writer { return io.Discard })
		if !errors.Is(err, appliance.ErrInvalidState) {
			t.Errorf("second export of %s: %v", part, err)
		}
	}
	if _, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["erin"].Seq); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("take after the codes export: %v", err)
	}
	audit, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range audit.Items {
		if a.Action == "rollout.assign" && a.Outcome == appliance.OutcomeSuccess {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d rollout.assign audit records, want 3", n)
	}
}

func exportRolloutPart(t *testing.T, f *fixture, id, part string) [][]string {
	t.Helper()
	var buf bytes.Buffer
	if err := f.svc.ExportRollout(f.ctx, id, part, func(string, string) io.Writer { return &buf }); err != nil {
		t.Fatalf("export %s: %v", part, err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// assertRolloutSecretGone scans every record for secret.
func assertRolloutSecretGone(t *testing.T, st appliance.Store, secret string) {
	t.Helper()
	err := st.View(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan(nil, nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if bytes.Contains(kv.Value, []byte(secret)) || bytes.Contains(kv.Key, []byte(secret)) {
				t.Errorf("record %q holds a secret in clear", kv.Key)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRolloutPoolShortfall(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 2, "u1", "u2", "u3", "u4", "u5")
	r := f.plan(t)
	if r.ToAssign != 2 || r.PoolShortfall != 3 {
		t.Fatalf("plan %+v", r)
	}
	done, err := f.svc.ApplyRollout(f.ctx, r.ID)
	if err != nil || done.Done != 2 {
		t.Fatalf("apply %+v %v", done, err)
	}
	got := 0
	for _, n := range f.phones(t) {
		got += n
	}
	if got != 2 {
		t.Fatalf("%d tokens handed out from a pool of 2", got)
	}
}

// TestRolloutRefusalsAtApply: what changed between plan and apply fails
// that user (with a reason), not the rollout.
func TestRolloutRefusalsAtApply(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 25, "atlimit", "gone", "taken", "ok1", "ok2")
	rec := &rolloutCounter{}
	svc, err := appliance.New(appliance.Config{Store: f.store, Sealer: mustSealer(t, f.key), Now: f.clock.Now,
		CTKIPURL: f.svc.CTKIPURL(), RolloutRecorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	r := f.plan(t)
	items := f.items(t, r.ID)
	// atlimit reaches the limit meanwhile (tokens outside the plan).
	f.importCSV(t, serials(3, 190000000000))
	if _, err := f.svc.AssignTokens(f.ctx, f.users["atlimit"].ID, []string{"190000000000", "190000000001", "190000000002"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeactivateSourceUser(f.ctx, f.src.ID, f.users["gone"].ID, false); err != nil {
		t.Fatal(err)
	}
	// The token planned for "taken" goes to someone else.
	other := f.user(t, "other")
	if _, err := f.svc.AssignTokens(f.ctx, other.ID, []string{items["taken"].Serial}); err != nil {
		t.Fatal(err)
	}
	done, err := f.svc.ApplyRollout(f.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Done != 2 || done.Failed != 3 || done.State != appliance.RolloutCompleted {
		t.Fatalf("apply %+v", done)
	}
	reasons := map[string]string{}
	for n, it := range f.items(t, r.ID) {
		reasons[n] = it.Status + " " + it.Reason
	}
	want := map[string]string{"atlimit": "failed limit", "gone": "failed inactive", "taken": "failed token_taken",
		"ok1": "done ", "ok2": "done "}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	uv, err := f.svc.GetUser(f.ctx, f.users["atlimit"].ID)
	if err != nil || len(uv.Tokens) != appliance.MaxTokensPerUser {
		t.Fatalf("atlimit holds %d tokens: %v", len(uv.Tokens), err)
	}
	if diff := cmp.Diff(map[string]int{"done": 2, "failed": 3}, rec.n); diff != "" {
		t.Errorf("metric (-want +got):\n%s", diff)
	}
}

// TestRolloutConcurrentApplies: two applies of one rollout at once; one
// makes progress, the other is refused, and no user gets two tokens.
func TestRolloutConcurrentApplies(t *testing.T) {
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	for _, run := range stores {
		t.Run(run.name, func(t *testing.T) {
			f := newRolloutFixture(t, run.open(t), 70, names...)
			r := f.plan(t)
			var wg sync.WaitGroup
			var ok, refused atomic.Int32
			for range 4 {
				wg.Go(func() {
					_, err := f.svc.ApplyRollout(f.ctx, r.ID)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, appliance.ErrConflict), errors.Is(err, appliance.ErrInvalidState):
						refused.Add(1)
					default:
						t.Errorf("apply: %v", err)
					}
				})
			}
			wg.Wait()
			if ok.Load() != 1 || refused.Load() != 3 {
				t.Fatalf("%d applies succeeded, %d refused", ok.Load(), refused.Load())
			}
			got, err := f.svc.GetRollout(f.ctx, r.ID)
			if err != nil || got.Done != 60 || got.Failed != 0 {
				t.Fatalf("rollout %+v %v", got, err)
			}
			for n, c := range f.phones(t) {
				if c != 1 {
					t.Errorf("%s holds %d tokens of the profile", n, c)
				}
			}
			if len(f.phones(t)) != 60 {
				t.Errorf("%d users got a token", len(f.phones(t)))
			}
		})
	}
}

// rolloutCutStore fails every Update after the first `left`, as a process
// that dies between two chunks: nothing after that is written.
type rolloutCutStore struct {
	appliance.Store
	left atomic.Int64
}

var errRolloutPowerCut = errors.New("power cut")

func (s *rolloutCutStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if s.left.Add(-1) < 0 {
		return errRolloutPowerCut
	}
	// What gets through is committed, whatever the apply cancels meanwhile.
	return s.Store.Update(context.WithoutCancel(ctx), fn)
}

// TestRolloutResumesAfterRestart stops a Service between chunks on bbolt,
// reopens the file with a new Service and applies again: every user ends
// with exactly one token, and the first run's users are not handled twice.
func TestRolloutResumesAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 45 {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	f := newRolloutFixture(t, st, 50, names...)
	r := f.plan(t)
	// The claim and two chunks get through, then the power goes.
	cut := &rolloutCutStore{Store: st}
	cut.left.Store(3)
	svc, err := appliance.New(appliance.Config{Store: cut, Sealer: mustSealer(t, f.key), Now: f.clock.Now, CTKIPURL: f.svc.CTKIPURL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ApplyRollout(f.ctx, r.ID); !errors.Is(err, errRolloutPowerCut) {
		t.Fatalf("apply through the cut: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	f2 := &rolloutFixture{fixture: newFixtureWithKey(t, st2, f.key), src: f.src, users: f.users, group: f.group}
	// Two chunks of the four workers got through: 20 users, or 15 when one
	// was the 5 of the tail.
	mid, err := f2.svc.GetRollout(f2.ctx, r.ID)
	if err != nil || mid.State != appliance.RolloutApplying || (mid.Done != 20 && mid.Done != 15) || mid.Cursor > mid.Done {
		t.Fatalf("after the cut: %+v %v", mid, err)
	}
	if page, err := f2.svc.ListRolloutItems(f2.ctx, r.ID, 0, 100, appliance.ItemDone); err != nil || len(page.Items) != mid.Done {
		t.Fatalf("after the cut: %d items done, the rollout counts %d (%v)", len(page.Items), mid.Done, err)
	}
	if _, err := f2.svc.ApplyRollout(f2.ctx, r.ID); !errors.Is(err, appliance.ErrConflict) {
		t.Fatalf("apply while the dead run still holds it: %v", err)
	}
	marked, err := f2.svc.InterruptRollouts(f2.ctx)
	if err != nil || len(marked) != 1 || marked[0] != r.ID {
		t.Fatalf("interrupted %v %v", marked, err)
	}
	done, err := f2.svc.ApplyRollout(f2.ctx, r.ID)
	if err != nil || done.Done != 45 || done.Failed != 0 {
		t.Fatalf("resumed apply %+v %v", done, err)
	}
	for n, c := range f2.phones(t) {
		if c != 1 {
			t.Errorf("%s holds %d tokens of the profile", n, c)
		}
	}
	audit, err := f2.svc.ListAudit(f2.ctx, appliance.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range audit.Items {
		if a.Action == "rollout.assign" {
			n++
		}
	}
	if n != 45 {
		t.Errorf("%d users handled, want 45", n)
	}
}

func TestRolloutPlanRefusals(t *testing.T) {
	// Two tokens: the two plans at the end each promise one.
	f := newRolloutFixture(t, memstore.New(), 2, "alice")
	tests := []struct {
		name string
		req  appliance.RolloutRequest
		want error
	}{
		{"no group", appliance.RolloutRequest{Profile: "phones", Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: "ctkip"}, &appliance.ValidationError{}},
		{"both pools", appliance.RolloutRequest{Users: []string{"alice"}, Profile: "phones", Pool: appliance.RolloutPool{AnySoftware: true, SerialPrefix: "1"}, Delivery: "ctkip"}, &appliance.ValidationError{}},
		{"bad prefix", appliance.RolloutRequest{Users: []string{"alice"}, Profile: "phones", Pool: appliance.RolloutPool{SerialPrefix: "17x"}, Delivery: "ctkip"}, &appliance.ValidationError{}},
		{"delivery not the profile's", appliance.RolloutRequest{Users: []string{"alice"}, Profile: "phones", Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: "file"}, &appliance.ValidationError{}},
		{"unknown user", appliance.RolloutRequest{Users: []string{"nobody"}, Profile: "phones", Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: "ctkip"}, &appliance.ValidationError{}},
		{"unknown profile", appliance.RolloutRequest{Users: []string{"alice"}, Profile: "nope", Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: "ctkip"}, appliance.ErrNotFound},
		{"unknown group", appliance.RolloutRequest{Group: &appliance.RolloutGroup{Source: f.src.ID, ID: "nope"}, Profile: "phones", Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: "ctkip"}, appliance.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.PlanRollout(f.ctx, tt.req)
			var ve *appliance.ValidationError
			if _, isVE := tt.want.(*appliance.ValidationError); isVE {
				if !errors.As(err, &ve) {
					t.Fatalf("got %v, want a validation error", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// By user name and by id, and the whole source; any software token.
	for _, req := range []appliance.RolloutRequest{
		{Users: []string{"alice", f.users["alice"].ID}},
		{Group: &appliance.RolloutGroup{Source: f.src.ID}},
	} {
		req.Profile, req.Pool, req.Delivery = "phones", appliance.RolloutPool{AnySoftware: true}, "ctkip"
		r, err := f.svc.PlanRollout(f.ctx, req)
		if err != nil || r.Users != 1 || r.ToAssign != 1 {
			t.Fatalf("plan %+v %v", r, err)
		}
	}
}

// rolloutGateStore holds every cancellable Update after the first `pass` until
// its context is cancelled; uncancellable ones (marking the rollout
// interrupted) go through.
type rolloutGateStore struct {
	appliance.Store
	pass    atomic.Int64
	once    sync.Once
	blocked chan struct{}
}

func (s *rolloutGateStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if s.pass.Add(-1) < 0 && ctx.Done() != nil {
		s.once.Do(func() { close(s.blocked) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.Update(ctx, fn)
}

// TestRolloutStopAndResume is main's path: a background apply stopped at
// shutdown is marked interrupted, and ResumeRollouts (at the next start)
// finishes it.
func TestRolloutStopAndResume(t *testing.T) {
	var names []string
	for i := range 35 {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	f := newRolloutFixture(t, memstore.New(), 40, names...)
	r := f.plan(t)
	gate := &rolloutGateStore{Store: f.store, blocked: make(chan struct{})}
	gate.pass.Store(2) // the claim and one chunk
	svc, err := appliance.New(appliance.Config{Store: gate, Sealer: mustSealer(t, f.key), Now: f.clock.Now, CTKIPURL: f.svc.CTKIPURL()})
	if err != nil {
		t.Fatal(err)
	}
	started, err := svc.StartRollout(f.ctx, r.ID)
	if err != nil || started.State != appliance.RolloutApplying {
		t.Fatalf("start %+v %v", started, err)
	}
	<-gate.blocked
	if _, err := f.svc.CancelRollout(f.ctx, r.ID); !errors.Is(err, appliance.ErrConflict) {
		t.Fatalf("cancel while applying: %v; want ErrConflict", err)
	}
	svc.StopRollouts()
	// One chunk got through; which one is the scheduler's choice (four
	// workers race for the store), so it is 10 users or the 5 of the tail.
	mid, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || mid.State != appliance.RolloutInterrupted || (mid.Done != 10 && mid.Done != 5) {
		t.Fatalf("after stop: %+v %v", mid, err)
	}
	page, err := f.svc.ListRolloutItems(f.ctx, r.ID, 0, 100, appliance.ItemDone)
	if err != nil || len(page.Items) != mid.Done {
		t.Fatalf("after stop: %d items done, the rollout counts %d (%v)", len(page.Items), mid.Done, err)
	}
	ids, err := f.svc.ResumeRollouts(f.ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("resumed %v %v", ids, err)
	}
	f.svc.WaitRollouts()
	done, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || done.State != appliance.RolloutCompleted || done.Done != 35 {
		t.Fatalf("after resume: %+v %v", done, err)
	}
	for n, c := range f.phones(t) {
		if c != 1 {
			t.Errorf("%s holds %d tokens of the profile", n, c)
		}
	}
}

// TestRolloutFileAndCTF: file and CTF rollouts deliver a new seed per user,
// bound to a generated password; the links part carries the strings (ctf)
// or a ZIP of token files (file), the codes part the passwords; each
// opens to the seed the token now holds.
func TestRolloutFileAndCTF(t *testing.T) {
	tests := []struct {
		name    string
		profile appliance.Profile
	}{
		{"ctf", appliance.Profile{Name: "ctf-phones", DeviceType: appliance.DeviceAndroid, DeliveryMethod: appliance.DeliveryCTF,
			PINMode: appliance.PINModeNone}},
		{"file", appliance.Profile{Name: "files", DeviceType: appliance.DeviceWindows, DeliveryMethod: appliance.DeliveryFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRolloutFixture(t, memstore.New(), 3, "ann", "ben", "cat")
			if _, err := f.svc.CreateProfile(f.ctx, tt.profile); err != nil {
				t.Fatal(err)
			}
			r, err := f.svc.PlanRollout(f.ctx, appliance.RolloutRequest{Group: &appliance.RolloutGroup{Source: f.src.ID, ID: f.group.ID},
				Profile: tt.profile.Name, Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: tt.profile.DeliveryMethod})
			if err != nil {
				t.Fatal(err)
			}
			if done, err := f.svc.ApplyRollout(f.ctx, r.ID); err != nil || done.Done != 3 {
				t.Fatalf("apply %+v %v", done, err)
			}
			opens := func(serial, password string, link string, file []byte) {
				t.Helper()
				var seed []byte
				switch tt.name {
				case "ctf":
					tok, err := tokenfile.DecodeCTF(link, tokenfile.CTFOptions{Password: password})
					if err != nil {
						t.Fatalf("CTF of %s: %v", serial, err)
					}
					seed = tok.Seed
				default:
					res, err := tokenfile.ParseSDTID(bytes.NewReader(file), tokenfile.SDTIDOptions{Password: password})
					if err != nil || len(res.Records) != 1 {
						t.Fatalf("file of %s: %v", serial, err)
					}
					seed = res.Records[0].Seed
				}
				want, err := f.svc.TokenSeed(f.ctx, serial)
				if err != nil || !bytes.Equal(seed, want) {
					t.Fatalf("the delivery of %s does not carry its seed (%v)", serial, err)
				}
			}
			items := f.items(t, r.ID)
			d, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["ann"].Seq)
			if err != nil || d.Method != tt.profile.DeliveryMethod || len(d.Password.Reveal()) != 16 {
				t.Fatalf("delivery %+v %v", d, err)
			}
			opens(d.Serial, d.Password.Reveal(), d.DeviceURL.Reveal(), d.File)
			secrets := []string{d.Password.Reveal()}

			var links, codes bytes.Buffer
			var linksName string
			if err := f.svc.ExportRollout(f.ctx, r.ID, appliance.ExportLinks, func(name, _ string) io.Writer { linksName = name; return &links }); err != nil {
				t.Fatal(err)
			}
			if err := f.svc.ExportRollout(f.ctx, r.ID, appliance.ExportCodes, func(string, string) io.Writer { return &codes }); err != nil {
				t.Fatal(err)
			}
			pw, err := csv.NewReader(&codes).ReadAll()
			if err != nil || len(pw) != 3 || pw[0][3] != "password" {
				t.Fatalf("codes %v %v", pw, err)
			}
			byUser := map[string][]string{}
			for _, row := range pw[1:] {
				byUser[row[0]] = row
				secrets = append(secrets, row[3])
			}
			switch tt.name {
			case "ctf":
				rows, err := csv.NewReader(&links).ReadAll()
				if err != nil || len(rows) != 3 || rows[0][3] != "link" {
					t.Fatalf("links %v %v", rows, err)
				}
				for _, row := range rows[1:] {
					opens(row[2], byUser[row[0]][3], row[3], nil)
				}
			default:
				if !strings.HasSuffix(linksName, ".zip") {
					t.Fatalf("files part named %q", linksName)
				}
				zr, err := zip.NewReader(bytes.NewReader(links.Bytes()), int64(links.Len()))
				if err != nil {
					t.Fatal(err)
				}
				files := map[string][]byte{}
				for _, zf := range zr.File {
					rc, err := zf.Open()
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(rc)
					rc.Close()
					files[zf.Name] = b
				}
				manifest, err := csv.NewReader(bytes.NewReader(files["manifest.csv"])).ReadAll()
				if err != nil || len(manifest) != 3 || len(files) != 3 {
					t.Fatalf("zip %v manifest %v %v", len(files), manifest, err)
				}
				for _, row := range manifest[1:] {
					opens(row[2], byUser[row[0]][3], "", files[row[3]])
				}
			}
			for _, s := range secrets {
				assertRolloutSecretGone(t, f.store, s)
			}
			if _, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, items["ben"].Seq); !errors.Is(err, appliance.ErrNotFound) {
				t.Fatalf("take after both exports: %v", err)
			}
		})
	}
}

// TestRolloutSchedule: applied before its schedule, a rollout waits as
// scheduled; StartDueRollouts starts it when the time comes, acting as the
// admin who applied it.
func TestRolloutSchedule(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 3, "ann", "ben")
	at := f.clock.Now().Add(time.Hour)
	r, err := f.svc.PlanRollout(f.ctx, appliance.RolloutRequest{Users: []string{"ann", "ben"}, Profile: "phones",
		Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: appliance.DeliveryCTKIP, Schedule: at})
	if err != nil {
		t.Fatal(err)
	}
	admin := appliance.WithActor(context.Background(), appliance.Actor{ID: "a1", Name: "alice-admin", Role: appliance.RoleSuperAdmin})
	got, err := f.svc.StartRollout(admin, r.ID)
	if err != nil || got.State != appliance.RolloutScheduled || got.Done != 0 {
		t.Fatalf("apply before the schedule: %+v %v", got, err)
	}
	if ids, err := f.svc.StartDueRollouts(f.ctx); err != nil || len(ids) != 0 {
		t.Fatalf("started early: %v %v", ids, err)
	}
	if len(f.phones(t)) != 0 {
		t.Fatal("a scheduled rollout assigned tokens early")
	}
	f.clock.Add(time.Hour)
	if ids, err := f.svc.StartDueRollouts(f.ctx); err != nil || len(ids) != 1 {
		t.Fatalf("due: %v %v", ids, err)
	}
	f.svc.WaitRollouts()
	done, err := f.svc.GetRollout(f.ctx, r.ID)
	if err != nil || done.State != appliance.RolloutCompleted || done.Done != 2 {
		t.Fatalf("after the schedule: %+v %v", done, err)
	}
	audit, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range audit.Items {
		if a.Action == "rollout.assign" && a.Actor.Name != "alice-admin" {
			t.Errorf("assigned as %q, want the admin who scheduled it", a.Actor.Name)
		}
	}
}

// TestRolloutDeliveriesSurviveRekey: a master key rotation re-seals the
// waiting deliveries of ctkip, ctf and file rollouts, which then open
// under the new key.
func TestRolloutDeliveriesSurviveRekey(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	f := newRolloutFixture(t, st, 9, "ann", "ben", "cat")
	for _, p := range []appliance.Profile{
		{Name: "ctf-phones", DeviceType: appliance.DeviceIOS, DeliveryMethod: appliance.DeliveryCTF, PINMode: appliance.PINModeNone},
		{Name: "files", DeviceType: appliance.DeviceWindows, DeliveryMethod: appliance.DeliveryFile},
	} {
		if _, err := f.svc.CreateProfile(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, pd := range [][2]string{{"phones", "ctkip"}, {"ctf-phones", "ctf"}, {"files", "file"}} {
		r, err := f.svc.PlanRollout(f.ctx, appliance.RolloutRequest{Users: []string{"ann", "ben", "cat"}, Profile: pd[0],
			Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: pd[1]})
		if err != nil {
			t.Fatal(err)
		}
		if done, err := f.svc.ApplyRollout(f.ctx, r.ID); err != nil || done.Done != 3 {
			t.Fatalf("apply %s: %+v %v", pd[1], done, err)
		}
		ids = append(ids, r.ID)
	}
	next := make([]byte, seal.KeySize)
	if _, err := rand.Read(next); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.Rekey(context.Background(), appliance.RekeyConfig{Store: st, Old: mustSealer(t, f.key),
		New: mustSealer(t, next), Actor: appliance.Actor{ID: "cli", Name: "cli"}, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	g := newFixtureWithKey(t, st, next)
	for _, id := range ids {
		d, err := g.svc.TakeRolloutDelivery(g.ctx, id, 1)
		if err != nil {
			t.Fatalf("rollout %s after the rotation: %v", id, err)
		}
		if d.ActivationCode == "" && d.Password == "" {
			t.Fatalf("delivery %+v", d)
		}
		for _, part := range []string{appliance.ExportLinks, appliance.ExportCodes} {
			if err := g.svc.ExportRollout(g.ctx, id, part, func(string, string) io.Writer { return io.Discard }); err != nil {
				t.Fatalf("export %s of %s after the rotation: %v", part, id, err)
			}
		}
	}
}

// rolloutFailNthStore fails only its nth Update (1-based).
type rolloutFailNthStore struct {
	appliance.Store
	n, calls atomic.Int64
}

func (s *rolloutFailNthStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if s.calls.Add(1) == s.n.Load() {
		return errRolloutPowerCut
	}
	return s.Store.Update(ctx, fn)
}

// TestRolloutPlanFailureIsAbandoned: a plan whose item writes fail is
// marked abandoned at once and cannot be applied.
func TestRolloutPlanFailureIsAbandoned(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 3, "ann", "ben")
	st := &rolloutFailNthStore{Store: f.store}
	st.n.Store(2) // the record is written, the first items are not
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: mustSealer(t, f.key), Now: f.clock.Now, CTKIPURL: f.svc.CTKIPURL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PlanRollout(f.ctx, appliance.RolloutRequest{Users: []string{"ann", "ben"}, Profile: "phones",
		Pool: appliance.RolloutPool{AnySoftware: true}, Delivery: appliance.DeliveryCTKIP}); !errors.Is(err, errRolloutPowerCut) {
		t.Fatalf("plan: %v", err)
	}
	all, err := f.svc.ListRollouts(f.ctx, 10)
	if err != nil || len(all) != 1 || all[0].State != appliance.RolloutAbandoned {
		t.Fatalf("rollouts %+v %v", all, err)
	}
	if _, err := f.svc.ApplyRollout(f.ctx, all[0].ID); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("apply of an abandoned plan: %v", err)
	}
}

// TestRolloutPoolSkipsExpiredTokens: an expired token is never planned.
func TestRolloutPoolSkipsExpiredTokens(t *testing.T) {
	f := newRolloutFixture(t, memstore.New(), 0, "ann", "ben")
	f.importCSV(t, "serial,expires_at\n170000000000,2020-01-01\n170000000001,2030-01-01\n")
	r := f.plan(t)
	if r.ToAssign != 1 || r.PoolShortfall != 1 {
		t.Fatalf("plan %+v", r)
	}
	if it := f.items(t, r.ID)["ann"]; it.Serial != "170000000001" {
		t.Fatalf("ann would get %q", it.Serial)
	}
}

// TestRolloutCodeHandedOutOnce: takes racing the codes export never hand
// out one code twice, and together they hand out every code.
func TestRolloutCodeHandedOutOnce(t *testing.T) {
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("u%03d", i))
	}
	f := newRolloutFixture(t, memstore.New(), 200, names...)
	r := f.plan(t)
	if done, err := f.svc.ApplyRollout(f.ctx, r.ID); err != nil || done.Done != 200 {
		t.Fatalf("apply %+v %v", done, err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		var buf bytes.Buffer
		if err := f.svc.ExportRollout(f.ctx, r.ID, appliance.ExportCodes, func(string, string) io.Writer { return &buf }); err != nil {
			t.Error(err)
			return
		}
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, row := range rows[1:] {
			seen[row[3]]++
		}
	})
	for w := range 4 {
		wg.Go(func() {
			for seq := 200 - w; seq >= 1; seq -= 4 {
				d, err := f.svc.TakeRolloutDelivery(f.ctx, r.ID, seq)
				if errors.Is(err, appliance.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[d.ActivationCode.Reveal()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Errorf("%d codes handed out, want 200", len(seen))
	}
	for _, n := range seen {
		if n != 1 {
			t.Fatalf("a code was handed out %d times", n)
		}
	}
}

// TestRolloutPlansDoNotShareTokens: a plan does not promise a token another
// open rollout will assign, so two overlapping plans both apply in full;
// once the pool runs short the later plan says so (no_token) instead of
// failing users at apply with token_taken. A finished rollout reserves
// nothing.
func TestRolloutPlansDoNotShareTokens(t *testing.T) {
	for _, store := range stores {
		t.Run(store.name, func(t *testing.T) {
			f := newRolloutFixture(t, store.open(t), 5, "ann", "ben", "cat")
			planFor := func(names ...string) appliance.Rollout {
				t.Helper()
				r, err := f.svc.PlanRollout(f.ctx, appliance.RolloutRequest{Users: names, Profile: "phones",
					Pool: appliance.RolloutPool{SerialPrefix: "1700"}, Delivery: appliance.DeliveryCTKIP})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			a := planFor("ann", "ben")
			b := planFor("cat")
			ia, ib := f.items(t, a.ID), f.items(t, b.ID)
			if ib["cat"].Serial == ia["ann"].Serial || ib["cat"].Serial == ia["ben"].Serial || ib["cat"].Status != appliance.ItemAssign {
				t.Fatalf("plans share a token: %+v and %+v", ia, ib)
			}
			// Three of five tokens are promised: a third plan for two users
			// (ann and ben do not hold the profile yet) gets the other two,
			// and then the pool is spoken for.
			c := planFor("ann", "ben")
			ic := f.items(t, c.ID)
			promised := map[string]bool{ia["ann"].Serial: true, ia["ben"].Serial: true, ib["cat"].Serial: true}
			if c.ToAssign != 2 || promised[ic["ann"].Serial] || promised[ic["ben"].Serial] {
				t.Fatalf("third plan: %+v %+v; want the two tokens no plan promised", c, ic)
			}
			if e := planFor("cat"); e.ToAssign != 0 || e.PoolShortfall != 1 {
				t.Fatalf("plan with every token promised: %+v; want a shortfall of 1", e)
			}
			for _, r := range []appliance.Rollout{b, a} {
				if done, err := f.svc.ApplyRollout(f.ctx, r.ID); err != nil || done.Failed != 0 || done.Done != r.ToAssign {
					t.Fatalf("apply %s: %+v %v", r.ID, done, err)
				}
			}
			// a and b are completed: their tokens are assigned, and the open
			// third plan still holds the other two.
			if _, err := f.svc.CreateSourceUser(f.ctx, f.src.ID, appliance.SourceUser{User: appliance.User{UserName: "dan", Active: true}}); err != nil {
				t.Fatal(err)
			}
			if d := planFor("dan"); d.ToAssign != 0 || d.PoolShortfall != 1 {
				t.Fatalf("plan while the open third plan reserves the free tokens: %+v", d)
			}
			// Cancelling the third plan frees its tokens; it can be neither
			// applied nor cancelled again, nor can a completed rollout be
			// cancelled.
			if got, err := f.svc.CancelRollout(f.ctx, c.ID); err != nil || got.State != appliance.RolloutCancelled {
				t.Fatalf("cancel: %+v %v", got, err)
			}
			if d := planFor("dan"); d.ToAssign != 1 {
				t.Fatalf("plan after the third plan was cancelled: %+v", d)
			}
			for name, err := range map[string]error{
				"apply a cancelled plan":     func() error { _, err := f.svc.ApplyRollout(f.ctx, c.ID); return err }(),
				"cancel twice":               func() error { _, err := f.svc.CancelRollout(f.ctx, c.ID); return err }(),
				"cancel a completed rollout": func() error { _, err := f.svc.CancelRollout(f.ctx, a.ID); return err }(),
			} {
				if !errors.Is(err, appliance.ErrInvalidState) {
					t.Errorf("%s: %v; want ErrInvalidState", name, err)
				}
			}
		})
	}
}
