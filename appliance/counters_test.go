package appliance_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// recount computes, from the indexes themselves, what the counters must
// say: token totals by (kind, assigned) and user totals by source.
func recount(t *testing.T, f *fixture) (tokens map[[2]string]int, users map[string]int) {
	t.Helper()
	tokens, users = map[[2]string]int{}, map[string]int{}
	err := f.store.View(f.ctx, func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte("ti/s/"), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			p := strings.Split(string(kv.Value), "\x00")
			tokens[[2]string{p[0], fmt.Sprint(p[2] != "")}]++
		}
		if kvs, err = tx.Scan([]byte("ui/n/"), nil, 0); err != nil {
			return err
		}
		for _, kv := range kvs {
			users[strings.Split(string(kv.Value), "\x00")[1]]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tokens, users
}

// checkTotals compares every counter-backed total with a recount.
func checkTotals(t *testing.T, f *fixture, step string) {
	t.Helper()
	tokens, users := recount(t, f)
	yes, no := true, false
	for _, kind := range []string{"", appliance.KindSoftware, appliance.KindHardware} {
		for _, assigned := range []*bool{nil, &yes, &no} {
			want := 0
			for k, n := range tokens {
				if (kind == "" || k[0] == kind) && (assigned == nil || fmt.Sprint(*assigned) == k[1]) {
					want += n
				}
			}
			page, err := f.svc.ListTokens(f.ctx, appliance.TokenQuery{Kind: kind, Assigned: assigned, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != want {
				t.Errorf("%s: tokens kind=%q assigned=%v: total %d, want %d", step, kind, fmtBool(assigned), page.Total, want)
			}
		}
	}
	all := 0
	for src, n := range users {
		all += n
		page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Source: src, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != n {
			t.Errorf("%s: users of %q: total %d, want %d", step, src, page.Total, n)
		}
	}
	if page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Limit: 1}); err != nil || page.Total != all {
		t.Errorf("%s: users: total %d, want %d (%v)", step, page.Total, all, err)
	}
	st, err := f.svc.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum, assigned := 0, 0
	for _, n := range st.Tokens {
		sum += n
	}
	for k, n := range tokens {
		if k[1] == "true" {
			assigned += n
		}
	}
	if all := tokens[[2]string{appliance.KindSoftware, "true"}] + tokens[[2]string{appliance.KindSoftware, "false"}] +
		tokens[[2]string{appliance.KindHardware, "true"}] + tokens[[2]string{appliance.KindHardware, "false"}]; sum != all || st.Assigned != assigned {
		t.Errorf("%s: stats tokens %d assigned %d, want %d and %d", step, sum, st.Assigned, all, assigned)
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "any"
	}
	return fmt.Sprint(*b)
}

func TestCountersStayExact(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []memstore.Option
	}{{"plain", nil}, {"retried", []memstore.Option{memstore.WithRetries(1)}}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, memstore.New(tc.opts...))
			checkTotals(t, f, "empty")
			f.importCSV(t, serials(130, 150000000000)) // three chunks
			if _, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Kind: appliance.KindHardware,
				Body: strings.NewReader(serials(20, 160000000000))}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "import")
			alice, bob := f.user(t, "alice"), f.user(t, "bob")
			if _, err := f.svc.AssignTokens(f.ctx, alice.ID, []string{"150000000000", "150000000001", "160000000000"}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.AssignTokens(f.ctx, bob.ID, []string{"150000000002"}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "assign")
			if err := f.svc.UnassignToken(f.ctx, alice.ID, "150000000001"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.SetTokenEnabled(f.ctx, "150000000000", false); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "unassign and disable")
			// Overwrite turns unassigned software tokens into hardware ones;
			// assigned ones are never overwritten.
			if _, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Kind: appliance.KindHardware,
				OnDuplicate: appliance.OnDuplicateOverwrite, Body: strings.NewReader(serials(60, 150000000000))}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "import overwrite")

			// A pulled source: add, deactivate, purge.
			src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Corp", Type: appliance.SourceTypeLDAP,
				LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example"}})
			if err != nil {
				t.Fatal(err)
			}
			var add []appliance.DirectoryUser
			for i := range 25 {
				add = append(add, appliance.DirectoryUser{ExternalID: fmt.Sprint(i), UserName: fmt.Sprintf("dir%02d", i),
					DisplayName: fmt.Sprintf("Dir %02d", i), Email: fmt.Sprintf("dir%02d@example.org", i), Active: true})
			}
			if _, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Add: add}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "sync add")
			dir, err := f.svc.DirectoryUsers(f.ctx, src.ID)
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(dir, func(i, j int) bool { return dir[i].UserName < dir[j].UserName })
			if _, err := f.svc.AssignTokens(f.ctx, dir[0].UserID, []string{"150000000010", "150000000011"}); err != nil {
				t.Fatal(err)
			}
			var deact []appliance.DirectoryUser
			for _, u := range dir[:12] {
				u.Active = false
				u.DeactivatedAt = f.clock.Now()
				deact = append(deact, u)
			}
			if _, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Deactivate: deact}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "sync deactivate")
			if _, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Purge: deact}); err != nil {
				t.Fatal(err)
			}
			checkTotals(t, f, "sync purge")
			if got, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Source: src.ID}); err != nil || got.Total != 13 {
				t.Errorf("after purge: %d users of the source, want 13 (%v)", got.Total, err)
			}
		})
	}
}

// TestCountersBuiltForOlderStores: a store written before the counters
// existed gets them from its indexes at Init.
func TestCountersBuiltForOlderStores(t *testing.T) {
	store := memstore.New()
	f := newFixture(t, store)
	f.importCSV(t, serials(70, 170000000000))
	u := f.user(t, "carol")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"170000000001"}); err != nil {
		t.Fatal(err)
	}
	if err := store.Update(f.ctx, func(tx appliance.Tx) error {
		for _, k := range []string{"meta/counters/local/tokens", "meta/counters/local/users"} {
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f2 := newFixtureWithKey(t, store, f.key)
	checkTotals(t, f2, "rebuilt")
	if page, _ := f2.svc.ListTokens(f2.ctx, appliance.TokenQuery{}); page.Total != 70 {
		t.Errorf("total %d, want 70", page.Total)
	}
}

func TestListUsersSearchPagesAndCounts(t *testing.T) {
	f := newFixture(t, memstore.New())
	type person struct{ login, display, email string }
	people := []person{
		{"zed", "Anna Zed", "anna.zed@example.org"},      // display and e-mail match "an"
		{"andy", "Andy Ant", "andy@example.org"},         // all three match "an"
		{"bert", "Bert", "an.bert@example.org"},          // e-mail only
		{"cleo", "Ann Cleo", "cleo@example.org"},         // display only
		{"anton", "", ""},                                // login only, no other fields
		{"dora", "Dora", "dora@example.org"},             // nothing
		{"Annika", "annika", "ANNIKA@example.org"},       // case-folded
		{"eve", "Eve", "eve@example.org"},                // nothing
		{"anders", "Anders Lund", "anders@example.org"},  // all three
		{"yann", "Annette Yann", "annette@example.org"},  // display and e-mail
		{"xavier", "Xavier", "xavier@anywhere.example"},  // nothing
		{"ben", "Ben", "ben@example.org"},                // nothing
		{"anyone", "Anyone Else", "someone@example.org"}, // login and display
		{"fritz", "Fritz", "an-fritz@example.org"},       // e-mail only
		{"gus", "Angus", "gus@example.org"},              // display only
		{"hal", "Hal", "hal@example.org"},                // nothing
		{"ivo", "Ivo", "ivo@example.org"},                // nothing
		{"ana", "Ana", "ana@example.org"},                // all three
		{"otto", "Otto Annex", "otto@example.org"},       // nothing ("annex" is not a prefix)
		{"pia", "Pia", "pia@example.org"},                // nothing
		{"quin", "Anquin", "quin@example.org"},           // display only
		{"rob", "Rob", "robert@example.org"},             // nothing
		{"andrea", "Andrea", "andrea@example.org"},       // all three
		{"stan", "Stan", "an.stan@example.org"},          // e-mail only
		{"tom", "Tom", "tom@example.org"},                // nothing
	}
	for _, p := range people {
		if _, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: p.login, DisplayName: p.display, Email: p.email}); err != nil {
			t.Fatal(err)
		}
	}
	for _, search := range []string{"", "an", "AN", "ann", "andy", "nobody", "a"} {
		var want []string
		s := strings.ToLower(search)
		for _, p := range people {
			if strings.HasPrefix(strings.ToLower(p.login), s) || strings.HasPrefix(strings.ToLower(p.display), s) ||
				strings.HasPrefix(strings.ToLower(p.email), s) {
				want = append(want, strings.ToLower(p.login))
			}
		}
		sort.Strings(want)
		for _, limit := range []int{1, 3, 50} {
			var got []string
			cursor := ""
			for range 100 {
				page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Search: search, Limit: limit, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				if page.Total != len(want) {
					t.Errorf("search %q: total %d, want %d", search, page.Total, len(want))
				}
				for _, u := range page.Items {
					got = append(got, strings.ToLower(u.UserName))
				}
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("search %q limit %d: %v, want %v", search, limit, got, want)
			}
		}
	}
}

func TestListTokensPagesWithCursors(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(30, 180000000000))
	u := f.user(t, "dan")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"180000000003", "180000000017"}); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	for _, tc := range []struct {
		q    appliance.TokenQuery
		want int
	}{
		{appliance.TokenQuery{}, 30},
		{appliance.TokenQuery{Assigned: &yes}, 2},
		{appliance.TokenQuery{Assigned: &no, Kind: appliance.KindSoftware}, 28},
		{appliance.TokenQuery{Search: "18000000001"}, 10},
		{appliance.TokenQuery{Search: "18000000001", Assigned: &yes}, 1},
		{appliance.TokenQuery{Kind: appliance.KindHardware}, 0},
	} {
		var got []string
		q := tc.q
		q.Limit = 4
		for range 20 {
			page, err := f.svc.ListTokens(f.ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != tc.want {
				t.Errorf("%+v: total %d, want %d", tc.q, page.Total, tc.want)
			}
			for _, tok := range page.Items {
				got = append(got, tok.Serial)
			}
			if q.Cursor = page.NextCursor; q.Cursor == "" {
				break
			}
		}
		if len(got) != tc.want || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("%+v: listed %v", tc.q, got)
		}
	}
}
