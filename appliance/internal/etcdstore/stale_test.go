package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/internal/etcdtest"
)

// TestUpdateErrorOnStaleRead: an Update's first read is serializable, so on
// a cluster it may come from a follower that has not applied the latest
// commit. A function that returns an error because of what it read (the
// record "is not there") must not have that error stand on a stale
// snapshot: the error is confirmed against the quorum, or the function runs
// again. Each round writes a key through a store on member 1 and at once
// looks it up, in an Update, through a store on member 2 (issue 18's cluster
// test saw a freshly started import job "not found" this way).
func TestUpdateErrorOnStaleRead(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	prefix := fmt.Sprintf("/%s/", t.Name())
	open := func(m *etcdtest.Member) *Store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := Open(ctx, Options{Endpoints: []string{m.ClientURL}, Prefix: prefix, PurgeInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	w, r := open(c.Members[0]), open(c.Members[1])
	ctx := context.Background()
	tests := []struct {
		name string
		fn   func(k []byte, found *bool) func(appliance.Tx) error
	}{
		// fn refuses (ErrNotFound) on what it read.
		{"refusal", func(k []byte, found *bool) func(appliance.Tx) error {
			return func(tx appliance.Tx) error {
				v, err := tx.Get(k)
				*found = err == nil
				if err != nil {
					return err
				}
				return tx.Put(k, append(v, " done"...))
			}
		}},
		// fn reads and writes nothing: its snapshot is confirmed by a
		// Txn without writes, which etcd must not serve from the member.
		{"read only", func(k []byte, found *bool) func(appliance.Tx) error {
			return func(tx appliance.Tx) error {
				_, err := tx.Get(k)
				*found = err == nil
				if errors.Is(err, appliance.ErrNotFound) {
					return nil
				}
				return err
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var lost int
			const rounds = 200
			for i := range rounds {
				k := []byte(fmt.Sprintf("%s/%04d", tc.name, i))
				if err := w.Update(ctx, func(tx appliance.Tx) error { return tx.Put(k, []byte("running")) }); err != nil {
					t.Fatal(err)
				}
				var found bool
				err := r.Update(ctx, tc.fn(k, &found))
				if err != nil && !errors.Is(err, appliance.ErrNotFound) {
					t.Fatal(err)
				}
				if !found {
					lost++
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d Updates did not see a key written (and acknowledged) before they began", lost, rounds)
			}
		})
	}
}
