package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestResolveNodeID(t *testing.T) {
	tests := []struct {
		name       string
		configured string
		file       string // content of DATA_DIR/node-id; "" for none
		hostname   string
		want       string // regexp
		wantErr    string
	}{
		{name: "configured", configured: "tokend-1", file: "other-000000\n", want: "^tokend-1$"},
		{name: "configured invalid", configured: "a/b", wantErr: "node id"},
		{name: "from the file", file: "box-a1b2c3\n", want: "^box-a1b2c3$"},
		{name: "file invalid", file: "bad id\n", wantErr: "node-id: node id"},
		{name: "generated from the host name", hostname: "auth-2.example.org", want: "^auth-2-[0-9a-f]{6}$"},
		{name: "generated without a host name", hostname: "", want: "^node-[0-9a-f]{6}$"},
		{name: "generated from an odd host name", hostname: "_ü!x", want: "^x-[0-9a-f]{6}$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node-id")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := resolveNodeID(tt.configured, dir, tt.hostname, rand.Reader)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !regexp.MustCompile(tt.want).MatchString(got) {
				t.Fatalf("got %q, %v; want %s", got, err, tt.want)
			}
			// Generated once: the next start reads the same id.
			if again, err := resolveNodeID(tt.configured, dir, "another-host", rand.Reader); err != nil || again != got {
				t.Errorf("second resolve %q, %v; want %q", again, err, got)
			}
			if tt.configured == "" && tt.file == "" {
				if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != got {
					t.Errorf("node-id file %q, %v; want %q", b, err, got)
				}
			}
		})
	}
}

// TestServeNodeID: tokend serve appends to the chain of the node id kept in
// the data dir across restarts, and so does an offline admin command; a
// configured node_id starts its own chain; audit verify checks and lists
// both; an invalid node_id stops the start.
func TestServeNodeID(t *testing.T) {
	dir := t.TempDir()
	for i, args := range [][]string{nil, nil, {"--node-id", "second"}} {
		if i == 2 {
			// An offline command audits into the data dir's node's chain.
			if code, out := runCLI(t, "admin", "create", "olga", "--role", "auditor", "--data-dir", dir); code != 0 {
				t.Fatalf("admin create: %d %s", code, out)
			}
		}
		in := startTokend(t, dir, args...)
		in.call(t, "POST", "/api/v1/users", "application/json", strings.NewReader(`{"user_name":"n`+string(rune('a'+i))+`"}`), 201, nil)
		if err := in.stop(); err != nil {
			t.Fatal(err)
		}
	}
	id, err := os.ReadFile(filepath.Join(dir, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "audit", "verify", "--data-dir", dir)
	first := regexp.MustCompile(`(?m)^  node ` + regexp.QuoteMeta(strings.TrimSpace(string(id))) + `: (\d+) records \(1…(\d+)\)`).FindStringSubmatch(out)
	if code != 0 || !strings.Contains(out, "audit chain intact") || !strings.Contains(out, "in 2 chain(s)") ||
		first == nil || first[1] != first[2] || first[1] == "1" || !strings.Contains(out, "  node second: 1 records (1…1)") {
		t.Fatalf("audit verify: %d\n%s", code, out)
	}
	code, out = runCLI(t, "serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0", "--node-id", "bad/id")
	if code == 0 || !strings.Contains(out, "node_id: node id") {
		t.Fatalf("invalid node id: %d %q", code, out)
	}
}
