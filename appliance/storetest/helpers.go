package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"tokend/appliance"
)

// NewStoreFunc returns a fresh, empty store. The suite closes it at the end
// of the subtest (t.Cleanup), so the constructor need not; a store may be
// closed more than once.
type NewStoreFunc func(t *testing.T) appliance.Store

// open builds a store and registers its Close.
func open(t *testing.T, newStore NewStoreFunc) appliance.Store {
	t.Helper()
	s := newStore(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, appliance.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// put writes pairs (key, value, key, value, …) in one Update.
func put(t *testing.T, s appliance.Store, pairs ...string) {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("put: odd number of arguments")
	}
	err := s.Update(context.Background(), func(tx appliance.Tx) error {
		for i := 0; i < len(pairs); i += 2 {
			if err := tx.Put([]byte(pairs[i]), []byte(pairs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
}

// putKVs writes kvs, chunked to the write limit.
func putKVs(t *testing.T, s appliance.Store, kvs []appliance.KV) {
	t.Helper()
	for len(kvs) > 0 {
		n := min(len(kvs), appliance.MaxTxWrites)
		chunk := kvs[:n]
		kvs = kvs[n:]
		err := s.Update(context.Background(), func(tx appliance.Tx) error {
			for _, kv := range chunk {
				if err := tx.Put(kv.Key, kv.Value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("putKVs: %v", err)
		}
	}
}

// get reads key in a View; found is false for ErrNotFound.
func get(t *testing.T, s appliance.Store, key string) (value string, found bool) {
	t.Helper()
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		v, err := tx.Get([]byte(key))
		if errors.Is(err, appliance.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		value, found = string(v), true
		return nil
	})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return value, found
}

// all returns every pair of the store in one View.
func all(t *testing.T, s appliance.Store) []appliance.KV {
	t.Helper()
	return scan(t, s, nil, nil, 0)
}

// scan runs one Scan in a View.
func scan(t *testing.T, s appliance.Store, prefix, after []byte, limit int) []appliance.KV {
	t.Helper()
	var out []appliance.KV
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		var err error
		out, err = tx.Scan(prefix, after, limit)
		return err
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q, %d): %v", prefix, after, limit, err)
	}
	return out
}

// strKV is a KV in printable form, for comparisons and diffs.
type strKV struct{ K, V string }

func strs(kvs []appliance.KV) []strKV {
	out := make([]strKV, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, strKV{string(kv.Key), string(kv.Value)})
	}
	return out
}

func kvs(pairs ...string) []strKV {
	out := make([]strKV, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, strKV{pairs[i], pairs[i+1]})
	}
	return out
}

// key returns a fixed-width key so that byte order equals numeric order.
func key(prefix string, i int) string { return fmt.Sprintf("%s%06d", prefix, i) }
