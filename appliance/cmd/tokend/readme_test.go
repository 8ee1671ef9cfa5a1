package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEWalkthrough runs the README's seed procedure, as written, against
// a running tokend: the shell block is taken from the README, with only the
// data dir, the port and `go run` (replaced by a built binary) adapted.
func TestREADMEWalkthrough(t *testing.T) {
	requireTool(t, "curl", "curl")
	raw, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## The seed procedure, with curl.*?```sh\n(.*?)```").FindSubmatch(raw)
	if m == nil {
		t.Fatal("README has no seed procedure block")
	}
	bin := filepath.Join(t.TempDir(), "tokend")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := t.TempDir()
	dataDir := filepath.Join(work, "tokend-data")
	in := startTokend(t, dataDir)
	port := in.admin[strings.LastIndex(in.admin, ":")+1:]
	script := strings.NewReplacer(
		"go run ./appliance/cmd/tokend", bin,
		"localhost:8443", "localhost:"+port,
		"@docs/examples/", "@"+mustAbs(t, "../../../docs/examples"),
	).Replace(string(m[1]))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"imported":4`, `"code":"token_limit"`, `"activation_code":"`, "tokencode:", `"result":"accept"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, out)
		}
	}
	if png, err := os.ReadFile(filepath.Join(work, "qr.png")); err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("qr.png not written: %v", err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a + "/"
}
