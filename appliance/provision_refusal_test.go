package appliance_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestProvisionRefusalNamesTheToken: a refused code that names a real token
// carries its serial (so the door can audit it without the code); a code that
// names nothing carries none. AuditProvisioningRefusal writes that serial and
// the holder, never the code.
func TestProvisionRefusalNamesTheToken(t *testing.T) {
	f := newFixture(t, memstore.New())
	f.importCSV(t, serials(2, 600000000000))
	f.profile(t)
	u := f.user(t, "fay")
	if _, err := f.svc.AssignTokens(f.ctx, u.ID, []string{"600000000000", "600000000001"}); err != nil {
		t.Fatal(err)
	}
	distribute := func(serial string) string {
		d, err := f.svc.Distribute(f.ctx, serial, "android-ctkip")
		if err != nil {
			t.Fatal(err)
		}
		return d.ActivationCode.Reveal()
	}
	voided := distribute("600000000000")
	used := distribute("600000000000")
	if _, err := f.svc.CompleteProvisioning(f.ctx, used, bytes.Repeat([]byte{1}, 16)); err != nil {
		t.Fatal(err)
	}
	expiring := distribute("600000000001")
	f.clock.Add(8 * 24 * time.Hour)
	tests := []struct {
		name, code string
		want       appliance.CodeError
	}{
		{"unknown code names nothing", "000000000000", appliance.CodeError{Reason: appliance.ProvisionBadCode}},
		// Voiding deletes the code's record: it is then as unknown as a guess.
		{"voided by re-issue", voided, appliance.CodeError{Reason: appliance.ProvisionBadCode}},
		{"used", used, appliance.CodeError{Reason: appliance.ProvisionUsed, Serial: "600000000000"}},
		{"expired", expiring, appliance.CodeError{Reason: appliance.ProvisionExpired, Serial: "600000000001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []func() error{
				func() error { _, err := f.svc.BeginProvisioning(f.ctx, tc.code); return err },
				func() error {
					_, err := f.svc.CompleteProvisioning(f.ctx, tc.code, bytes.Repeat([]byte{2}, 16))
					return err
				},
			} {
				ce, ok := errors.AsType[*appliance.CodeError](call())
				if !ok {
					t.Fatalf("not a CodeError")
				}
				if diff := cmp.Diff(tc.want, *ce); diff != "" {
					t.Errorf("CodeError (-want +got):\n%s", diff)
				}
			}
		})
	}

	before, err := f.svc.VerifyAudit(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.AuditProvisioningRefusal(f.ctx, "600000000000", "hello", "used"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.AuditProvisioningRefusal(f.ctx, "not-a-serial", "hello", "used"); err == nil {
		t.Error("audited a malformed serial")
	}
	after, err := f.svc.VerifyAudit(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Records != before.Records+1 {
		t.Fatalf("audit records %d -> %d, want one more", before.Records, after.Records)
	}
	page, err := f.svc.ListAudit(f.ctx, appliance.AuditQuery{Action: "ctkip.hello"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("ctkip.hello records: %+v, %v", page.Items, err)
	}
	r := page.Items[0]
	if r.Serial != "600000000000" || r.UserID != u.ID || r.Outcome != appliance.OutcomeFailure || r.Reason != "used" {
		t.Errorf("record = %+v", r)
	}
	for _, c := range []string{voided, used, expiring} {
		if strings.Contains(r.Detail+r.Target+r.Reason, c) {
			t.Error("the audit record holds an activation code")
		}
	}
}
