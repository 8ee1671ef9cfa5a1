package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// consoleSignIn posts the console's sign-in form of a running tokend and
// returns the status code (303 is a successful sign-in).
func consoleSignIn(t *testing.T, in *instance, name, password string) int {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := *in.client
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(in.admin + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no sign-in form: %s", body)
	}
	resp, err = c.PostForm(in.admin+"/console/login", url.Values{"csrf": {string(m[1])}, "name": {name}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminUnlockCommand: with console.max_failures 2 and no lockout
// duration, two wrong passwords on the real console lock the account so
// that the right one is refused, across a restart; `tokend admin unlock`
// on the stopped daemon's data dir lets it sign in again. The refusals are
// counted in tokend_console_signins_total.
func TestAdminUnlockCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "tokend.yaml")
	if err := os.WriteFile(cfg, []byte("console:\n  max_failures: 2\n  lockout_duration: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "root password 123"
	var out bytes.Buffer
	run := func(stdin string, args ...string) int {
		out.Reset()
		a := newApp(strings.NewReader(stdin), &out, &out, func(string) (string, bool) { return "", false })
		return a.execute(context.Background(), append(args, "--data-dir", dir, "--config", cfg))
	}
	if err := startTokend(t, dir, "--config", cfg).stop(); err != nil {
		t.Fatal(err)
	}
	if code := run(password+"\n", "admin", "create", "root", "--role", "superadmin", "--password-stdin"); code != 0 {
		t.Fatalf("admin create: %d %s", code, out.String())
	}

	in := startTokend(t, dir, "--config", cfg)
	for i, pw := range []string{"wrong password 1", "wrong password 2", password} {
		if got := consoleSignIn(t, in, "root", pw); got != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d, want 401", i+1, got)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, in.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+in.token)
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tokend_console_signins_total{outcome="failure",reason="bad_password"} 2`,
		`tokend_console_signins_total{outcome="failure",reason="locked"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}

	in = startTokend(t, dir, "--config", cfg)
	if got := consoleSignIn(t, in, "root", password); got != http.StatusUnauthorized {
		t.Fatalf("after a restart: status %d, want 401 (still locked)", got)
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	if code := run("", "admin", "unlock", "nobody"); code == 0 {
		t.Fatalf("unlock of an unknown admin succeeded: %s", out.String())
	}
	if code := run("", "admin", "unlock", "ROOT"); code != 0 || !strings.Contains(out.String(), "admin root unlocked") {
		t.Fatalf("admin unlock: %d %s", code, out.String())
	}
	in = startTokend(t, dir, "--config", cfg)
	if got := consoleSignIn(t, in, "root", password); got != http.StatusSeeOther {
		t.Fatalf("after unlock: status %d, want 303", got)
	}
}
