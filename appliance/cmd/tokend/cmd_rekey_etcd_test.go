package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"tokend/appliance"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/seal"
	"tokend/internal/etcdtest"
)

// rekeyEtcd is the rekey fixture copied onto one prefix of a real etcd.
type rekeyEtcd struct {
	rs        *rekeyStore
	ep        string
	prefix    string
	dir       string   // the node's data dir (master.key: the old key)
	storeArgs []string // --store etcd …
}

// onEtcd migrates the fixture's bbolt store to prefix, as an operator moves
// a stopped tokend to etcd.
func onEtcd(t *testing.T, rs *rekeyStore, ep, prefix string) *rekeyEtcd {
	t.Helper()
	dir := rs.dataDir(t)
	b, err := os.ReadFile(rs.oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "migrate", "--data-dir", dir, "--from", "bolt:"+filepath.Join(dir, "tokend.db"),
		"--to", "etcd:"+ep, "--etcd-prefix", prefix)
	if code != 0 {
		t.Fatalf("migrate: exit %d:\n%s", code, out)
	}
	// The node's data dir on etcd holds no store: a rekey that rotated a
	// file left behind would leave etcd as it was, and the test sees it.
	if err := os.Remove(filepath.Join(dir, "tokend.db")); err != nil {
		t.Fatal(err)
	}
	return &rekeyEtcd{rs: rs, ep: ep, prefix: prefix, dir: dir,
		storeArgs: []string{"--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", prefix}}
}

// where is how rekey names this store.
func (e *rekeyEtcd) where() string { return "etcd store at " + e.ep + " prefix " + e.prefix }

// rekey runs tokend rekey in process on this store.
func (e *rekeyEtcd) rekey(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runCLI(t, append(append([]string{"rekey", "--data-dir", e.dir}, e.storeArgs...), args...)...)
}

// keys are the arguments of a rotation from the old key to the new one.
func (e *rekeyEtcd) keys(extra ...string) []string {
	return append([]string{"--master-key-file", e.rs.oldKey, "--new-key-file", e.rs.newKey}, extra...)
}

func (e *rekeyEtcd) open(t *testing.T, readOnly bool) *etcdstore.Store {
	t.Helper()
	st, err := openEtcd(context.Background(), StoreConfig{Backend: backendEtcd, EtcdEndpoints: e.ep, EtcdPrefix: e.prefix,
		EtcdRequestTimeout: etcdstore.DefaultRequestTimeout}, storeOpenOptions{ReadOnly: readOnly, NoPurge: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func (e *rekeyEtcd) status(t *testing.T, st appliance.Store) appliance.RekeyStatus {
	t.Helper()
	s, err := appliance.ReadRekeyStatus(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nodes counts the runner election keys of the prefix.
func (e *rekeyEtcd) nodes(t *testing.T, st *etcdstore.Store) int64 {
	t.Helper()
	n, err := runningNodes(context.Background(), st, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// campaign stands for a node: a session with ttl seconds and its key in
// the runner election, as `tokend serve` makes them.
func (e *rekeyEtcd) campaign(t *testing.T, st *etcdstore.Store, ttl int) *concurrency.Session {
	t.Helper()
	sess, err := concurrency.NewSession(st.Client(), concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := concurrency.NewElection(sess, runnerElectionPrefix(e.prefix)).Campaign(ctx, "fake-node"); err != nil {
		t.Fatal(err)
	}
	return sess
}

// verify checks that the store works under keyFile only: the audit chain
// (tokend audit verify), a Service with the other key refused at its key
// check, and every sealed secret and code through a Service (verifyStore).
func (e *rekeyEtcd) verify(t *testing.T, keyFile, otherFile string) {
	t.Helper()
	key, other := readKeyFiles(t, keyFile, otherFile)
	audit := append([]string{"audit", "verify", "--data-dir", e.dir}, e.storeArgs...)
	if code, out := runCLI(t, append(audit, "--master-key-file", keyFile)...); code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("tokend audit verify: exit %d\n%s", code, out)
	}
	if code, out := runCLI(t, append(audit, "--master-key-file", otherFile)...); code == 0 {
		t.Fatalf("tokend audit verify accepted the other key:\n%s", out)
	}
	st := e.open(t, false)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})
	if err := serviceWithKey(t, st, other).Init(ctx); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("Init with the other key: %v, want seal.ErrWrongKey", err)
	}
	e.rs.verifyStore(t, st, key, other)
}

// serveRefused runs tokend serve in process on the store with keyFile and
// returns its message; it fails the test if serve starts.
func (e *rekeyEtcd) serveRefused(t *testing.T, keyFile string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	argv := append([]string{"serve", "--data-dir", e.dir, "--master-key-file", keyFile, "--admin-listen", "127.0.0.1:0",
		"--ctkip-listen", "127.0.0.1:0", "--radius-listen", "", "--log-format", "json"}, e.storeArgs...)
	if code := a.execute(ctx, argv); code == 0 || ctx.Err() != nil {
		t.Fatalf("tokend serve with %s: exit %d (context: %v)\n%s", keyFile, code, ctx.Err(), out.String())
	}
	return out.String()
}

// sealedRecords is what a refused rekey must leave as it was: the tokens
// (their sealed seeds) and the key records.
func sealedRecords(t *testing.T, st appliance.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range dumpStore(t, st) {
		if strings.HasPrefix(k, "t/") || strings.HasPrefix(k, "meta/keycheck") || k == "meta/hash-key" ||
			k == "meta/rekey" || k == "meta/ctkip-key" {
			out[k] = v
		}
	}
	return out
}

// TestRekeyEtcd rotates the master key of a store on a real etcd with the
// tokend rekey command: a full rotation, refusals while a node runs on the
// prefix (a real tokend serve, and a node that died within its lease), a
// node that appears during a rotation, and a rotation SIGKILLed midway then
// resumed or rolled back. Each case has its own prefix.
func TestRekeyEtcd(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	rs := newRekeyStore(t, 60)
	oldFP, newFP := keyFingerprint(t, rs.oldKey), keyFingerprint(t, rs.newKey)

	t.Run("rotates", func(t *testing.T) {
		e := onEtcd(t, rs, ep, "/rekey-rotate/")
		code, out := e.rekey(t, "--status", "--master-key-file", rs.oldKey, "--new-key-file", rs.newKey)
		for _, want := range []string{e.where() + ": key check of key " + oldFP, "rotation: none",
			"master key " + rs.oldKey + ": key " + oldFP + ", the store's key", "new key " + rs.newKey + ": key " + newFP + ", not this store's key"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Fatalf("status before: exit %d, lacks %q:\n%s", code, want, out)
			}
		}
		code, out = e.rekey(t, e.keys()...)
		if code != 0 || !strings.Contains(out, "master key rotated") || !strings.Contains(out, "the "+e.where()+" now holds key "+newFP) {
			t.Fatalf("rekey: exit %d\n%s", code, out)
		}
		t.Logf("rekey:\n%s", out)
		code, out = e.rekey(t, "--status", "--master-key-file", rs.newKey, "--new-key-file", rs.oldKey)
		for _, want := range []string{e.where() + ": key check of key " + newFP, "rotation: none",
			"master key " + rs.newKey + ": key " + newFP + ", the store's key", "new key " + rs.oldKey + ": key " + oldFP + ", not this store's key"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Fatalf("status after: exit %d, lacks %q:\n%s", code, want, out)
			}
		}
		st := e.open(t, true)
		before := dumpStore(t, st)
		if code, out = e.rekey(t, e.keys()...); code != 0 || !strings.Contains(out, "the "+e.where()+" already holds key "+newFP) {
			t.Fatalf("rekey again: exit %d\n%s", code, out)
		}
		if diff := cmp.Diff(before, dumpStore(t, st)); diff != "" {
			t.Fatalf("running a finished rotation again changed the store:\n%s", diff)
		}
		if out := e.serveRefused(t, rs.oldKey); !strings.Contains(out, "master key "+rs.oldKey+" is not the key of the store etcd") {
			t.Fatalf("serve with the old key: want the key refused:\n%s", out)
		}
		e.verify(t, rs.newKey, rs.oldKey)
		// The node starts with the new key.
		in := startTokend(t, e.dir, append(e.storeArgs, "--master-key-file", rs.newKey)...)
		if err := in.stop(); err != nil {
			t.Fatalf("%v\n%s", err, in.logs.String())
		}
	})

	t.Run("refused while a node runs", func(t *testing.T) {
		e := onEtcd(t, rs, ep, "/rekey-busy/")
		st := e.open(t, true)
		in := startTokend(t, e.dir, e.storeArgs...)
		deadline := time.Now().Add(10 * time.Second)
		for e.nodes(t, st) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the running node holds no runner election key after 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// serve announced itself (before its key check) as well.
		if resp, err := st.Client().Get(context.Background(), nodesPrefix(e.prefix), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 1 {
			t.Fatalf("presence keys of the running node: %v %v; want 1", resp, err)
		}
		before := sealedRecords(t, st)
		refused := "1 tokend node(s) are running on etcd prefix " + e.prefix + ": stop every node first; `tokend rekey --status` works meanwhile " +
			"(a node that died within the last 10s may still be counted: wait and retry)"
		tests := []struct {
			name string
			args []string
			code int
			want string
		}{
			{name: "rotate", args: e.keys(), code: 1, want: refused},
			{name: "resume", args: e.keys("--resume"), code: 1, want: refused},
			{name: "rollback", args: e.keys("--rollback"), code: 1, want: refused},
			{name: "status", args: []string{"--status", "--master-key-file", rs.oldKey}, code: 0, want: "rotation: none"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, out := e.rekey(t, tc.args...)
				if code != tc.code || !strings.Contains(out, tc.want) {
					t.Fatalf("exit %d, want %d and %q:\n%s", code, tc.code, tc.want, out)
				}
			})
		}
		if s := e.status(t, st); s.State != "" || seal.Fingerprint(s.KeyCheck) != oldFP {
			t.Fatalf("after the refusals the store is at %+v, want key %s and no rotation", s, oldFP)
		}
		if diff := cmp.Diff(before, sealedRecords(t, st)); diff != "" {
			t.Fatalf("a refused rekey changed the sealed records (-before +after):\n%s", diff)
		}
		// A node that stops resigns: its key goes with it, or at the
		// latest when its lease ends.
		if err := in.stop(); err != nil {
			t.Fatalf("%v\n%s", err, in.logs.String())
		}
		stopped := time.Now()
		for e.nodes(t, st) > 0 {
			if time.Since(stopped) > 12*time.Second {
				t.Fatal("the stopped node's election key outlived its lease")
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("the stopped node's election key was gone %v after it stopped", time.Since(stopped).Round(time.Millisecond))
		if code, out := e.rekey(t, e.keys()...); code != 0 || !strings.Contains(out, "now holds key "+newFP) {
			t.Fatalf("rekey after the node stopped: exit %d\n%s", code, out)
		}
		e.verify(t, rs.newKey, rs.oldKey)
	})

	t.Run("refused until a dead node's lease ends", func(t *testing.T) {
		e := onEtcd(t, rs, ep, "/rekey-dead/")
		st := e.open(t, true)
		// A killed node's session stops renewing its lease; Orphan does
		// the same. 2 s stands for runnerTTL's 10 s.
		sess := e.campaign(t, st, 2)
		sess.Orphan()
		code, out := e.rekey(t, e.keys()...)
		if code != 1 || !strings.Contains(out, "1 tokend node(s) are running on etcd prefix "+e.prefix) {
			t.Fatalf("rekey while a dead node's lease lives: exit %d\n%s", code, out)
		}
		died := time.Now()
		for e.nodes(t, st) > 0 {
			if time.Since(died) > 10*time.Second {
				t.Fatal("the election key outlived its 2 s lease by far")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code, out := e.rekey(t, e.keys()...); code != 0 || !strings.Contains(out, "now holds key "+newFP) {
			t.Fatalf("rekey once the lease ended: exit %d\n%s", code, out)
		}
	})

	// A starting node puts its presence key before its key check, before
	// it campaigns: counted from that moment.
	t.Run("a node between its announcement and its campaign", func(t *testing.T) {
		e := onEtcd(t, rs, ep, "/rekey-announced/")
		st := e.open(t, true)
		leave, err := announceNode(context.Background(), st.Client(), e.prefix, "starting-node", runnerTTL)
		if err != nil {
			t.Fatal(err)
		}
		code, out := e.rekey(t, e.keys()...)
		if code != 1 || !strings.Contains(out, "1 tokend node(s) are running on etcd prefix "+e.prefix) {
			leave()
			t.Fatalf("rekey while a node has announced itself: exit %d\n%s", code, out)
		}
		leave()
		if n := e.nodes(t, st); n != 0 {
			t.Fatalf("%d nodes counted after the node left", n)
		}
		if code, out := e.rekey(t, e.keys()...); code != 0 || !strings.Contains(out, "now holds key "+newFP) {
			t.Fatalf("rekey once the node left: exit %d\n%s", code, out)
		}
	})

	t.Run("node appears during the rotation", func(t *testing.T) {
		e := onEtcd(t, rs, ep, "/rekey-during/")
		st := e.open(t, true)
		type result struct {
			code int
			out  string
		}
		done := make(chan result, 1)
		go func() {
			var out bytes.Buffer
			a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
			code := a.execute(context.Background(), append(append([]string{"rekey", "--data-dir", e.dir}, e.storeArgs...), e.keys("--chunk", "1")...))
			done <- result{code, out.String()}
		}()
		// A node that passed its start-up check before the journal was
		// written campaigns once the rotation runs.
		var sess *concurrency.Session
		for sess == nil {
			select {
			case r := <-done:
				t.Fatalf("the rotation ended before a node could appear: exit %d\n%s", r.code, r.out)
			default:
			}
			if s := e.status(t, st); s.State == appliance.RekeyForward && s.Resealed > 0 {
				sess = e.campaign(t, st, 10)
			}
		}
		var r result
		select {
		case r = <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("the rotation did not stop")
		}
		want := "1 tokend node(s) started on etcd prefix " + e.prefix + " during the rotation, which stopped: stop every node, then run the same tokend rekey command again to finish"
		if r.code != 1 || !strings.Contains(r.out, want) {
			t.Fatalf("exit %d, want 1 and %q:\n%s", r.code, want, r.out)
		}
		if s := e.status(t, st); s.State != appliance.RekeyForward {
			t.Fatalf("after the stop the store is at %+v, want a rotation in progress", s)
		}
		if err := sess.Close(); err != nil { // the node stops
			t.Fatal(err)
		}
		if code, out := e.rekey(t, e.keys()...); code != 0 || !strings.Contains(out, "now holds key "+newFP) {
			t.Fatalf("rekey after the node stopped: exit %d\n%s", code, out)
		}
		e.verify(t, rs.newKey, rs.oldKey)
	})

	t.Run("killed midway", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "tokend")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		resealed := regexp.MustCompile(`, (\d+) secrets re-sealed, at `)
		tests := []struct {
			name     string
			finish   []string // the command that finishes (after the rotation's keys)
			rollback bool
		}{
			{name: "run again", finish: nil},
			{name: "resume", finish: []string{"--resume"}},
			{name: "rollback", finish: []string{"--rollback"}, rollback: true},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// A kill that came after the last transaction finds the
				// rotation done: try again on a fresh prefix, killing sooner.
				var e *rekeyEtcd
				var status string
				for attempt, maxDelay := 0, 40*time.Millisecond; attempt < 4; attempt, maxDelay = attempt+1, maxDelay/4 {
					e = onEtcd(t, rs, ep, fmt.Sprintf("/rekey-kill%d-%d/", i, attempt))
					argv := append(append([]string{bin, "rekey", "--data-dir", e.dir}, e.storeArgs...), e.keys("--chunk", "1")...)
					killMidway(t, argv, "re-sealing token seeds", maxDelay)
					var code int
					code, status = e.rekey(t, "--status", "--master-key-file", rs.oldKey, "--new-key-file", rs.newKey)
					if code != 0 {
						t.Fatalf("rekey --status: exit %d\n%s", code, status)
					}
					if strings.Contains(status, "rotation: IN PROGRESS") {
						break
					}
					t.Logf("attempt %d: the rotation finished before the kill:\n%s", attempt, status)
				}
				t.Logf("after the kill:\n%s", status)
				m := resealed.FindStringSubmatch(status)
				if !strings.Contains(status, "rotation: IN PROGRESS from key "+oldFP+" to key "+newFP) || m == nil ||
					!strings.Contains(status, "the old key of the rotation") || !strings.Contains(status, "the new key of the rotation") {
					t.Fatalf("status after the kill: want a rotation in progress naming both key files:\n%s", status)
				}
				if n, _ := strconv.Atoi(m[1]); n < 1 {
					t.Fatalf("killed before it re-sealed anything:\n%s", status)
				}
				for _, key := range []string{rs.oldKey, rs.newKey} {
					if out := e.serveRefused(t, key); !strings.Contains(out, "rekey") || !strings.Contains(out, "--rollback") {
						t.Fatalf("serve on a half-rotated store with %s: want the rotation named:\n%s", key, out)
					}
				}
				code, out := e.rekey(t, e.keys(tc.finish...)...)
				if tc.rollback {
					if code != 0 || !strings.Contains(out, "rotation rolled back") || !strings.Contains(out, "the "+e.where()+" holds key "+oldFP+" ("+rs.oldKey+") again") {
						t.Fatalf("rollback: exit %d\n%s", code, out)
					}
					e.verify(t, rs.oldKey, rs.newKey)
					return
				}
				if code != 0 || !strings.Contains(out, "master key rotated") {
					t.Fatalf("finish: exit %d\n%s", code, out)
				}
				code, status = e.rekey(t, "--status", "--master-key-file", rs.newKey)
				if code != 0 || !strings.Contains(status, "rotation: none") || !strings.Contains(status, "key check of key "+newFP) {
					t.Fatalf("status after the rotation: exit %d\n%s", code, status)
				}
				e.verify(t, rs.newKey, rs.oldKey)
			})
		}
	})
}
