package appliance_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestApplyDirectoryPlanChunks: a sync plan's new users are packed by
// their real write count (the initial sync is bound by its commits), and
// neither adds nor changes that move every index entry ever exceed the
// store's write limit (memstore refuses a transaction over it).
func TestApplyDirectoryPlanChunks(t *testing.T) {
	const n = 380
	st := &countingStore{Store: memstore.New()}
	f := newFixture(t, st)
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example"}})
	if err != nil {
		t.Fatal(err)
	}
	add := make([]appliance.DirectoryUser, n)
	for i := range add {
		add[i] = appliance.DirectoryUser{ExternalID: fmt.Sprintf("guid-%04d", i), UserName: fmt.Sprintf("dir%04d", i),
			DisplayName: fmt.Sprintf("Dir %04d", i), Email: fmt.Sprintf("dir%04d@example.org", i), Active: true}
	}
	before := st.updates.Load()
	res, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Add: add})
	if err != nil || res.Applied != n {
		t.Fatalf("add: %+v %v", res, err)
	}
	// Five writes per new user and one counter write per chunk: 19 users
	// a chunk, plus the run's audit record. A fixed nine-write estimate
	// made 38 chunks of 10.
	if got, want := st.updates.Load()-before, int64((n+18)/19+1); got > want {
		t.Errorf("adding %d users took %d updates, want at most %d", n, got, want)
	}

	dir, err := f.svc.DirectoryUsers(f.ctx, src.ID)
	if err != nil || len(dir) != n {
		t.Fatalf("directory users: %d %v", len(dir), err)
	}
	// Every field a directory sets changes: each user deletes and rewrites
	// all four index entries.
	for i := range dir {
		u := &dir[i]
		u.ExternalID, u.UserName = "new-"+u.ExternalID, "new-"+u.UserName
		u.DisplayName, u.Email = "New "+u.DisplayName, "new-"+u.Email
	}
	res, err = f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Update: dir})
	if err != nil || res.Applied != n {
		t.Fatalf("update: %+v %v", res, err)
	}
	again, err := f.svc.DirectoryUsers(f.ctx, src.ID)
	if err != nil || len(again) != n {
		t.Fatalf("directory users after the update: %d %v", len(again), err)
	}
	for _, u := range again {
		if u.UserName[:4] != "new-" || u.ExternalID[:4] != "new-" {
			t.Fatalf("user not updated: %+v", u)
		}
	}
}

// hintStore records, per Update, whether its context carried the append
// hint.
type hintStore struct {
	appliance.Store
	mu     sync.Mutex
	hinted []bool
}

func (s *hintStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	s.mu.Lock()
	s.hinted = append(s.hinted, appliance.AppendHint(ctx))
	s.mu.Unlock()
	return s.Store.Update(ctx, fn)
}

// TestApplyDirectoryPlanAppends: an initial sync's new users get ids that
// ascend in the order their chunks are written (the fixture's clock stands
// still, so every id falls in one millisecond, where newID alone is random
// order), and the chunks' Updates carry the append hint; both keep each
// commit from rewriting pages all over the key space (issue 19).
func TestApplyDirectoryPlanAppends(t *testing.T) {
	const n = 380
	st := &hintStore{Store: memstore.New()}
	f := newFixture(t, st)
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example"}})
	if err != nil {
		t.Fatal(err)
	}
	add := make([]appliance.DirectoryUser, n)
	for i := range add {
		// Plan order is not login order: the apply sorts.
		j := (i * 7919) % n
		add[i] = appliance.DirectoryUser{ExternalID: fmt.Sprintf("guid-%04d", j), UserName: fmt.Sprintf("dir%04d", j),
			Email: fmt.Sprintf("dir%04d@example.org", j), Active: true}
	}
	st.mu.Lock()
	st.hinted = nil
	st.mu.Unlock()
	if res, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Add: add}); err != nil || res.Applied != n {
		t.Fatalf("add: %+v %v", res, err)
	}
	st.mu.Lock()
	hinted := slices.Clone(st.hinted)
	st.mu.Unlock()
	// Every chunk is hinted; the run's one audit record need not be.
	if got := len(hinted); got < 3 {
		t.Fatalf("%d updates, want several chunks and the audit record", got)
	}
	for i, h := range hinted[:len(hinted)-1] {
		if !h {
			t.Errorf("chunk update %d has no append hint", i)
		}
	}

	dir, err := f.svc.DirectoryUsers(f.ctx, src.ID)
	if err != nil || len(dir) != n {
		t.Fatalf("directory users: %d %v", len(dir), err)
	}
	slices.SortFunc(dir, func(a, b appliance.DirectoryUser) int { return strings.Compare(a.UserName, b.UserName) })
	for i := 1; i < len(dir); i++ {
		if dir[i-1].UserID >= dir[i].UserID {
			t.Fatalf("ids out of login order: %s %s, %s %s", dir[i-1].UserName, dir[i-1].UserID, dir[i].UserName, dir[i].UserID)
		}
	}
}
