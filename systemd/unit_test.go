package systemd

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitFile = "tokend.service"

// maxExposure is the highest `systemd-analyze security` exposure accepted.
const maxExposure = 2.0

// needTool returns the path of an external tool. A missing tool skips the
// test, except under CI=true where it fails: scripts/test.sh installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI=true): run ./scripts/test.sh as root, it installs it", name)
	}
	t.Skipf("%s is not installed; ./scripts/test.sh installs it (as root)", name)
	return ""
}

func run(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// directive is one Key=Value line of the unit.
type directive struct {
	section, key, value string
}

func parseUnit(t *testing.T, path string) []directive {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ds []directive
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a Key=Value line: %q", path, line)
			}
			ds = append(ds, directive{section, strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ds
}

func values(ds []directive, section, key string) []string {
	var vs []string
	for _, d := range ds {
		if d.section == section && d.key == key {
			vs = append(vs, d.value)
		}
	}
	return vs
}

// TestUnitContract pins the settings the daemon and the package rely on.
func TestUnitContract(t *testing.T) {
	ds := parseUnit(t, unitFile)
	want := []struct{ section, key, value string }{
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "User", "tokend"},
		{"Service", "Group", "tokend"},
		{"Service", "ExecStart", "/usr/bin/tokend serve --config /etc/tokend/tokend.yaml"},
		{"Service", "KillSignal", "SIGTERM"},
		{"Service", "Restart", "on-failure"},
		{"Service", "StateDirectory", "tokend"},
		{"Service", "StateDirectoryMode", "0700"},
		{"Service", "ConfigurationDirectory", "tokend"},
		{"Service", "LoadCredential", "master-key:/etc/tokend/master.key"},
		{"Service", "UMask", "0077"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "SystemCallErrorNumber", "EPERM"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		got := values(ds, w.section, w.key)
		if len(got) != 1 || got[0] != w.value {
			t.Errorf("[%s] %s = %q, want exactly %q", w.section, w.key, got, w.value)
		}
	}
	for _, key := range []string{"TimeoutStopSec", "RestartSec"} {
		if len(values(ds, "Service", key)) != 1 {
			t.Errorf("[Service] %s must be set once", key)
		}
	}
	// The daemon's default shutdown_timeout (15s) must fit in TimeoutStopSec.
	if v := values(ds, "Service", "TimeoutStopSec"); len(v) == 1 {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 15*time.Second {
			t.Errorf("TimeoutStopSec=%s must be a duration above the 15s shutdown_timeout", v[0])
		}
	}
	// No secret ever goes through the environment or the command line.
	for _, d := range ds {
		if (d.key == "Environment" || d.key == "ExecStart") && strings.Contains(strings.ToLower(d.value), "key") {
			t.Errorf("%s=%s: the master key reaches the daemon only through LoadCredential=", d.key, d.value)
		}
	}
}

// TestReadmeExplainsEveryDirective keeps README.md in step with the unit.
func TestReadmeExplainsEveryDirective(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range parseUnit(t, unitFile) {
		if seen[d.key] {
			continue
		}
		seen[d.key] = true
		if !bytes.Contains(readme, []byte("`"+d.key+"=")) {
			t.Errorf("README.md does not explain %s=", d.key)
		}
	}
}

// allowedVerifyLine is the one complaint expected before the package is
// installed: the ExecStart binary does not exist yet.
var allowedVerifyLine = regexp.MustCompile(`^tokend\.service: Command /usr/bin/tokend is not executable: No such file or directory$`)

func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := needTool(t, "systemd-analyze")
	abs, err := filepath.Abs(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ".", tool, "verify", abs)
	var unexpected []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || allowedVerifyLine.MatchString(line) {
			continue
		}
		unexpected = append(unexpected, line)
	}
	if len(unexpected) > 0 {
		t.Fatalf("systemd-analyze verify %s complained (exit: %v):\n%s", unitFile, err, strings.Join(unexpected, "\n"))
	}
	if err != nil && !allowedVerifyLine.MatchString(strings.TrimSpace(out)) {
		t.Fatalf("systemd-analyze verify failed without output: %v", err)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for [^:]+: ([0-9]+(?:\.[0-9]+)?)`)

func exposure(t *testing.T, tool, unitPath string) (float64, string) {
	t.Helper()
	out, err := run(t, filepath.Dir(unitPath), tool, "security", "--offline=true", "--no-pager", filepath.Base(unitPath))
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level (exit: %v):\n%s", err, out)
	}
	score, perr := strconv.ParseFloat(m[1], 64)
	if perr != nil {
		t.Fatal(perr)
	}
	return score, out
}

func TestSecurityExposure(t *testing.T) {
	tool := needTool(t, "systemd-analyze")
	abs, err := filepath.Abs(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	score, out := exposure(t, tool, abs)
	t.Logf("systemd-analyze security --offline=true %s: %.1f", unitFile, score)
	if score > maxExposure {
		t.Fatalf("exposure %.1f > %.1f:\n%s", score, maxExposure, out)
	}
}

// TestLowPortDropInExposure checks the drop-in README.md documents for ports
// below 1024 (CAP_NET_BIND_SERVICE, PrivateUsers=no) stays within the limit.
func TestLowPortDropInExposure(t *testing.T) {
	tool := needTool(t, "systemd-analyze")
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for old, repl := range map[string]string{
		"\nCapabilityBoundingSet=\n": "\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"\nAmbientCapabilities=\n":   "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",
		"\nPrivateUsers=yes\n":       "\nPrivateUsers=no\n",
	} {
		if !strings.Contains(unit, old) {
			t.Fatalf("%s no longer contains %q; update this test and README.md", unitFile, strings.TrimSpace(old))
		}
		unit = strings.Replace(unit, old, repl, 1)
	}
	p := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	score, out := exposure(t, tool, p)
	t.Logf("with the low-port drop-in: %.1f", score)
	if score > maxExposure {
		t.Fatalf("exposure with CAP_NET_BIND_SERVICE %.1f > %.1f:\n%s", score, maxExposure, out)
	}
}
