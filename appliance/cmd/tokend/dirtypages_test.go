package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tokend/appliance"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

// pageStore is a plain bbolt Store (one bucket, one bbolt transaction per
// Update) that records the keys each Update writes, so bbolt's page
// statistics can be read per operation. It is a measuring instrument for
// TestDirtyPagesPerOperation, not boltstore (which groups commits).
type pageStore struct {
	db   *bolt.DB
	mu   sync.Mutex // imports run Updates concurrently
	keys [][]byte   // written since the last reset (last run of each fn)
	n    int        // Updates since the last reset
}

var pageBucket = []byte("kv")

type pageTx struct {
	b    *bolt.Bucket
	keys *[][]byte
}

func (t pageTx) Get(k []byte) ([]byte, error) {
	v := t.b.Get(k)
	if v == nil {
		return nil, appliance.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t pageTx) Put(k, v []byte) error {
	if !t.b.Writable() {
		return appliance.ErrReadOnly
	}
	*t.keys = append(*t.keys, bytes.Clone(k))
	return t.b.Put(bytes.Clone(k), bytes.Clone(v))
}

func (t pageTx) Delete(k []byte) error {
	*t.keys = append(*t.keys, bytes.Clone(k))
	return t.b.Delete(k)
}

func (t pageTx) Scan(prefix, after []byte, limit int) ([]appliance.KV, error) {
	var out []appliance.KV
	c := t.b.Cursor()
	k, v := c.Seek(prefix)
	if after != nil && bytes.Compare(after, prefix) >= 0 {
		k, v = c.Seek(after)
		if bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out = append(out, appliance.KV{Key: bytes.Clone(k), Value: bytes.Clone(v)})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *pageStore) View(_ context.Context, fn func(appliance.Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		var discard [][]byte
		return fn(pageTx{tx.Bucket(pageBucket), &discard})
	})
}

func (s *pageStore) Update(_ context.Context, fn func(appliance.Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var keys [][]byte
		if err := fn(pageTx{tx.Bucket(pageBucket), &keys}); err != nil {
			return err
		}
		s.mu.Lock()
		s.n++
		s.keys = append(s.keys, keys...)
		s.mu.Unlock()
		return nil
	})
}

func (s *pageStore) Close() error { return s.db.Close() }

// TestDirtyPagesPerOperation measures, on a bbolt file holding 2,000
// provisioned tokens, how many keys and pages Distribute,
// CompleteProvisioning and Authenticate write (bbolt's TxStats: pages
// written, including the freelist and meta page, and splits). It fails if an
// operation writes nothing or needs a key it no longer writes; the figures
// are in the log (-v).
func TestDirtyPagesPerOperation(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "pages.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st := &pageStore{db: db}
	t.Cleanup(func() { st.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(pageBucket); return err }); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(make([]byte, seal.KeySize), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer, CTKIPURL: "https://localhost/ctkip/services/CtkipService"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "t", Name: "tester", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&csv, "%012d\n", 800_000_000_000+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceGeneric,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone}); err != nil {
		t.Fatal(err)
	}
	type measured struct {
		updates, keys     int
		pages, splits     int
		prefixes          []string
		spills, rebalance int
	}
	measure := func(op func() error) measured {
		t.Helper()
		st.mu.Lock()
		st.keys, st.n = nil, 0
		st.mu.Unlock()
		before := db.Stats().TxStats
		if err := op(); err != nil {
			t.Fatal(err)
		}
		after := db.Stats().TxStats
		st.mu.Lock()
		defer st.mu.Unlock()
		m := measured{updates: st.n, keys: len(st.keys),
			pages: int(after.GetWrite() - before.GetWrite()), splits: int(after.GetSplit() - before.GetSplit()),
			spills: int(after.GetSpill() - before.GetSpill()), rebalance: int(after.GetRebalance() - before.GetRebalance())}
		for _, k := range st.keys {
			p, _, _ := strings.Cut(string(k), "/")
			m.prefixes = append(m.prefixes, p+"/")
		}
		slices.Sort(m.prefixes)
		return m
	}
	var dist, prov, auth []measured
	for i := range int64(n) {
		serial := fmt.Sprintf("%012d", 800_000_000_000+i)
		u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: fmt.Sprintf("auth%07d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.AssignTokens(ctx, u.ID, []string{serial}); err != nil {
			t.Fatal(err)
		}
		var d appliance.Distribution
		m := measure(func() error { d, err = svc.Distribute(ctx, serial, "p"); return err })
		if i >= n-3 {
			dist = append(dist, m)
		}
		m = measure(func() error {
			_, err := svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), benchSeed(i))
			return err
		})
		if i >= n-3 {
			prov = append(prov, m)
		}
	}
	for i := range int64(3) {
		i += n / 2
		serial := fmt.Sprintf("%012d", 800_000_000_000+i)
		gen, err := otp.NewSecurID(benchSeed(i), serial, 8, 60)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := gen.Code(time.Now())
		var res appliance.AuthResult
		m := measure(func() error {
			res, err = svc.Authenticate(ctx, appliance.AuthRequest{UserName: fmt.Sprintf("auth%07d", i), Passcode: code})
			return err
		})
		if res.Result != appliance.AuthAccept {
			t.Fatalf("authentication %d: %+v", i, res)
		}
		auth = append(auth, m)
	}
	for _, op := range []struct {
		name string
		ms   []measured
		want string // a key prefix the operation must write
	}{
		{"Distribute", dist, "ac/"},
		{"CompleteProvisioning", prov, "t/"},
		{"Authenticate", auth, "t/"},
	} {
		for _, m := range op.ms {
			t.Logf("%s: %d updates, %d keys %v, %d pages written, %d splits, %d spills, %d rebalances",
				op.name, m.updates, m.keys, m.prefixes, m.pages, m.splits, m.spills, m.rebalance)
			if m.keys == 0 || m.pages == 0 || !slices.Contains(m.prefixes, op.want) {
				t.Errorf("%s wrote %d keys %v on %d pages, want at least a %q key", op.name, m.keys, m.prefixes, m.pages, op.want)
			}
		}
	}
}
