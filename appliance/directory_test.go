package appliance_test

import (
	"fmt"
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
