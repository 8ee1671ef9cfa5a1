package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDebPackage builds the package with `make deb` (the real daemon,
// linux/amd64, CGO_ENABLED=0) into a temporary directory, checks its metadata
// and contents, runs the packaged binary, and lints it: lintian must report
// no error.
func TestDebPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon and the package; skipped with -short")
	}
	makeBin := needTool(t, "make")
	dpkgDeb := needTool(t, "dpkg-deb")
	lintian := needTool(t, "lintian")
	root := repoRoot(t)
	tmp := t.TempDir()
	env := []string{"DEBDIR=" + filepath.Join(tmp, "stage"), "DIST=" + filepath.Join(tmp, "dist")}

	res := runCmd(t, time.Minute, root, env, makeBin, "-s", "version")
	if res.err != nil {
		t.Fatalf("make version: %v\n%s", res.err, res.out)
	}
	version := strings.TrimSpace(res.out)
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(version) {
		t.Fatalf("make version = %q: not a Debian version without revision", version)
	}

	res = runCmd(t, 15*time.Minute, root, env, makeBin, "deb")
	if res.err != nil {
		t.Fatalf("make deb: %v\n%s", res.err, res.out)
	}
	deb := filepath.Join(tmp, "dist", "tokend_"+version+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb did not build %s: %v\n%s", deb, err, res.out)
	}

	t.Run("control", func(t *testing.T) {
		res := runCmd(t, time.Minute, tmp, nil, dpkgDeb, "--showformat=${Package}|${Version}|${Architecture}|${Depends}|${Pre-Depends}|${Section}|${Maintainer}", "--show", deb)
		if res.err != nil {
			t.Fatalf("dpkg-deb --show: %v\n%s", res.err, res.out)
		}
		f := strings.Split(strings.TrimSpace(res.out), "|")
		if len(f) != 7 {
			t.Fatalf("dpkg-deb --show = %q", res.out)
		}
		if f[0] != "tokend" || f[1] != version || f[2] != "amd64" {
			t.Errorf("package %s %s %s, want tokend %s amd64", f[0], f[1], f[2], version)
		}
		if f[3] != "" || f[4] != "" {
			t.Errorf("Depends %q, Pre-Depends %q: the binary needs nothing", f[3], f[4])
		}
		if f[5] == "" || f[6] == "" {
			t.Errorf("Section %q, Maintainer %q must be set", f[5], f[6])
		}

		ctrl := filepath.Join(t.TempDir(), "DEBIAN")
		if res := runCmd(t, time.Minute, tmp, nil, dpkgDeb, "--control", deb, ctrl); res.err != nil {
			t.Fatalf("dpkg-deb --control: %v\n%s", res.err, res.out)
		}
		conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(conffiles)); got != "/etc/tokend/tokend.yaml" {
			t.Errorf("conffiles = %q, want only /etc/tokend/tokend.yaml", got)
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			info, err := os.Stat(filepath.Join(ctrl, s))
			if err != nil {
				t.Errorf("no %s: %v", s, err)
			} else if info.Mode().Perm() != 0o755 {
				t.Errorf("%s mode %o, want 755", s, info.Mode().Perm())
			}
		}
	})

	t.Run("contents", func(t *testing.T) {
		res := runCmd(t, time.Minute, tmp, nil, dpkgDeb, "--contents", deb)
		if res.err != nil {
			t.Fatalf("dpkg-deb --contents: %v\n%s", res.err, res.out)
		}
		got := map[string]string{} // path -> "mode owner"
		for _, line := range strings.Split(strings.TrimSpace(res.out), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				t.Fatalf("unexpected dpkg-deb line %q", line)
			}
			got[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
		want := map[string]string{
			"/usr/bin/tokend":                         "-rwxr-xr-x root/root",
			"/lib/systemd/system/tokend.service":      "-rw-r--r-- root/root",
			"/usr/lib/sysusers.d/tokend.conf":         "-rw-r--r-- root/root",
			"/usr/lib/tmpfiles.d/tokend.conf":         "-rw-r--r-- root/root",
			"/etc/tokend/":                            "drwxr-xr-x root/root",
			"/etc/tokend/tokend.yaml":                 "-rw-r--r-- root/root",
			"/usr/share/doc/tokend/copyright":         "-rw-r--r-- root/root",
			"/usr/share/doc/tokend/changelog.gz":      "-rw-r--r-- root/root",
			"/usr/share/doc/tokend/README.systemd.md": "-rw-r--r-- root/root",
			"/usr/share/man/man1/tokend.1.gz":         "-rw-r--r-- root/root",
			"/usr/share/lintian/overrides/tokend":     "-rw-r--r-- root/root",
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("%s: %q, want %q", p, got[p], w)
			}
		}
		for p := range got {
			if strings.Contains(p, "master.key") || strings.HasPrefix(p, "/var/") {
				t.Errorf("the package ships %s: the key and the data are created on the machine", p)
			}
		}
	})

	t.Run("binary", func(t *testing.T) {
		x := t.TempDir()
		if res := runCmd(t, time.Minute, tmp, nil, dpkgDeb, "--extract", deb, x); res.err != nil {
			t.Fatalf("dpkg-deb --extract: %v\n%s", res.err, res.out)
		}
		res := runCmd(t, time.Minute, x, nil, filepath.Join(x, "usr", "bin", "tokend"), "version")
		if res.err != nil {
			t.Fatalf("tokend version: %v\n%s", res.err, res.out)
		}
		if !strings.Contains(res.out, version) {
			t.Errorf("tokend version printed %q, want it to contain %q", strings.TrimSpace(res.out), version)
		}
	})

	t.Run("lintian", func(t *testing.T) {
		res := runCmd(t, 5*time.Minute, tmp, nil, lintian, "--fail-on", "error", "--display-info", "--show-overrides", deb)
		t.Logf("lintian %s:\n%s", filepath.Base(deb), res.out)
		if res.err != nil {
			t.Fatalf("lintian reports errors: %v", res.err)
		}
		if regexp.MustCompile(`(?m)^E: `).MatchString(res.out) {
			t.Fatal("lintian printed an error tag")
		}
	})
}
