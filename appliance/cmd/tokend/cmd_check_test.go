package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tokend/appliance"
	"tokend/internal/etcdtest"
)

// checkFixture is a stopped tokend's data directory written through the
// Service: imported tokens, users with every index, assignments, one
// provisioned token, one outstanding activation code and an API token.
type checkFixture struct {
	dir         string   // holds tokend.db and master.key
	provisioned string   // serial of the provisioned token
	pending     string   // serial whose activation code is outstanding
	free        string   // an unassigned serial
	userID      string   // the user holding both
	codeHashes  []string // hex, the rest of each activation code's key
	secrets     []string // what no output may hold
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	f := &checkFixture{dir: t.TempDir(), provisioned: "180000000000", pending: "180000000001", free: "180000000004"}
	key := writeKeyFile(t, filepath.Join(f.dir, "master.key"))
	st, svc, ctx := offlineStore(t, filepath.Join(f.dir, "tokend.db"), key, 180000000000, 5)
	defer st.Close()
	u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "alice", DisplayName: "Alice Example", Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	f.userID = u.ID
	if _, err := svc.CreateUser(ctx, appliance.NewUser{UserName: "bob", Email: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AssignTokens(ctx, u.ID, []string{f.provisioned, f.pending, "180000000002"}); err != nil {
		t.Fatal(err)
	}
	d, err := svc.Distribute(ctx, f.provisioned, "p")
	if err != nil {
		t.Fatal(err)
	}
	seed := rekeyTestSeed(f.provisioned)
	if _, err := svc.CompleteProvisioning(ctx, d.ActivationCode.Reveal(), seed); err != nil {
		t.Fatal(err)
	}
	d, err = svc.Distribute(ctx, f.pending, "p")
	if err != nil {
		t.Fatal(err)
	}
	_, api, err := svc.CreateAPIToken(ctx, "ops", appliance.RoleHelpdesk)
	if err != nil {
		t.Fatal(err)
	}
	f.secrets = append(f.secrets, d.ActivationCode.Reveal(), api.Reveal(), hex.EncodeToString(seed))
	// The keyed hashes of codes and API tokens are secrets of the output too.
	err = st.View(ctx, func(tx appliance.Tx) error {
		for _, pfx := range []string{"ac/", "ki/"} {
			kvs, err := tx.Scan([]byte(pfx), nil, 0)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				h := strings.TrimPrefix(string(kv.Key), pfx)
				f.secrets = append(f.secrets, h)
				if pfx == "ac/" {
					f.codeHashes = append(f.codeHashes, h)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.secrets) < 5 {
		t.Fatalf("the fixture holds no code or API token hash: %d secrets", len(f.secrets))
	}
	return f
}

// copyDataDir copies the fixture's data directory into a new one.
func (f *checkFixture) copyDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"tokend.db", "master.key"} {
		b, err := os.ReadFile(filepath.Join(f.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// damageStore writes straight into a stopped tokend's store, around the
// Service, as a torn or buggy write would.
func damageStore(t *testing.T, st appliance.Store, fn func(appliance.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// bumpUserCounter adds one to a field of the first user counter share.
func bumpUserCounter(tx appliance.Tx) error {
	kvs, err := tx.Scan([]byte("meta/counters/"), nil, 0)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if !strings.HasSuffix(string(kv.Key), "/users") {
			continue
		}
		var m map[string]int64
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return err
		}
		for f := range m {
			m[f]++
			break
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return tx.Put(kv.Key, b)
	}
	return fmt.Errorf("no user counter share: %w", appliance.ErrNotFound)
}

// deleteCodeOf removes the outstanding activation code record of serial.
func deleteCodeOf(serial string) func(appliance.Tx) error {
	return editCodeOf(serial, func(tx appliance.Tx, key []byte) error { return tx.Delete(key) })
}

// garbleCodeOf overwrites the outstanding activation code record of serial
// with bytes that do not decode (its key, the code's hash, stays).
func garbleCodeOf(serial string) func(appliance.Tx) error {
	return editCodeOf(serial, func(tx appliance.Tx, key []byte) error { return tx.Put(key, []byte(`{"serial": [`)) })
}

func editCodeOf(serial string, edit func(tx appliance.Tx, key []byte) error) func(appliance.Tx) error {
	return func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte("ac/"), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var c struct {
				Serial string `json:"serial"`
			}
			if err := json.Unmarshal(kv.Value, &c); err != nil {
				return err
			}
			if c.Serial == serial {
				return edit(tx, kv.Key)
			}
		}
		return fmt.Errorf("no code record of %s: %w", serial, appliance.ErrNotFound)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestCheckCommand runs `tokend check` on a bbolt store made through the
// Service, undamaged and damaged around it, locked by a running tokend and
// missing. It exits 0 only for the undamaged store, names each problem,
// never prints a secret and leaves the file byte for byte as it was.
func TestCheckCommand(t *testing.T) {
	f := newCheckFixture(t)
	tests := []struct {
		name     string
		damage   func(appliance.Tx) error // written around the Service first
		serve    bool                     // a tokend runs on the data dir during the check
		noStore  bool                     // the data dir holds no store
		wantCode int
		want     []string
	}{
		{name: "consistent", wantCode: 0, want: []string{
			"bbolt: every page reachable once",
			"users: 2 records", "tokens: 5 records", "import jobs: 1 records", "activation codes: 2 records",
			"counters:", "\nconsistent\n",
		}},
		{name: "state index entry deleted", wantCode: 1,
			damage: func(tx appliance.Tx) error { return tx.Delete([]byte("ti/s/" + f.free)) },
			want:   []string{"problem: token " + f.free + ": no state index entry", "inconsistent: 1 problems", "store inconsistent"}},
		{name: "tokens-by-user entry deleted", wantCode: 1,
			damage: func(tx appliance.Tx) error { return tx.Delete([]byte("ti/u/" + f.userID + "/" + f.pending)) },
			want:   []string{"problem: token " + f.pending + ": no tokens-by-user entry for its user " + fmt.Sprintf("%q", f.userID)}},
		{name: "user counter off by one", wantCode: 1, damage: bumpUserCounter,
			want: []string{"problem: user counter", "the records count"}},
		{name: "outstanding code record deleted", wantCode: 1, damage: deleteCodeOf(f.pending),
			want: []string{"problem: token " + f.pending + ": its outstanding activation code has no record"}},
		{name: "outstanding code record garbled", wantCode: 1, damage: garbleCodeOf(f.pending),
			want: []string{"problem: token " + f.pending + ": its outstanding activation code record does not decode"}},
		{name: "locked by a running tokend", serve: true, wantCode: 2,
			want: []string{"is in use by a running tokend", "stop tokend first"}},
		{name: "no store", noStore: true, wantCode: 2, want: []string{"no store in"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if !tc.noStore {
				dir = f.copyDataDir(t)
			}
			db := filepath.Join(dir, "tokend.db")
			if tc.damage != nil {
				st, _, err := openOffline(dir)
				if err != nil {
					t.Fatal(err)
				}
				damageStore(t, st, tc.damage)
			}
			if tc.serve {
				in := startTokend(t, dir)
				t.Cleanup(func() { _ = in.stop() })
			}
			var before [32]byte
			if !tc.noStore && !tc.serve { // a running tokend writes on its own
				before = fileSum(t, db)
			}
			code, out := runCLI(t, "check", "--data-dir", dir)
			t.Logf("exit %d:\n%s", code, out)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.wantCode, out)
			}
			for _, w := range append(tc.want, dir) {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, s := range f.secrets {
				if strings.Contains(out, s) {
					t.Errorf("output holds a secret (%d characters):\n%s", len(s), out)
				}
			}
			if tc.wantCode == 1 && strings.Contains(out, "\nconsistent\n") {
				t.Errorf("a failed check says consistent:\n%s", out)
			}
			if !tc.noStore && !tc.serve {
				if fileSum(t, db) != before {
					t.Fatal("check changed the store file")
				}
			}
		})
	}
}

// TestCheckDamagedPages: damage to the file's pages is what bbolt's own
// check finds (the Service's check reads records, not pages). check names
// it without the keys involved (a code's key is its hash), exits 1 without
// reading records, and leaves the file as it was.
func TestCheckDamagedPages(t *testing.T) {
	f := newCheckFixture(t)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{name: "page both reachable and free", damage: corruptFreelist, want: "reachable freed"},
		{name: "code keys out of order", damage: f.swapCodeKeys, want: "(hex)…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := f.copyDataDir(t)
			db := filepath.Join(dir, "tokend.db")
			tc.damage(t, db)
			before := fileSum(t, db)
			code, out := runCLI(t, "check", "--data-dir", dir)
			t.Logf("exit %d:\n%s", code, out)
			for _, w := range []string{"problem: bbolt:", tc.want, "the records are not read", "bbolt pages damaged"} {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if code != 1 || strings.Contains(out, "\nconsistent\n") {
				t.Errorf("exit %d, want 1 and no \"consistent\"", code)
			}
			for _, s := range f.secrets {
				if strings.Contains(out, s) || strings.Contains(out, hex.EncodeToString([]byte(s))) {
					t.Errorf("output holds a secret (%d characters)", len(s))
				}
			}
			if fileSum(t, db) != before {
				t.Fatal("check changed the store file")
			}
		})
	}
}

// swapCodeKeys swaps the hashes of the two activation code keys wherever
// they occur in the file: in the live leaf page the two keys (of equal
// length) are then out of order, which only bbolt's check sees.
func (f *checkFixture) swapCodeKeys(t *testing.T, path string) {
	t.Helper()
	if len(f.codeHashes) != 2 {
		t.Fatalf("%d activation code keys, want 2", len(f.codeHashes))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x, y := []byte("ac/"+f.codeHashes[0]), []byte("ac/"+f.codeHashes[1])
	if !bytes.Contains(b, x) || !bytes.Contains(b, y) {
		t.Fatal("the code keys are not in the file")
	}
	// One pass, so a swapped key is not swapped back.
	for i := 0; i+len(x) <= len(b); i++ {
		switch {
		case bytes.HasPrefix(b[i:], x):
			copy(b[i:], y)
		case bytes.HasPrefix(b[i:], y):
			copy(b[i:], x)
		default:
			continue
		}
		i += len(x) - 1
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// corruptFreelist adds the page holding the root bucket to the file's
// freelist, as a torn freelist write would: bbolt opens the file and reads
// every record, but its page check finds the page both reachable and free.
// The layout is bbolt's: a 16-byte page header, then the meta fields (root
// bucket page at 32, freelist page at 48, transaction id at 64); a freelist
// page holds its count in the header (offset 10) and the ids after it.
func corruptFreelist(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pageSize := int(le.Uint32(b[24:]))
	meta := 16 // the meta page with the newer transaction is the live one
	if le.Uint64(b[pageSize+16+48:]) > le.Uint64(b[16+48:]) {
		meta = pageSize + 16
	}
	root, free := le.Uint64(b[meta+16:]), int(le.Uint64(b[meta+32:]))
	fl := b[free*pageSize:]
	n := int(le.Uint16(fl[10:]))
	if n == 0xFFFF || 16+8*(n+1) > pageSize {
		t.Fatalf("freelist of %d ids: too long for this test", n)
	}
	ids := make([]uint64, 0, n+1)
	for i := range n {
		ids = append(ids, le.Uint64(fl[16+8*i:]))
	}
	if slices.Contains(ids, root) {
		t.Fatalf("root page %d already free", root)
	}
	ids = append(ids, root)
	slices.Sort(ids)
	for i, id := range ids {
		le.PutUint64(fl[16+8*i:], id)
	}
	le.PutUint16(fl[10:], uint16(len(ids)))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckEtcd runs `tokend check` on the fixture migrated to a real etcd:
// there bbolt's page check does not apply (the output says so), a damaged
// index is found, and a store a tokend is serving can be checked.
func TestCheckEtcd(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	f := newCheckFixture(t)
	tests := []struct {
		name     string
		damage   func(appliance.Tx) error
		serve    bool
		wantCode int
		want     []string
	}{
		{name: "consistent", wantCode: 0, want: []string{"tokens: 5 records", "\nconsistent\n"}},
		{name: "state index entry deleted", wantCode: 1,
			damage: func(tx appliance.Tx) error { return tx.Delete([]byte("ti/s/" + f.free)) },
			want:   []string{"problem: token " + f.free + ": no state index entry", "store inconsistent"}},
		{name: "served by a running tokend", serve: true, wantCode: 0, want: []string{"tokens: 5 records", "\nconsistent\n"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := f.copyDataDir(t)
			prefix := fmt.Sprintf("/check%d/", i)
			storeArgs := []string{"--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", prefix}
			code, out := runCLI(t, "migrate", "--data-dir", dir, "--from", "bolt:"+filepath.Join(dir, "tokend.db"),
				"--to", "etcd:"+ep, "--etcd-prefix", prefix)
			if code != 0 {
				t.Fatalf("migrate: exit %d:\n%s", code, out)
			}
			if tc.damage != nil {
				st, err := openEtcd(context.Background(), StoreConfig{Backend: backendEtcd, EtcdEndpoints: ep, EtcdPrefix: prefix},
					storeOpenOptions{NoPurge: true})
				if err != nil {
					t.Fatal(err)
				}
				damageStore(t, st, tc.damage)
			}
			if tc.serve {
				in := startTokend(t, dir, storeArgs...)
				t.Cleanup(func() { _ = in.stop() })
			}
			code, out = runCLI(t, append([]string{"check", "--data-dir", dir}, storeArgs...)...)
			t.Logf("exit %d:\n%s", code, out)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d", code, tc.wantCode)
			}
			for _, w := range append(tc.want, "bbolt: not applicable", "prefix "+prefix) {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, s := range f.secrets {
				if strings.Contains(out, s) {
					t.Errorf("output holds a secret (%d characters)", len(s))
				}
			}
		})
	}
}
