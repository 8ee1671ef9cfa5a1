package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore/storefault"
)

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// checkClean runs bbolt's consistency check over the file.
func checkClean(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}

// TestFailingFile: while the file refuses writes (ENOSPC) or fsyncs, every
// Update of a group fails with ErrStoreUnavailable wrapping the cause, the
// file is left byte for byte as it was, reads go on, and once the file
// heals writes work again on the same Store and the file checks clean.
func TestFailingFile(t *testing.T) {
	tests := []struct {
		name  string
		mode  storefault.Mode
		cause error // errors.Is the Update error, when the cause is known
	}{
		{"no space", storefault.NoSpace, syscall.ENOSPC},
		{"fsync fails", storefault.SyncFails, syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "tokend.db")
			var ff storefault.File
			obs := &observer{}
			s, err := Open(path, Options{OpenFile: ff.OpenFile, Observer: obs, FailureHold: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			want := map[string]string{}
			// Enough data that the file has grown past what the failing
			// writes need: they then fail at the write, not the growth.
			for i := range 50 {
				err := s.Update(ctx, func(tx appliance.Tx) error {
					for j := range 40 {
						k := fmt.Sprintf("k%03d-%02d", i, j)
						if err := tx.Put([]byte(k), bytes.Repeat([]byte{'v'}, 300)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for j := range 40 {
					want[fmt.Sprintf("k%03d-%02d", i, j)] = string(bytes.Repeat([]byte{'v'}, 300))
				}
			}
			// Free space inside the file: the failing commits then reuse
			// free pages instead of growing the file, and meet the failing
			// write or fsync rather than the growth (a stat).
			big := func(del bool) error {
				return s.Update(ctx, func(tx appliance.Tx) error {
					for j := range 90 {
						k := fmt.Appendf(nil, "big%02d", j)
						if del {
							if err := tx.Delete(k); err != nil {
								return err
							}
						} else if err := tx.Put(k, bytes.Repeat([]byte{'b'}, 8000)); err != nil {
							return err
						}
					}
					return nil
				})
			}
			for _, del := range []bool{false, true} {
				if err := big(del); err != nil {
					t.Fatal(err)
				}
			}
			mustPut(t, s, "k000-01", want["k000-01"]) // releases the freed pages
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping on a healthy file: %v", err)
			}
			before := fileSum(t, path)

			if err := ff.Set(tt.mode); err != nil {
				t.Fatal(err)
			}
			// Several callers at once, so some share a group commit.
			var wg sync.WaitGroup
			errs := make([]error, 16)
			for w := range errs {
				wg.Go(func() {
					errs[w] = s.Update(ctx, func(tx appliance.Tx) error {
						for j := range 20 {
							if err := tx.Put(fmt.Appendf(nil, "new%02d-%02d", w, j), []byte("x")); err != nil {
								return err
							}
						}
						// Overwrite and delete old keys too: nothing of it
						// may show.
						if err := tx.Put([]byte("k000-00"), []byte("changed")); err != nil {
							return err
						}
						return tx.Delete([]byte("k001-00"))
					})
				})
			}
			wg.Wait()
			for w, err := range errs {
				if !errors.Is(err, appliance.ErrStoreUnavailable) || !errors.Is(err, tt.cause) {
					t.Errorf("writer %d: Update = %v; want ErrStoreUnavailable wrapping %v", w, err, tt.cause)
				}
			}
			obs.mu.Lock()
			failures := obs.failures
			obs.mu.Unlock()
			if failures == 0 {
				t.Error("the observer was told of no refused commit")
			}
			// Within the hold Ping fails without probing; after it, the
			// probe (a write of its own) fails too, again on the next call.
			if err := s.Ping(ctx); !errors.Is(err, appliance.ErrStoreUnavailable) || !strings.Contains(err.Error(), "refused") {
				t.Errorf("Ping within the hold = %v; want ErrStoreUnavailable saying a commit was refused", err)
			}
			s.opts.FailureHold = 0
			var next time.Time
			for i := range 2 {
				if err := s.Ping(ctx); !errors.Is(err, appliance.ErrStoreUnavailable) || !errors.Is(err, tt.cause) {
					t.Errorf("Ping on the failing file = %v; want ErrStoreUnavailable wrapping %v", err, tt.cause)
				}
				// The second call answers the first probe's error
				// instead of probing again.
				s.probeMu.Lock()
				if i == 1 && !s.nextProbe.Equal(next) {
					t.Error("a second Ping within probeEvery probed again")
				}
				next = s.nextProbe
				s.probeMu.Unlock()
			}
			// Reads work and see the state before the failed writes.
			if diff := cmp.Diff(want, dump(t, s)); diff != "" {
				t.Errorf("store after the failed writes (-want +got):\n%s", diff)
			}
			if fileSum(t, path) != before {
				t.Error("the failed writes changed the file")
			}

			if err := ff.Set(storefault.Healthy); err != nil {
				t.Fatal(err)
			}
			// Without any Update: the next probe (at most probeEvery
			// after the failed one) finds the file healed.
			deadline := time.Now().Add(probeEvery + 2*time.Second)
			for err := s.Ping(ctx); err != nil; err = s.Ping(ctx) {
				if time.Now().After(deadline) {
					t.Fatalf("Ping after the file healed: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if s.failedAt.Load() != 0 {
				t.Error("the probe succeeded but the store still counts as failing")
			}
			mustPut(t, s, "after", "healed")
			want["after"] = "healed"
			if diff := cmp.Diff(want, dump(t, s)); diff != "" {
				t.Errorf("store after healing (-want +got):\n%s", diff)
			}
			checkClean(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// The file on disk holds exactly the acknowledged writes.
			s2 := openAt(t, path, Options{})
			if diff := cmp.Diff(want, dump(t, s2)); diff != "" {
				t.Errorf("store reopened (-want +got):\n%s", diff)
			}
			checkClean(t, s2)
		})
	}
}

// TestMaxSizeIsUnavailable: a commit refused by the size cap is a store
// that cannot take writes, not an internal error.
func TestMaxSizeIsUnavailable(t *testing.T) {
	s := openTemp(t, Options{MaxSize: 1 << 20, InitialMmapSize: -1})
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		err = s.Update(context.Background(), func(tx appliance.Tx) error {
			for j := range 50 {
				if err := tx.Put(fmt.Appendf(nil, "k%04d-%02d", i, j), bytes.Repeat([]byte{'v'}, 1000)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if !errors.Is(err, appliance.ErrStoreUnavailable) {
		t.Fatalf("Update past MaxSize = %v; want ErrStoreUnavailable", err)
	}
	if _, ok := mustGet(t, s, "k0000-00"); !ok {
		t.Error("a read after the refused commit lost an acknowledged key")
	}
	checkClean(t, s)
}

func openAt(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
