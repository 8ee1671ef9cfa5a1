package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var oneTimeRE = regexp.MustCompile(`one-time password[^:]*: ([a-z2-7]{5}(?:-[a-z2-7]{5}){3})\n`)

// listLines is `tokend admin list` output with each line's columns joined
// by one space.
func listLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// TestAdminCommands runs the admin-account commands on a stopped tokend's
// data dir (the store opened directly) and then on a running one (its admin
// API, as the store is locked), with real console sign-ins between: a
// generated password is printed once and signs in, a reset replaces it, a
// disabled admin is refused, the last superadmin cannot be disabled or
// deleted, and list shows the last sign-in.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	listen := ""
	run := func(stdin string, args ...string) int {
		t.Helper()
		out.Reset()
		a := newApp(strings.NewReader(stdin), &out, &out, func(string) (string, bool) { return "", false })
		args = append(args, "--data-dir", dir)
		if listen != "" {
			args = append(args, "--admin-listen", listen)
		}
		return a.execute(context.Background(), args)
	}
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		if code := run(stdin, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out.String())
		}
		return out.String()
	}
	mustFail := func(want string, args ...string) {
		t.Helper()
		if code := run("", args...); code == 0 || !strings.Contains(out.String(), want) {
			t.Fatalf("%v: exit %d: %s (want a refusal saying %q)", args, code, out.String(), want)
		}
	}
	if err := startTokend(t, dir).stop(); err != nil {
		t.Fatal(err)
	}

	// Stopped: the store is opened directly.
	const rootPW = "root password 123"
	mustRun(rootPW+"\n", "admin", "create", "root", "--role", "superadmin", "--password-stdin")
	m := oneTimeRE.FindStringSubmatch(mustRun("", "admin", "create", "jane", "--role", "helpdesk"))
	if m == nil {
		t.Fatalf("no one-time password printed: %s", out.String())
	}
	janeOTP := m[1]
	if diff := cmp.Diff([]string{"jane helpdesk no no never", "root superadmin no no never"}, listLines(mustRun("", "admin", "list"))); diff != "" {
		t.Errorf("offline list (-want +got):\n%s", diff)
	}
	mustFail("last enabled superadmin", "admin", "delete", "root")
	mustFail("last enabled superadmin", "admin", "disable", "root")
	mustFail("SERIAL is required", "admin", "set-second-factor", "jane")

	// Running: the same commands go through the admin API.
	in := startTokend(t, dir)
	listen = strings.TrimPrefix(in.admin, "https://")
	if got := consoleSignIn(t, in, "root", rootPW); got != http.StatusSeeOther {
		t.Fatalf("root sign-in: %d", got)
	}
	if got := consoleSignIn(t, in, "jane", janeOTP); got != http.StatusSeeOther {
		t.Fatalf("jane's one-time password: %d", got)
	}
	lines := listLines(mustRun("", "admin", "list"))
	if len(lines) != 2 {
		t.Fatalf("online list: %q", lines)
	}
	for i, name := range []string{"jane helpdesk no no ", "root superadmin no no "} {
		last, ok := strings.CutPrefix(lines[i], name)
		if _, err := time.Parse(time.RFC3339, last); !ok || err != nil {
			t.Errorf("online list line %q: want %q and an RFC 3339 last sign-in", lines[i], name)
		}
	}

	m = oneTimeRE.FindStringSubmatch(mustRun("", "admin", "passwd", "jane"))
	if m == nil || m[1] == janeOTP {
		t.Fatalf("passwd: %s", out.String())
	}
	if got := consoleSignIn(t, in, "jane", janeOTP); got != http.StatusUnauthorized {
		t.Fatalf("the replaced password: %d", got)
	}
	if got := consoleSignIn(t, in, "jane", m[1]); got != http.StatusSeeOther {
		t.Fatalf("the new one-time password: %d", got)
	}
	const janePW = "jane password 123"
	if s := mustRun(janePW+"\n", "admin", "passwd", "JANE", "--password-stdin"); !strings.Contains(s, "password of admin jane set") || oneTimeRE.MatchString(s) {
		t.Fatalf("passwd --password-stdin: %s", s)
	}
	mustRun("", "admin", "disable", "jane")
	if got := consoleSignIn(t, in, "jane", janePW); got != http.StatusUnauthorized {
		t.Fatalf("disabled admin signed in: %d", got)
	}
	if l := listLines(mustRun("", "admin", "list")); !strings.HasPrefix(l[0], "jane helpdesk no yes ") {
		t.Fatalf("list after disable: %q", l)
	}
	mustRun("", "admin", "enable", "jane")
	if got := consoleSignIn(t, in, "jane", janePW); got != http.StatusSeeOther {
		t.Fatalf("enabled admin: %d", got)
	}
	mustFail("last_superadmin", "admin", "disable", "root")
	mustFail("not_found", "admin", "set-second-factor", "jane", "000000000001")
	mustFail("exists", "admin", "create", "Jane", "--role", "auditor")
	mustRun("", "admin", "unlock", "jane")
	mustRun("", "admin", "delete", "jane")
	mustFail("not_found", "admin", "delete", "jane")
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	listen = ""
	if l := listLines(mustRun("", "admin", "list")); len(l) != 1 || !strings.HasPrefix(l[0], "root superadmin no no 20") {
		t.Fatalf("offline list at the end: %q", l)
	}
	mustRun("", "audit", "verify")
}

// TestREADMEAdminAccounts runs the README's seed procedure and then its
// admin-account commands, as written, against the same running tokend (only
// the data dir, the port and `go run` adapted, as TestREADMEWalkthrough
// does): the admin's own provisioned token is accepted as second factor.
func TestREADMEAdminAccounts(t *testing.T) {
	requireTool(t, "curl", "curl")
	raw, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	seed := regexp.MustCompile("(?s)## The seed procedure, with curl.*?```sh\n(.*?)```").FindSubmatch(raw)
	admins := regexp.MustCompile("(?s)## Admin accounts.*?```sh\n(.*?)```").FindSubmatch(raw)
	if seed == nil || admins == nil {
		t.Fatal("README lacks the seed procedure or the admin accounts block")
	}
	bin := filepath.Join(t.TempDir(), "tokend")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := t.TempDir()
	in := startTokend(t, filepath.Join(work, "tokend-data"))
	port := in.admin[strings.LastIndex(in.admin, ":")+1:]
	script := strings.NewReplacer(
		"go run ./appliance/cmd/tokend", bin,
		"localhost:8443", "localhost:"+port,
		"@docs/examples/", "@"+mustAbs(t, "../../../docs/examples"),
	).Replace(string(seed[1]) + "\n" + string(admins[1]))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TOKEND_ADMIN_LISTEN=localhost:"+port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README admin accounts failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"result":"accept"`,
		"admin jane created with role helpdesk", "admin alice created with role superadmin", "second factor: token 000100000001",
		"alice superadmin yes no never", "jane helpdesk no no never",
		"admin jane disabled", "admin jane enabled", "admin alice has no second factor now", "admin jane deleted",
	} {
		if !strings.Contains(strings.Join(listLines(string(out)), "\n"), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := len(oneTimeRE.FindAllString(string(out), -1)); n != 2 {
		t.Errorf("%d one-time passwords printed, want 2 (create jane, passwd jane):\n%s", n, out)
	}
}
