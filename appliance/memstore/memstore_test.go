package memstore_test

import (
	"context"
	"testing"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/appliance/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) appliance.Store { return memstore.New() })
}

// TestConformanceWithRetries runs the suite with every Update function run
// twice, the first attempt's writes discarded, as etcd may do.
func TestServiceScenario(t *testing.T) {
	storetest.RunService(t, func(t *testing.T) appliance.Store { return memstore.New() })
}

func TestServiceScenarioWithRetries(t *testing.T) {
	storetest.RunService(t, func(t *testing.T) appliance.Store { return memstore.New(memstore.WithRetries(1)) })
}

func TestConformanceWithRetries(t *testing.T) {
	storetest.Run(t, func(t *testing.T) appliance.Store { return memstore.New(memstore.WithRetries(1)) })
}

// TestWithRetriesRuns proves the option really re-runs the function, so the
// retry rows of the suite are not vacuous.
func TestWithRetriesRuns(t *testing.T) {
	for _, r := range []struct {
		name string
		opts []memstore.Option
		want int
	}{
		{"default", nil, 1},
		{"one retry", []memstore.Option{memstore.WithRetries(1)}, 2},
		{"three retries", []memstore.Option{memstore.WithRetries(3)}, 4},
	} {
		t.Run(r.name, func(t *testing.T) {
			s := memstore.New(r.opts...)
			defer s.Close()
			runs := 0
			err := s.Update(context.Background(), func(tx appliance.Tx) error {
				runs++
				return tx.Put([]byte{byte(runs)}, nil)
			})
			if err != nil {
				t.Fatal(err)
			}
			if runs != r.want {
				t.Errorf("function ran %d times, want %d", runs, r.want)
			}
			err = s.View(context.Background(), func(tx appliance.Tx) error {
				kvs, err := tx.Scan(nil, nil, 0)
				if err != nil {
					return err
				}
				if len(kvs) != 1 || kvs[0].Key[0] != byte(r.want) {
					t.Errorf("stored %v; want only the last attempt's key %d", kvs, r.want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
