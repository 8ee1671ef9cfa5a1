package appliance_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// nodeService builds an initialised Service of node id on store, under the
// master key and clock given.
func nodeService(t *testing.T, store appliance.Store, key []byte, clk *clock, id string) *appliance.Service {
	t.Helper()
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now, NodeID: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

// rawKeys lists the keys under prefix.
func rawKeys(t *testing.T, store appliance.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := store.View(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte(prefix), nil, 0)
		for _, kv := range kvs {
			out = append(out, string(kv.Key))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditOrder lists every stored record as ListAudit must: by time, then
// node, then seq.
func auditOrder(t *testing.T, store appliance.Store) []string {
	t.Helper()
	var recs []appliance.AuditRecord
	if err := store.View(context.Background(), func(tx appliance.Tx) error {
		for _, pfx := range []string{"a/", "an/"} {
			kvs, err := tx.Scan([]byte(pfx), nil, 0)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				var r appliance.AuditRecord
				if err := json.Unmarshal(kv.Value, &r); err != nil {
					return err
				}
				recs = append(recs, r)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(recs, func(a, b appliance.AuditRecord) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return int(a.Seq) - int(b.Seq)
	})
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = recID(r)
	}
	return out
}

func recID(r appliance.AuditRecord) string { return fmt.Sprintf("%s#%d", r.Node, r.Seq) }

// pageAll lists the whole trail limit records at a time from cursor after,
// calling between(page) after each page.
func pageAll(t *testing.T, svc *appliance.Service, after string, limit int, between func(int)) []string {
	t.Helper()
	var got []string
	for i := 0; ; i++ {
		page, err := svc.ListAudit(context.Background(), appliance.AuditQuery{After: after, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Items {
			got = append(got, recID(r))
		}
		if page.NextCursor == "" {
			return got
		}
		after = page.NextCursor
		if between != nil {
			between(i)
		}
		if i > 1000 {
			t.Fatal("listing does not end")
		}
	}
}

// twoNodes writes audited changes from two nodes on one store, the
// clock moving a second every other change, so the chains interleave and
// some records of the two nodes have the same time.
func twoNodes(t *testing.T) (store *memstore.Store, a, b *appliance.Service, clk *clock) {
	t.Helper()
	store = memstore.New()
	t.Cleanup(func() { store.Close() })
	key := make([]byte, seal.KeySize)
	rand.Read(key)
	clk = &clock{now: time.Date(2026, 12, 4, 23, 59, 58, 0, time.UTC)}
	a = nodeService(t, store, key, clk, "node-a")
	b = nodeService(t, store, key, clk, "node-b")
	for i := range 12 {
		svc := a
		if i%3 == 1 {
			svc = b
		}
		if _, err := svc.CreateUser(context.Background(), appliance.NewUser{UserName: fmt.Sprintf("u%02d", i)}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			clk.Add(time.Second)
		}
	}
	return store, a, b, clk
}

// TestAuditChainsPerNode: two nodes on one store each append to their own
// chain (no audit key is written by both); verify checks both; the listing
// merges them in time order and pages with a stable cursor while both keep
// writing.
func TestAuditChainsPerNode(t *testing.T) {
	store, a, b, clk := twoNodes(t)
	for _, n := range []string{"node-a", "node-b"} {
		for _, k := range rawKeys(t, store, "an/"+n+"/") {
			if !strings.HasPrefix(k, "an/"+n+"/2026120") {
				t.Errorf("key %s: want an/%s/<day>/<seq>", k, n)
			}
		}
	}
	heads := rawKeys(t, store, "meta/audit-head")
	if want := []string{"meta/audit-head/node-a", "meta/audit-head/node-b"}; !cmp.Equal(heads, want) {
		t.Errorf("heads %v, want %v", heads, want)
	}
	rep, err := b.VerifyAudit(context.Background())
	if err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
	var chains []string
	for _, c := range rep.Chains {
		chains = append(chains, fmt.Sprintf("%s:%d:%d..%d", c.Node, c.Records, c.FirstSeq, c.LastSeq))
	}
	if want := []string{"node-a:8:1..8", "node-b:4:1..4"}; !cmp.Equal(chains, want) || rep.Records != 12 {
		t.Errorf("chains %v (%d records), want %v", chains, rep.Records, want)
	}
	// The day changes during the run: records of both days, both nodes.
	if days := rawKeys(t, store, "an/node-b/20261205/"); len(days) == 0 {
		t.Errorf("no record of node-b in the second day's bucket")
	}

	want := auditOrder(t, store)
	for _, limit := range []int{1, 2, 5, 1000} {
		if got := pageAll(t, a, "", limit, nil); !cmp.Equal(got, want) {
			t.Errorf("limit %d: %v\nwant %v", limit, got, want)
		}
	}

	// Both nodes append while a client pages: each record comes exactly
	// once, the new ones after the old.
	n := 0
	got := pageAll(t, a, "", 3, func(int) {
		if n < 4 {
			n++
			clk.Add(time.Second)
			for i, svc := range []*appliance.Service{a, b} {
				if _, err := svc.CreateUser(context.Background(), appliance.NewUser{UserName: fmt.Sprintf("late%d-%d", n, i)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	if want := auditOrder(t, store); !cmp.Equal(got, want) {
		t.Errorf("paged while writing: %v\nwant %v", got, want)
	}
	if _, err := a.ListAudit(context.Background(), appliance.AuditQuery{After: "node-a/x,../../y"}); err == nil {
		t.Error("a cursor no listing returned was accepted")
	}
}

func TestAuditChainsDetectTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(tx appliance.Tx) error
		want   string
	}{
		{"record removed from the middle of one chain", func(tx appliance.Tx) error {
			return tx.Delete(nthKey(tx, "an/node-b/", 1))
		}, "chain node-b: records 2..2 missing"},
		{"newest record of one chain removed", func(tx appliance.Tx) error {
			return tx.Delete(nthKey(tx, "an/node-a/", -1))
		}, "chain node-a: head says record 8, last record found is 7"},
		{"record altered", func(tx appliance.Tx) error {
			k := nthKey(tx, "an/node-b/", 2)
			v, _ := tx.Get(k)
			return tx.Put(k, bytes.Replace(v, []byte(`"user.create"`), []byte(`"user.delete"`), 1))
		}, "chain node-b: record 3: altered"},
		{"record moved to the other chain", func(tx appliance.Tx) error {
			k := nthKey(tx, "an/node-a/", 0)
			v, _ := tx.Get(k)
			if err := tx.Delete(k); err != nil {
				return err
			}
			return tx.Put([]byte(strings.Replace(string(k), "node-a", "node-b", 1)), v)
		}, "chain node-b: record 1: stored under the wrong key"},
		{"every record of one chain removed", func(tx appliance.Tx) error {
			kvs, err := tx.Scan([]byte("an/node-b/"), nil, 0)
			for _, kv := range kvs {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
			}
			return err
		}, "chain node-b: head says record 4, last record found is 0"},
		{"head of one chain removed", func(tx appliance.Tx) error {
			return tx.Delete([]byte("meta/audit-head/node-a"))
		}, "chain node-a: head says record 0, last record found is 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, a, _, _ := twoNodes(t)
			if err := store.Update(context.Background(), tc.tamper); err != nil {
				t.Fatal(err)
			}
			rep, err := a.VerifyAudit(context.Background())
			if !errors.Is(err, appliance.ErrAuditBroken) || !slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Fatalf("err %v, problems %q; want one saying %q", err, rep.Problems, tc.want)
			}
		})
	}
}

// nthKey returns the key of the i-th record under prefix (-1: the last).
func nthKey(tx appliance.Tx, prefix string, i int) []byte {
	kvs, _ := tx.Scan([]byte(prefix), nil, 0)
	if i < 0 {
		i = len(kvs) + i
	}
	return kvs[i].Key
}

// toSchema1 rewrites a store of one node ("local") into the layout a
// schema 1 tokend wrote: one chain under a/<day>/<seq> with its head at
// meta/audit-head, records without a node, counters at meta/count/….
func toSchema1(t *testing.T, store appliance.Store) {
	t.Helper()
	err := store.Update(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte("an/local/"), nil, 0)
		if err != nil {
			return err
		}
		var prev, key string
		var seq uint64
		for _, kv := range kvs {
			var r appliance.AuditRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return err
			}
			r.Node, r.Prev, r.Hash = "", prev, ""
			b, _ := json.Marshal(r)
			sum := sha256.Sum256(b)
			r.Hash = hex.EncodeToString(sum[:])
			b, _ = json.Marshal(r)
			key = fmt.Sprintf("a/%s/%016x", r.Time.UTC().Format("20060102"), r.Seq)
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
			if err := tx.Put([]byte(key), b); err != nil {
				return err
			}
			prev, seq = r.Hash, r.Seq
		}
		head, _ := json.Marshal(map[string]any{"seq": seq, "hash": prev, "key": key})
		if err := tx.Put([]byte("meta/audit-head"), head); err != nil {
			return err
		}
		if err := tx.Delete([]byte("meta/audit-head/local")); err != nil {
			return err
		}
		for _, f := range []string{"tokens", "users"} {
			v, err := tx.Get([]byte("meta/counters/local/" + f))
			if err != nil {
				return err
			}
			if err := tx.Put([]byte("meta/count/"+f), v); err != nil {
				return err
			}
			if err := tx.Delete([]byte("meta/counters/local/" + f)); err != nil {
				return err
			}
		}
		return tx.Put([]byte("meta/schema"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, store appliance.Store) []appliance.KV {
	t.Helper()
	var out []appliance.KV
	if err := store.View(context.Background(), func(tx appliance.Tx) error {
		var err error
		out, err = tx.Scan(nil, nil, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAuditSchema1StoreMigrates: a store in schema 1's layout (one chain,
// one counter record per family) is read as it is by CheckStore and the
// inspection calls (which write nothing), and Init migrates it: its chain
// stays verifiable as the legacy chain, listed before the node's, and its
// counters become the migrating node's share.
func TestAuditSchema1StoreMigrates(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) appliance.Store{
		"memstore": func(t *testing.T) appliance.Store {
			st := memstore.New()
			t.Cleanup(func() { st.Close() })
			return st
		},
		"bbolt": func(t *testing.T) appliance.Store { return appliancetest.BoltStore(t) },
	} {
		t.Run(name, func(t *testing.T) { schema1Migrates(t, open(t)) })
	}
}

func schema1Migrates(t *testing.T, store appliance.Store) {
	f := newFixture(t, store)
	f.importCSV(t, serials(4, 160000000000))
	u := f.user(t, "olga")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"160000000001"}); err != nil {
		t.Fatal(err)
	}
	f.user(t, "pete")
	oldPage, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	toSchema1(t, store)
	if keys := rawKeys(t, store, "an/"); len(keys) != 0 {
		t.Fatalf("node records left: %v", keys)
	}
	// A schema 1 tokend's cursor: a legacy key.
	legacy := rawKeys(t, store, "a/")
	oldCursor := strings.TrimPrefix(legacy[1], "a/")

	clk := &clock{now: f.clock.Now().Add(time.Hour)}
	sealer, _ := seal.New(f.key, rand.Reader)
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now, NodeID: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := dump(t, store)
	if err := svc.CheckStore(ctx); err != nil {
		t.Fatalf("CheckStore on schema 1: %v", err)
	}
	rep, err := svc.VerifyAudit(ctx)
	if err != nil || rep.Records != uint64(len(legacy)) || len(rep.Chains) != 1 || rep.Chains[0].Node != "" || rep.FirstSeq != 1 {
		t.Fatalf("verify of schema 1: %+v, %v", rep, err)
	}
	if cr, err := svc.CheckConsistency(ctx); err != nil || cr.ProblemsTotal != 0 {
		t.Fatalf("consistency of schema 1: %+v, %v", cr, err)
	}
	if !cmp.Equal(dump(t, store), before) {
		t.Fatal("inspecting the schema 1 store changed it")
	}

	if err := svc.Init(ctx); err != nil {
		t.Fatalf("Init migrates: %v", err)
	}
	if got := rawKeys(t, store, "meta/count/"); len(got) != 0 {
		t.Errorf("schema 1 counters left: %v", got)
	}
	if got, want := rawKeys(t, store, "meta/counters/"), []string{"meta/counters/node-1/tokens", "meta/counters/node-1/users"}; !cmp.Equal(got, want) {
		t.Errorf("counter shares %v, want %v", got, want)
	}
	var version []byte
	store.View(ctx, func(tx appliance.Tx) error { version, err = tx.Get([]byte("meta/schema")); return err })
	if string(version) != "2" {
		t.Errorf("schema %q after Init, want 2", version)
	}
	if cr, err := svc.CheckConsistency(ctx); err != nil || cr.ProblemsTotal != 0 || cr.Tokens != 4 || cr.Users != 2 {
		t.Fatalf("consistency after migration: %+v, %v", cr, err)
	}
	if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "quinn"}); err != nil {
		t.Fatal(err)
	}
	if page, err := svc.ListUsers(ctx, appliance.UserQuery{}); err != nil || page.Total != 3 {
		t.Errorf("users total %d, want 3 (%v)", page.Total, err)
	}
	rep, err = svc.VerifyAudit(ctx)
	if err != nil || len(rep.Chains) != 2 || rep.Chains[0].Node != "" || rep.Chains[1].Node != "node-1" || rep.Chains[1].Records != 1 {
		t.Fatalf("verify after migration: %+v, %v", rep, err)
	}
	all := pageAll(t, svc, "", 2, nil)
	if want := auditOrder(t, store); !cmp.Equal(all, want) || all[len(all)-1] != "node-1#1" {
		t.Errorf("listing %v, want %v ending with the new node's record", all, want)
	}
	// The cursor a schema 1 tokend handed out still continues its listing,
	// and the first page of before reads the same records.
	if got := pageAll(t, svc, oldCursor, 3, nil); !cmp.Equal(got, all[2:]) {
		t.Errorf("from the old cursor %q: %v, want %v", oldCursor, got, all[2:])
	}
	if first, _ := svc.ListAudit(ctx, appliance.AuditQuery{Limit: 2}); len(first.Items) != 2 || first.Items[1].Hash == "" ||
		first.Items[0].Action != oldPage.Items[0].Action || first.Items[1].Action != oldPage.Items[1].Action {
		t.Errorf("first page %+v, before the migration %+v", first.Items, oldPage.Items)
	}

	// The legacy chain is still checked.
	if err := store.Update(ctx, func(tx appliance.Tx) error { return tx.Delete([]byte(legacy[2])) }); err != nil {
		t.Fatal(err)
	}
	if rep, err := svc.VerifyAudit(ctx); !errors.Is(err, appliance.ErrAuditBroken) ||
		!slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.HasPrefix(p, "legacy chain: records 3..3 missing") }) {
		t.Errorf("record removed from the legacy chain: %q, %v", rep.Problems, err)
	}
}

// TestCountersShardedPerNode: each node counts its own changes in its own
// share; totals are the sums, and the store check compares the sums with
// the indexes.
func TestCountersShardedPerNode(t *testing.T) {
	store, a, b, _ := twoNodes(t)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if _, err := a.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(serials(5, 170000000000))}); err != nil {
		t.Fatal(err)
	}
	// A token imported by node-a and deleted by node-b.
	if err := b.DeleteToken(ctx, "170000000003"); err != nil {
		t.Fatal(err)
	}
	if got, want := rawKeys(t, store, "meta/counters/"), []string{
		"meta/counters/node-a/tokens", "meta/counters/node-a/users", "meta/counters/node-b/tokens", "meta/counters/node-b/users",
	}; !cmp.Equal(got, want) {
		t.Errorf("shares %v, want %v", got, want)
	}
	var share map[string]int64
	store.View(ctx, func(tx appliance.Tx) error {
		v, err := tx.Get([]byte("meta/counters/node-b/tokens"))
		if err == nil {
			err = json.Unmarshal(v, &share)
		}
		return err
	})
	var sum int64
	for _, n := range share {
		sum += n
	}
	if sum != -1 {
		t.Errorf("node-b's token share %v, want -1 in all", share)
	}
	for _, svc := range []*appliance.Service{a, b} {
		if page, err := svc.ListTokens(ctx, appliance.TokenQuery{}); err != nil || page.Total != 4 {
			t.Errorf("%s: tokens total %d, want 4 (%v)", svc.NodeID(), page.Total, err)
		}
		if page, err := svc.ListUsers(ctx, appliance.UserQuery{}); err != nil || page.Total != 12 {
			t.Errorf("%s: users total %d, want 12 (%v)", svc.NodeID(), page.Total, err)
		}
		if cr, err := svc.CheckConsistency(ctx); err != nil || cr.ProblemsTotal != 0 {
			t.Errorf("%s: consistency %+v, %v", svc.NodeID(), cr, err)
		}
	}
	// A share off by one is found, whichever node's it is.
	if err := store.Update(ctx, func(tx appliance.Tx) error {
		v, _ := tx.Get([]byte("meta/counters/node-b/users"))
		return tx.Put([]byte("meta/counters/node-b/users"), bytes.Replace(v, []byte(`":4`), []byte(`":5`), 1))
	}); err != nil {
		t.Fatal(err)
	}
	if cr, _ := a.CheckConsistency(ctx); cr.ProblemsTotal != 1 || !strings.Contains(cr.Problems[0], "user counter") {
		t.Errorf("damaged share: %+v", cr)
	}
}

func TestNodeIDValidated(t *testing.T) {
	sealer, _ := seal.New(make([]byte, seal.KeySize), rand.Reader)
	for _, id := range []string{"a/b", "a,b", "node 1", strings.Repeat("n", 65), "ü", "..", "-n"} {
		if _, err := appliance.New(appliance.Config{Store: memstore.New(), Sealer: sealer, NodeID: id}); err == nil {
			t.Errorf("node id %q accepted", id)
		}
	}
	for _, id := range []string{"", "n1", "host.example-1_a", strings.Repeat("n", 64)} {
		if _, err := appliance.New(appliance.Config{Store: memstore.New(), Sealer: sealer, NodeID: id}); err != nil {
			t.Errorf("node id %q: %v", id, err)
		}
	}
}

// laneGateStore holds Updates, while gating, until `want` of them are waiting
// at once.
type laneGateStore struct {
	appliance.Store
	mu      sync.Mutex
	gating  bool
	waiting int
	want    int
	open    chan struct{}
}

func (g *laneGateStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	g.mu.Lock()
	if g.gating {
		if g.waiting++; g.waiting == g.want {
			close(g.open)
		}
		g.mu.Unlock()
		<-g.open
	} else {
		g.mu.Unlock()
	}
	return g.Store.Update(ctx, fn)
}

// TestWriteLanes: a node with write lanes runs concurrent Updates on chains
// and counter shares of their own (<node>, <node>~1, …); one writer at a
// time uses only the node's own chain. Verify, the listing and the totals
// cover every lane.
func TestWriteLanes(t *testing.T) {
	mem := memstore.New()
	t.Cleanup(func() { mem.Close() })
	const writers = 4
	store := &laneGateStore{Store: mem, want: writers, open: make(chan struct{})}
	sealer, _ := seal.New(make([]byte, seal.KeySize), rand.Reader)
	clk := &clock{now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer, Now: clk.Now, NodeID: "n1", WriteLanes: writers})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("seq%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := rawKeys(t, store, "meta/audit-head/"); !cmp.Equal(got, []string{"meta/audit-head/n1"}) {
		t.Errorf("one writer at a time: heads %v, want only n1's", got)
	}
	// Four Updates at once: each holds its lane until all four wait.
	store.mu.Lock()
	store.gating = true
	store.mu.Unlock()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			_, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("par%d", w)})
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"meta/audit-head/n1", "meta/audit-head/n1~1", "meta/audit-head/n1~2", "meta/audit-head/n1~3"}
	if got := rawKeys(t, store, "meta/audit-head/"); !cmp.Equal(got, want) {
		t.Errorf("four at once: heads %v, want %v", got, want)
	}
	rep, err := svc.VerifyAudit(ctx)
	if err != nil || rep.Records != 3+writers || len(rep.Chains) != writers {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if page, err := svc.ListUsers(ctx, appliance.UserQuery{}); err != nil || page.Total != 3+writers {
		t.Errorf("users total %d, want %d (%v)", page.Total, 3+writers, err)
	}
	if got, want := pageAll(t, svc, "", 2, nil), auditOrder(t, store); !cmp.Equal(got, want) || len(got) != 3+writers {
		t.Errorf("listing %v, want %v", got, want)
	}
	if cr, err := svc.CheckConsistency(ctx); err != nil || cr.ProblemsTotal != 0 {
		t.Errorf("consistency %+v, %v", cr, err)
	}
}
