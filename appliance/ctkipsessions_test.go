package appliance_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/memstore"
)

// TestCTKIPSessionStore: a stored CT-KIP session comes back once, not after
// it expires, not under another id, and its secrets (the code and R_S)
// and its id never appear in the store in clear.
func TestCTKIPSessionStore(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	clock := &appliancetest.Clock{}
	svc := appliancetest.Service(t, appliance.Config{Store: st, Now: clock.Now})
	const code, id, other = "123456789012", "0a1b2c-session-one", "0a1b2c-session-two"
	nonce := []byte("R_S sixteen byte")
	now := clock.Now().UTC().Truncate(time.Millisecond)
	sess := appliance.CTKIPSession{Code: code, Serial: "000123456789", Nonce: nonce, Created: now, ExpiresAt: now.Add(5 * time.Minute)}
	save := func(t *testing.T, id string) {
		t.Helper()
		if err := svc.SaveCTKIPSession(ctx, id, sess); err != nil {
			t.Fatal(err)
		}
	}
	raw := func(t *testing.T) []appliance.KV {
		t.Helper()
		var kvs []appliance.KV
		if err := st.View(ctx, func(tx appliance.Tx) error {
			var err error
			kvs, err = tx.Scan([]byte("cks/"), nil, 100)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return kvs
	}

	t.Run("taken once", func(t *testing.T) {
		save(t, id)
		for _, kv := range raw(t) {
			for _, secret := range [][]byte{[]byte(code), nonce, []byte(id)} {
				if bytes.Contains(kv.Key, secret) || bytes.Contains(kv.Value, secret) {
					t.Fatalf("%q in clear in the stored session %q", secret, kv.Key)
				}
			}
		}
		got, err := svc.TakeCTKIPSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sess, got); diff != "" {
			t.Errorf("session (-want +got):\n%s", diff)
		}
		if _, err := svc.TakeCTKIPSession(ctx, id); !errors.Is(err, appliance.ErrNotFound) {
			t.Fatalf("second take: %v, want ErrNotFound", err)
		}
	})

	t.Run("expired", func(t *testing.T) {
		save(t, id)
		clock.Advance(5 * time.Minute)
		defer clock.Advance(-5 * time.Minute)
		if _, err := svc.TakeCTKIPSession(ctx, id); !errors.Is(err, appliance.ErrNotFound) {
			t.Fatalf("expired take: %v, want ErrNotFound", err)
		}
	})

	t.Run("purged once expired", func(t *testing.T) {
		save(t, id)
		if n, err := svc.PurgeExpiredAuthState(ctx); err != nil || n != 0 {
			t.Fatalf("purge of a live session: %d, %v", n, err)
		}
		clock.Advance(5 * time.Minute)
		defer clock.Advance(-5 * time.Minute)
		if n, err := svc.PurgeExpiredAuthState(ctx); err != nil || n != 1 {
			t.Fatalf("purge of an expired session: %d, %v; want 1", n, err)
		}
	})

	t.Run("moved under another id", func(t *testing.T) {
		save(t, id)
		save(t, other)
		kvs := raw(t)
		if len(kvs) != 2 {
			t.Fatalf("%d stored sessions, want 2", len(kvs))
		}
		// Swap the sealed bodies: each now sits under the other's key.
		if err := st.Update(ctx, func(tx appliance.Tx) error {
			if err := tx.Put(kvs[0].Key, kvs[1].Value); err != nil {
				return err
			}
			return tx.Put(kvs[1].Key, kvs[0].Value)
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.TakeCTKIPSession(ctx, id); err == nil {
			t.Fatal("a session sealed for another id opened")
		}
	})

	t.Run("dropped", func(t *testing.T) {
		save(t, id)
		if err := svc.DropCTKIPSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.TakeCTKIPSession(ctx, id); !errors.Is(err, appliance.ErrNotFound) {
			t.Fatalf("take after drop: %v, want ErrNotFound", err)
		}
	})
}

// TestCTKIPSessionSurvivesRekey: a session pending while the master key is
// rotated is re-sealed and opens under the new key.
func TestCTKIPSessionSurvivesRekey(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	oldKey, _ := appliancetest.Sealer(t)
	newKey, _ := appliancetest.Sealer(t)
	svc := appliancetest.Service(t, appliance.Config{Store: st, Sealer: oldKey})
	now := time.Now().UTC().Truncate(time.Millisecond)
	sess := appliance.CTKIPSession{Code: "123456789012", Serial: "000123456789", Nonce: []byte("R_S sixteen byte"),
		Created: now, ExpiresAt: now.Add(5 * time.Minute)}
	if err := svc.SaveCTKIPSession(ctx, "sid-rekey", sess); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.Rekey(ctx, appliance.RekeyConfig{Store: st, Old: oldKey, New: newKey,
		Actor: appliance.Actor{ID: "cli", Name: "cli"}}); err != nil {
		t.Fatal(err)
	}
	after := appliancetest.Service(t, appliance.Config{Store: st, Sealer: newKey})
	got, err := after.TakeCTKIPSession(ctx, "sid-rekey")
	if err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	if diff := cmp.Diff(sess, got); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
}
