package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scriptSandbox runs the maintainer scripts against a scratch root
// (DPKG_ROOT) with the system tools they call replaced by stubs that log
// their arguments, so the scripts' own logic runs for real without touching
// this machine.
type scriptSandbox struct {
	t    *testing.T
	root string // DPKG_ROOT
	bin  string // the only directory on PATH
	log  string // what the stubs were called with
}

// realTools are the ordinary utilities the scripts may use unchanged.
var realTools = []string{"od", "tr", "mv", "chmod", "mkdir", "rm", "rmdir", "cat", "sh"}

func newScriptSandbox(t *testing.T, withSystemdTools bool) *scriptSandbox {
	t.Helper()
	dir := t.TempDir()
	s := &scriptSandbox{t: t, root: filepath.Join(dir, "root"), bin: filepath.Join(dir, "bin"), log: filepath.Join(dir, "calls.log")}
	for _, d := range []string{s.bin, filepath.Join(s.root, "etc", "tokend")} { // dpkg unpacks /etc/tokend
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range realTools {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := os.Symlink(p, filepath.Join(s.bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	stubs := map[string]string{
		"chown":              "exit 0",
		"deb-systemd-helper": "exit 0", // was-enabled: yes, as on a first installation
		"deb-systemd-invoke": "exit 0",
		"systemctl":          "exit 0",
		"useradd":            "exit 0",
		"getent":             "exit 2", // no such user yet
	}
	if withSystemdTools {
		stubs["systemd-sysusers"] = "exit 0"
		stubs["systemd-tmpfiles"] = "exit 0"
	}
	for name, body := range stubs {
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%q\n%s\n", name, s.log, body)
		if err := os.WriteFile(filepath.Join(s.bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// run runs one maintainer script with its dpkg arguments.
func (s *scriptSandbox) run(script string, args ...string) string {
	s.t.Helper()
	path, err := filepath.Abs(filepath.Join("scripts", script))
	if err != nil {
		s.t.Fatal(err)
	}
	res := runCmd(s.t, time.Minute, s.root, []string{"PATH=" + s.bin, "DPKG_ROOT=" + s.root},
		filepath.Join(s.bin, "sh"), append([]string{"-e", path}, args...)...)
	if res.err != nil {
		s.t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), res.err, res.out)
	}
	return res.out
}

func (s *scriptSandbox) calls() string {
	data, err := os.ReadFile(s.log)
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	out := string(data)
	os.Remove(s.log)
	return out
}

func (s *scriptSandbox) path(p string) string { return filepath.Join(s.root, p) }

func (s *scriptSandbox) exists(p string) bool {
	_, err := os.Lstat(s.path(p))
	return err == nil
}

var masterKeyRE = regexp.MustCompile(`^[0-9a-f]{64}\n$`)

func TestMaintainerScriptsSyntax(t *testing.T) {
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join("scripts", name)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("#!/bin/sh\n")) {
			t.Errorf("%s must start with #!/bin/sh", path)
		}
		if res := runCmd(t, time.Minute, ".", nil, "sh", "-n", path); res.err != nil {
			t.Errorf("sh -n %s: %v\n%s", path, res.err, res.out)
		}
	}
}

func TestMaintainerScriptsLifecycle(t *testing.T) {
	tests := []struct {
		name        string
		systemd     bool     // systemd-sysusers and systemd-tmpfiles installed
		wantInstall []string // calls expected from the first postinst
	}{
		{
			name:    "with systemd tools",
			systemd: true,
			wantInstall: []string{
				"systemd-sysusers --root=ROOT tokend.conf",
				"systemd-tmpfiles --root=ROOT --create tokend.conf",
				"chown root:root ROOT/etc/tokend/master.key.new.",
				"deb-systemd-helper unmask tokend.service",
				"deb-systemd-helper --quiet was-enabled tokend.service",
				"deb-systemd-helper enable tokend.service",
			},
		},
		{
			name:    "without systemd tools",
			systemd: false,
			wantInstall: []string{
				"getent passwd tokend",
				"useradd --root ROOT --system --user-group --home-dir /var/lib/tokend --no-create-home --shell /usr/sbin/nologin --comment tokend token appliance tokend",
				"chown tokend:tokend ROOT/var/lib/tokend",
				"deb-systemd-helper enable tokend.service",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScriptSandbox(t, tc.systemd)
			key := "etc/tokend/master.key"

			// First installation.
			out := s.run("postinst", "configure", "")
			calls := strings.ReplaceAll(s.calls(), s.root, "ROOT")
			for _, want := range tc.wantInstall {
				if !strings.Contains(calls, want) {
					t.Errorf("postinst did not call %q; calls:\n%s", want, calls)
				}
			}
			if strings.Contains(calls, "systemctl") || strings.Contains(calls, "deb-systemd-invoke") {
				t.Errorf("postinst touched a running systemd under DPKG_ROOT:\n%s", calls)
			}
			if !strings.Contains(out, "created the master key") {
				t.Errorf("postinst did not report the new master key:\n%s", out)
			}
			first, err := os.ReadFile(s.path(key))
			if err != nil {
				t.Fatal(err)
			}
			if !masterKeyRE.Match(first) {
				t.Errorf("master key %q is not 64 lowercase hex characters and a newline", first)
			}
			if strings.Contains(out, strings.TrimSpace(string(first))) {
				t.Error("postinst printed the master key")
			}
			info, err := os.Stat(s.path(key))
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm != 0o600 {
				t.Errorf("master key mode %o, want 600", perm)
			}
			if !tc.systemd {
				if info, err := os.Stat(s.path("var/lib/tokend")); err != nil || info.Mode().Perm() != 0o700 {
					t.Errorf("fallback did not create var/lib/tokend 0700: %v %v", info, err)
				}
			}

			// Upgrade: the key is never replaced.
			s.run("postinst", "configure", "0.0.1")
			second, err := os.ReadFile(s.path(key))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Error("postinst replaced an existing master key")
			}
			s.calls()

			// Remove keeps every piece of data.
			if err := os.MkdirAll(s.path("var/lib/tokend"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.path("var/lib/tokend/admin-token"), []byte("x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s.run("prerm", "remove")
			s.run("postrm", "remove")
			if calls := s.calls(); !strings.Contains(calls, "deb-systemd-helper mask tokend.service") {
				t.Errorf("postrm remove did not mask the unit; calls:\n%s", calls)
			}
			for _, p := range []string{key, "var/lib/tokend/admin-token"} {
				if !s.exists(p) {
					t.Errorf("remove deleted %s", p)
				}
			}

			// Reinstall after remove: the old key is kept.
			s.run("postinst", "configure", "0.0.1")
			if third, _ := os.ReadFile(s.path(key)); !bytes.Equal(first, third) {
				t.Error("reinstalling replaced the master key")
			}
			s.calls()

			// Purge deletes the data and the key, and nothing else.
			if err := os.WriteFile(s.path("etc/tokend/other"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s.run("postrm", "purge")
			calls = s.calls()
			if !strings.Contains(calls, "deb-systemd-helper purge tokend.service") {
				t.Errorf("postrm purge did not purge the unit state; calls:\n%s", calls)
			}
			for _, p := range []string{key, "var/lib/tokend"} {
				if s.exists(p) {
					t.Errorf("purge left %s", p)
				}
			}
			if !s.exists("etc/tokend/other") {
				t.Error("purge deleted a file it does not own")
			}
			if err := os.Remove(s.path("etc/tokend/other")); err != nil {
				t.Fatal(err)
			}
			s.run("postrm", "purge")
			if s.exists("etc/tokend") {
				t.Error("purge left an empty /etc/tokend")
			}
		})
	}
}
