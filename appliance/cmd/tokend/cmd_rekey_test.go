package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
	"tokend/appliance/seal"
)

// rekeyStore is a stopped tokend's store written under one master key: n
// provisioned tokens (three per user), an activation code not yet used and
// an API token, whose keyed hashes must survive a rotation.
type rekeyStore struct {
	db            string // the store file to copy into each trial's data dir
	oldKey        string // key files
	newKey        string
	serials       []string
	users         []string
	pendingUser   string
	pendingSerial string
	pendingCode   string
	apiToken      string
}

func rekeyTestSeed(serial string) []byte {
	sum := sha256.Sum256([]byte("rekey " + serial))
	return sum[:16]
}

func writeKeyFile(t *testing.T, path string) []byte {
	t.Helper()
	k := make([]byte, masterKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// offlineStore makes a new bbolt store at db as a stopped tokend's, sealed
// with key and initialised, holding n CSV-imported tokens numbered from
// first and the CT-KIP profile "p". The caller closes the store.
func offlineStore(t *testing.T, db string, key []byte, first, n int) (*boltstore.Store, *appliance.Service, context.Context) {
	t.Helper()
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := serviceWithKey(t, st, key)
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("serial\n")
	for i := range n {
		fmt.Fprintf(&csv, "%012d\n", first+i)
	}
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(csv.String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, appliance.Profile{Name: "p", DeviceType: appliance.DeviceAndroid,
		DeliveryMethod: appliance.DeliveryCTKIP, PINMode: appliance.PINModeNone, Digits: 8, Interval: 60}); err != nil {
		t.Fatal(err)
	}
	return st, svc, ctx
}

// readKeyFiles reads two master key files.
func readKeyFiles(t *testing.T, a, b string) (ka, kb []byte) {
	t.Helper()
	var err error
	if ka, err = readMasterKey(a, true); err != nil {
		t.Fatal(err)
	}
	if kb, err = readMasterKey(b, true); err != nil {
		t.Fatal(err)
	}
	return ka, kb
}

// serviceWithKey is a Service on st sealing with key, as a command run on
// a stopped tokend's store builds it.
func serviceWithKey(tb testing.TB, st appliance.Store, key []byte) *appliance.Service {
	tb.Helper()
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

func newRekeyStore(t *testing.T, n int) *rekeyStore {
	t.Helper()
	dir := t.TempDir()
	rs := &rekeyStore{db: filepath.Join(dir, "tokend.db"), oldKey: filepath.Join(dir, "old.key"), newKey: filepath.Join(dir, "new.key")}
	key := writeKeyFile(t, rs.oldKey)
	writeKeyFile(t, rs.newKey)
	st, svc, ctx := offlineStore(t, rs.db, key, 170000000000, n+1)
	defer st.Close()
	provision := func(userName string, serials []string, complete bool) string {
		u, err := svc.CreateUser(ctx, appliance.NewUser{UserName: userName})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.AssignTokens(ctx, u.ID, serials); err != nil {
			t.Fatal(err)
		}
		var code string
		for _, serial := range serials {
			d, err := svc.Distribute(ctx, serial, "p")
			if err != nil {
				t.Fatal(err)
			}
			code = d.ActivationCode.Reveal()
			if complete {
				if _, err := svc.CompleteProvisioning(ctx, code, rekeyTestSeed(serial)); err != nil {
					t.Fatal(err)
				}
			}
		}
		return code
	}
	for i := 0; i < n; i += 3 {
		var group []string
		for j := i; j < i+3 && j < n; j++ {
			group = append(group, fmt.Sprintf("%012d", 170000000000+j))
		}
		name := fmt.Sprintf("user%03d", i/3)
		provision(name, group, true)
		rs.users = append(rs.users, name)
		rs.serials = append(rs.serials, group...)
	}
	rs.pendingUser, rs.pendingSerial = "pending", fmt.Sprintf("%012d", 170000000000+n)
	rs.pendingCode = provision(rs.pendingUser, []string{rs.pendingSerial}, false)
	_, tok, err := svc.CreateAPIToken(ctx, "ops", appliance.RoleHelpdesk)
	if err != nil {
		t.Fatal(err)
	}
	rs.apiToken = tok.Reveal()
	if _, err := svc.CTKIPKey(ctx, 1024); err != nil {
		t.Fatal(err)
	}
	return rs
}

// dataDir copies the store into a new data directory.
func (rs *rekeyStore) dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(rs.db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokend.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// verify checks that the store in dir works under keyFile only: Init, every
// seed opening under that key and not the other, tokencodes, the activation
// code and the API token issued before, and (with the binary) the audit chain.
func (rs *rekeyStore) verify(t *testing.T, bin, dir, keyFile, otherFile string) {
	t.Helper()
	key, other := readKeyFiles(t, keyFile, otherFile)
	if out, err := exec.Command(bin, "audit", "verify", "--data-dir", dir, "--master-key-file", keyFile).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "audit chain intact") {
		t.Fatalf("tokend audit verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "audit", "verify", "--data-dir", dir, "--master-key-file", otherFile).CombinedOutput(); err == nil {
		t.Fatalf("tokend audit verify accepted the other key:\n%s", out)
	}
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs.verifyStore(t, st, key, other)
}

// verifyStore checks that st works under key only (see verify).
func (rs *rekeyStore) verifyStore(t *testing.T, st appliance.Store, key, other []byte) {
	t.Helper()
	right, _ := seal.New(key, rand.Reader)
	wrong, _ := seal.New(other, rand.Reader)
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: right})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "test", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatalf("Init under the key the store should hold: %v", err)
	}
	err = st.View(ctx, func(tx appliance.Tx) error {
		kvs, err := tx.Scan([]byte("t/"), nil, 0)
		if err != nil {
			return err
		}
		seeded := 0
		for _, kv := range kvs {
			var tok appliance.Token
			if err := json.Unmarshal(kv.Value, &tok); err != nil {
				return err
			}
			if len(tok.Seed) == 0 {
				continue
			}
			seeded++
			aad := "token/" + tok.Serial + "/seed"
			if _, err := wrong.Open(tok.Seed, aad); err == nil {
				return fmt.Errorf("the seed of %s opens under the other key", tok.Serial)
			}
			if _, err := right.Open(tok.Seed, aad); err != nil {
				return fmt.Errorf("the seed of %s does not open under the store's key", tok.Serial)
			}
		}
		if seeded != len(rs.serials) {
			return fmt.Errorf("%d seeded tokens, want %d", seeded, len(rs.serials))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	step := time.Now().Unix() / 60
	for i := 0; i < len(rs.users); i += 9 {
		serial := rs.serials[3*i]
		g, err := otp.NewSecurID(rekeyTestSeed(serial), serial, 8, 60)
		if err != nil {
			t.Fatal(err)
		}
		code, err := g.CodeAt(step)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := svc.Authenticate(ctx, appliance.AuthRequest{UserName: rs.users[i], Passcode: code}); err != nil || r.Result != appliance.AuthAccept {
			t.Fatalf("tokencode of %s: %+v %v", rs.users[i], r, err)
		}
	}
	if _, err := svc.CompleteProvisioning(ctx, rs.pendingCode, rekeyTestSeed(rs.pendingSerial)); err != nil {
		t.Fatalf("activation code issued before the rotation: %v", err)
	}
	if _, err := svc.AuthenticateAPIToken(ctx, rs.apiToken); err != nil {
		t.Fatalf("API token issued before the rotation: %v", err)
	}
	if _, err := svc.CTKIPKey(ctx, 1024); err != nil {
		t.Fatalf("CT-KIP key: %v", err)
	}
}

// killMidway starts argv, waits for a line of its output containing line
// (any line when line is empty: the rotation has begun), then SIGKILLs it
// after a random delay up to max. It reports whether the process was still
// running when killed; one that ends without printing line fails the test.
func killMidway(t *testing.T, argv []string, line string, max time.Duration) bool {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), line) {
				found = true
				seen <- true
			}
		}
		if !found {
			seen <- false
		}
	}()
	select {
	case ok := <-seen:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("%v never printed %q; stderr: %s", argv, line, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("%v printed no %q in 60s; stderr: %s", argv, line, stderr.String())
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(max)+1))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(n.Int64()))
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == -1 {
		return true // killed by the signal
	}
	if err != nil {
		t.Fatalf("%v: %v; stderr: %s", argv, err, stderr.String())
	}
	return false
}

func runBin(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// TestRekeyCommandKilledMidway builds tokend, rotates the master key of a
// store with many tokens in small transactions, SIGKILLs the command at
// random moments (twice per trial), checks that tokend serve refuses the
// half-rotated store and that --status says so, then resumes (or rolls back,
// itself killed once) and checks that every secret works under the right key
// only.
func TestRekeyCommandKilledMidway(t *testing.T) {
	rs := newRekeyStore(t, 240)
	bin := filepath.Join(t.TempDir(), "tokend")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	rekeyArgs := func(dir string, extra ...string) []string {
		return append([]string{bin, "rekey", "--data-dir", dir, "--master-key-file", rs.oldKey, "--new-key-file", rs.newKey, "--chunk", "4"}, extra...)
	}
	// An uninterrupted run gives the time scale of the random kills.
	dir := rs.dataDir(t)
	start := time.Now()
	out, err := runBin(t, rekeyArgs(dir)...)
	took := time.Since(start)
	if err != nil || !strings.Contains(out, "master key rotated") {
		t.Fatalf("rekey: %v\n%s", err, out)
	}
	t.Logf("an uninterrupted rotation took %v", took)
	rs.verify(t, bin, dir, rs.newKey, rs.oldKey)

	interrupted, rolledBack := 0, 0
	oldFP, newFP := keyFingerprint(t, rs.oldKey), keyFingerprint(t, rs.newKey)
	for trial := range 6 {
		rollback := trial%3 == 2
		name := fmt.Sprintf("trial %d resume", trial)
		if rollback {
			name = fmt.Sprintf("trial %d rollback", trial)
		}
		t.Run(name, func(t *testing.T) {
			// Two kills: the second interrupts the resumed rotation, which
			// has less left to do. A rotation that finished before the
			// kills (a random delay on a loaded machine) is tried again on
			// a fresh store with shorter delays, a few times at most.
			var dir, status string
			for attempt, scale := 0, took/2; attempt < 4; attempt, scale = attempt+1, scale/2 {
				dir = rs.dataDir(t)
				killMidway(t, rekeyArgs(dir), "", scale)
				killMidway(t, rekeyArgs(dir), "", scale/2)
				var err error
				status, err = runBin(t, bin, "rekey", "--status", "--data-dir", dir, "--master-key-file", rs.oldKey, "--new-key-file", rs.newKey)
				if err != nil {
					t.Fatalf("rekey --status: %v\n%s", err, status)
				}
				if strings.Contains(status, "rotation: IN PROGRESS") {
					break
				}
			}
			if strings.Contains(status, "rotation: IN PROGRESS") {
				interrupted++
				if !strings.Contains(status, "the old key of the rotation") || !strings.Contains(status, "the new key of the rotation") {
					t.Fatalf("status does not name the key files:\n%s", status)
				}
				// Neither key opens a half-rotated store.
				for _, key := range []string{rs.oldKey, rs.newKey} {
					out, err := runBin(t, bin, "serve", "--data-dir", dir, "--master-key-file", key,
						"--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0", "--radius-listen", "")
					if err == nil || !strings.Contains(out, "rekey") || !strings.Contains(out, "--rollback") {
						t.Fatalf("serve on a half-rotated store: %v\n%s", err, out)
					}
				}
			} else if !strings.Contains(status, "new key "+rs.newKey+": key "+newFP+", the store's key") {
				// The kills came after the rotation's last transaction; it
				// never leaves a store that is neither mid-way nor rotated.
				t.Fatalf("after the kills the store is neither mid-rotation nor rotated:\n%s", status)
			}
			if rollback {
				wasMid := strings.Contains(status, "rotation: IN PROGRESS")
				if wasMid {
					rolledBack++
					killMidway(t, rekeyArgs(dir, "--rollback"), "", took/4)
				}
				out, err := runBin(t, rekeyArgs(dir, "--rollback")...)
				switch {
				case err == nil && strings.Contains(out, "rotation rolled back"):
				case wasMid && strings.Contains(out, "no master key rotation is in progress: the store holds key "+oldFP):
					// The killed rollback had finished before the kill.
				case !wasMid && strings.Contains(out, "the rotation finished"):
					rs.verify(t, bin, dir, rs.newKey, rs.oldKey)
					return
				default:
					t.Fatalf("rollback: %v\n%s", err, out)
				}
				rs.verify(t, bin, dir, rs.oldKey, rs.newKey)
				return
			}
			args := rekeyArgs(dir)
			if trial%2 == 1 {
				args = rekeyArgs(dir, "--resume")
			}
			out, err := runBin(t, args...)
			if err != nil || !strings.Contains(out, "master key rotated") && !strings.Contains(out, "already holds") {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			status, err = runBin(t, bin, "rekey", "--status", "--data-dir", dir, "--master-key-file", rs.newKey)
			if err != nil || !strings.Contains(status, "rotation: none") || !strings.Contains(status, "the store's key") {
				t.Fatalf("status after the rotation: %v\n%s", err, status)
			}
			rs.verify(t, bin, dir, rs.newKey, rs.oldKey)
		})
	}
	t.Logf("%d of 6 trials left a rotation in progress, %d of them rolled back", interrupted, rolledBack)
	if interrupted < 2 || rolledBack < 1 {
		t.Fatalf("only %d of 6 trials were killed in the middle of the rotation (%d rolled back); the test proved little", interrupted, rolledBack)
	}
}

// storeSnapshot returns every key and value of the store in dir.
func storeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return dumpStore(t, st)
}

// dumpStore returns every key and value of st.
func dumpStore(t *testing.T, st appliance.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := st.View(context.Background(), func(tx appliance.Tx) error {
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

// TestRekeyCommandRefuses: a missing, malformed, loose or identical new key,
// a current key that is not the store's, nothing to resume or roll back, and
// a running tokend are refused with a message that says so, and the store
// and the key files stay as they were.
func TestRekeyCommandRefuses(t *testing.T) {
	rs := newRekeyStore(t, 3)
	keys := t.TempDir()
	otherKey := filepath.Join(keys, "other.key")
	writeKeyFile(t, otherKey)
	sameKey := filepath.Join(keys, "same.key")
	b, err := os.ReadFile(rs.oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sameKey, b, 0o600); err != nil {
		t.Fatal(err)
	}
	badKey := filepath.Join(keys, "bad.key")
	if err := os.WriteFile(badKey, []byte(strings.Repeat("g", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	looseKey := filepath.Join(keys, "loose.key")
	writeKeyFile(t, looseKey)
	if err := os.Chmod(looseKey, 0o644); err != nil {
		t.Fatal(err)
	}
	keyFiles := func() map[string]string {
		out := map[string]string{}
		for _, p := range []string{rs.oldKey, rs.newKey, otherKey, sameKey, badKey, looseKey} {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return out
	}
	tests := []struct {
		name    string
		args    []string
		running bool
		want    string
	}{
		{name: "no new key file given", args: []string{"--master-key-file", rs.oldKey},
			want: "--new-key-file is required"},
		{name: "new key file missing", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", filepath.Join(keys, "nope.key")},
			want: "new key: master key " + filepath.Join(keys, "nope.key") + ": file does not exist"},
		{name: "new key file not hex", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", badKey},
			want: "not lowercase hex"},
		{name: "new key file readable by others", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", looseKey},
			want: "mode 0644 lets group or others access it"},
		{name: "new key is the current key", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", sameKey},
			want: "holds the same key as the current master key"},
		{name: "current key is not the store's", args: []string{"--master-key-file", otherKey, "--new-key-file", rs.newKey},
			want: "current key " + otherKey + " is not the key of the store"},
		{name: "current key missing", args: []string{"--master-key-file", filepath.Join(keys, "gone.key"), "--new-key-file", rs.newKey},
			want: "current key: master key " + filepath.Join(keys, "gone.key") + ": file does not exist"},
		{name: "resume with nothing in progress", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", rs.newKey, "--resume"},
			want: "no master key rotation is in progress"},
		{name: "rollback with nothing in progress", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", rs.newKey, "--rollback"},
			want: "no master key rotation is in progress"},
		{name: "resume and rollback", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", rs.newKey, "--resume", "--rollback"},
			want: "--resume and --rollback exclude each other"},
		{name: "tokend running on the data dir", args: []string{"--master-key-file", rs.oldKey, "--new-key-file", rs.newKey}, running: true,
			want: "is in use by a running tokend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := rs.dataDir(t)
			before, files := storeSnapshot(t, dir), keyFiles()
			if tc.running {
				// A running tokend holds the store's lock.
				st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
			}
			var out, errOut bytes.Buffer
			a := newApp(strings.NewReader(""), &out, &errOut, func(string) (string, bool) { return "", false })
			code := a.execute(context.Background(), append([]string{"rekey", "--data-dir", dir}, tc.args...))
			if code != 1 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut.String(), tc.want)
			}
			if strings.Contains(errOut.String(), strings.TrimSpace(files[rs.oldKey])) || strings.Contains(errOut.String(), strings.TrimSpace(files[rs.newKey])) {
				t.Fatal("the message shows a key")
			}
			if tc.running {
				return // the lock is still held; the snapshot below needs it
			}
			if diff := cmp.Diff(before, storeSnapshot(t, dir)); diff != "" {
				t.Fatalf("a refused rekey changed the store (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(files, keyFiles()); diff != "" {
				t.Fatalf("a refused rekey changed a key file:\n%s", diff)
			}
		})
	}
}

// TestRekeyCommandStatusAndRerun: --status names the key the store holds
// and which key files match, before and after a rotation; running a
// finished rotation again is a no-op that says so.
func TestRekeyCommandStatusAndRerun(t *testing.T) {
	rs := newRekeyStore(t, 3)
	dir := rs.dataDir(t)
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
		code := a.execute(context.Background(), append([]string{"rekey", "--data-dir", dir}, args...))
		return code, out.String()
	}
	oldFP, newFP := keyFingerprint(t, rs.oldKey), keyFingerprint(t, rs.newKey)
	code, out := run("--status", "--master-key-file", rs.oldKey, "--new-key-file", rs.newKey)
	for _, want := range []string{"key check of key " + oldFP, "rotation: none", "master key " + rs.oldKey + ": key " + oldFP + ", the store's key",
		"new key " + rs.newKey + ": key " + newFP + ", not this store's key"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status before: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
	before := storeSnapshot(t, dir)
	if code, out = run("--master-key-file", rs.oldKey, "--new-key-file", rs.newKey); code != 0 || !strings.Contains(out, "now holds key "+newFP) {
		t.Fatalf("rekey: exit %d\n%s", code, out)
	}
	if cmp.Equal(before, storeSnapshot(t, dir)) {
		t.Fatal("the rotation changed nothing")
	}
	code, out = run("--status", "--master-key-file", rs.newKey)
	if code != 0 || !strings.Contains(out, "key check of key "+newFP) || !strings.Contains(out, "the store's key") {
		t.Fatalf("status after: exit %d\n%s", code, out)
	}
	after := storeSnapshot(t, dir)
	if code, out = run("--master-key-file", rs.oldKey, "--new-key-file", rs.newKey); code != 0 || !strings.Contains(out, "already holds key "+newFP) {
		t.Fatalf("rekey again: exit %d\n%s", code, out)
	}
	if diff := cmp.Diff(after, storeSnapshot(t, dir)); diff != "" {
		t.Fatalf("running a finished rotation again changed the store:\n%s", diff)
	}
}

func keyFingerprint(t *testing.T, path string) string {
	t.Helper()
	k, err := readMasterKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal.New(k, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return seal.Fingerprint(s.CheckValue())
}
