package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestLoadOrCreateMasterKeyCreatesThenReuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")

	key, created, err := loadOrCreateMasterKey(path)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if !created || len(key) != masterKeySize {
		t.Fatalf("first call: created=%v len=%d, want created=true len=%d", created, len(key), masterKeySize)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %04o, want 0600", got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(key) + "\n"; string(data) != want {
		t.Errorf("file content is not the key as lowercase hex plus newline")
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".master.key.tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	again, created, err := loadOrCreateMasterKey(path)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	if !bytes.Equal(again, key) {
		t.Error("second call returned a different key")
	}
}

func TestLoadOrCreateMasterKeyCreatesDistinctKeys(t *testing.T) {
	a, _, err := loadOrCreateMasterKey(filepath.Join(t.TempDir(), "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := loadOrCreateMasterKey(filepath.Join(t.TempDir(), "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two new master keys are equal")
	}
}

func TestLoadOrCreateMasterKeyFiles(t *testing.T) {
	want, _ := hex.DecodeString(testKeyHex)
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		want    []byte
		wantErr string // substring after "master key PATH: "; "" = success
	}{
		{name: "hex with newline", content: testKeyHex + "\n", mode: 0o600, want: want},
		{name: "hex without newline", content: testKeyHex, mode: 0o600, want: want},
		{name: "read-only owner", content: testKeyHex, mode: 0o400, want: want},
		{name: "world readable", content: testKeyHex, mode: 0o644, wantErr: "mode 0644 lets group or others access it; run chmod 600 "},
		{name: "group readable", content: testKeyHex, mode: 0o640, wantErr: "mode 0640 lets group or others access it"},
		{name: "group writable", content: testKeyHex, mode: 0o620, wantErr: "mode 0620 lets group or others access it"},
		{name: "uppercase hex", content: strings.ToUpper(testKeyHex), mode: 0o600, wantErr: "contains a character that is not lowercase hex (0-9, a-f)"},
		{name: "not hex", content: strings.Repeat("zz", 32), mode: 0o600, wantErr: "contains a character that is not lowercase hex"},
		{name: "too short", content: testKeyHex[:62] + "\n", mode: 0o600, wantErr: "want 64 hex characters and an optional newline, the file is 63 bytes long"},
		{name: "too long", content: testKeyHex + "00\n", mode: 0o600, wantErr: "want 64 hex characters and an optional newline, the file is longer"},
		{name: "two newlines", content: testKeyHex + "\n\n", mode: 0o600, wantErr: "want 64 hex characters"},
		{name: "CRLF", content: testKeyHex + "\r\n", mode: 0o600, wantErr: "want 64 hex characters"},
		{name: "empty", content: "", mode: 0o600, wantErr: "the file is 0 bytes long"},
		{name: "raw binary key", content: string(want), mode: 0o600, wantErr: "the file is 32 bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			key, created, err := loadOrCreateMasterKey(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("loadOrCreateMasterKey: %v", err)
				}
				if created {
					t.Error("created = true for an existing file")
				}
				if !bytes.Equal(key, tt.want) {
					t.Errorf("key mismatch")
				}
				return
			}
			if err == nil {
				t.Fatal("loadOrCreateMasterKey succeeded, want an error")
			}
			msg := err.Error()
			if prefix := "master key " + path + ": "; !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not contain %q", msg, tt.wantErr)
			}
			if len(tt.content) >= 8 && strings.Contains(msg, tt.content[:8]) {
				t.Errorf("error %q leaks the file content", msg)
			}
			// A bad file is never replaced.
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Error("the bad file was modified")
			}
		})
	}
}

func TestLoadOrCreateMasterKeyNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	_, _, err := loadOrCreateMasterKey(dir)
	if err == nil || err.Error() != "master key "+dir+": not a regular file" {
		t.Errorf("error = %v, want not a regular file", err)
	}
}

func TestLoadOrCreateMasterKeyMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "master.key")
	_, _, err := loadOrCreateMasterKey(path)
	if err == nil || !strings.HasPrefix(err.Error(), "master key "+path+": create: ") {
		t.Errorf("error = %v, want a create error naming the path", err)
	}
}

func TestReadMasterKeyCredentialIsExemptFromModeCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), credentialName)
	if err := os.WriteFile(path, []byte(testKeyHex), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readMasterKey(path, false); err != nil {
		t.Errorf("credential: %v", err)
	}
	if _, err := readMasterKey(path, true); err == nil {
		t.Error("the same file as a plain key file was accepted")
	}
}

func TestReadMasterKeyMissing(t *testing.T) {
	_, err := readMasterKey(filepath.Join(t.TempDir(), "nope"), true)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want fs.ErrNotExist", err)
	}
}

func TestResolveMasterKeyPath(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, credentialName), []byte(testKeyHex), 0o400); err != nil {
		t.Fatal(err)
	}
	emptyCreds := t.TempDir()
	paths, err := newDataPaths("/var/lib/tokend")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		configured string
		env        map[string]string
		wantPath   string
		wantSource masterKeySource
	}{
		{"default", "", nil, "/var/lib/tokend/master.key", masterKeyFromFile},
		{"configured", "/etc/tokend/master.key", nil, "/etc/tokend/master.key", masterKeyFromFile},
		{"credential", "", map[string]string{"CREDENTIALS_DIRECTORY": creds}, filepath.Join(creds, credentialName), masterKeyFromCredential},
		{"configured beats credential", "/etc/k", map[string]string{"CREDENTIALS_DIRECTORY": creds}, "/etc/k", masterKeyFromFile},
		{"credential directory without the key", "", map[string]string{"CREDENTIALS_DIRECTORY": emptyCreds}, "/var/lib/tokend/master.key", masterKeyFromFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, source := resolveMasterKeyPath(tt.configured, paths, mapEnv(tt.env))
			if path != tt.wantPath || source != tt.wantSource {
				t.Errorf("got (%s, %s), want (%s, %s)", path, source, tt.wantPath, tt.wantSource)
			}
		})
	}
}

func TestWriteSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	for _, content := range []string{"first", "second, replacing"} {
		if err := writeSecretFile(path, []byte(content)); err != nil {
			t.Fatalf("writeSecretFile: %v", err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != content {
			t.Errorf("content = %q, want %q", data, content)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode = %04o, want 0600", got)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestWriteFileNoReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := writeFileNoReplace(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := writeFileNoReplace(path, []byte("two"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "one" {
		t.Errorf("content = %q, want the first write", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestEnsureDataDir(t *testing.T) {
	t.Run("created 0700 with parents", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "data")
		mode, err := ensureDataDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if mode != 0o700 {
			t.Errorf("mode = %04o, want 0700", mode)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("write probe left behind: %v", entries)
		}
	})
	t.Run("existing directory kept", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		mode, err := ensureDataDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if mode != 0o750 {
			t.Errorf("mode = %04o, want 0750 (reported, not changed)", mode)
		}
	})
	t.Run("a file", func(t *testing.T) {
		file := writeFile(t, "data", "x")
		_, err := ensureDataDir(file)
		if want := "data directory " + file + ": not a directory"; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
	t.Run("under a file", func(t *testing.T) {
		file := writeFile(t, "data", "x")
		dir := filepath.Join(file, "sub")
		_, err := ensureDataDir(dir)
		if want := "data directory " + dir + ": not a directory"; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes to read-only directories")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		_, err := ensureDataDir(dir)
		if want := "data directory " + dir + ": not writable: permission denied"; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
}

func TestSecretBytesRedacts(t *testing.T) {
	key := secretBytes{0xde, 0xad, 0xbe, 0xef}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("x", "key", key)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", key)
	for _, verb := range []string{"%v", "%s", "%x", "%X", "%q", "%#v", "%+v", "%d"} {
		buf.WriteString(fmt.Sprintf(verb, key))
	}
	buf.WriteString(fmt.Sprint(key) + fmt.Sprintln(key))
	buf.WriteString(fmt.Sprintf("%v", struct{ K secretBytes }{key}))
	out := buf.String()
	// (The decimal form is matched as a run: log timestamps hold digits.)
	for _, leak := range []string{"dead", "DEAD", "222 173", "3q2+7w"} {
		if strings.Contains(out, leak) {
			t.Errorf("output leaks the key (%q): %s", leak, out)
		}
	}
	// Still a []byte for callers.
	var plain []byte = key
	if diff := cmp.Diff([]byte{0xde, 0xad, 0xbe, 0xef}, plain); diff != "" {
		t.Error(diff)
	}
}
