package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tokend/admin"
	"tokend/appliance/internal/boltstore"
	"tokend/internal/stoken"
)

// fullDiskDir mounts a tmpfs of size bytes for a data dir, unmounted at
// cleanup. It skips when mounting is impossible here (not root), except
// under CI=true, where the test must run.
func fullDiskDir(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
			t.Skipf("cannot mount a tmpfs (not root): %v: %s", err, out)
		}
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a filler file until the filesystem is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%d blocks still free after the filler", st.Bavail)
	}
	return p
}

// fullDiskTokend is the tokend binary serving a data dir.
type fullDiskTokend struct {
	*instance
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit, once done is closed
}

// startFullDiskTokend starts bin serve on dir. It returns when tokend is
// ready, or (nil, its output) when it exited first.
func startFullDiskTokend(t *testing.T, bin, dir string) (*fullDiskTokend, string) {
	t.Helper()
	ready := make(chan map[string]string, 1)
	logs := &syncBuffer{ready: ready}
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0",
		"--log-format", "json")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &fullDiskTokend{cmd: cmd, done: make(chan struct{})}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-d.done })
	var m map[string]string
	select {
	case m = <-ready:
	case <-d.done:
		return nil, logs.String()
	case <-time.After(60 * time.Second):
		t.Fatalf("tokend neither ready nor exited within 60s:\n%s", logs.String())
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	client := newTrustingClient(t, filepath.Join(dir, "tls.crt"))
	client.Timeout = 20 * time.Second // a hang fails the request
	d.instance = &instance{dir: dir, admin: "https://" + m["admin"], ctkipURL: m["ctkip_url"],
		token: strings.TrimSpace(string(token)), client: client, logs: logs}
	return d, ""
}

// stop ends tokend as systemd would (SIGTERM) and waits for it.
func (d *fullDiskTokend) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("tokend did not stop within 30s:\n%s", d.logs.String())
	}
	if d.err != nil {
		t.Errorf("tokend exit: %v\n%s", d.err, d.logs.String())
	}
}

// try does one admin request and returns the status and problem code.
func (d *fullDiskTokend) try(t *testing.T, method, path, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, d.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p admin.Problem
	_ = json.Unmarshal(b, &p)
	return resp.StatusCode, p.Code
}

// TestFullDiskEndToEnd runs the tokend binary with its data dir on a small
// tmpfs and fills it: writes fail with 503 store_unavailable (never 500,
// never a hang), reads and authentication go on or fail as unavailable,
// tokend takes writes again as soon as space returns (no restart), and the
// store and audit chain check clean offline. A start on a full disk either
// serves or fails with a message naming the full disk.
func TestFullDiskEndToEnd(t *testing.T) {
	bin := buildFullDiskBinary(t)
	t.Run("running", func(t *testing.T) { testFullDiskRunning(t, bin) })
	t.Run("first start", func(t *testing.T) { testFullDiskFirstStart(t, bin) })
}

func testFullDiskRunning(t *testing.T, bin string) {
	dir := fullDiskDir(t, 24<<20)
	d, out := startFullDiskTokend(t, bin, dir)
	if d == nil {
		t.Fatalf("tokend did not start on an empty tmpfs:\n%s", out)
	}
	// A provisioned token to authenticate with.
	_, dist := seedProcedure(t, d.instance)
	res, err := ctkipClient(d.instance).Provision(context.Background(), dist.CTKIPURL, dist.ActivationCode)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	filler := fillDisk(t, dir)

	// Writes that still fit in the file's free pages succeed; the first
	// that needs new space fails, as unavailable.
	users := 0
	for i := 0; ; i++ {
		status, code := d.try(t, "POST", "/api/v1/users", "application/json", fmt.Sprintf(`{"user_name":"fill%05d","display_name":"%s"}`, i, strings.Repeat("x", 100)))
		if status == http.StatusCreated {
			users++
			if i > 20000 {
				t.Fatal("20000 users created on a full disk")
			}
			continue
		}
		if status != http.StatusServiceUnavailable || code != admin.CodeStoreUnavailable {
			t.Fatalf("create user on the full disk = %d %q; want 503 %s\n%s", status, code, admin.CodeStoreUnavailable, lastBytes(d.logs.String(), 3000))
		}
		break
	}
	t.Logf("%d users created after the disk filled (free pages inside the file), then 503", users)
	writes := []struct{ name, method, path, ctype, body string }{
		{"import", "POST", "/api/v1/tokens/import?format=csv", "text/csv", "serial\n000100000009\n000100000010\n"},
		{"create user", "POST", "/api/v1/users", "application/json", `{"user_name":"bob","display_name":"` + strings.Repeat("y", 100) + `"}`},
		{"distribute", "POST", "/api/v1/tokens/000100000003/distribution", "application/json", `{"profile":"android"}`},
	}
	for _, w := range writes {
		if status, code := d.try(t, w.method, w.path, w.ctype, w.body); status != http.StatusServiceUnavailable || code != admin.CodeStoreUnavailable {
			t.Errorf("%s on the full disk = %d %q; want 503 %s", w.name, status, code, admin.CodeStoreUnavailable)
		}
	}
	// Reads work; /readyz says the node cannot take writes (a commit was
	// refused within the hold), so a load balancer sends traffic elsewhere.
	if status, code := d.try(t, "GET", "/readyz", "", ""); status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz on the full disk = %d %q; want 503", status, code)
	}
	if m := grepLines(scrape(t, d.instance), "tokend_store_commit_failures_total "); m == "" || strings.HasSuffix(m, " 0") {
		t.Errorf("no refused commit counted: %q", m)
	}
	for _, p := range []string{"/api/v1/tokens", "/api/v1/users?search=fill", "/api/v1/tokens/000100000002", "/api/v1/audit?limit=5"} {
		if status, code := d.try(t, "GET", p, "", ""); status != http.StatusOK {
			t.Errorf("GET %s on the full disk = %d %q; want 200", p, status, code)
		}
	}
	// Authentication writes its replay mark: accepted if that fits in a
	// free page, else refused as unavailable; never rejected.
	stoken.Require(t)
	code := stoken.Tokencode(t, res.Seed[:], res.Serial, res.Digits, res.Interval, stoken.NoPIN, time.Now())
	authBody := `{"user_name":"alice","passcode":"` + code + `"}`
	status, pcode := d.try(t, "POST", "/api/v1/authenticate", "application/json", authBody)
	switch {
	case status == http.StatusServiceUnavailable && pcode == admin.CodeStoreUnavailable:
		t.Log("authentication on the full disk: 503 store_unavailable (the replay mark could not be written)")
	case status == http.StatusOK:
		t.Log("authentication on the full disk: answered 200 (the replay mark fitted in a free page)")
	default:
		t.Errorf("authenticate on the full disk = %d %q; want 200 or 503 %s", status, pcode, admin.CodeStoreUnavailable)
	}

	// Space returns: writes work again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		want := http.StatusCreated
		if status, code := d.try(t, w.method, w.path, w.ctype, w.body); status != want {
			t.Errorf("%s after space returned = %d %q; want %d", w.name, status, code, want)
		}
	}
	if status, code := d.try(t, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Errorf("GET /readyz after space returned and writes went through = %d %q; want 200", status, code)
	}
	code2 := stoken.Tokencode(t, res.Seed[:], res.Serial, res.Digits, res.Interval, stoken.NoPIN, time.Now().Add(time.Duration(res.Interval)*time.Second))
	if status, pcode := d.try(t, "POST", "/api/v1/authenticate", "application/json", `{"user_name":"alice","passcode":"`+code2+`"}`); status != http.StatusOK {
		t.Errorf("authenticate after space returned = %d %q", status, pcode)
	}
	d.stop(t)
	fullDiskOfflineCheck(t, bin, dir)

	// A start on a full disk: tokend serves (reads) or exits with the
	// cause; it does not hang or corrupt the store.
	filler = fillDisk(t, dir)
	d, out = startFullDiskTokend(t, bin, dir)
	if d == nil {
		if !strings.Contains(out, "no space left on device") {
			t.Errorf("start on a full disk failed without naming the full disk:\n%s", out)
		}
		t.Logf("start on a full disk: exits: %s", lastBytes(out, 400))
	} else {
		if status, _ := d.try(t, "GET", "/api/v1/users?search=bob", "", ""); status != http.StatusOK {
			t.Errorf("read after a start on a full disk = %d", status)
		}
		t.Log("start on a full disk: serves")
		d.stop(t)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	fullDiskOfflineCheck(t, bin, dir)
}

// testFullDiskFirstStart: a first start on a data dir with no room fails
// at once with an error that names the cause.
func testFullDiskFirstStart(t *testing.T, bin string) {
	dir := fullDiskDir(t, 1<<20)
	fillDisk(t, dir)
	d, out := startFullDiskTokend(t, bin, dir)
	if d != nil {
		t.Fatal("tokend started on a full, empty data dir")
	}
	if !strings.Contains(out, "no space left on device") {
		t.Errorf("the start failed without naming the full disk:\n%s", out)
	}
	t.Logf("first start on a full disk: %s", lastBytes(out, 400))
}

// fullDiskOfflineCheck checks the stopped tokend's store: bbolt's check
// and the audit chain (the real `tokend audit verify`).
func fullDiskOfflineCheck(t *testing.T, bin, dir string) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(); err != nil {
		t.Errorf("bbolt check: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "audit", "verify", "--data-dir", dir).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("audit chain intact")) {
		t.Errorf("tokend audit verify: %v\n%s", err, out)
	}
}

// buildFullDiskBinary builds tokend (without -race: a quick daemon).
func buildFullDiskBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokend")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// lastBytes is the end of a long output, for failure messages.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
