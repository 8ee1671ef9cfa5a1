package boltstore

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"tokend/appliance"
	"tokend/appliance/seal"
)

// The cold-open measurement is opt-in: it builds a store of a million
// tokens (minutes) and reads it from disk repeatedly.
//
//	go test -run TestBigStoreOpen -bigstore /var/tmp/bigstore -v ./appliance/internal/boltstore/
var (
	bigStoreDir    = flag.String("bigstore", "", "directory for TestBigStoreOpen: its store is built there once and reused")
	bigStoreTokens = flag.Int("bigstore.tokens", 1_000_000, "tokens in TestBigStoreOpen's store")
	bigStoreRuns   = flag.Int("bigstore.runs", 3, "opens per variant and temperature in TestBigStoreOpen (the median is reported)")
)

// freelistVariant is one way of keeping bbolt's free-page list.
type freelistVariant struct {
	name   string
	noSync bool // NoFreelistSync: rebuilt by a scan of the whole tree at open
	typ    bolt.FreelistType
}

var freelistVariants = []freelistVariant{
	{"NoFreelistSync=true  map", true, bolt.FreelistMapType},
	{"NoFreelistSync=true  array", true, bolt.FreelistArrayType},
	{"NoFreelistSync=false map", false, bolt.FreelistMapType},
	{"NoFreelistSync=false array", false, bolt.FreelistArrayType},
}

// openVariant opens path as Open does, with v's freelist settings.
func openVariant(path string, v freelistVariant) (*Store, error) {
	opts := Options{}.withDefaults()
	bo := boltOptions(opts)
	bo.NoFreelistSync, bo.FreelistType = v.noSync, v.typ
	return open(path, opts, bo)
}

// TestBigStoreOpen measures, for each freelist variant on a store of
// -bigstore.tokens imported tokens: the time Open takes with the file out
// of the page cache (cold) and in it (warm), and the commit rate of
// one-record Updates with 1 and 16 writers. It prints a table.
func TestBigStoreOpen(t *testing.T) {
	if *bigStoreDir == "" {
		t.Skip("opt-in: -bigstore DIR (builds a store of -bigstore.tokens tokens there once)")
	}
	n := *bigStoreTokens
	base := filepath.Join(*bigStoreDir, fmt.Sprintf("tokens-%d.db", n))
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		buildBigStore(t, base, n)
	}
	fi, err := os.Stat(base)
	if err != nil {
		t.Fatal(err)
	}
	keys := sampleKeys(t, base, 50_000)

	var out strings.Builder
	fmt.Fprintf(&out, "store: %d tokens imported through the Service (CSV), %d MiB; median of %d opens\n", n, fi.Size()>>20, *bigStoreRuns)
	fmt.Fprintf(&out, "| freelist | cold open | warm open | resident before cold | commits/s 1 writer | writes/s 16 writers |\n|---|---|---|---|---|---|\n")
	for _, v := range freelistVariants {
		p := filepath.Join(*bigStoreDir, "variant.db")
		copyFile(t, base, p)
		// One commit under the variant leaves the file as a tokend running
		// with it would (a synced freelist is then on disk).
		s, err := openVariant(p, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte("bench/touch"), []byte("1")) }); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		var cold, warm []time.Duration
		var resident float64
		for range *bigStoreRuns {
			resident = max(resident, dropFromCache(t, p))
			cold = append(cold, timeOpen(t, p, v))
			warm = append(warm, timeOpen(t, p, v))
		}
		s, err = openVariant(p, v)
		if err != nil {
			t.Fatal(err)
		}
		one := commitRate(t, s, keys, 1, 3*time.Second)
		sixteen := commitRate(t, s, keys, 16, 3*time.Second)
		checkClean(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "| %s | %v | %v | %.1f%% | %.0f | %.0f |\n", v.name, median(cold).Round(time.Millisecond),
			median(warm).Round(time.Millisecond), 100*resident, one, sixteen)
		_ = os.Remove(p)
	}
	t.Log("\n" + out.String())
}

// buildBigStore imports n tokens through the real Service into a store
// opened as Open does, eight CSV jobs at a time, so records, indexes,
// counters, audit records and the page fill are those of a real store.
func buildBigStore(t *testing.T, path string, n int) {
	t.Helper()
	tmp := path + ".building"
	_ = os.Remove(tmp)
	s, err := Open(tmp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: s, Sealer: sealer, SpoolDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "bench", Name: "bench"})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	const perJob = 25_000
	var next, done atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				from := int(next.Add(perJob)) - perJob
				if from >= n {
					return
				}
				var csv strings.Builder
				csv.WriteString("serial\n")
				for i := from; i < min(from+perJob, n); i++ {
					fmt.Fprintf(&csv, "%012d\n", 300000000000+i)
				}
				job, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())})
				if err != nil {
					errs <- err
					return
				}
				if d := done.Add(int64(job.Imported)); d%100_000 < perJob {
					t.Logf("built %d tokens in %v", d, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d tokens in %v", done.Load(), time.Since(start).Round(time.Second))
}

// sampleKeys returns up to max keys spread over the store, for Updates
// that rewrite existing records.
func sampleKeys(t *testing.T, path string, limit int) [][]byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var all [][]byte
	err = db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket([]byte(bucketName)).Stats()
		every := max(1, st.KeyN/limit)
		i := 0
		return tx.Bucket([]byte(bucketName)).ForEach(func(k, _ []byte) error {
			if i%every == 0 {
				all = append(all, slices.Clone(k))
			}
			i++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// dropFromCache writes the file's dirty pages and asks the kernel to drop
// its cached pages (posix_fadvise DONTNEED), then reports the fraction of
// the file still resident (mincore), which should be about 0.
func dropFromCache(t *testing.T, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
		uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	in := 0
	for _, b := range vec {
		in += int(b & 1)
	}
	return float64(in) / float64(len(vec))
}

// timeOpen times Open (bbolt's open, the freelist load and Open's first
// Update) and closes the store again.
func timeOpen(t *testing.T, path string, v freelistVariant) time.Duration {
	t.Helper()
	start := time.Now()
	s, err := openVariant(path, v)
	d := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return d
}

// commitRate runs writers goroutines that each rewrite one sampled record
// per Update for d, and returns Updates per second.
func commitRate(t *testing.T, s *Store, keys [][]byte, writers int, d time.Duration) float64 {
	t.Helper()
	var ops atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				k := keys[r.IntN(len(keys))]
				err := s.Update(context.Background(), func(tx appliance.Tx) error {
					v, err := tx.Get(k)
					if err != nil {
						return err
					}
					return tx.Put(k, v)
				})
				if err != nil {
					t.Error(err)
					return
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(ops.Load()) / d.Seconds()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestFreelistSettingSwitch: a file written with one freelist setting
// opens with the other, in both directions, with every record, a clean
// check, and writes that work.
func TestFreelistSettingSwitch(t *testing.T) {
	for _, tt := range []struct {
		name     string
		from, to freelistVariant
	}{
		{"unsynced to synced", freelistVariants[0], freelistVariants[2]},
		{"synced to unsynced", freelistVariants[2], freelistVariants[0]},
		{"unsynced map to synced array", freelistVariants[0], freelistVariants[3]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokend.db")
			s, err := openVariant(path, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			// Writes and deletes, so the file has free pages to account.
			for i := range 30 {
				err := s.Update(context.Background(), func(tx appliance.Tx) error {
					for j := range 50 {
						k := fmt.Sprintf("k%02d-%02d", i, j)
						if err := tx.Put([]byte(k), []byte(strings.Repeat("v", 500))); err != nil {
							return err
						}
						if j%3 == 0 && i > 0 {
							if err := tx.Delete(fmt.Appendf(nil, "k%02d-%02d", i-1, j)); err != nil {
								return err
							}
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			want := dump(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for round, v := range []freelistVariant{tt.to, tt.from, tt.to} {
				s, err := openVariant(path, v)
				if err != nil {
					t.Fatalf("open %d (%s): %v", round, v.name, err)
				}
				if diff := cmp.Diff(want, dump(t, s)); diff != "" {
					t.Fatalf("open %d (%s) (-want +got):\n%s", round, v.name, diff)
				}
				checkClean(t, s)
				k := fmt.Sprintf("round%d", round)
				mustPut(t, s, k, v.name)
				want[k] = v.name
				// The check also compares the freelist with the pages
				// the tree reaches: a stale synced freelist fails it.
				checkClean(t, s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
