package appliance_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/memstore"
)

func sourceUserIDs(users []appliance.SourceUser) []string {
	out := []string{}
	for _, su := range users {
		out = append(out, su.ID)
	}
	return out
}

// TestSCIMExternalIDNotUnique: a SCIM source may hold several users with
// one externalId (RFC 7643 §3.1); lookups return them all, removing one
// leaves the others findable, and the external id never revives a deleted
// user under another login.
func TestSCIMExternalIDNotUnique(t *testing.T) {
	ctx := context.Background()
	svc := appliancetest.Service(t, appliance.Config{})
	src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string) appliance.SourceUser {
		t.Helper()
		su, err := svc.CreateSourceUser(ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: name, ExternalID: "shared", Active: true}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return su
	}
	a, b, c := mk("ann"), mk("ben"), mk("cat")
	got, err := svc.FindSourceUsersByExternalID(ctx, src.ID, "shared")
	if err != nil {
		t.Fatal(err)
	}
	want := sourceUserIDs([]appliance.SourceUser{a, b, c})
	if diff := cmp.Diff(want, sourceUserIDs(got), cmpSortStrings()); diff != "" {
		t.Errorf("by external id (-want +got):\n%s", diff)
	}
	// Renaming b's external id away keeps a and c under "shared".
	if _, err := svc.UpdateSourceUser(ctx, src.ID, b.ID, func(su *appliance.SourceUser) error { su.ExternalID = "own"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, _ = svc.FindSourceUsersByExternalID(ctx, src.ID, "shared")
	if diff := cmp.Diff([]string{a.ID, c.ID}, sourceUserIDs(got), cmpSortStrings()); diff != "" {
		t.Errorf("after rename (-want +got):\n%s", diff)
	}
	// A deleted user is not revived by a new login carrying its external id.
	if _, err := svc.DeactivateSourceUser(ctx, src.ID, a.ID, true); err != nil {
		t.Fatal(err)
	}
	d := mk("dan")
	if d.ID == a.ID {
		t.Fatal("a new login with a deleted user's external id revived that user")
	}
	// The login stays unique.
	if _, err := svc.CreateSourceUser(ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: "CAT", ExternalID: "other", Active: true}}); !errors.Is(err, appliance.ErrExists) {
		t.Errorf("duplicate login: %v, want ErrExists", err)
	}
}

// TestExternalIDUniqueOutsideSCIM: local users (and LDAP sources) keep one
// user per external id.
func TestExternalIDUniqueOutsideSCIM(t *testing.T) {
	ctx := context.Background()
	svc := appliancetest.Service(t, appliance.Config{})
	if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "one", ExternalID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "two", ExternalID: "e1"}); !errors.Is(err, appliance.ErrExists) {
		t.Errorf("second local user with external id e1: %v, want ErrExists", err)
	}
}

// TestExternalIDLegacyEntry: a store written with the single-valued index
// (ui/x/<source>\0<ext> → id) is still read, and the entry is replaced
// when its user is written.
func TestExternalIDLegacyEntry(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	svc := appliancetest.Service(t, appliance.Config{Store: st})
	src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "Entra", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	old, err := svc.CreateSourceUser(ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: "old", ExternalID: "x1", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	legacy := []byte("ui/x/" + src.ID + "\x00x1")
	// Rewrite the entry as an older tokend wrote it.
	if err := st.Update(ctx, func(tx appliance.Tx) error {
		if err := tx.Delete([]byte("ui/x/" + src.ID + "\x00x1\x00" + old.ID)); err != nil {
			return err
		}
		return tx.Put(legacy, []byte(old.ID))
	}); err != nil {
		t.Fatal(err)
	}
	if su, err := svc.FindSourceUserByExternalID(ctx, src.ID, "x1"); err != nil || su.ID != old.ID {
		t.Fatalf("legacy entry: %v %v", su.ID, err)
	}
	newer, err := svc.CreateSourceUser(ctx, src.ID, appliance.SourceUser{User: appliance.User{UserName: "new", ExternalID: "x1", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := svc.FindSourceUsersByExternalID(ctx, src.ID, "x1")
	if diff := cmp.Diff([]string{old.ID, newer.ID}, sourceUserIDs(got), cmpSortStrings()); diff != "" {
		t.Errorf("legacy and new (-want +got):\n%s", diff)
	}
	// Writing the newer user leaves the legacy entry (not its own) alone;
	// changing the old user's external id removes it.
	if _, err := svc.UpdateSourceUser(ctx, src.ID, newer.ID, func(su *appliance.SourceUser) error { su.ExternalID = "x2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if su, err := svc.FindSourceUserByExternalID(ctx, src.ID, "x1"); err != nil || su.ID != old.ID {
		t.Fatalf("legacy entry after a namesake moved: %v %v", su.ID, err)
	}
	if _, err := svc.UpdateSourceUser(ctx, src.ID, old.ID, func(su *appliance.SourceUser) error { su.ExternalID = "x3"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.View(ctx, func(tx appliance.Tx) error {
		_, err := tx.Get(legacy)
		if !errors.Is(err, appliance.ErrNotFound) {
			t.Errorf("legacy entry still there: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if su, err := svc.FindSourceUserByExternalID(ctx, src.ID, "x3"); err != nil || su.ID != old.ID {
		t.Errorf("after rewrite: %v %v", su.ID, err)
	}
}

func cmpSortStrings() cmp.Option { return cmpopts.SortSlices(func(a, b string) bool { return a < b }) }
