package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
	"tokend/ctkip"
	"tokend/internal/etcdtest"
)

// runCLI runs one tokend command line and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	code := a.execute(context.Background(), args)
	return code, out.String()
}

func readyzStatus(t *testing.T, in *instance) int {
	t.Helper()
	resp, err := in.client.Get(in.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEtcdServeEndToEnd: tokend serve on a real etcd member walks the seed
// procedure (import → assign → distribute → CT-KIP provision → verify a
// tokencode), keeps no database in its data directory, reports not ready
// while etcd is down, and `tokend audit verify` reads the chain from etcd.
func TestEtcdServeEndToEnd(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	dir := t.TempDir()
	storeArgs := []string{"--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", "/e2e/"}
	in := startTokend(t, dir, storeArgs...)

	_, d := seedProcedure(t, in)
	res, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode)
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, in.logs.String())
	}
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err == nil {
		t.Fatal("a used code provisioned again")
	}
	code := acceptsTokencode(t, in, "alice", res)
	var auth struct {
		Result string `json:"result"`
	}
	in.json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": "alice", "passcode": code}, http.StatusOK, &auth)
	if auth.Result == "accept" {
		t.Fatal("a tokencode was accepted twice")
	}
	if _, err := os.Stat(filepath.Join(dir, "tokend.db")); !os.IsNotExist(err) {
		t.Errorf("tokend.db in the data dir of an etcd node: %v", err)
	}

	if s := readyzStatus(t, in); s != http.StatusOK {
		t.Fatalf("/readyz = %d with etcd up", s)
	}
	c.Members[0].Kill()
	if s := readyzStatus(t, in); s != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with etcd down, want 503", s)
	}
	c.Members[0].Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for readyzStatus(t, in) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not ready again after etcd came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	in.call(t, "GET", "/api/v1/tokens/000100000001", "", nil, http.StatusOK, nil)

	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, append([]string{"audit", "verify", "--data-dir", dir}, storeArgs...)...); code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify on etcd: %d %q", code, out)
	}
}

// allPairs reads every pair of a bbolt file.
func allPairs(t *testing.T, path string) []appliance.KV {
	t.Helper()
	st, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []appliance.KV
	err = st.View(context.Background(), func(tx appliance.Tx) error {
		var err error
		out, err = tx.Scan(nil, nil, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateRoundTrip: a store served on bbolt goes to etcd and back;
// every key and value of the result equals the original, a second run
// changes nothing, the audit chain verifies on etcd and on the copy, and a
// destination holding other data is not overwritten without --force.
func TestMigrateRoundTrip(t *testing.T) {
	c := etcdtest.Start(t)
	ep := c.Endpoints()[0]
	dir := t.TempDir()
	in := startTokend(t, dir)
	_, d := seedProcedure(t, in)
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err != nil {
		t.Fatal(err)
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(dir, "tokend.db")
	etcdArgs := []string{"--etcd-prefix", "/mig/"}

	code, out := runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "bolt:" + orig, "--to", "etcd:" + ep}, etcdArgs...)...)
	if code != 0 || !strings.Contains(out, "verified") || strings.Contains(out, " 0 written") {
		t.Fatalf("migrate to etcd: %d %q", code, out)
	}
	code, out = runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "bolt:" + orig, "--to", "etcd:" + ep}, etcdArgs...)...)
	if code != 0 || !strings.Contains(out, " 0 written, 0 removed") {
		t.Fatalf("second migrate must change nothing: %d %q", code, out)
	}
	code, out = runCLI(t, append([]string{"audit", "verify", "--data-dir", dir, "--store", "etcd", "--etcd-endpoints", ep}, etcdArgs...)...)
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify on etcd: %d %q", code, out)
	}

	back := filepath.Join(t.TempDir(), "tokend.db")
	code, out = runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "etcd:" + ep, "--to", "bolt:" + back}, etcdArgs...)...)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("migrate back: %d %q", code, out)
	}
	want, got := allPairs(t, orig), allPairs(t, back)
	if len(want) < 20 {
		t.Fatalf("only %d keys in the original store", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("round trip bolt → etcd → bolt (-orig +back):\n%s", diff)
	}
	code, out = runCLI(t, "audit", "verify", "--data-dir", filepath.Dir(back), "--master-key-file", filepath.Join(dir, "master.key"))
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify on the copy: %d %q", code, out)
	}

	// Another store's data is not overwritten by accident.
	other := t.TempDir()
	o := startTokend(t, other)
	if err := o.stop(); err != nil {
		t.Fatal(err)
	}
	code, out = runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "bolt:" + filepath.Join(other, "tokend.db"), "--to", "etcd:" + ep}, etcdArgs...)...)
	if code == 0 || !strings.Contains(out, "--force") {
		t.Fatalf("migrate over other data without --force: %d %q", code, out)
	}
	code, out = runCLI(t, append([]string{"migrate", "--data-dir", dir, "--from", "etcd:" + ep, "--to", "bolt:" + back}, etcdArgs...)...)
	if code != 0 || !strings.Contains(out, " 0 written, 0 removed") {
		t.Fatalf("etcd still holds the first store: %d %q", code, out)
	}
}

// acceptsTokencode computes the current tokencode of a provisioned seed,
// checks that in accepts it for user, and returns it.
func acceptsTokencode(t *testing.T, in *instance, user string, res ctkip.Result) string {
	t.Helper()
	gen, err := otp.NewSecurID(res.Seed[:], res.Serial, res.Digits, res.Interval)
	if err != nil {
		t.Fatal(err)
	}
	code, err := gen.Code(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var auth struct {
		Result string `json:"result"`
	}
	in.json(t, "POST", "/api/v1/authenticate", map[string]string{"user_name": user, "passcode": code}, http.StatusOK, &auth)
	if auth.Result != "accept" {
		t.Fatalf("%s refused the tokencode of the provisioned seed: %+v", in.admin, auth)
	}
	return code
}
