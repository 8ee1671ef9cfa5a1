package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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

// repoRoot is the repository root (the parent of this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type cmdResult struct {
	out string
	err error
}

// runCmd runs name with args in dir, with extra environment entries, and
// returns its combined output.
func runCmd(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %s\n%s", name, strings.Join(args, " "), timeout, out)
	}
	return cmdResult{string(out), err}
}
