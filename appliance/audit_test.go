package appliance_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

func TestAuditChainDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(tx appliance.Tx, recs []appliance.KV) error
	}{
		{"record removed from the middle", func(tx appliance.Tx, recs []appliance.KV) error { return tx.Delete(recs[2].Key) }},
		{"newest record removed", func(tx appliance.Tx, recs []appliance.KV) error { return tx.Delete(recs[len(recs)-1].Key) }},
		{"outcome altered", func(tx appliance.Tx, recs []appliance.KV) error {
			return tx.Put(recs[1].Key, bytes.Replace(recs[1].Value, []byte(`"success"`), []byte(`"failure"`), 1))
		}},
		{"actor altered", func(tx appliance.Tx, recs []appliance.KV) error {
			return tx.Put(recs[0].Key, bytes.Replace(recs[0].Value, []byte(`"tester"`), []byte(`"mallory"`), 1))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := memstore.New()
			f := newFixture(t, store)
			f.importCSV(t, serials(3, 130000000000))
			for _, n := range []string{"ivan", "judy", "kim"} {
				f.user(t, n)
			}
			// The import writes three records (started, its one chunk,
			// completed), the users one each.
			if rep, err := f.svc.VerifyAudit(f.ctx); err != nil || rep.Records != 6 {
				t.Fatalf("untouched chain: %+v, %v", rep, err)
			}
			err := store.Update(f.ctx, func(tx appliance.Tx) error {
				recs, err := tx.Scan([]byte("an/"), nil, 0)
				if err != nil {
					return err
				}
				return tc.tamper(tx, recs)
			})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := f.svc.VerifyAudit(f.ctx)
			if !errors.Is(err, appliance.ErrAuditBroken) || len(rep.Problems) == 0 {
				t.Fatalf("tampering not detected: %+v, %v", rep, err)
			}
		})
	}
}

func TestAuditRecordsRefusals(t *testing.T) {
	f := newFixture(t, memstore.New())
	u := f.user(t, "leo")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"140000000000"}); !errors.Is(err, appliance.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "token.assign"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("audit = %+v, %v", page, err)
	}
	r := page.Items[0]
	if r.Outcome != appliance.OutcomeFailure || r.Reason != "not_found" || r.Actor.Name != "tester" || r.UserID != u.ID {
		t.Fatalf("record = %+v", r)
	}
}

// TestListAuditFilterIndexes pages filtered lists through the filter
// indexes, including records written before the indexes existed.
func TestListAuditFilterIndexes(t *testing.T) {
	store := memstore.New()
	f := newFixture(t, store)
	f.importCSV(t, serials(6, 190000000000))
	var ids []string
	for _, n := range []string{"uma", "vic"} {
		ids = append(ids, f.user(t, n).ID)
	}
	assign := func(user, serial string) {
		t.Helper()
		if _, err := f.svc.AssignTokens(f.ctx, user, []string{serial}); err != nil {
			t.Fatal(err)
		}
	}
	assign(ids[0], "190000000000")
	assign(ids[1], "190000000001")
	// Forget the indexes, as a store written by an older tokend: Init
	// marks everything so far as older than the indexes.
	if err := store.Update(f.ctx, func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte("ax/"), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
		}
		return tx.Delete([]byte("meta/audit-ix"))
	}); err != nil {
		t.Fatal(err)
	}
	f = newFixtureWithKey(t, store, f.key)
	assign(ids[0], "190000000002")
	assign(ids[1], "190000000003")
	assign(ids[0], "190000000004")

	all, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []appliance.AuditQuery{
		{Action: "token.assign"},
		{UserID: ids[0]},
		{UserID: ids[0], Action: "token.assign"},
		{Serial: "190000000003"},
		{Actor: "TESTER"},
		{Actor: "test"},
		{Action: "no.such.action"},
	} {
		var want []uint64
		for _, r := range all.Items {
			if (q.Action == "" || r.Action == q.Action) && (q.UserID == "" || r.UserID == q.UserID) &&
				(q.Serial == "" || r.Serial == q.Serial) && (q.Actor == "" || r.Actor.ID == q.Actor || strings.EqualFold(r.Actor.Name, q.Actor)) {
				want = append(want, r.Seq)
			}
		}
		var got []uint64
		q.Limit = 2
		for range 50 {
			page, err := f.svc.ListAudit(f.ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Items {
				got = append(got, r.Seq)
			}
			if q.After = page.NextCursor; q.After == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: seqs %v, want %v", q, got, want)
		}
	}
}
