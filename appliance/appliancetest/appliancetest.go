package appliancetest

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// Sealer returns a sealer under a fresh random master key, and the key.
func Sealer(t testing.TB) (*seal.Sealer, []byte) {
	t.Helper()
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	s, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// Service returns an initialised Service built from cfg; a nil Store becomes
// a memstore (closed at cleanup) and a nil Sealer a fresh one.
func Service(t testing.TB, cfg appliance.Config) *appliance.Service {
	t.Helper()
	if cfg.Store == nil {
		st := memstore.New()
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	if cfg.Sealer == nil {
		cfg.Sealer, _ = Sealer(t)
	}
	svc, err := appliance.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

// BoltStore opens the production bbolt store (fsync'd group commits) in a
// temporary directory, for tests and benchmarks outside appliance/ that
// need the real thing; it is closed at cleanup.
func BoltStore(t testing.TB) appliance.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "tokend.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
