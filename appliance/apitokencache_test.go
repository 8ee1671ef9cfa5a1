package appliance_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// viewCountingStore counts read transactions.
type viewCountingStore struct {
	appliance.Store
	views atomic.Int64
}

func (s *viewCountingStore) View(ctx context.Context, fn func(appliance.Tx) error) error {
	s.views.Add(1)
	return s.Store.View(ctx, fn)
}

// TestAPITokenCache: a verified token is served without a store read for
// five seconds; revoke, rotate and replace on this node refuse the old
// secret at once; on another node's Service they take at most five seconds.
func TestAPITokenCache(t *testing.T) {
	tests := []struct {
		name string
		// change acts on token tok of svc and returns a secret that must
		// still work afterwards ("" for none).
		change func(t *testing.T, f *fixture, id string) string
	}{
		{"revoke", func(t *testing.T, f *fixture, id string) string {
			if err := f.svc.RevokeAPIToken(f.ctx, id); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"rotate", func(t *testing.T, f *fixture, id string) string {
			_, secret, err := f.svc.RotateAPIToken(f.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return secret.Reveal()
		}},
		{"replace", func(t *testing.T, f *fixture, _ string) string {
			_, secret, err := f.svc.ReplaceNamedAPIToken(f.ctx, "ci", appliance.RoleHelpdesk)
			if err != nil {
				t.Fatal(err)
			}
			return secret.Reveal()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &viewCountingStore{Store: memstore.New()}
			f := newFixture(t, store)
			other := newFixtureWithKey(t, store, f.key) // a second node
			tok, secret, err := f.svc.CreateAPIToken(f.ctx, "ci", appliance.RoleHelpdesk)
			if err != nil {
				t.Fatal(err)
			}
			auth := func(svc *appliance.Service, secret string) error {
				t.Helper()
				a, err := svc.AuthenticateAPIToken(f.ctx, secret)
				if err == nil && (a.ID != "token:"+tok.ID || a.Role != appliance.RoleHelpdesk) {
					t.Errorf("actor = %+v", a)
				}
				return err
			}
			for _, svc := range []*appliance.Service{f.svc, other.svc} {
				if err := auth(svc, secret.Reveal()); err != nil {
					t.Fatal(err)
				}
			}
			before := store.views.Load()
			for range 10 {
				if err := auth(f.svc, secret.Reveal()); err != nil {
					t.Fatal(err)
				}
			}
			if n := store.views.Load() - before; n != 0 {
				t.Errorf("10 uses of a verified token: %d store reads, want 0", n)
			}

			still := tt.change(t, f, tok.ID)
			if err := auth(f.svc, secret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
				t.Errorf("old secret right after %s on this node: err = %v, want ErrUnauthenticated", tt.name, err)
			}
			if still != "" {
				if _, err := f.svc.AuthenticateAPIToken(f.ctx, still); err != nil {
					t.Errorf("new secret: %v", err)
				}
			}
			// The other node trusts its cache until the TTL runs out.
			other.clock.Add(5*time.Second - time.Millisecond)
			if err := auth(other.svc, secret.Reveal()); err != nil {
				t.Errorf("other node within the TTL: err = %v, want the cached token", err)
			}
			other.clock.Add(time.Millisecond)
			if err := auth(other.svc, secret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
				t.Errorf("other node after the TTL: err = %v, want ErrUnauthenticated", err)
			}
		})
	}
}

// TestAPITokenCacheExpiry: a cached token stops working at its expiry,
// not at the end of its cache time.
func TestAPITokenCacheExpiry(t *testing.T) {
	store := &viewCountingStore{Store: memstore.New()}
	f := newFixture(t, store)
	_, secret, err := f.svc.IssueAPIToken(f.ctx, appliance.NewAPIToken{Name: "short", Role: appliance.RoleAuditor,
		ExpiresAt: f.clock.Now().Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2*time.Second - time.Millisecond)
	before := store.views.Load()
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); err != nil {
		t.Fatalf("a millisecond before expiry: %v", err)
	}
	if n := store.views.Load() - before; n != 0 {
		t.Errorf("cached use: %d store reads, want 0", n)
	}
	f.clock.Add(time.Millisecond)
	if _, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal()); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Fatalf("at expiry: err = %v, want ErrUnauthenticated", err)
	}
}

// TestAPITokenCacheRevokeRace: requests racing a revoke may pass while it
// commits, but none that starts after RevokeAPIToken returned does, even
// when its store read began before the revoke and its cache fill lands
// after (the generation check).
func TestAPITokenCacheRevokeRace(t *testing.T) {
	for round := range 20 {
		f := newFixture(t, memstore.New())
		tok, secret, err := f.svc.CreateAPIToken(f.ctx, "ci", appliance.RoleAgent)
		if err != nil {
			t.Fatal(err)
		}
		var revoked atomic.Bool
		var wrong atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					after := revoked.Load()
					_, err := f.svc.AuthenticateAPIToken(f.ctx, secret.Reveal())
					if after && err == nil {
						wrong.Add(1)
					}
				}
			})
		}
		time.Sleep(time.Millisecond)
		if err := f.svc.RevokeAPIToken(f.ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		revoked.Store(true)
		time.Sleep(2 * time.Millisecond)
		close(stop)
		wg.Wait()
		if n := wrong.Load(); n > 0 {
			t.Fatalf("round %d: %d uses accepted after the revoke returned", round, n)
		}
	}
}

// BenchmarkAuthenticateAPIToken is the admin API's per-request token check
// on memstore: "cached" within the cache's TTL, "store" with the clock
// moved past it before every check (a store read each time).
func BenchmarkAuthenticateAPIToken(b *testing.B) {
	for _, tc := range []struct {
		name string
		step time.Duration
	}{{"cached", 0}, {"store", 5 * time.Second}} {
		b.Run(tc.name, func(b *testing.B) {
			key := make([]byte, seal.KeySize)
			if _, err := rand.Read(key); err != nil {
				b.Fatal(err)
			}
			sealer, err := seal.New(key, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			clk := &clock{now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
			svc, err := appliance.New(appliance.Config{Store: memstore.New(), Sealer: sealer, Now: clk.Now,
				CTKIPURL: "https://tokend.example:8444/ctkip/services/CtkipService"})
			if err != nil {
				b.Fatal(err)
			}
			ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "bench", Name: "bench", Role: appliance.RoleSuperAdmin})
			if err := svc.Init(ctx); err != nil {
				b.Fatal(err)
			}
			f := &fixture{svc: svc, clock: clk, ctx: ctx}
			_, secret, err := f.svc.CreateAPIToken(f.ctx, "bench", appliance.RoleAgent)
			if err != nil {
				b.Fatal(err)
			}
			s := secret.Reveal()
			b.ReportAllocs()
			for b.Loop() {
				f.clock.Add(tc.step)
				if _, err := f.svc.AuthenticateAPIToken(f.ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
