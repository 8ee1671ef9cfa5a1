package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
	"tokend/internal/etcdtest"
)

// etcdTestPassword is the tokend user's password in these tests; no log or
// error may ever contain it.
const etcdTestPassword = "pw-Zq7-never-shown"

// writePasswordFile writes content to a fresh file with mode perm.
func writePasswordFile(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "etcd-password")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod: WriteFile's mode is reduced by the umask.
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEtcdAuthConfig: store.etcd_username and store.etcd_password_file come
// from YAML, flags and TOKEND_* variables; a half-set pair and a password
// bound for a plain-http endpoint off this machine are configuration
// problems; the file itself is checked where it is read (every command
// opens etcd through openEtcd): group/world-readable, empty, several lines
// and missing files are refused, naming the file and never its content.
func TestEtcdAuthConfig(t *testing.T) {
	good := writePasswordFile(t, etcdTestPassword+"\n", 0o600)
	rows := []struct {
		name    string
		args    []string
		env     map[string]string
		want    StoreConfig // when neither problem nor openErr is set
		problem string      // a configuration problem
		// With openErr, the password file holds content with mode perm (or
		// is missing), loadConfig passes and openEtcd fails saying openErr.
		openErr string
		content string // never shown in the error
		perm    os.FileMode
		missing bool
	}{
		{name: "flags", args: []string{"--store", "etcd", "--etcd-endpoints", "https://etcd1:2379", "--etcd-username", "tokend", "--etcd-password-file", good},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://etcd1:2379", EtcdUsername: "tokend", EtcdPasswordFile: good,
				EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "environment", args: []string{"--store", "etcd", "--etcd-endpoints", "https://etcd1:2379"},
			env: map[string]string{"TOKEND_ETCD_USERNAME": "tokend", "TOKEND_ETCD_PASSWORD_FILE": good},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://etcd1:2379", EtcdUsername: "tokend", EtcdPasswordFile: good,
				EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "yaml", args: []string{"--config", writeFile(t, "auth.yaml",
			"store:\n  backend: etcd\n  etcd_endpoints: https://etcd1:2379\n  etcd_username: tokend\n  etcd_password_file: "+good+"\n")},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "https://etcd1:2379", EtcdUsername: "tokend", EtcdPasswordFile: good,
				EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "plain http to loopback is accepted", args: []string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379,http://localhost:2379,http://[::1]:2379",
			"--etcd-username", "tokend", "--etcd-password-file", good},
			want: StoreConfig{Backend: "etcd", EtcdEndpoints: "http://127.0.0.1:2379,http://localhost:2379,http://[::1]:2379", EtcdUsername: "tokend",
				EtcdPasswordFile: good, EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second}},
		{name: "username without password file", args: []string{"--store", "etcd", "--etcd-endpoints", "https://etcd1:2379", "--etcd-username", "tokend"},
			problem: "--etcd-username: store.etcd_username and store.etcd_password_file: set both or neither"},
		{name: "password file without username", args: []string{"--store", "etcd", "--etcd-endpoints", "https://etcd1:2379"},
			env:     map[string]string{"TOKEND_ETCD_PASSWORD_FILE": good},
			problem: "store.etcd_username and store.etcd_password_file: set both or neither"},
		{name: "plain http across the network", args: []string{"--store", "etcd", "--etcd-endpoints", "https://etcd1:2379,http://etcd2:2379",
			"--etcd-username", "tokend", "--etcd-password-file", good},
			problem: `store.etcd_endpoints "http://etcd2:2379": plain http with store.etcd_password_file would send the etcd password across the network in clear; use https`},
		{name: "plain http to a non-loopback address", args: []string{"--store", "etcd", "--etcd-endpoints", "http://10.0.0.1:2379",
			"--etcd-username", "tokend", "--etcd-password-file", good},
			problem: `store.etcd_endpoints "http://10.0.0.1:2379": plain http with store.etcd_password_file`},
		{name: "group-readable file", content: "s3cret-group\n", perm: 0o640,
			openErr: "mode 0640 lets group or others access it; run chmod 600"},
		{name: "world-readable file", content: "s3cret-world\n", perm: 0o604,
			openErr: "mode 0604 lets group or others access it; run chmod 600"},
		{name: "empty file", content: "", perm: 0o600,
			openErr: "empty; write the etcd password in it"},
		{name: "only a newline", content: "\r\n", perm: 0o600,
			openErr: "empty; write the etcd password in it"},
		{name: "two lines", content: "s3cret-one\ns3cret-two\n", perm: 0o600,
			openErr: "holds more than one line"},
		{name: "too long", content: strings.Repeat("s3cret-long", 500), perm: 0o600,
			openErr: "longer than 4096 bytes"},
		{name: "missing file", missing: true,
			openErr: "file does not exist"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			args := r.args
			var file string
			if r.openErr != "" {
				// An endpoint that would refuse the connection: the
				// file must be refused before any dial.
				if r.missing {
					file = filepath.Join(t.TempDir(), "absent")
				} else {
					file = writePasswordFile(t, r.content, r.perm)
				}
				args = []string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-username", "tokend", "--etcd-password-file", file}
			}
			cfg, err := loadConfig(parseFlags(t, args...), mapEnv(r.env))
			if r.problem != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0], r.problem) {
					t.Fatalf("loadConfig = %v; want one problem saying %q", err, r.problem)
				}
				if strings.Contains(err.Error(), etcdTestPassword) {
					t.Errorf("problem shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.openErr == "" {
				if diff := cmp.Diff(r.want, cfg.Store); diff != "" {
					t.Errorf("store (-want +got):\n%s", diff)
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			st, err := openEtcd(ctx, cfg.Store, storeOpenOptions{NoPurge: true})
			if err == nil {
				st.Close()
				t.Fatal("openEtcd accepted the file")
			}
			msg := err.Error()
			if !strings.Contains(msg, "store.etcd_password_file "+file+": ") || !strings.Contains(msg, r.openErr) {
				t.Errorf("openEtcd = %q; want it to name %s and say %q", msg, file, r.openErr)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("the error shows the file's content: %q", msg)
			}
			// Refused on reading, not after a dial that timed out.
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("refusal took %v", took)
			}
		})
	}
}

// TestParseStoreSpecCarriesEtcdAuth: `tokend migrate --from/--to etcd:URLS`
// logs in with the configured username and password file, and refuses
// to send the password over plain http off this machine.
func TestParseStoreSpecCarriesEtcdAuth(t *testing.T) {
	cfg := StoreConfig{Backend: "bolt", EtcdPrefix: "/tokend/", Nodes: 1, EtcdRequestTimeout: 5 * time.Second,
		EtcdUsername: "tokend", EtcdPasswordFile: "/etc/tokend/etcd-password"}
	spec, err := parseStoreSpec("to", "etcd:https://etcd9:2379", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Etcd.EtcdUsername != "tokend" || spec.Etcd.EtcdPasswordFile != "/etc/tokend/etcd-password" {
		t.Errorf("spec %+v lost the credentials", spec.Etcd)
	}
	_, err = parseStoreSpec("to", "etcd:http://etcd9:2379", cfg)
	if err == nil || !strings.Contains(err.Error(), "plain http with store.etcd_password_file") {
		t.Errorf("plain http with a password = %v; want a refusal", err)
	}
	cfg.EtcdPasswordFile = ""
	_, err = parseStoreSpec("from", "etcd:https://etcd9:2379", cfg)
	if err == nil || !strings.Contains(err.Error(), "set both or neither") {
		t.Errorf("a username without a password file = %v; want a refusal", err)
	}
}

// etcdAuthPrefix is the store prefix of the RBAC tests.
const etcdAuthPrefix = "/auth/"

// enableEtcdAuth turns on etcd's RBAC on the cluster: a root user, and a
// user "tokend" (password etcdTestPassword) whose role may read and write
// only tokend's three key ranges: the store prefix and the runner
// election and node presence prefixes beside it. It returns a client
// logged in as root, for checks.
func enableEtcdAuth(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const rootPassword = "root-pw-for-the-test"
	steps := []struct {
		what string
		do   func() error
	}{
		{"add root", func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err }},
		{"add role root", func() error { _, err := cli.RoleAdd(ctx, "root"); return err }},
		{"grant root", func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err }},
		{"add tokend", func() error { _, err := cli.UserAdd(ctx, "tokend", etcdTestPassword); return err }},
		{"add role", func() error { _, err := cli.RoleAdd(ctx, "tokend-rw"); return err }},
		{"grant role", func() error { _, err := cli.UserGrantRole(ctx, "tokend", "tokend-rw"); return err }},
	}
	for _, pfx := range []string{etcdAuthPrefix, runnerElectionPrefix(etcdAuthPrefix), nodesPrefix(etcdAuthPrefix)} {
		steps = append(steps, struct {
			what string
			do   func() error
		}{"permit " + pfx, func() error {
			_, err := cli.RoleGrantPermission(ctx, "tokend-rw", pfx, clientv3.GetPrefixRangeEnd(pfx), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}})
	}
	steps = append(steps, struct {
		what string
		do   func() error
	}{"enable auth", func() error { _, err := cli.AuthEnable(ctx); return err }})
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd RBAC: %s: %v", s.what, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Username: "root", Password: rootPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root
}

// TestEtcdStoreWithPassword: on an etcd member with RBAC enabled, the store
// opens with store.etcd_username and the password from
// store.etcd_password_file, and a write and a read go through it (the keys
// land under the prefix). Without credentials, and with a wrong password,
// opening fails; the wrong password's error names the user and shows no
// password.
func TestEtcdStoreWithPassword(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	root := enableEtcdAuth(t, c.Endpoints())
	ctx := context.Background()
	open := func(t *testing.T, extra ...string) (*openedStore, error) {
		t.Helper()
		args := append([]string{"--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", etcdAuthPrefix}, extra...)
		cfg, err := loadConfig(parseFlags(t, args...), mapEnv(nil))
		if err != nil {
			t.Fatal(err)
		}
		paths, err := newDataPaths(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return openConfiguredStore(ctx, cfg, paths, storeOpenOptions{NoPurge: true})
	}

	t.Run("right password", func(t *testing.T) {
		st, err := open(t, "--etcd-username", "tokend", "--etcd-password-file", writePasswordFile(t, etcdTestPassword+"\n", 0o600))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Update(ctx, func(tx appliance.Tx) error { return tx.Put([]byte("rbac"), []byte("works")) }); err != nil {
			t.Fatalf("Update: %v", err)
		}
		var got []byte
		if err := st.View(ctx, func(tx appliance.Tx) error {
			var err error
			got, err = tx.Get([]byte("rbac"))
			return err
		}); err != nil {
			t.Fatalf("View: %v", err)
		}
		if string(got) != "works" {
			t.Errorf("Get = %q", got)
		}
		if err := st.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if n := st.Size(); n <= 0 {
			t.Errorf("Size = %d; want the member's database size (etcd's Status as user tokend)", n)
		}
		resp, err := root.Get(ctx, etcdAuthPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count == 0 {
			t.Errorf("keys under %s, read as root: %v %v", etcdAuthPrefix, resp, err)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		st, err := open(t)
		if err == nil {
			st.Close()
			t.Fatal("opened without credentials: is RBAC on?")
		}
		t.Logf("without credentials: %v", err)
	})

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "wrong-pw-Kx9"
		st, err := open(t, "--etcd-username", "tokend", "--etcd-password-file", writePasswordFile(t, wrong+"\n", 0o600))
		if err == nil {
			st.Close()
			t.Fatal("opened with a wrong password")
		}
		msg := err.Error()
		t.Logf("wrong password: %s", msg)
		if !strings.Contains(msg, `user "tokend"`) || !strings.Contains(msg, "authentication failed") {
			t.Errorf("error %q; want it to name user \"tokend\" and say authentication failed", msg)
		}
		if strings.Contains(msg, wrong) || strings.Contains(msg, etcdTestPassword) {
			t.Errorf("error shows a password: %q", msg)
		}
	})
}

// TestServeEtcdWithPassword: `tokend serve --store etcd --etcd-username …
// --etcd-password-file …` on an RBAC-enabled etcd becomes ready, announces
// itself and runs the runner election under the granted prefixes, and its
// debug log never holds the password; `tokend migrate --from etcd:` reads
// the same store with the same flags; a wrong password stops serve with an
// error naming the user and no password.
func TestServeEtcdWithPassword(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	root := enableEtcdAuth(t, c.Endpoints())
	pwFile := writePasswordFile(t, etcdTestPassword+"\n", 0o600)
	storeArgs := []string{"--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", etcdAuthPrefix, "--etcd-username", "tokend"}
	dir := t.TempDir()
	in := startTokend(t, dir, append(storeArgs, "--etcd-password-file", pwFile, "--log-level", "debug")...)
	if s := readyzStatus(t, in); s != http.StatusOK {
		t.Fatalf("/readyz = %d\n%s", s, in.logs.String())
	}
	in.call(t, "GET", "/api/v1/tokens", "", nil, http.StatusOK, nil)
	ctx := context.Background()
	for _, pfx := range []string{nodesPrefix(etcdAuthPrefix), runnerElectionPrefix(etcdAuthPrefix)} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := root.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err == nil && resp.Count > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no key under %s: %v\n%s", pfx, err, in.logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	if logs := in.logs.String(); strings.Contains(logs, etcdTestPassword) {
		t.Errorf("serve's log shows the etcd password:\n%s", logs)
	}

	copyFile := filepath.Join(t.TempDir(), "copy.db")
	code, out := runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "etcd:", "--to", "bolt:" + copyFile, "--etcd-password-file", pwFile}, storeArgs...)...)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("migrate from the RBAC etcd: %d %q", code, out)
	}
	if len(allPairs(t, copyFile)) == 0 {
		t.Error("migrate copied nothing")
	}
	if strings.Contains(out, etcdTestPassword) {
		t.Errorf("migrate output shows the password: %q", out)
	}

	const wrong = "wrong-pw-Kx9"
	code, out = runCLI(t, append([]string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
		"--log-level", "debug", "--etcd-password-file", writePasswordFile(t, wrong+"\n", 0o600)}, storeArgs...)...)
	if code == 0 || !strings.Contains(out, `user "tokend"`) {
		t.Errorf("serve with a wrong password: %d %q; want a failure naming user \"tokend\"", code, out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, etcdTestPassword) {
		t.Errorf("serve's output shows a password: %q", out)
	}
}
