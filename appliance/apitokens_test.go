package appliance_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// countingStore counts the transactions that write.
type countingStore struct {
	appliance.Store
	updates atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

func apiTokenByID(t *testing.T, svc *appliance.Service, id string) appliance.APIToken {
	t.Helper()
	toks, err := svc.ListAPITokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if tok.ID == id {
			return tok
		}
	}
	t.Fatalf("api token %s not listed", id)
	return appliance.APIToken{}
}

func TestAPITokenExpiry(t *testing.T) {
	f := newFixture(t, memstore.New())
	now := f.clock.Now()
	tests := []struct {
		name    string
		expires time.Time
		wantErr bool
	}{
		{"in the past", now.Add(-time.Second), true},
		{"now", now, true},
		{"in the future", now.Add(time.Hour), false},
		{"none", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.svc.IssueAPIToken(f.ctx, appliance.NewAPIToken{Name: "ci", Role: appliance.RoleAuditor, ExpiresAt: tt.expires})
			var ve *appliance.ValidationError
			if got := errors.As(err, &ve); got != tt.wantErr {
				t.Fatalf("IssueAPIToken err = %v, want a validation error: %v", err, tt.wantErr)
			}
		})
	}

	tok, secret, err := f.svc.IssueAPIToken(f.ctx, appliance.NewAPIToken{Name: "ci", Role: appliance.RoleAuditor, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("ExpiresAt = %v", tok.ExpiresAt)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	f.clock.Add(time.Hour - time.Second)
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	f.clock.Add(time.Second)
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("at expiry: err = %v, want ErrUnauthenticated", err)
	}
	if _, _, err := f.svc.RotateAPIToken(f.ctx, tok.ID); !errors.Is(err, appliance.ErrInvalidState) {
		t.Fatalf("rotating an expired token: err = %v, want ErrInvalidState", err)
	}
}

// TestAPITokenLastUsed: a token used many times within a minute costs one
// store write, made off the request; the next write comes only once the
// stored time is a minute old. A second Service on the same store sees only
// what was stored.
func TestAPITokenLastUsed(t *testing.T) {
	store := &countingStore{Store: memstore.New()}
	f := newFixture(t, store)
	reader := newFixtureWithKey(t, store, f.key).svc
	tok, secret, err := f.svc.CreateAPIToken(f.ctx, "agent", appliance.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	if got := apiTokenByID(t, f.svc, tok.ID).LastUsedAt; !got.IsZero() {
		t.Fatalf("unused token: LastUsedAt = %v", got)
	}
	storedUse := func(want time.Time) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := apiTokenByID(t, reader, tok.ID).LastUsedAt
			if got.Equal(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stored LastUsedAt = %v, want %v", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	use := func(n int) {
		t.Helper()
		for range n {
			if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
				t.Fatal(err)
			}
		}
	}

	first := f.clock.Now()
	before := store.updates.Load()
	use(50)
	if got := apiTokenByID(t, f.svc, tok.ID).LastUsedAt; !got.Equal(first) {
		t.Errorf("listed LastUsedAt = %v, want %v (queued uses are listed)", got, first)
	}
	storedUse(first)
	if n := store.updates.Load() - before; n != 1 {
		t.Errorf("50 uses in one instant: %d store writes, want 1", n)
	}

	f.clock.Add(59 * time.Second)
	before = store.updates.Load()
	use(50)
	if n := store.updates.Load() - before; n != 0 {
		t.Errorf("50 uses within the minute: %d store writes, want 0", n)
	}
	if got := apiTokenByID(t, f.svc, tok.ID).LastUsedAt; !got.Equal(first) {
		t.Errorf("within the minute: LastUsedAt = %v, want %v", got, first)
	}

	f.clock.Add(time.Second)
	use(1)
	storedUse(first.Add(time.Minute))
	if n := store.updates.Load() - before; n != 1 {
		t.Errorf("a use a minute later: %d store writes, want 1", n)
	}
}

func TestRotateAPIToken(t *testing.T) {
	f := newFixture(t, memstore.New())
	expires := f.clock.Now().Add(24 * time.Hour)
	old, oldSecret, err := f.svc.IssueAPIToken(f.ctx, appliance.NewAPIToken{Name: "desk", Role: appliance.RoleHelpdesk, ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
	other, otherSecret, err := f.svc.CreateAPIToken(f.ctx, "other", appliance.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	tok, secret, err := f.svc.RotateAPIToken(f.ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if secret == oldSecret {
		t.Fatal("rotation kept the secret")
	}
	want := appliance.APIToken{ID: old.ID, Name: "desk", Role: appliance.RoleHelpdesk, CreatedAt: f.clock.Now(), CreatedBy: "tester", ExpiresAt: expires}
	if diff := cmp.Diff(want, tok, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Hash" }, cmp.Ignore())); diff != "" {
		t.Errorf("rotated token (-want +got):\n%s", diff)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, oldSecret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Errorf("old secret: err = %v, want ErrUnauthenticated", err)
	}
	if a, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil || a.ID != "token:"+old.ID {
		t.Errorf("new secret: %+v, %v", a, err)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, otherSecret.Reveal()); err != nil {
		t.Errorf("another token stopped working: %v", err)
	}
	if _, _, err := f.svc.RotateAPIToken(f.ctx, "no-such-id"); !errors.Is(err, appliance.ErrNotFound) {
		t.Errorf("unknown id: err = %v, want ErrNotFound", err)
	}
	_ = other
}

// TestReplaceNamedAPIToken: every token of the name is revoked in the same
// transaction that creates the new one; others stay.
func TestReplaceNamedAPIToken(t *testing.T) {
	f := newFixture(t, memstore.New())
	var olds []appliance.Secret
	for range 2 {
		_, s, err := f.svc.CreateAPIToken(f.ctx, "admin-token-file", appliance.RoleSuperAdmin)
		if err != nil {
			t.Fatal(err)
		}
		olds = append(olds, s)
	}
	_, keep, err := f.svc.CreateAPIToken(f.ctx, "keep", appliance.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := f.svc.ReplaceNamedAPIToken(f.ctx, "admin-token-file", appliance.RoleSuperAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range olds {
		if _, err := f.svc.AuthenticateAPIToken(f.ctx, s.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
			t.Errorf("old token %d: err = %v, want ErrUnauthenticated", i, err)
		}
	}
	for name, s := range map[string]appliance.Secret{"new": secret, "keep": keep} {
		if _, err := f.svc.AuthenticateAPIToken(f.ctx, s.Reveal()); err != nil {
			t.Errorf("%s token: %v", name, err)
		}
	}
	// Create-if-absent refuses a name that exists and leaves it alone.
	if _, _, err := f.svc.CreateNamedAPIToken(f.ctx, "admin-token-file", appliance.RoleSuperAdmin); !errors.Is(err, appliance.ErrExists) {
		t.Errorf("create over an existing name: %v, want ErrExists", err)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
		t.Errorf("the token after a refused create: %v", err)
	}
	if _, fresh, err := f.svc.CreateNamedAPIToken(f.ctx, "fresh", appliance.RoleAuditor); err != nil {
		t.Errorf("create a new name: %v", err)
	} else if _, err := f.svc.AuthenticateAPIToken(f.ctx, fresh.Reveal()); err != nil {
		t.Errorf("the created token: %v", err)
	}
	toks, err := f.svc.ListAPITokens(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 3 {
		t.Errorf("%d tokens listed, want 3", len(toks))
	}
}
