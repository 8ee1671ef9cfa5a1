package appliance_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// TestStoreSchemaVersion: a store of another schema version is refused by
// Init and CheckStore with a message that says which way it differs, and
// is left as it was.
func TestStoreSchemaVersion(t *testing.T) {
	tests := []struct {
		name    string
		version string
		want    string
	}{
		{"newer", "99", "written by a newer tokend (schema version 99; this tokend reads "},
		{"older", "0", `store schema version "0" is not one tokend writes`},
		{"garbage", "x\x00yz", `store schema version "x\x00yz" is not one tokend writes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := memstore.New()
			f := newFixture(t, store)
			ctx := context.Background()
			if err := store.Update(ctx, func(tx appliance.Tx) error { return tx.Put([]byte("meta/schema"), []byte(tt.version)) }); err != nil {
				t.Fatal(err)
			}
			sealer, err := seal.New(f.key, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			for name, open := range map[string]func(context.Context) error{"Init": svc.Init, "CheckStore": svc.CheckStore} {
				err := open(ctx)
				if !errors.Is(err, appliance.ErrInvalidState) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: err = %v, want ErrInvalidState saying %q", name, err, tt.want)
				}
			}
			var got []byte
			if err := store.View(ctx, func(tx appliance.Tx) error { got, err = tx.Get([]byte("meta/schema")); return err }); err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.version {
				t.Errorf("schema version now %q, want it left at %q", got, tt.version)
			}
		})
	}
}
