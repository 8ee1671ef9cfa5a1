package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
	"tokend/internal/etcdtest"
)

// TestStoreConfigLayers: the store section comes from YAML, TOKEND_*
// variables and flags, each overriding the one before, and every problem
// of it is reported at once.
func TestStoreConfigLayers(t *testing.T) {
	yamlFile := writeFile(t, "tokend.yaml", "store:\n  backend: etcd\n  etcd_endpoints: https://yaml:2379\n  etcd_prefix: /yaml/\n")
	rows := []struct {
		name     string
		args     []string
		env      map[string]string
		want     StoreConfig
		problems []string
	}{
		{name: "default is bolt", want: StoreConfig{Backend: "bolt", EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "environment", env: map[string]string{"TOKEND_STORE": "etcd", "TOKEND_ETCD_ENDPOINTS": "http://a:2379, http://b:2379"},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "http://a:2379, http://b:2379", EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "flags over environment", args: []string{"--store", "etcd", "--etcd-endpoints", "https://flag:2379", "--etcd-prefix", "/f/"},
			env:  map[string]string{"TOKEND_ETCD_ENDPOINTS": "https://env:2379", "TOKEND_ETCD_CA": "/ca.pem"},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://flag:2379", EtcdCA: "/ca.pem", EtcdPrefix: "/f/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "environment over file", args: []string{"--config", yamlFile}, env: map[string]string{"TOKEND_ETCD_PREFIX": "/env/"},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://yaml:2379", EtcdPrefix: "/env/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "every problem at once", args: []string{"--store", "etcd", "--etcd-prefix", "x", "--etcd-key", "/k.pem"},
			problems: []string{"store.etcd_endpoints: required", "store.etcd_cert and store.etcd_key", `store.etcd_prefix "x"`}},
		{name: "request timeout from the file", args: []string{"--config", writeFile(t, "timeout.yaml",
			"store:\n  backend: etcd\n  etcd_endpoints: https://yaml:2379\n  etcd_request_timeout: 2s\n")},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://yaml:2379", EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 2 * time.Second}},
		{name: "request timeout out of range", args: []string{"--config", writeFile(t, "timeout0.yaml",
			"store:\n  backend: etcd\n  etcd_endpoints: https://yaml:2379\n  etcd_request_timeout: 100ms\n")},
			problems: []string{"store.etcd_request_timeout 100ms: want 500ms to 1m"}},
		{name: "unknown backend", args: []string{"--store", "consul"}, problems: []string{`store.backend "consul"`}},
		{name: "a password in an endpoint is not repeated", args: []string{"--store", "etcd", "--etcd-endpoints", "https://root:s3cret@etcd:2379"},
			problems: []string{`store.etcd_endpoints "https://root:xxxxx@etcd:2379": want only scheme, host and port`}},
		{name: "no nodes", args: []string{"--config", writeFile(t, "nodes0.yaml", "store:\n  nodes: 0\n")},
			problems: []string{"store.nodes 0: want 1 to 64"}},
		{name: "several nodes on bolt", args: []string{"--config", writeFile(t, "nodes2.yaml", "store:\n  nodes: 2\n")},
			problems: []string{"store.nodes 2: a bolt store has one node"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cfg, err := loadConfig(parseFlags(t, r.args...), mapEnv(r.env))
			if r.problems == nil {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(r.want, cfg.Store); diff != "" {
					t.Errorf("store (-want +got):\n%s", diff)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) != len(r.problems) {
				t.Fatalf("error %v; want %d problems", err, len(r.problems))
			}
			for i, p := range r.problems {
				if !strings.Contains(ce.Problems[i], p) {
					t.Errorf("problem %d = %q; want it to say %q", i, ce.Problems[i], p)
				}
			}
		})
	}
}

// TestParseStoreSpecHidesPasswords: a migrate --from/--to refused for a
// password in an endpoint URL does not repeat the password.
func TestParseStoreSpecHidesPasswords(t *testing.T) {
	for _, v := range []string{"etcd:https://root:s3cret@etcd:2379", "https://root:s3cret@etcd:2379", "etcd:https://root:s3cret@etcd:2379/%zz"} {
		_, err := parseStoreSpec("to", v, StoreConfig{Backend: "bolt", EtcdPrefix: "/tokend/", Nodes: 1})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseStoreSpec(%q) = %v; want a refusal without the password", v, err)
		}
	}
}

func fillStore(t *testing.T, s appliance.Store, kvs map[string]string) {
	t.Helper()
	for k, v := range kvs {
		if err := s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte(k), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrateStore: the destination ends equal to the source (empty values
// stay values), a destination holding a subset of the source (an
// interrupted run) is completed without --force, one holding other data is
// refused without it and replaced with it, and the write limit is kept.
func TestMigrateStore(t *testing.T) {
	src := memstore.New()
	want := map[string]string{"empty": ""}
	for i := range 250 {
		want[fmt.Sprintf("k/%04d", i)] = fmt.Sprintf("v%d", i)
	}
	fillStore(t, src, want)
	ctx := context.Background()
	read := func(s appliance.Store) map[string]string { return dumpStore(t, s) }

	partial := memstore.New()
	fillStore(t, partial, map[string]string{"k/0000": "v0", "k/0100": "v100"})
	res, err := migrateStore(ctx, src, partial, false)
	if err != nil {
		t.Fatalf("completing an interrupted run: %v", err)
	}
	if res.Keys != 251 || res.Written != 249 || res.Removed != 0 {
		t.Errorf("result %+v", res)
	}
	if diff := cmp.Diff(want, read(partial)); diff != "" {
		t.Errorf("destination (-want +got):\n%s", diff)
	}

	other := memstore.New()
	fillStore(t, other, map[string]string{"k/0001": "changed", "zzz": "extra"})
	if _, err := migrateStore(ctx, src, other, false); !errors.Is(err, errMigrateDiffers) {
		t.Fatalf("over other data without force: %v", err)
	}
	if got := read(other); got["k/0001"] != "changed" || got["zzz"] != "extra" || len(got) != 2 {
		t.Fatalf("refused migration changed the destination: %v", got)
	}
	res, err = migrateStore(ctx, src, other, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != 1 || res.Removed != 1 {
		t.Errorf("forced result %+v", res)
	}
	if diff := cmp.Diff(want, read(other)); diff != "" {
		t.Errorf("forced destination (-want +got):\n%s", diff)
	}
	if res, err := migrateStore(ctx, src, other, false); err != nil || res.Written+res.Removed != 0 {
		t.Errorf("rerun: %+v %v; want no change", res, err)
	}
}

// TestBackupRefusesEtcd: backup and restore copy a bbolt file; on etcd they
// say what to use instead and write nothing.
func TestBackupRefusesEtcd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "backup.db")
	etcd := []string{"--data-dir", dir, "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1"}
	for _, args := range [][]string{
		append([]string{"backup", "--out", out}, etcd...),
		append([]string{"restore", "--in", out}, etcd...),
	} {
		code, msg := runCLI(t, args...)
		if code == 0 || !strings.Contains(msg, "etcdctl snapshot save") {
			t.Errorf("%s on etcd: %d %q", args[0], code, msg)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("backup file written: %v", err)
	}
}

// TestEtcdRequestTimeoutReachesTheStore: store.etcd_request_timeout is what
// bounds a write when etcd cannot answer (it is the failover gap when the
// etcd leader dies): with 1s, an Update against a dead member fails as
// unavailable after about 1 s, not the default 5 s.
func TestEtcdRequestTimeoutReachesTheStore(t *testing.T) {
	etcdtest.Require(t)
	c := etcdtest.Start(t)
	cfgFile := writeFile(t, "etcd.yaml", fmt.Sprintf("store:\n  backend: etcd\n  etcd_endpoints: %s\n  etcd_prefix: /timeout/\n  etcd_request_timeout: 1s\n",
		strings.Join(c.Endpoints(), ",")))
	cfg, err := loadConfig(parseFlags(t, "--config", cfgFile), mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := newDataPaths(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := openConfiguredStore(context.Background(), cfg, paths, storeOpenOptions{NoPurge: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	put := func() error {
		return st.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte("k"), []byte("v")) })
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Kill()
	start := time.Now()
	err = put()
	took := time.Since(start)
	if !errors.Is(err, appliance.ErrStoreUnavailable) {
		t.Fatalf("Update with etcd down = %v; want ErrStoreUnavailable", err)
	}
	t.Logf("Update with etcd down failed after %v", took)
	if took < 900*time.Millisecond || took > 4*time.Second {
		t.Errorf("Update with etcd down failed after %v; want about the configured 1s (the default is 5s)", took)
	}
}
