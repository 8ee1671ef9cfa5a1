package ldap

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/appliance/memstore"
	"tokend/internal/credtest"
)

const masterKeyBytes = "MASTER-KEY-0123456789abcdef-must-never-leave"

// TestCredentialFilesNeverLeaveTheDirectory is the attack at the syncer:
// a stored source names the daemon's secret file as its bind password file
// or CA file and points at a server the attacker runs. Whatever the
// credentials directory, the sync refuses before dialling, the server
// receives nothing, and the error is the same whether the file exists.
func TestCredentialFilesNeverLeaveTheDirectory(t *testing.T) {
	creds, outside, secret := credtest.Dirs(t, masterKeyBytes)
	if err := os.Symlink(secret, filepath.Join(creds, "link-out")); err != nil {
		t.Fatal(err)
	}
	const pwErr = "ldap: bind_password_file: not usable (must be a readable, non-empty file inside credentials_dir)"
	const caErr = "ldap: ca_file: not usable (must be a readable PEM file inside credentials_dir)"
	tests := []struct {
		name    string
		dir     string
		pwFile  string
		caFile  string
		wantErr string
	}{
		{name: "password file, no credentials dir", pwFile: secret, wantErr: pwErr},
		{name: "password file outside the dir", dir: creds, pwFile: secret, wantErr: pwErr},
		{name: "password file through dot-dot", dir: creds, pwFile: creds + "/../outside/master.key", wantErr: pwErr},
		{name: "password file through a symlink out", dir: creds, pwFile: filepath.Join(creds, "link-out"), wantErr: pwErr},
		{name: "password file missing", dir: creds, pwFile: filepath.Join(creds, "nope"), wantErr: pwErr},
		{name: "password file /proc/self/environ", dir: creds, pwFile: "/proc/self/environ", wantErr: pwErr},
		{name: "ca file, no credentials dir", caFile: secret, wantErr: caErr},
		{name: "ca file outside: exists, not PEM", dir: creds, caFile: secret, wantErr: caErr},
		{name: "ca file outside: missing", dir: creds, caFile: filepath.Join(outside, "nope"), wantErr: caErr},
		{name: "ca file inside: missing", dir: creds, caFile: filepath.Join(creds, "nope"), wantErr: caErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := credtest.NewRecorder(t)
			var logs bytes.Buffer
			cfg := Config{URL: rec.URL(), StartTLS: tt.caFile != "", CAFile: tt.caFile, BindDN: "cn=reader,dc=x",
				BindPasswordFile: tt.pwFile, BaseDN: "dc=x", CredentialsDir: tt.dir, Timeout: 2 * time.Second}
			if tt.pwFile == "" {
				cfg.BindPassword = "inline"
			}
			sum, err := NewSyncer(newMemTarget(), slog.New(slog.NewTextHandler(&logs, nil)), nil).Run(context.Background(), "src", cfg, RunOptions{})
			if err == nil || err.Error() != tt.wantErr || sum.Error != tt.wantErr {
				t.Fatalf("error %v (summary %q), want %q", err, sum.Error, tt.wantErr)
			}
			if !errors.Is(err, appliance.ErrCredentialFile) {
				t.Errorf("%v is not ErrCredentialFile", err)
			}
			if n, got := rec.Seen(); n != 0 || got != "" {
				t.Fatalf("the server was reached: %d connections, %q", n, got)
			}
			if strings.Contains(logs.String(), masterKeyBytes) {
				t.Fatalf("the secret is in the logs: %s", logs.String())
			}
		})
	}
}

// TestStoredSourceFilesRecheckedAtSync stores sources the Service accepted
// (files inside the credentials directory), then changes the ground under
// them: a symlink swapped to point outside, and a daemon restarted without
// the directory. Each sync refuses and the server receives nothing; with
// the file back in place the password does reach the server, so the
// recorder can tell.
func TestStoredSourceFilesRecheckedAtSync(t *testing.T) {
	creds, _, secret := credtest.Dirs(t, masterKeyBytes)
	const inside = "inside-Bind-Pa55"
	real := filepath.Join(creds, "real.pw")
	if err := os.WriteFile(real, []byte(inside+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(creds, "bind.pw")
	if err := os.Symlink("real.pw", link); err != nil {
		t.Fatal(err)
	}

	// Two Services over one store: the daemon before and after a restart.
	sealer, _ := appliancetest.Sealer(t)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	svc := appliancetest.Service(t, appliance.Config{Store: store, Sealer: sealer, CredentialsDir: creds})
	ctx := context.Background()
	rec := credtest.NewRecorder(t)
	src, _, err := svc.CreateIdentitySource(ctx, appliance.IdentitySource{Name: "corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: rec.URL(), BindDN: "cn=reader,dc=x", BindPasswordFile: link, BaseDN: "dc=x"}})
	if err != nil {
		t.Fatal(err)
	}
	syncWith := func(s *appliance.Service) error {
		got, err := s.GetIdentitySource(ctx, src.ID)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ConfigFromSource(got, "")
		cfg.CredentialsDir, cfg.Timeout = s.CredentialsDir(), time.Second
		_, err = NewSyncer(ServiceTarget{Dir: s}, nil, nil).Run(ctx, src.ID, cfg, RunOptions{Full: true})
		return err
	}

	// The symlink now leads out of the directory.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if err := syncWith(svc); !errors.Is(err, appliance.ErrCredentialFile) {
		t.Fatalf("swapped symlink: %v, want ErrCredentialFile", err)
	}
	// The same store served by a daemon without a credentials directory.
	noDir := appliancetest.Service(t, appliance.Config{Store: store, Sealer: sealer})
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.pw", link); err != nil {
		t.Fatal(err)
	}
	if err := syncWith(noDir); !errors.Is(err, appliance.ErrCredentialFile) {
		t.Fatalf("no credentials dir: %v, want ErrCredentialFile", err)
	}
	if n, got := rec.Seen(); n != 0 || got != "" {
		t.Fatalf("the server was reached: %d connections, %q", n, got)
	}

	// Control: the file inside is read and sent, so the recorder works.
	if err := syncWith(svc); err == nil {
		t.Fatal("a sync against the recorder succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := rec.Seen(); strings.Contains(got, inside) {
			break
		}
		if time.Now().After(deadline) {
			n, got := rec.Seen()
			t.Fatalf("control: the inside password never reached the server (%d connections, %q)", n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, got := rec.Seen(); strings.Contains(got, masterKeyBytes) {
		t.Fatal("the secret reached the server")
	}
}
