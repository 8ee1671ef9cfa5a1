package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// status sends an admin API request with token and returns the status.
func (in *instance) status(t *testing.T, method, path, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, in.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readAdminToken returns DATA_DIR/admin-token and checks it is 0600.
func readAdminToken(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "admin-token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func runRotate(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	code := a.execute(context.Background(), append([]string{"admin", "rotate-bootstrap-token"}, args...))
	return code, out.String()
}

// TestRotateBootstrapTokenRunning rotates the bootstrap token of a running
// tokend: the old token is refused at once, the new one (in the file, 0600)
// works, the daemon keeps running and the output holds no token.
func TestRotateBootstrapTokenRunning(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	old := in.token
	if got := in.status(t, "GET", "/api/v1/users", old); got != http.StatusOK {
		t.Fatalf("old token before rotation: %d", got)
	}
	code, out := runRotate(t, "--data-dir", dir, "--admin-listen", strings.TrimPrefix(in.admin, "https://"))
	if code != 0 {
		t.Fatalf("rotate: %d %s", code, out)
	}
	if !strings.Contains(out, "running tokend") {
		t.Errorf("output %q does not say it went through the running tokend", out)
	}
	fresh := readAdminToken(t, dir)
	if fresh == old || !strings.HasPrefix(fresh, "tkd_") {
		t.Fatalf("admin-token not replaced: %q", fresh)
	}
	if strings.Contains(out, fresh) || strings.Contains(out, old) {
		t.Errorf("output shows a token: %q", out)
	}
	if got := in.status(t, "GET", "/api/v1/users", old); got != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d, want 401", got)
	}
	if got := in.status(t, "GET", "/api/v1/users", fresh); got != http.StatusOK {
		t.Errorf("new token: %d, want 200", got)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".admin-token.tmp-*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
	// Twice in a row: the second rotation authenticates with the first's token.
	if code, out := runRotate(t, "--data-dir", dir, "--admin-listen", strings.TrimPrefix(in.admin, "https://")); code != 0 {
		t.Fatalf("second rotate: %d %s", code, out)
	}
	if got := in.status(t, "GET", "/api/v1/users", fresh); got != http.StatusUnauthorized {
		t.Errorf("first rotated token after the second rotation: %d, want 401", got)
	}
	if got := in.status(t, "GET", "/api/v1/users", readAdminToken(t, dir)); got != http.StatusOK {
		t.Errorf("second rotated token: %d, want 200", got)
	}
}

// TestRotateBootstrapTokenStopped rotates the token of a stopped tokend:
// after a restart the old token is refused and the new one works.
func TestRotateBootstrapTokenStopped(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	old := in.token
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	code, out := runRotate(t, "--data-dir", dir)
	if code != 0 {
		t.Fatalf("rotate: %d %s", code, out)
	}
	if !strings.Contains(out, "stopped store") {
		t.Errorf("output %q does not say it changed the stopped store", out)
	}
	fresh := readAdminToken(t, dir)
	if fresh == old {
		t.Fatal("admin-token not replaced")
	}
	in = startTokend(t, dir)
	if got := in.status(t, "GET", "/api/v1/users", old); got != http.StatusUnauthorized {
		t.Errorf("old token: %d, want 401", got)
	}
	if got := in.status(t, "GET", "/api/v1/users", fresh); got != http.StatusOK {
		t.Errorf("new token: %d, want 200", got)
	}
}

func TestRotateBootstrapTokenNoStore(t *testing.T) {
	code, out := runRotate(t, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(out, "no store in") {
		t.Errorf("rotate on an empty dir: %d %q", code, out)
	}
}

// TestRotateBootstrapTokenKeepsOwner: run as root (as on a package
// install), the new file keeps the owner of the one it replaces, so the
// service user can still read it.
func TestRotateBootstrapTokenKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	dir := t.TempDir()
	if err := startTokend(t, dir).stop(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin-token")
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if code, out := runRotate(t, "--data-dir", dir); code != 0 {
		t.Fatalf("rotate: %d %s", code, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("new file owner %d:%d mode %v, want 65534:65534 0600", st.Uid, st.Gid, fi.Mode().Perm())
	}
}
