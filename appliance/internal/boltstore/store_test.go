package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/storetest"
)

func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "tokend.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) appliance.Store { return openTemp(t, Options{}) })
}

func TestServiceScenario(t *testing.T) {
	storetest.RunService(t, func(t *testing.T) appliance.Store { return openTemp(t, Options{}) })
}

// TestConformanceNoGrouping runs the suite with group commit off (one
// Update per commit), the path a lone writer takes.
func TestConformanceNoGrouping(t *testing.T) {
	storetest.Run(t, func(t *testing.T) appliance.Store { return openTemp(t, Options{MaxGroupCallers: 1}) })
}

func mustPut(t *testing.T, s appliance.Store, k, v string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte(k), []byte(v)) })
	if err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, s appliance.Store, k string) (string, bool) {
	t.Helper()
	var v []byte
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		var err error
		v, err = tx.Get([]byte(k))
		return err
	})
	if errors.Is(err, appliance.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func dump(t *testing.T, s appliance.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		kvs, err := tx.Scan(nil, nil, 0)
		for _, kv := range kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	err = s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Delete([]byte("a")) })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if diff := cmp.Diff(map[string]string{"b": "2"}, dump(t, s)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if s.Size() <= 0 {
		t.Errorf("Size() = %d", s.Size())
	}
}

func TestSecondOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a file in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v; want ErrLocked", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %v; want it to fail fast", elapsed)
	}
	t.Logf("second Open: %v after %v", err, elapsed)

	// The first store is unaffected, and the lock is released by Close.
	mustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s3.Close()
	if v, _ := mustGet(t, s3, "k"); v != "v" {
		t.Errorf("k = %q", v)
	}
}

func TestBackupWhileWriting(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := context.Background()
	// Some data, then writers that keep going during the backup. Each
	// writer's Update writes a pair of keys that must appear together.
	for i := range 200 {
		mustPut(t, s, fmt.Sprintf("base/%04d", i), string(bytes.Repeat([]byte{'x'}, 300)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := s.Update(ctx, func(tx appliance.Tx) error {
					k := fmt.Sprintf("w%d/%06d", w, i)
					if err := tx.Put([]byte(k+"/a"), []byte("1")); err != nil {
						return err
					}
					return tx.Put([]byte(k+"/b"), []byte("2"))
				})
				if err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		})
	}
	for written.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Backup returned %d, wrote %d bytes", n, buf.Len())
	}
	for written.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()

	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open backup: %v", err)
	}
	defer b.Close()
	got := dump(t, b)
	live := dump(t, s)
	pairs := 0
	for k, v := range got {
		if live[k] != v {
			t.Errorf("backup has %q=%q, live store %q", k, v, live[k])
		}
		if bytes.HasSuffix([]byte(k), []byte("/a")) {
			pairs++
			if _, ok := got[k[:len(k)-1]+"b"]; !ok {
				t.Errorf("backup has %s without its pair: not a consistent snapshot", k)
			}
		}
	}
	for i := range 200 {
		if _, ok := got[fmt.Sprintf("base/%04d", i)]; !ok {
			t.Fatalf("backup lacks base/%04d", i)
		}
	}
	if pairs < 50 {
		t.Errorf("backup holds %d writer pairs, want at least the 50 committed before it", pairs)
	}
	t.Logf("backup: %d bytes, %d keys (%d writer pairs); live store: %d keys", n, len(got), pairs, len(live))
	if _, err := s.Backup(&bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

// observer records commits.
type observer struct {
	mu         sync.Mutex
	commits    int
	writes     int
	callers    int
	maxCall    int
	commitTime time.Duration
	failures   int
}

func (o *observer) ObserveCommitFailure() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures++
}

func (o *observer) ObserveCommit(d time.Duration, writes, callers int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commits++
	o.writes += writes
	o.callers += callers
	o.maxCall = max(o.maxCall, callers)
	o.commitTime += d
}

// TestGroupCommitMixedOutcomes runs many concurrent Updates, every third
// of which writes and then fails: its writes must be absent, all others
// present, and the commits must really be shared.
func TestGroupCommitMixedOutcomes(t *testing.T) {
	obs := &observer{}
	s := openTemp(t, Options{Observer: obs})
	ctx := context.Background()
	const writers, each = 32, 20
	errFail := errors.New("deliberate")
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				fail := (w+i)%3 == 0
				err := s.Update(ctx, func(tx appliance.Tx) error {
					k := fmt.Sprintf("g/%02d/%03d", w, i)
					if err := tx.Put([]byte(k), []byte("v")); err != nil {
						return err
					}
					if err := tx.Put([]byte(k+"/second"), []byte("v")); err != nil {
						return err
					}
					if fail {
						return errFail
					}
					return nil
				})
				if fail != errors.Is(err, errFail) || (!fail && err != nil) {
					t.Errorf("w%d i%d: fail=%v err=%v", w, i, fail, err)
				}
			}
		})
	}
	wg.Wait()
	got := dump(t, s)
	want := map[string]string{}
	okUpdates := 0
	for w := range writers {
		for i := range each {
			if (w+i)%3 != 0 {
				k := fmt.Sprintf("g/%02d/%03d", w, i)
				want[k], want[k+"/second"] = "v", "v"
				okUpdates++
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	t.Logf("%d successful Updates in %d commits (largest group %d)", okUpdates, obs.commits, obs.maxCall)
	if obs.writes != 2*okUpdates || obs.callers != okUpdates {
		t.Errorf("observer saw %d writes from %d callers; want %d from %d", obs.writes, obs.callers, 2*okUpdates, okUpdates)
	}
}

// TestGroupFormsWhileCommitting holds the committer inside one function
// while other Updates queue, then checks they join its group and share a
// single commit, that
// failures among them leave nothing, and that later members see earlier
// members' writes.
func TestGroupFormsWhileCommitting(t *testing.T) {
	obs := &observer{}
	s := openTemp(t, Options{Observer: obs})
	ctx := context.Background()
	release := make(chan struct{})
	entered := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Update(ctx, func(tx appliance.Tx) error {
			close(entered)
			<-release // test scaffolding: hold the committer
			return tx.Put([]byte("first"), []byte("1"))
		})
	}()
	<-entered

	const n = 10
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i] = s.Update(ctx, func(tx appliance.Tx) error {
				// A counter every member increments: members of one group
				// must see each other's writes.
				c := 0
				if v, err := tx.Get([]byte("count")); err == nil {
					c = int(v[0])
				}
				if err := tx.Put([]byte("count"), []byte{byte(c + 1)}); err != nil {
					return err
				}
				if err := tx.Put([]byte(fmt.Sprintf("m/%02d", i)), nil); err != nil {
					return err
				}
				if i%4 == 1 {
					return fmt.Errorf("member %d fails", i)
				}
				return nil
			})
		})
	}
	for len(s.reqs) < n {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	want := map[string]string{"first": "1"}
	okN := 0
	for i, err := range results {
		if i%4 == 1 {
			if err == nil {
				t.Errorf("member %d: nil error, want its failure", i)
			}
			continue
		}
		if err != nil {
			t.Errorf("member %d: %v", i, err)
		}
		okN++
		want[fmt.Sprintf("m/%02d", i)] = ""
	}
	want["count"] = string([]byte{byte(okN)})
	if diff := cmp.Diff(want, dump(t, s)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.commits != 1 || obs.maxCall != okN+1 {
		t.Errorf("%d commits, largest group %d; want 1 commit serving all %d successful Updates", obs.commits, obs.maxCall, okN+1)
	}
}

// TestCommitFailureReachesEveryCaller makes a group's commit fail (the
// file may not grow) and checks that every caller in it gets the error and
// nothing is written.
func TestCommitFailureReachesEveryCaller(t *testing.T) {
	s := openTemp(t, Options{MaxSize: 1 << 20, InitialMmapSize: -1})
	ctx := context.Background()
	mustPut(t, s, "small", "ok")

	release := make(chan struct{})
	entered := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Update(ctx, func(tx appliance.Tx) error {
			close(entered)
			<-release
			return tx.Put([]byte("first"), make([]byte, 100<<10))
		})
	}()
	<-entered
	const n = 8
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i] = s.Update(ctx, func(tx appliance.Tx) error {
				return tx.Put([]byte(fmt.Sprintf("big/%d", i)), make([]byte, 200<<10))
			})
		})
	}
	for len(s.reqs) < n {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-first; err == nil {
		t.Error("first: nil error from a failed commit")
	}
	wg.Wait()
	for i, err := range results {
		if err == nil {
			t.Errorf("caller %d: nil error from a failed commit", i)
		} else if i == 0 {
			t.Logf("caller 0: %v", err)
		}
	}
	got := dump(t, s)
	for k := range got {
		if bytes.HasPrefix([]byte(k), []byte("big/")) || k == "first" {
			t.Errorf("%s written by a failed commit", k)
		}
	}
	// The store still works.
	mustPut(t, s, "after", "ok")
	if v, _ := mustGet(t, s, "after"); v != "ok" {
		t.Error("store unusable after a failed commit")
	}
}

// TestCanceledWhileQueued: an Update whose context ends while it waits in
// the queue returns the context's error and its function never runs.
func TestCanceledWhileQueued(t *testing.T) {
	s := openTemp(t, Options{})
	release := make(chan struct{})
	entered := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Update(context.Background(), func(tx appliance.Tx) error {
			close(entered)
			<-release
			return tx.Put([]byte("first"), nil)
		})
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(tx appliance.Tx) error {
			ran.Store(true)
			return tx.Put([]byte("queued"), nil)
		})
	}()
	for len(s.reqs) < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("queued Update = %v; want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "sync", "") // the committer has passed the canceled request
	if ran.Load() {
		t.Error("the canceled Update's function ran")
	}
	if _, ok := mustGet(t, s, "queued"); ok {
		t.Error("the canceled Update's write is present")
	}
}

// TestPanicInFunction: a panic in an Update function reaches its caller,
// and the store goes on working.
func TestPanicInFunction(t *testing.T) {
	s := openTemp(t, Options{})
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want boom", p)
			}
		}()
		_ = s.Update(context.Background(), func(tx appliance.Tx) error {
			_ = tx.Put([]byte("half"), nil)
			panic("boom")
		})
	}()
	mustPut(t, s, "after", "ok")
	if _, ok := mustGet(t, s, "half"); ok {
		t.Error("a panicking function's write is present")
	}
}

// TestReadOnlyUpdateSkipsCommit: an Update that writes nothing succeeds
// without a commit.
func TestReadOnlyUpdateSkipsCommit(t *testing.T) {
	obs := &observer{}
	s := openTemp(t, Options{Observer: obs})
	err := s.Update(context.Background(), func(tx appliance.Tx) error {
		_, err := tx.Get([]byte("x"))
		if errors.Is(err, appliance.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if obs.commits != 0 {
		t.Errorf("%d commits for an Update without writes", obs.commits)
	}
}

// TestReadOnlyOpen: a read-only store reads what was written, refuses
// writes, cannot be opened while a writer holds the file, and leaves the
// file's bytes as they were.
func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, w, "k", "v")
	if _, err := Open(path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only Open beside a writer: %v; want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := mustGet(t, r, "k"); v != "v" {
		t.Errorf("k = %q", v)
	}
	err = r.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte("x"), []byte("y")) })
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Update on a read-only store: %v; want ErrReadOnly", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("a read-only open changed the file")
	}

	// A file that is not a store is refused, not initialised.
	bare := filepath.Join(t.TempDir(), "bare.db")
	if err := os.WriteFile(bare, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(bare, Options{ReadOnly: true}); err == nil {
		s.Close()
		t.Fatal("read-only Open of a non-store succeeded")
	}
}
