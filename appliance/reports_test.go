package appliance_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// reportFixture builds a store with one case of every report:
//
//	alice   holds 3 tokens (at the limit); 200000000000 expires in 10 days
//	bob     holds nothing
//	carol   (SCIM, deleted) still holds 200000000003
//	dave    holds 200000000004, lost, and 200000000005 with a code issued 10 days ago
func reportFixture(t *testing.T, st appliance.Store) (*fixture, map[string]string) {
	t.Helper()
	f := newFixture(t, st)
	soon := f.clock.Now().Add(10 * 24 * time.Hour).Format(time.RFC3339)
	f.importCSV(t, "serial,kind,digits,interval,expires_at\n200000000000,software,8,60,"+soon+"\n")
	f.importCSV(t, serials(6, 200000000001))
	f.profile(t)
	ids := map[string]string{}
	for _, n := range []string{"alice", "bob", "dave"} {
		ids[n] = f.user(t, n).ID
	}
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	carol, err := f.svc.CreateSourceUser(f.ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: "carol", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	ids["carol"] = carol.ID
	assign := map[string][]string{
		"alice": {"200000000000", "200000000001", "200000000002"},
		"carol": {"200000000003"},
		"dave":  {"200000000004", "200000000005"},
	}
	for who, sns := range assign {
		if _, err := f.svc.AssignTokens(f.ctx, ids[who], sns); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.DeactivateSourceUser(f.ctx, src.ID, carol.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.MarkLost(f.ctx, "200000000004", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Distribute(f.ctx, "200000000005", "android-ctkip"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(10 * 24 * time.Hour)
	// A fresh code is not "unused after 7 days".
	if _, err := f.svc.Distribute(f.ctx, "200000000001", "android-ctkip"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(-9 * 24 * time.Hour) // back to one day after the start
	return f, ids
}

type reportLine struct{ Serial, User, Detail string }

func lines(p appliance.ReportPage) []reportLine {
	out := []reportLine{}
	for _, r := range p.Items {
		out = append(out, reportLine{r.Serial, r.UserName, r.Detail})
	}
	return out
}

// TestReports runs every report against one fixture, on memstore and on
// bbolt (whose scans are the ones tokend ships).
func TestReports(t *testing.T) {
	for _, store := range stores {
		t.Run(store.name, func(t *testing.T) { testReports(t, store.open(t)) })
	}
}

func testReports(t *testing.T, st appliance.Store) {
	f, _ := reportFixture(t, st)
	tests := []struct {
		name string
		q    appliance.ReportQuery
		want []reportLine
	}{
		{name: "expiring within 30 days", q: appliance.ReportQuery{Name: appliance.ReportExpiringTokens},
			want: []reportLine{{"200000000000", "alice", "enabled"}}},
		{name: "expiring within 5 days", q: appliance.ReportQuery{Name: appliance.ReportExpiringTokens, Days: 5},
			want: []reportLine{}},
		{name: "codes unused after 7 days (the day-10 code is not yet issued)", q: appliance.ReportQuery{Name: appliance.ReportUnusedCodes, Days: 1},
			want: []reportLine{{"200000000005", "dave", "expires 2026-12-03T12:00:00Z"}}},
		{name: "users without a token", q: appliance.ReportQuery{Name: appliance.ReportUsersWithoutToken},
			want: []reportLine{{"", "bob", "internal"}}},
		{name: "users at the limit", q: appliance.ReportQuery{Name: appliance.ReportUsersAtLimit},
			want: []reportLine{{"", "alice", "3 tokens"}}},
		{name: "tokens of inactive users", q: appliance.ReportQuery{Name: appliance.ReportInactiveUsersTokens},
			want: []reportLine{{"200000000003", "carol", "deleted"}}},
		{name: "lost tokens", q: appliance.ReportQuery{Name: appliance.ReportLostTokens},
			want: []reportLine{{"200000000004", "dave", "lost"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.svc.Report(f.ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, lines(p)); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
			if p.NextCursor != "" {
				t.Errorf("cursor %q on the last page", p.NextCursor)
			}
		})
	}
	// Nine days later the day-10 code is 8 days old too.
	f.clock.Add(9 * 24 * time.Hour)
	p, err := f.svc.Report(f.ctx, appliance.ReportQuery{Name: appliance.ReportUnusedCodes})
	if err != nil || len(p.Items) != 1 || p.Items[0].Serial != "200000000005" {
		t.Fatalf("unused codes after 7 days, on day 10: %+v, %v", p, err)
	}
}

func TestReportPagesWithCursors(t *testing.T) {
	f := newFixture(t, memstore.New())
	for i := range 7 {
		f.user(t, "user"+string(rune('a'+i)))
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("cursor does not advance")
		}
		p, err := f.svc.Report(f.ctx, appliance.ReportQuery{Name: appliance.ReportUsersWithoutToken, Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > 3 {
			t.Fatalf("page of %d rows, limit 3", len(p.Items))
		}
		for _, r := range p.Items {
			got = append(got, r.UserName)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{"usera", "userb", "userc", "userd", "usere", "userf", "userg"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows over all pages (-want +got):\n%s", diff)
	}
}

func TestReportRefusals(t *testing.T) {
	f := newFixture(t, memstore.New())
	tests := []struct {
		name  string
		q     appliance.ReportQuery
		field string
		want  error
	}{
		{name: "unknown report", q: appliance.ReportQuery{Name: "everything"}, want: appliance.ErrNotFound},
		{name: "days on a report without", q: appliance.ReportQuery{Name: appliance.ReportLostTokens, Days: 3}, field: "days"},
		{name: "days out of range", q: appliance.ReportQuery{Name: appliance.ReportExpiringTokens, Days: 5000}, field: "days"},
		{name: "negative days", q: appliance.ReportQuery{Name: appliance.ReportExpiringTokens, Days: -1}, field: "days"},
		{name: "foreign cursor", q: appliance.ReportQuery{Name: appliance.ReportLostTokens, Cursor: "!!"}, field: "cursor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Report(f.ctx, tc.q)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			var ve *appliance.ValidationError
			if !errors.As(err, &ve) || ve.Problems[0].Field != tc.field {
				t.Fatalf("err = %v, want a problem with %s", err, tc.field)
			}
		})
	}
}
