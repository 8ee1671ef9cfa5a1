package boltstore

import (
	"bytes"
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
//	go test -run TestBigStoreOpen -v -timeout 90m ./appliance/internal/boltstore/ -args -bigstore=/var/tmp/bigstore
//
// It needs a disk, not a tmpfs (the page cache is what it empties), and
// about six times the store's size free (one copy per variant).
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
	mmap   int // bbolt's MmapFlags
}

var freelistVariants = []freelistVariant{
	{"NoFreelistSync=true  map", true, bolt.FreelistMapType, 0},
	{"NoFreelistSync=true  array", true, bolt.FreelistArrayType, 0},
	{"NoFreelistSync=false map", false, bolt.FreelistMapType, 0},
	{"NoFreelistSync=false array", false, bolt.FreelistArrayType, 0},
	// The scan at open reads the file in one sequential sweep instead of
	// page faults in tree order.
	{"NoFreelistSync=true  map, MAP_POPULATE", true, bolt.FreelistMapType, unix.MAP_POPULATE},
}

// openVariant opens path as Open does, with v's freelist settings.
func openVariant(path string, v freelistVariant) (*Store, error) {
	opts := Options{}.withDefaults()
	bo := boltOptions(opts)
	bo.NoFreelistSync, bo.FreelistType, bo.MmapFlags = v.noSync, v.typ, v.mmap
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

	type result struct {
		cold, warm   []time.Duration
		resident     float64
		one, sixteen []float64
	}
	res := make([]result, len(freelistVariants))
	paths := make([]string, len(freelistVariants))
	for i, v := range freelistVariants {
		paths[i] = filepath.Join(*bigStoreDir, fmt.Sprintf("variant%d.db", i))
		copyFile(t, base, paths[i])
		t.Cleanup(func() { _ = os.Remove(paths[i]) })
		// One commit under the variant leaves the file as a tokend running
		// with it would (a synced freelist is then on disk, or none).
		s, err := openVariant(paths[i], v)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte("bench/touch"), []byte("1")) }); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range freelistVariants {
		r := &res[i]
		for range *bigStoreRuns {
			r.resident = max(r.resident, dropFromCache(t, paths[i]))
			r.cold = append(r.cold, timeOpen(t, paths[i], v))
			r.warm = append(r.warm, timeOpen(t, paths[i], v))
		}
		t.Logf("%s: cold %v warm %v", v.name, r.cold, r.warm)
	}
	// Commit rates in interleaved rounds, so a busy moment of the machine
	// does not land on one variant only.
	for round := range *bigStoreRuns {
		for i, v := range freelistVariants {
			s, err := openVariant(paths[i], v)
			if err != nil {
				t.Fatal(err)
			}
			res[i].one = append(res[i].one, commitRate(t, s, keys, 1, 3*time.Second))
			res[i].sixteen = append(res[i].sixteen, commitRate(t, s, keys, 16, 3*time.Second))
			if round == *bigStoreRuns-1 {
				checkClean(t, s)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "store: %d tokens imported through the Service (CSV), %d MiB; median of %d opens / %d interleaved 3 s rounds\n",
		n, fi.Size()>>20, *bigStoreRuns, *bigStoreRuns)
	fmt.Fprintf(&out, "| freelist | cold open | warm open | resident before cold | Updates/s 1 writer | Updates/s 16 writers |\n|---|---|---|---|---|---|\n")
	for i, v := range freelistVariants {
		r := res[i]
		fmt.Fprintf(&out, "| %s | %v | %v | %.1f%% | %.0f | %.0f |\n", v.name, median(r.cold).Round(time.Millisecond),
			median(r.warm).Round(time.Millisecond), 100*r.resident, medianF(r.one), medianF(r.sixteen))
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
// the file still resident, which should be about 0.
func dropFromCache(t testing.TB, path string) float64 {
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
	return residency(t, path)
}

// residency is the fraction of the file's pages in the page cache
// (mincore over a fresh mapping, which itself reads nothing).
func residency(t testing.TB, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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

// TestOpenReadsLittle: Open reads a small part of a file that is not in
// the page cache, where rebuilding the freelist (NoFreelistSync) reads all
// of it; at a million tokens that is 52 s against 1 ms (TestBigStoreOpen).
// It counts the pages read (mincore), not time. The unsynced row is the
// control that shows the measurement sees a full read.
func TestOpenReadsLittle(t *testing.T) {
	for _, tt := range []struct {
		name     string
		open     func(path string) (*Store, error)
		min, max float64 // bounds of the fraction of the file read by the open
	}{
		// The file is about a third data (it grows in 16 MiB steps): the
		// control reads that third, Open well under 1%.
		{"Open", func(p string) (*Store, error) { return Open(p, Options{}) }, 0, 0.05},
		{"unsynced freelist (control)", func(p string) (*Store, error) { return openVariant(p, freelistVariants[0]) }, 0.2, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokend.db")
			s, err := tt.open(path)
			if err != nil {
				t.Fatal(err)
			}
			value := bytes.Repeat([]byte{'v'}, 600)
			for i := range 60 {
				err := s.Update(context.Background(), func(tx appliance.Tx) error {
					for j := range 100 {
						if err := tx.Put(fmt.Appendf(nil, "tok/%06d", (j*7919+i)%6000*100+j), value); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if r := dropFromCache(t, path); r > 0.05 {
				t.Skipf("the page cache keeps %.0f%% of the file after DONTNEED (tmpfs?): nothing to measure", 100*r)
			}
			s, err = tt.open(path)
			if err != nil {
				t.Fatal(err)
			}
			read := residency(t, path)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if read < tt.min || read > tt.max {
				t.Errorf("the open read %.0f%% of the file; want %.0f%%–%.0f%%", 100*read, 100*tt.min, 100*tt.max)
			}
			t.Logf("the open read %.1f%% of the file", 100*read)
		})
	}
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

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
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

// BenchmarkCommitFreelist is BenchmarkCommit's group-commit row for each
// freelist variant, on a fresh store: what writing the freelist at every
// commit costs when there is little to write.
func BenchmarkCommitFreelist(b *testing.B) {
	value := make([]byte, 200)
	for _, v := range freelistVariants {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/writers=%d", strings.ReplaceAll(v.name, " ", ""), writers), func(b *testing.B) {
				s, err := openVariant(filepath.Join(b.TempDir(), "bench.db"), v)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				runCommitBench(b, writers, func(key []byte) error {
					return s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put(key, value) })
				})
			})
		}
	}
}
