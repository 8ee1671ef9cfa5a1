package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"tokend/appliance"
)

// TestAppendHintPacksPages: keys written in ascending order by Updates
// marked with appliance.WithAppendHint fill the pages they split to ~90 %;
// unmarked, bbolt splits them at 50 % and never refills them, so the same
// data takes about twice the pages, and twice the bytes written (issue 19:
// an initial LDAP sync of 100,000 users wrote 306 MB, 120 MB with the
// hint and ascending ids).
func TestAppendHintPacksPages(t *testing.T) {
	const keys, perUpdate = 20000, 100
	tests := []struct {
		name             string
		hint             bool
		minFill, maxFill float64
	}{
		{name: "hinted", hint: true, minFill: 0.8, maxFill: 1},
		{name: "plain", hint: false, minFill: 0, maxFill: 0.6},
	}
	pages := map[string]int64{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t, Options{})
			ctx := context.Background()
			if tc.hint {
				ctx = appliance.WithAppendHint(ctx)
			}
			val := bytes.Repeat([]byte("v"), 200)
			before := pageCount(s)
			for i := 0; i < keys; i += perUpdate {
				err := s.Update(ctx, func(tx appliance.Tx) error {
					for j := i; j < i+perUpdate; j++ {
						if err := tx.Put(fmt.Appendf(nil, "u/%08d", j), val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			pages[tc.name] = pageCount(s) - before
			var bs bolt.BucketStats
			if err := s.db.View(func(tx *bolt.Tx) error {
				bs = tx.Bucket([]byte(bucketName)).Stats()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			fill := float64(bs.LeafInuse) / float64(bs.LeafAlloc)
			if fill < tc.minFill || fill > tc.maxFill {
				t.Errorf("leaf fill %.2f (%d of %d bytes in %d pages), want %.2f to %.2f",
					fill, bs.LeafInuse, bs.LeafAlloc, bs.LeafPageN, tc.minFill, tc.maxFill)
			}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if h, p := pages["hinted"], pages["plain"]; h <= 0 || float64(h) > 0.8*float64(p) {
		t.Errorf("pages written: hinted %d, plain %d; want hinted at most 80 %% of plain", h, p)
	}
}

// pageCount is the number of pages s's commits have allocated (written).
func pageCount(s *Store) int64 {
	st := s.db.Stats()
	return st.TxStats.GetPageCount()
}
