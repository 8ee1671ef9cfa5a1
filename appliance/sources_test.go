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

func TestIdentitySourcesAndSCIMUsers(t *testing.T) {
	store := memstore.New()
	f := newFixture(t, store)
	ctx := f.ctx

	ldap, tok, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Corp LDAP", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example", BindDN: "cn=sync", BindPassword: "hunter2-secret"}})
	if err != nil || tok != "" {
		t.Fatalf("create ldap: %v %q", err, tok)
	}
	if ldap.LDAP.BindPassword != "" || !ldap.LDAP.HasBindPassword || ldap.GracePeriod != appliance.DefaultGracePeriod {
		t.Errorf("ldap source: %+v %+v", ldap, ldap.LDAP)
	}
	if pw, err := f.svc.LDAPBindPassword(ctx, ldap.ID); err != nil || pw.Reveal() != "hunter2-secret" {
		t.Errorf("bind password: %v", err)
	}
	// Update without a password keeps the stored one.
	upd := ldap
	upd.LDAP.PageSize = 200
	if _, err := f.svc.UpdateIdentitySource(ctx, ldap.ID, upd); err != nil {
		t.Fatal(err)
	}
	if pw, _ := f.svc.LDAPBindPassword(ctx, ldap.ID); pw.Reveal() != "hunter2-secret" {
		t.Error("update dropped the bind password")
	}
	// Never in clear in the store.
	_ = store.View(ctx, func(tx appliance.Tx) error {
		kvs, _ := tx.Scan(nil, nil, 0)
		for _, kv := range kvs {
			if bytes.Contains(kv.Value, []byte("hunter2-secret")) {
				t.Errorf("bind password in clear under %q", kv.Key)
			}
		}
		return nil
	})

	if _, _, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "corp ldap", Type: appliance.SourceTypeSCIM}); !errors.Is(err, appliance.ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	var ve *appliance.ValidationError
	if _, _, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "x", Type: "ldap", LDAP: &appliance.LDAPSourceConfig{URL: "http://x"}}); !errors.As(err, &ve) || len(ve.Problems) < 2 {
		t.Errorf("validation: %v", err)
	}

	scim, token, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Entra", Type: appliance.SourceTypeSCIM, GracePeriod: 48 * time.Hour})
	if err != nil || !strings.HasPrefix(token.Reveal(), "tkds_") || !scim.HasSCIMToken {
		t.Fatalf("create scim: %v", err)
	}
	if id, err := f.svc.AuthenticateSCIMToken(ctx, token.Reveal()); err != nil || id != scim.ID {
		t.Errorf("auth: %q %v", id, err)
	}
	if _, err := f.svc.AuthenticateSCIMToken(ctx, token.Reveal()+"x"); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Errorf("bad token: %v", err)
	}
	newTok, err := f.svc.RotateSCIMToken(ctx, scim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateSCIMToken(ctx, token.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Error("old token still works after rotation")
	}
	if _, err := f.svc.AuthenticateSCIMToken(ctx, newTok.Reveal()); err != nil {
		t.Error(err)
	}

	// Users: create, token, delete (removed), purge after the grace period.
	su, err := f.svc.CreateSourceUser(ctx, scim.ID, appliance.SourceUser{User: appliance.User{UserName: "Eve", Email: "eve@example.com", Active: true},
		Attributes: map[string]any{"title": "CISO"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CreateUser(ctx, appliance.NewUser{UserName: "EVE"}); !errors.Is(err, appliance.ErrExists) {
		t.Errorf("login uniqueness across sources: %v", err)
	}
	kept, err := f.svc.CreateSourceUser(ctx, scim.ID, appliance.SourceUser{User: appliance.User{UserName: "disabled-only", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ id, serial string }{{su.ID, "000000000101"}, {kept.ID, "000000000102"}} {
		if _, err := f.svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader("serial\n" + u.serial + "\n")}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.AssignTokens(ctx, u.id, []string{u.serial}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := f.svc.CreateGroup(ctx, scim.ID, appliance.Group{DisplayName: "VPN", Members: []string{su.ID, kept.ID, su.ID}})
	if err != nil || len(g.Members) != 2 {
		t.Fatalf("group: %v %v", err, g.Members)
	}
	// A member not pushed yet is kept and resolves once it exists.
	early, err := f.svc.CreateGroup(ctx, scim.ID, appliance.Group{DisplayName: "early", Members: []string{"not-yet", g.ID, su.ID}})
	if err != nil {
		t.Fatalf("unknown member: %v", err)
	}
	resolved, err := f.svc.ResolveGroupMembers(ctx, scim.ID, early.Members)
	if diff := cmp.Diff(map[string]string{g.ID: appliance.MemberGroup, su.ID: appliance.MemberUser}, resolved); err != nil || diff != "" {
		t.Errorf("resolved members %v (-want +got):\n%s", err, diff)
	}
	if _, err := f.svc.CreateGroup(ctx, scim.ID, appliance.Group{DisplayName: "bad", Members: []string{"a\x00b"}}); !errors.As(err, &ve) {
		t.Errorf("member with NUL: %v", err)
	}
	if _, err := f.svc.DeactivateSourceUser(ctx, scim.ID, su.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeactivateSourceUser(ctx, scim.ID, kept.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteIdentitySource(ctx, scim.ID); err != nil {
		// Both users are inactive now, so deleting would purge: check
		// refusal with an active user instead, below.
		t.Logf("delete: %v", err)
	}
	// Recreate state for the purge test on a fresh source.
	scim2, _, err := f.svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM, GracePeriod: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.CreateSourceUser(ctx, scim2.ID, appliance.SourceUser{User: appliance.User{UserName: "ann", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.svc.CreateSourceUser(ctx, scim2.ID, appliance.SourceUser{User: appliance.User{UserName: "ben", Active: true}})
	if _, err := f.svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader("serial\n000000000201\n000000000202\n")}); err != nil {
		t.Fatal(err)
	}
	_, _ = f.svc.AssignTokens(ctx, a.ID, []string{"000000000201"})
	_, _ = f.svc.AssignTokens(ctx, b.ID, []string{"000000000202"})
	if err := f.svc.DeleteIdentitySource(ctx, scim2.ID); !errors.Is(err, appliance.ErrConflict) {
		t.Errorf("delete with active users: %v", err)
	}
	_, _ = f.svc.DeactivateSourceUser(ctx, scim2.ID, a.ID, true)  // removed
	_, _ = f.svc.DeactivateSourceUser(ctx, scim2.ID, b.ID, false) // disabled only

	if n, err := f.svc.PurgeExpiredUsers(ctx, scim2.ID, f.clock.Now().Add(47*time.Hour)); err != nil || n != 0 {
		t.Errorf("purge inside grace: %d %v", n, err)
	}
	f.clock.Add(49 * time.Hour)
	if n, err := f.svc.PurgeExpiredUsers(ctx, scim2.ID, f.clock.Now()); err != nil || n != 1 {
		t.Errorf("purge after grace: %d %v", n, err)
	}
	if _, err := f.svc.GetUser(ctx, a.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Errorf("purged user: %v", err)
	}
	if tk, _ := f.svc.GetToken(ctx, "000000000201"); tk.UserID != "" || tk.State != appliance.StateDisabled {
		t.Errorf("purged user's token: %+v", tk)
	}
	if v, _ := f.svc.GetUser(ctx, b.ID); len(v.Tokens) != 1 {
		t.Errorf("disabled user lost its token: %+v", v.Tokens)
	}

	// Sync runs: newest first.
	for i := range 3 {
		if _, err := f.svc.RecordSyncRun(ctx, appliance.SyncRun{SourceID: ldap.ID, StartedAt: f.clock.Now().Add(time.Duration(i) * time.Minute), Added: i}); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := f.svc.ListSyncRuns(ctx, ldap.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	var added []int
	for _, r := range runs {
		added = append(added, r.Added)
	}
	if diff := cmp.Diff([]int{2, 1, 0}, added); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if got, _ := f.svc.GetIdentitySource(ctx, ldap.ID); got.LastRun == nil || got.LastRun.Added != 2 {
		t.Errorf("last run: %+v", got.LastRun)
	}
	if err := f.svc.DeleteIdentitySource(ctx, ldap.ID); err != nil {
		t.Errorf("delete empty ldap source: %v", err)
	}
	if _, err := f.svc.GetIdentitySource(ctx, ldap.ID); !errors.Is(err, appliance.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}
