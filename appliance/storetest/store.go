package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// Run checks that the stores made by newStore satisfy the appliance.Store
// contract. Each subtest gets a fresh store. Run it under -race.
func Run(t *testing.T, newStore func(t *testing.T) appliance.Store) {
	rows := []struct {
		name string
		fn   func(*testing.T, NewStoreFunc)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyKey", testEmptyKey},
		{"Rollback", testRollback},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"ScanOrder", testScanOrder},
		{"ScanInUpdate", testScanInUpdate},
		{"ScanPagination", testScanPagination},
		{"OverlayModel", testOverlayModel},
		{"CopySafety", testCopySafety},
		{"LostUpdate", testLostUpdate},
		{"RetrySafety", testRetrySafety},
		{"WriteLimit", testWriteLimit},
		{"ReadOnlyView", testReadOnlyView},
		{"Context", testContext},
		{"Close", testClose},
		{"CloseWhileBusy", testCloseWhileBusy},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) { r.fn(t, newStore) })
	}
}

var errBoom = errors.New("storetest: deliberate failure")

func testRoundTrip(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	ctx := context.Background()

	if _, ok := get(t, s, "rt/a"); ok {
		t.Fatal("empty store: rt/a found")
	}
	err := s.View(ctx, func(tx appliance.Tx) error {
		_, err := tx.Get([]byte("rt/a"))
		if !errors.Is(err, appliance.ErrNotFound) {
			return fmt.Errorf("Get absent key: got %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	put(t, s, "rt/a", "1", "rt/b", "2")
	if v, ok := get(t, s, "rt/a"); !ok || v != "1" {
		t.Fatalf("rt/a = %q, %v; want 1", v, ok)
	}
	put(t, s, "rt/a", "one")
	if v, _ := get(t, s, "rt/a"); v != "one" {
		t.Fatalf("after overwrite rt/a = %q; want one", v)
	}

	// Delete of a present and of an absent key; both succeed.
	err = s.Update(ctx, func(tx appliance.Tx) error {
		if err := tx.Delete([]byte("rt/a")); err != nil {
			return err
		}
		return tx.Delete([]byte("rt/never"))
	})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := get(t, s, "rt/a"); ok {
		t.Fatal("rt/a still present after Delete")
	}
	if v, _ := get(t, s, "rt/b"); v != "2" {
		t.Fatalf("rt/b = %q, want 2", v)
	}

	// Empty and nil values are stored as empty values, not as absence.
	err = s.Update(ctx, func(tx appliance.Tx) error {
		if err := tx.Put([]byte("rt/empty"), []byte{}); err != nil {
			return err
		}
		return tx.Put([]byte("rt/nil"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rt/empty", "rt/nil"} {
		if v, ok := get(t, s, k); !ok || v != "" {
			t.Errorf("%s = %q, %v; want empty value, found", k, v, ok)
		}
	}
	if got := scan(t, s, []byte("rt/"), nil, 0); len(got) != 3 {
		t.Errorf("Scan rt/ = %v; want 3 pairs (b, empty, nil)", strs(got))
	}

	// Binary keys and values, sorted as unsigned bytes.
	bin := [][]byte{{0x00}, {0x00, 0x00}, {0x01}, {0x7f}, {0x80}, {0xfe, 0xff}, {0xff}, {0xff, 0x00}, {0xff, 0xff}}
	err = s.Update(ctx, func(tx appliance.Tx) error {
		for i := len(bin) - 1; i >= 0; i-- { // reverse order on purpose
			if err := tx.Put(bin[i], append([]byte{0x00, 0xff}, bin[i]...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx appliance.Tx) error {
		for _, k := range bin {
			v, err := tx.Get(k)
			if err != nil {
				return fmt.Errorf("Get(%x): %w", k, err)
			}
			if want := append([]byte{0x00, 0xff}, k...); !bytes.Equal(v, want) {
				return fmt.Errorf("Get(%x) = %x, want %x", k, v, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var gotKeys [][]byte
	for _, kv := range all(t, s) {
		if !bytes.HasPrefix(kv.Key, []byte("rt/")) {
			gotKeys = append(gotKeys, kv.Key)
		}
	}
	if diff := cmp.Diff(bin, gotKeys); diff != "" {
		t.Errorf("binary key order (-want +got):\n%s", diff)
	}

	// Read your own writes inside an Update.
	err = s.Update(ctx, func(tx appliance.Tx) error {
		if err := tx.Put([]byte("rt/own"), []byte("mine")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("rt/own")); err != nil || string(v) != "mine" {
			return fmt.Errorf("Get own write = %q, %v", v, err)
		}
		if err := tx.Delete([]byte("rt/b")); err != nil {
			return err
		}
		if _, err := tx.Get([]byte("rt/b")); !errors.Is(err, appliance.ErrNotFound) {
			return fmt.Errorf("Get own delete: %v, want ErrNotFound", err)
		}
		if err := tx.Put([]byte("rt/b"), []byte("back")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("rt/b")); err != nil || string(v) != "back" {
			return fmt.Errorf("Get re-put = %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, s, "rt/b"); v != "back" {
		t.Errorf("rt/b = %q, want back", v)
	}
}

// testEmptyKey: no backend can store an empty key (bbolt and etcd refuse
// it), so Put and Delete refuse it and the Update fails.
func testEmptyKey(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	for _, name := range []string{"Put", "Delete"} {
		var opErr error
		err := s.Update(context.Background(), func(tx appliance.Tx) error {
			if err := tx.Put([]byte("ek/a"), []byte("1")); err != nil {
				return err
			}
			if name == "Put" {
				opErr = tx.Put(nil, []byte("x"))
			} else {
				opErr = tx.Delete([]byte{})
			}
			return opErr
		})
		if opErr == nil || err == nil {
			t.Errorf("%s(empty key): op error %v, Update error %v; want errors", name, opErr, err)
		}
	}
	if got := all(t, s); len(got) != 0 {
		t.Errorf("store after failed Updates = %v; want empty", strs(got))
	}
}

func testRollback(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	put(t, s, "rb/keep", "old", "rb/doomed", "here")
	err := s.Update(context.Background(), func(tx appliance.Tx) error {
		if err := tx.Put([]byte("rb/keep"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Put([]byte("rb/fresh"), []byte("x")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("rb/doomed")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update error = %v; want the function's error", err)
	}
	want := kvs("rb/doomed", "here", "rb/keep", "old")
	if diff := cmp.Diff(want, strs(all(t, s))); diff != "" {
		t.Errorf("after rollback (-want +got):\n%s", diff)
	}
}

func testSnapshotIsolation(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	ctx := context.Background()
	put(t, s, "si/a", "1", "si/c", "3")

	committed := make(chan error, 1)
	var once sync.Once
	err := s.View(ctx, func(tx appliance.Tx) error {
		if v, err := tx.Get([]byte("si/a")); err != nil || string(v) != "1" {
			return fmt.Errorf("before: si/a = %q, %v", v, err)
		}
		// Commit a concurrent Update while this View is open. (Starting a
		// goroutine here is test scaffolding; real functions must not.)
		once.Do(func() {
			go func() {
				committed <- s.Update(ctx, func(tx appliance.Tx) error {
					if err := tx.Put([]byte("si/a"), []byte("2")); err != nil {
						return err
					}
					if err := tx.Put([]byte("si/b"), []byte("new")); err != nil {
						return err
					}
					return tx.Delete([]byte("si/c"))
				})
			}()
		})
		select {
		case err := <-committed:
			if err != nil {
				return fmt.Errorf("concurrent Update: %w", err)
			}
		case <-time.After(20 * time.Second):
			return errors.New("an Update could not commit while a View was open")
		}
		if v, err := tx.Get([]byte("si/a")); err != nil || string(v) != "1" {
			return fmt.Errorf("after concurrent commit: si/a = %q, %v; want 1", v, err)
		}
		if _, err := tx.Get([]byte("si/b")); !errors.Is(err, appliance.ErrNotFound) {
			return fmt.Errorf("after concurrent commit: si/b: %v; want ErrNotFound", err)
		}
		got, err := tx.Scan([]byte("si/"), nil, 0)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(kvs("si/a", "1", "si/c", "3"), strs(got)); diff != "" {
			return fmt.Errorf("Scan in old View (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(kvs("si/a", "2", "si/b", "new"), strs(all(t, s))); diff != "" {
		t.Errorf("new View (-want +got):\n%s", diff)
	}
}

// scanData holds keys chosen to trip prefix-end arithmetic (0xff bytes),
// strict "after" handling and prefix boundaries.
func scanData() []string {
	return []string{
		"a", "a\x00", "ab", "abc", "abd", "ac", "a\xff", "b",
		"p\xff", "p\xff\xff", "q", "\xff", "\xff\xff",
	}
}

type scanRow struct {
	name          string
	prefix, after []byte
	limit         int
	want          []string
}

func scanRows() []scanRow {
	if !slices.IsSorted(scanData()) {
		panic("storetest: scanData is not in byte order")
	}
	b := func(s string) []byte { return []byte(s) }
	return []scanRow{
		{"all", nil, nil, 0, scanData()},
		{"all/empty prefix and after", b(""), b(""), 0, scanData()},
		{"prefix a", b("a"), nil, 0, []string{"a", "a\x00", "ab", "abc", "abd", "ac", "a\xff"}},
		{"prefix ab", b("ab"), nil, 0, []string{"ab", "abc", "abd"}},
		{"after = prefix", b("ab"), b("ab"), 0, []string{"abc", "abd"}},
		{"after present", b("ab"), b("abc"), 0, []string{"abd"}},
		{"after absent", b("ab"), b("abcc"), 0, []string{"abd"}},
		{"after last", b("ab"), b("abd"), 0, nil},
		{"after before prefix", b("ab"), b("a"), 0, []string{"ab", "abc", "abd"}},
		{"after beyond prefix", b("ab"), b("b"), 0, nil},
		{"limit", b("a"), nil, 2, []string{"a", "a\x00"}},
		{"after and limit", b("a"), b("a"), 2, []string{"a\x00", "ab"}},
		{"negative limit", b("a"), b("abd"), -1, []string{"ac", "a\xff"}},
		{"limit above count", b("ab"), nil, 10, []string{"ab", "abc", "abd"}},
		{"prefix ending in ff", b("p\xff"), nil, 0, []string{"p\xff", "p\xff\xff"}},
		{"prefix ff", b("\xff"), nil, 0, []string{"\xff", "\xff\xff"}},
		{"prefix ff after ff", b("\xff"), b("\xff"), 0, []string{"\xff\xff"}},
		{"no match", b("zz"), nil, 0, nil},
		{"no prefix, after", nil, b("b"), 0, []string{"p\xff", "p\xff\xff", "q", "\xff", "\xff\xff"}},
		{"no prefix, limit", nil, nil, 1, []string{"a"}},
	}
}

func checkScanRows(tx appliance.Tx, value func(k string) string) error {
	var errs []error
	for _, r := range scanRows() {
		got, err := tx.Scan(r.prefix, r.after, r.limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: Scan: %w", r.name, err))
			continue
		}
		want := make([]strKV, 0, len(r.want))
		for _, k := range r.want {
			want = append(want, strKV{k, value(k)})
		}
		if diff := cmp.Diff(want, strs(got)); diff != "" {
			errs = append(errs, fmt.Errorf("%s: Scan(%q, %q, %d) (-want +got):\n%s", r.name, r.prefix, r.after, r.limit, diff))
		}
	}
	return errors.Join(errs...)
}

func testScanOrder(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	shuffled := scanData()
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var pairs []string
	for _, k := range shuffled {
		pairs = append(pairs, k, "v"+k)
	}
	put(t, s, pairs...)
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		return checkScanRows(tx, func(k string) string { return "v" + k })
	})
	if err != nil {
		t.Error(err)
	}
}

// testScanInUpdate runs the scan rows inside an Update whose own writes
// (new keys, overwrites, deletes) must merge with the stored keys.
func testScanInUpdate(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	// Keys with i%3 == 0 are stored and left alone; of the others, even
	// ones are stored and overwritten by the Update, odd ones exist only in
	// the Update. Three stored keys are deleted by it.
	var pairs []string
	data := scanData()
	for i, k := range data {
		if i%3 == 0 || i%2 == 0 {
			pairs = append(pairs, k, "old")
		}
	}
	pairs = append(pairs, "a\x01", "gone", "abcc", "gone", "\xff\x00", "gone")
	put(t, s, pairs...)
	err := s.Update(context.Background(), func(tx appliance.Tx) error {
		for _, k := range []string{"a\x01", "abcc", "\xff\x00", "never"} {
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for i, k := range data {
			if i%3 == 0 {
				continue // keep some "old" values among the stored ones
			}
			if err := tx.Put([]byte(k), []byte("new"+k)); err != nil {
				return err
			}
		}
		return checkScanRows(tx, func(k string) string {
			if slices.Index(data, k)%3 == 0 {
				return "old"
			}
			return "new" + k
		})
	})
	if err != nil {
		t.Error(err)
	}
}

func testScanPagination(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	const n = 1000
	var data []appliance.KV
	for i := range n {
		data = append(data, appliance.KV{Key: []byte(key("page/", i)), Value: []byte(strconv.Itoa(i))})
	}
	// Neighbours just outside the prefix on both sides.
	data = append(data,
		appliance.KV{Key: []byte("page"), Value: []byte("x")},
		appliance.KV{Key: []byte("page."), Value: []byte("x")},
		appliance.KV{Key: []byte("page0"), Value: []byte("x")},
		appliance.KV{Key: []byte("pagf/000000"), Value: []byte("x")},
	)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
	putKVs(t, s, data)

	full := scan(t, s, []byte("page/"), nil, 0)
	if len(full) != n {
		t.Fatalf("full Scan: %d pairs, want %d", len(full), n)
	}
	for i, kv := range full {
		if string(kv.Key) != key("page/", i) || string(kv.Value) != strconv.Itoa(i) {
			t.Fatalf("full Scan[%d] = %q=%q", i, kv.Key, kv.Value)
		}
	}
	for _, page := range []int{1, 7, 100, 999, 1000, 1001} {
		var got []appliance.KV
		var after []byte
		for pages := 0; ; pages++ {
			if pages > n+1 {
				t.Fatalf("page size %d: pagination does not end", page)
			}
			kvs := scan(t, s, []byte("page/"), after, page)
			if len(kvs) > page {
				t.Fatalf("page size %d: got %d pairs", page, len(kvs))
			}
			if len(kvs) == 0 {
				break
			}
			got = append(got, kvs...)
			after = kvs[len(kvs)-1].Key
		}
		if diff := cmp.Diff(strs(full), strs(got)); diff != "" {
			t.Errorf("page size %d: pages differ from full scan (-want +got):\n%s", page, diff)
		}
	}
}

// testOverlayModel runs random operations inside Updates, some of which
// commit and some roll back, and compares every read with a map model.
func testOverlayModel(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	committed := map[string]string{}
	var keySpace []string
	for _, p := range []string{"m/a/", "m/b/", "m/"} {
		for i := range 12 {
			keySpace = append(keySpace, key(p, i*3))
		}
	}
	prefixes := []string{"", "m/", "m/a/", "m/b/", "m/a/00001", "m/c/"}
	errRollback := errors.New("model: rollback")

	for round := range 30 {
		var next map[string]string
		err := s.Update(context.Background(), func(tx appliance.Tx) error {
			// Seeded per round so that a retried attempt does the same.
			r := rand.New(rand.NewPCG(uint64(round), 99))
			model := maps.Clone(committed)
			for op := range 60 {
				k := keySpace[r.IntN(len(keySpace))]
				switch r.IntN(5) {
				case 0, 1:
					v := fmt.Sprintf("r%d.%d", round, op)
					if err := tx.Put([]byte(k), []byte(v)); err != nil {
						return err
					}
					model[k] = v
				case 2:
					if err := tx.Delete([]byte(k)); err != nil {
						return err
					}
					delete(model, k)
				case 3:
					v, err := tx.Get([]byte(k))
					mv, ok := model[k]
					switch {
					case ok && (err != nil || string(v) != mv):
						return fmt.Errorf("round %d op %d: Get(%q) = %q, %v; want %q", round, op, k, v, err, mv)
					case !ok && !errors.Is(err, appliance.ErrNotFound):
						return fmt.Errorf("round %d op %d: Get(%q) = %q, %v; want ErrNotFound", round, op, k, v, err)
					}
				case 4:
					prefix := prefixes[r.IntN(len(prefixes))]
					var after []byte
					switch r.IntN(4) {
					case 0: // a key that may exist
						after = []byte(keySpace[r.IntN(len(keySpace))])
					case 1: // a key that never exists
						after = []byte(keySpace[r.IntN(len(keySpace))] + "0")
					}
					limit := r.IntN(8) - 1
					got, err := tx.Scan([]byte(prefix), after, limit)
					if err != nil {
						return err
					}
					want := modelScan(model, prefix, after, limit)
					if diff := cmp.Diff(want, strs(got)); diff != "" {
						return fmt.Errorf("round %d op %d: Scan(%q, %q, %d) (-want +got):\n%s", round, op, prefix, after, limit, diff)
					}
				}
			}
			next = model
			if r.IntN(3) == 0 {
				return errRollback
			}
			return nil
		})
		switch {
		case errors.Is(err, errRollback):
		case err != nil:
			t.Fatal(err)
		default:
			committed = next
		}
		want := modelScan(committed, "", nil, 0)
		if diff := cmp.Diff(want, strs(all(t, s))); diff != "" {
			t.Fatalf("round %d: store differs from model (-want +got):\n%s", round, diff)
		}
	}
}

func modelScan(m map[string]string, prefix string, after []byte, limit int) []strKV {
	var keys []string
	for k := range m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && (after == nil || k > string(after)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]strKV, 0, len(keys))
	for _, k := range keys {
		out = append(out, strKV{k, m[k]})
	}
	return out
}

func testCopySafety(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	ctx := context.Background()

	// Slices passed to Put are copied: changing them afterwards, even
	// before the Update commits, changes nothing stored.
	err := s.Update(ctx, func(tx appliance.Tx) error {
		for _, k := range []string{"cs/a", "cs/b"} {
			kb, vb := []byte(k), []byte("value")
			if err := tx.Put(kb, vb); err != nil {
				return err
			}
			copy(kb, "XXXX")
			copy(vb, "XXXXX")
		}
		v, err := tx.Get([]byte("cs/a"))
		if err != nil || string(v) != "value" {
			return fmt.Errorf("Get after mutating Put's arguments = %q, %v", v, err)
		}
		// Slices returned inside an Update, for a key written in it.
		copy(v, "YYYYY")
		v2, err := tx.Get([]byte("cs/a"))
		if err != nil || string(v2) != "value" {
			return fmt.Errorf("Get after mutating Get's result = %q, %v", v2, err)
		}
		got, err := tx.Scan([]byte("cs/"), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range got {
			copy(kv.Key, "ZZZZ")
			copy(kv.Value, "ZZZZZ")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := kvs("cs/a", "value", "cs/b", "value")
	if diff := cmp.Diff(want, strs(all(t, s))); diff != "" {
		t.Fatalf("after mutating slices in Update (-want +got):\n%s", diff)
	}

	// Slices returned by a View are the caller's, also after it ends.
	var kept []byte
	var keptScan []appliance.KV
	err = s.View(ctx, func(tx appliance.Tx) error {
		v, err := tx.Get([]byte("cs/a"))
		if err != nil {
			return err
		}
		kept = v
		copy(v, "WWWWW")
		keptScan, err = tx.Scan([]byte("cs/"), nil, 0)
		if err != nil {
			return err
		}
		// Appending to one returned key must not overwrite anything else.
		_ = append(keptScan[0].Key, "APPENDED-APPENDED"...)
		_ = append(keptScan[0].Value, "APPENDED-APPENDED"...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, strs(keptScan)); diff != "" {
		t.Errorf("Scan result after append to a neighbour (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, strs(all(t, s))); diff != "" {
		t.Errorf("after mutating slices from View (-want +got):\n%s", diff)
	}
	// Overwrite and grow the store; the kept slices must not change.
	for i := range 5 {
		putKVs(t, s, []appliance.KV{{Key: []byte("cs/a"), Value: []byte(fmt.Sprintf("v%d", i))}})
		var more []appliance.KV
		for j := range 100 {
			more = append(more, appliance.KV{Key: []byte(key("cs/fill/", i*100+j)), Value: bytes.Repeat([]byte{byte(j)}, 512)})
		}
		putKVs(t, s, more)
	}
	if string(kept) != "WWWWW" {
		t.Errorf("value kept from a View changed to %q", kept)
	}
	if diff := cmp.Diff(want, strs(keptScan)); diff != "" {
		t.Errorf("Scan result kept from a View changed (-want +got):\n%s", diff)
	}
}

// testLostUpdate: many goroutines increment one counter with
// read-modify-write Updates; serialisable transactions lose none. Readers
// run alongside and must see the counter never go backwards.
func testLostUpdate(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	ctx := context.Background()
	const writers, each = 64, 50
	counter := []byte("lu/counter")

	read := func(tx appliance.Tx) (int, error) {
		v, err := tx.Get(counter)
		if errors.Is(err, appliance.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(string(v))
	}

	var wg sync.WaitGroup
	errs := make(chan error, writers+4)
	stop := make(chan struct{})
	var readersWG sync.WaitGroup
	for range 4 {
		readersWG.Go(func() {
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				err := s.View(ctx, func(tx appliance.Tx) error {
					var err error
					n, err = read(tx)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				if n < last {
					errs <- fmt.Errorf("counter went back from %d to %d", last, n)
					return
				}
				last = n
				time.Sleep(200 * time.Microsecond) // sample; do not starve writers
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := s.Update(ctx, func(tx appliance.Tx) error {
					n, err := read(tx)
					if err != nil {
						return err
					}
					if err := tx.Put(counter, []byte(strconv.Itoa(n+1))); err != nil {
						return err
					}
					return tx.Put([]byte(fmt.Sprintf("lu/w%02d", w)), []byte(strconv.Itoa(i+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v, _ := get(t, s, string(counter)); v != strconv.Itoa(writers*each) {
		t.Errorf("counter = %s, want %d", v, writers*each)
	}
	if got := scan(t, s, []byte("lu/w"), nil, 0); len(got) != writers {
		t.Errorf("%d writer keys, want %d", len(got), writers)
	} else {
		for _, kv := range got {
			if string(kv.Value) != strconv.Itoa(each) {
				t.Errorf("%s = %s, want %d", kv.Key, kv.Value, each)
			}
		}
	}
}

// testRetrySafety: a function that is run more than once (a backend may
// retry it) has exactly one effect, that of its last run. Run the suite on
// a store that retries (memstore.WithRetries) to make this bite.
func testRetrySafety(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	var attempts atomic.Int64 // test instrumentation only
	const updates = 10
	var lastAttempts []int64
	for range updates {
		err := s.Update(context.Background(), func(tx appliance.Tx) error {
			n := attempts.Add(1)
			v, err := tx.Get([]byte("retry/counter"))
			c := 0
			switch {
			case errors.Is(err, appliance.ErrNotFound):
			case err != nil:
				return err
			default:
				if c, err = strconv.Atoi(string(v)); err != nil {
					return err
				}
			}
			if err := tx.Put([]byte("retry/counter"), []byte(strconv.Itoa(c+1))); err != nil {
				return err
			}
			// A key that only this attempt writes: earlier attempts' writes
			// must vanish.
			return tx.Put([]byte(key("retry/attempt/", int(n))), nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		lastAttempts = append(lastAttempts, attempts.Load())
	}
	t.Logf("%d Updates ran their function %d times", updates, attempts.Load())
	if v, _ := get(t, s, "retry/counter"); v != strconv.Itoa(updates) {
		t.Errorf("counter = %s, want %d", v, updates)
	}
	var want []string
	for _, n := range lastAttempts {
		want = append(want, key("retry/attempt/", int(n)))
	}
	var got []string
	for _, kv := range scan(t, s, []byte("retry/attempt/"), nil, 0) {
		got = append(got, string(kv.Key))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attempt keys: only each Update's last attempt may leave writes (-want +got):\n%s", diff)
	}
}

func testWriteLimit(t *testing.T, newStore NewStoreFunc) {
	ctx := context.Background()
	s := open(t, newStore)
	put(t, s, "wl/keep", "1")

	writeN := func(prefix string, n int) func(appliance.Tx) error {
		return func(tx appliance.Tx) error {
			for i := range n {
				if err := tx.Put([]byte(key(prefix, i)), []byte("v")); err != nil {
					return fmt.Errorf("Put %d: %w", i+1, err)
				}
			}
			return nil
		}
	}

	// Exactly the limit succeeds.
	if err := s.Update(ctx, writeN("wl/max/", appliance.MaxTxWrites)); err != nil {
		t.Fatalf("%d writes: %v", appliance.MaxTxWrites, err)
	}
	if got := scan(t, s, []byte("wl/max/"), nil, 0); len(got) != appliance.MaxTxWrites {
		t.Fatalf("%d writes stored, want %d", len(got), appliance.MaxTxWrites)
	}

	rows := []struct {
		name string
		fn   func(appliance.Tx) error
	}{
		{"101 puts", writeN("wl/over/", appliance.MaxTxWrites+1)},
		{"101 writes, error ignored", func(tx appliance.Tx) error {
			_ = writeN("wl/over/", appliance.MaxTxWrites+1)(tx)
			return nil // a function that swallows the error still writes nothing
		}},
		{"deletes count", func(tx appliance.Tx) error {
			if err := tx.Put([]byte("wl/over/x"), []byte("v")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("wl/keep")); err != nil {
				return err
			}
			for i := range appliance.MaxTxWrites - 1 {
				if err := tx.Delete([]byte(key("wl/max/", i))); err != nil {
					return fmt.Errorf("Delete %d: %w", i+3, err)
				}
			}
			return nil
		}},
		{"one value over 1 MiB", func(tx appliance.Tx) error {
			k := []byte("wl/over/big")
			return tx.Put(k, make([]byte, appliance.MaxTxBytes-len(k)+1))
		}},
		{"two values over 1 MiB", func(tx appliance.Tx) error {
			if err := tx.Put([]byte("wl/over/h1"), make([]byte, appliance.MaxTxBytes/2)); err != nil {
				return err
			}
			return tx.Put([]byte("wl/over/h2"), make([]byte, appliance.MaxTxBytes/2))
		}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			before := strs(all(t, s))
			err := s.Update(ctx, r.fn)
			if !errors.Is(err, appliance.ErrTxTooLarge) {
				t.Fatalf("Update error = %v; want ErrTxTooLarge", err)
			}
			if diff := cmp.Diff(before, strs(all(t, s))); diff != "" {
				t.Errorf("a too-large Update changed the store (-before +after):\n%s", diff)
			}
		})
	}

	// Exactly 1 MiB of key + value succeeds, and reads back.
	k := []byte("wl/exact")
	big := bytes.Repeat([]byte{0xa5}, appliance.MaxTxBytes-len(k))
	err := s.Update(ctx, func(tx appliance.Tx) error { return tx.Put(k, big) })
	if err != nil {
		t.Fatalf("Put of exactly MaxTxBytes: %v", err)
	}
	if v, _ := get(t, s, string(k)); v != string(big) {
		t.Errorf("1 MiB value read back with %d bytes", len(v))
	}
}

func testReadOnlyView(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	put(t, s, "ro/a", "1")
	err := s.View(context.Background(), func(tx appliance.Tx) error {
		if err := tx.Put([]byte("ro/b"), []byte("2")); !errors.Is(err, appliance.ErrReadOnly) {
			return fmt.Errorf("Put in View: %v; want ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("ro/a")); !errors.Is(err, appliance.ErrReadOnly) {
			return fmt.Errorf("Delete in View: %v; want ErrReadOnly", err)
		}
		if v, err := tx.Get([]byte("ro/a")); err != nil || string(v) != "1" {
			return fmt.Errorf("Get after refused writes = %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(kvs("ro/a", "1"), strs(all(t, s))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A View returns its function's error.
	if err := s.View(context.Background(), func(appliance.Tx) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("View error = %v; want the function's error", err)
	}
}

func testContext(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	for _, r := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	} {
		t.Run(r.name, func(t *testing.T) {
			called := false
			err := s.Update(r.ctx, func(tx appliance.Tx) error {
				called = true
				return tx.Put([]byte("ctx/a"), []byte("1"))
			})
			if !errors.Is(err, r.want) {
				t.Errorf("Update error = %v; want %v", err, r.want)
			}
			if called {
				t.Error("Update ran its function with an ended context")
			}
			err = s.View(r.ctx, func(appliance.Tx) error { called = true; return nil })
			if !errors.Is(err, r.want) {
				t.Errorf("View error = %v; want %v", err, r.want)
			}
			if called {
				t.Error("View ran its function with an ended context")
			}
			if got := all(t, s); len(got) != 0 {
				t.Errorf("store = %v; want empty", strs(got))
			}
		})
	}
}

func testClose(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	put(t, s, "cl/a", "1")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	called := false
	err := s.Update(context.Background(), func(tx appliance.Tx) error { called = true; return nil })
	if !errors.Is(err, appliance.ErrClosed) {
		t.Errorf("Update after Close = %v; want ErrClosed", err)
	}
	err = s.View(context.Background(), func(tx appliance.Tx) error { called = true; return nil })
	if !errors.Is(err, appliance.ErrClosed) {
		t.Errorf("View after Close = %v; want ErrClosed", err)
	}
	if called {
		t.Error("a function ran after Close")
	}
	if err := s.Close(); err != nil && !errors.Is(err, appliance.ErrClosed) {
		t.Errorf("second Close = %v; want nil or ErrClosed", err)
	}
}

// testCloseWhileBusy closes a store under concurrent readers and writers:
// every call either succeeds or reports ErrClosed, nothing hangs or races.
func testCloseWhileBusy(t *testing.T, newStore NewStoreFunc) {
	s := open(t, newStore)
	ctx := context.Background()
	var wg sync.WaitGroup
	var ok atomic.Int64
	errs := make(chan error, 32)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				if g%4 == 0 {
					err = s.View(ctx, func(tx appliance.Tx) error {
						_, err := tx.Scan([]byte("cb/"), nil, 10)
						return err
					})
				} else {
					err = s.Update(ctx, func(tx appliance.Tx) error {
						return tx.Put([]byte(fmt.Sprintf("cb/%02d/%06d", g, i)), []byte("v"))
					})
				}
				if errors.Is(err, appliance.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); ok.Load() < 100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during Close: %v", err)
	}
}
