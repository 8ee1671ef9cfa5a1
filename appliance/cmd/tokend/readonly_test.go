package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInspectionLeavesStoreUntouched: audit verify, an offline backup and
// the check of a file to restore open stores read-only, so a verifier never
// changes what it verifies (the file's SHA-256 is the same afterwards).
func TestInspectionLeavesStoreUntouched(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	// A first start creates the store; an offline admin create then writes
	// an audit record.
	if err := startTokend(t, dir).stop(); err != nil {
		t.Fatal(err)
	}
	if code := a.execute(context.Background(), []string{"admin", "create", "jane", "--role", "helpdesk", "--data-dir", dir}); code != 0 {
		t.Fatalf("admin create: %d %s", code, out.String())
	}
	db := filepath.Join(dir, "tokend.db")
	sum := func(path string) [32]byte { return fileSum(t, path) }
	before := sum(db)
	backup := filepath.Join(t.TempDir(), "copy.db")
	fresh := filepath.Join(t.TempDir(), "fresh")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "audit verify", args: []string{"audit", "verify", "--data-dir", dir}, want: "audit chain intact"},
		{name: "offline backup", args: []string{"backup", "--data-dir", dir, "--out", backup}, want: ""},
		{name: "restore checks the copy", args: []string{"restore", "--data-dir", fresh, "--in", backup}, want: "installed"},
	}
	for _, tc := range tests {
		out.Reset()
		if code := a.execute(context.Background(), tc.args); code != 0 || !strings.Contains(out.String(), tc.want) {
			t.Fatalf("%s: exit %d: %s", tc.name, code, out.String())
		}
		if got := sum(db); got != before {
			t.Fatalf("%s changed the store file", tc.name)
		}
	}
	// The backup itself was only read by the restore's check.
	if sum(backup) != sum(filepath.Join(fresh, "tokend.db")) {
		t.Fatal("the restored store differs from the backup it came from")
	}
	// A read-only open of a file that is not a store is refused, not created.
	empty := filepath.Join(t.TempDir(), "tokend.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := a.execute(context.Background(), []string{"audit", "verify", "--data-dir", filepath.Dir(empty)}); code == 0 {
		t.Fatalf("audit verify of an empty file succeeded: %s", out.String())
	}
}
