package appliance_test

import (
	"context"
	"errors"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// TestSCIMTokenCache: a verified SCIM token is served from the cache (no
// store read), and rotation or deletion of its source refuses it at once,
// the cache notwithstanding.
func TestSCIMTokenCache(t *testing.T) {
	st := &viewCountingStore{Store: memstore.New()}
	f := newFixture(t, st)
	src, token, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Okta", Type: appliance.SourceTypeSCIM})
	if err != nil {
		t.Fatal(err)
	}
	auth := func(tok appliance.Secret) (string, error) {
		return f.svc.AuthenticateSCIMToken(context.Background(), tok.Reveal())
	}
	if id, err := auth(token); err != nil || id != src.ID {
		t.Fatalf("first use: %q %v", id, err)
	}
	before := st.views.Load()
	for range 10 {
		if id, err := auth(token); err != nil || id != src.ID {
			t.Fatalf("cached use: %q %v", id, err)
		}
	}
	if n := st.views.Load() - before; n != 0 {
		t.Errorf("10 uses of a verified token read the store %d times, want 0", n)
	}
	// An unknown token is never cached: each try reads the store.
	before = st.views.Load()
	for range 3 {
		if _, err := auth(appliance.Secret("tkds_unknown")); !errors.Is(err, appliance.ErrUnauthenticatedSCIM) {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if n := st.views.Load() - before; n != 3 {
		t.Errorf("3 tries of an unknown token read the store %d times, want 3", n)
	}

	rotated, err := f.svc.RotateSCIMToken(f.ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth(token); !errors.Is(err, appliance.ErrUnauthenticatedSCIM) {
		t.Errorf("the rotated-out token right after the rotation: %v, want ErrUnauthenticatedSCIM", err)
	}
	if id, err := auth(rotated); err != nil || id != src.ID {
		t.Fatalf("new token: %q %v", id, err)
	}
	if err := f.svc.DeleteIdentitySource(f.ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := auth(rotated); !errors.Is(err, appliance.ErrUnauthenticatedSCIM) {
		t.Errorf("the token of a deleted source: %v, want ErrUnauthenticatedSCIM", err)
	}
}
