package appliance_test

import (
	"bytes"
	"errors"
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
			if rep, err := f.svc.VerifyAudit(f.ctx); err != nil || rep.Records != 4 {
				t.Fatalf("untouched chain: %+v, %v", rep, err)
			}
			err := store.Update(f.ctx, func(tx appliance.Tx) error {
				recs, err := tx.Scan([]byte("a/"), nil, 0)
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
