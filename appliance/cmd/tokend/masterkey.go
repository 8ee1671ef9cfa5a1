package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// masterKeySize is the master key length in bytes (AES-256).
const masterKeySize = 32

// credentialName is the systemd credential that carries the master key
// (LoadCredential=master-key:/etc/tokend/master.key in tokend.service).
const credentialName = "master-key"

// secretBytes holds key material. It is a []byte underneath, so it passes to
// any func([]byte) unchanged, but it redacts itself when printed with any
// fmt verb or logged with slog.
type secretBytes []byte

const redacted = "[redacted]"

func (secretBytes) String() string               { return redacted }
func (secretBytes) GoString() string             { return redacted }
func (secretBytes) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (secretBytes) Format(f fmt.State, _ rune)   { io.WriteString(f, redacted) }
func (secretBytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// dataPaths are the files tokend keeps in the data directory, all absolute.
type dataPaths struct {
	DataDir    string // the data directory itself
	DB         string // DATA_DIR/tokend.db, the bbolt database
	AdminToken string // DATA_DIR/admin-token, the bootstrap admin API token (0600)
	MasterKey  string // DATA_DIR/master.key: where a generated master key goes
	TLSCert    string // DATA_DIR/tls.crt, the generated certificate (0644)
	TLSKey     string // DATA_DIR/tls.key, the generated private key (0600)
}

// newDataPaths lays out dataDir (made absolute against the working directory).
func newDataPaths(dataDir string) (dataPaths, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return dataPaths{}, fmt.Errorf("data directory %s: %w", dataDir, err)
	}
	return dataPaths{
		DataDir:    abs,
		DB:         filepath.Join(abs, "tokend.db"),
		AdminToken: filepath.Join(abs, "admin-token"),
		MasterKey:  filepath.Join(abs, "master.key"),
		TLSCert:    filepath.Join(abs, "tls.crt"),
		TLSKey:     filepath.Join(abs, "tls.key"),
	}, nil
}

// ensureDataDir creates dir with mode 0700 if it is missing (parents too),
// and checks that it is a directory this process can write to. It returns
// the directory's permission bits so the caller can warn about loose ones.
func ensureDataDir(dir string) (fs.FileMode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return 0, fmt.Errorf("data directory %s: not a directory", dir)
		}
		return 0, fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("data directory %s: not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return 0, fmt.Errorf("data directory %s: not writable: %w", dir, unwrapPath(err))
	}
	name := probe.Name()
	probe.Close()
	if err := os.Remove(name); err != nil {
		return 0, fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	}
	return fi.Mode().Perm(), nil
}

// unwrapPath drops the *fs.PathError wrapper (its path is already in our
// message) and keeps the cause, e.g. "permission denied".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// masterKeySource says where the master key came from.
type masterKeySource string

const (
	masterKeyFromFile       masterKeySource = "file"
	masterKeyFromCredential masterKeySource = "systemd-credential"
)

// resolveMasterKeyPath picks the master key file: the configured
// master_key_file if set; else $CREDENTIALS_DIRECTORY/master-key when that
// variable is set and the file exists; else DATA_DIR/master.key.
func resolveMasterKeyPath(configured string, paths dataPaths, lookupEnv lookupEnvFunc) (string, masterKeySource) {
	if configured != "" {
		return configured, masterKeyFromFile
	}
	if dir := env(lookupEnv, "CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, credentialName)
		if _, err := os.Stat(p); err == nil {
			return p, masterKeyFromCredential
		}
	}
	return paths.MasterKey, masterKeyFromFile
}

// loadOrCreateMasterKey reads the master key at path, or, when the file does
// not exist, generates 32 random bytes and writes them there (mode 0600,
// atomically, never replacing a file that appeared meanwhile) and reports
// created=true.
//
// The file holds 64 lowercase hex characters and an optional trailing
// newline. A file that group or others may access (any of mode 0077) is
// refused: tighten it with chmod 600. Errors name the path, never the
// content. Use readMasterKey(path, false) for a systemd credential, whose
// mode systemd manages.
func loadOrCreateMasterKey(path string) (key []byte, created bool, err error) {
	key, err = readMasterKey(path, true)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key = make([]byte, masterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("master key %s: generate: %w", path, err)
	}
	data := []byte(hex.EncodeToString(key) + "\n")
	err = writeFileNoReplace(path, data, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first; theirs wins.
		key, err = readMasterKey(path, true)
		return key, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("master key %s: create: %w", path, err)
	}
	return key, true, nil
}

// readMasterKey reads and decodes a master key file. With checkPerm, a
// regular file whose mode grants group or others any access is refused.
// A missing file yields an error matching fs.ErrNotExist.
func readMasterKey(path string, checkPerm bool) ([]byte, error) {
	f, err := openPrivateFile("master key", path, checkPerm)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte more than the longest valid file to detect long ones
	// without reading an arbitrarily large file.
	buf := make([]byte, 2*masterKeySize+2)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("master key %s: %w", path, unwrapPath(err))
	}
	text := buf[:n]
	if len(text) > 0 && text[len(text)-1] == '\n' {
		text = text[:len(text)-1]
	}
	if len(text) != 2*masterKeySize {
		return nil, fmt.Errorf("master key %s: want %d hex characters and an optional newline, the file is %s", path, 2*masterKeySize, describeLength(n, len(buf)))
	}
	for _, c := range text {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, fmt.Errorf("master key %s: contains a character that is not lowercase hex (0-9, a-f)", path)
		}
	}
	key := make([]byte, masterKeySize)
	if _, err := hex.Decode(key, text); err != nil {
		return nil, fmt.Errorf("master key %s: not hex", path)
	}
	return key, nil
}

// openPrivateFile opens a file holding a secret (the master key, the etcd
// password). It must be a regular file; with checkPerm, one whose mode
// grants group or others no access, since anyone who reads it holds the
// secret. what names the file in errors ("master key"); errors name the
// path, never the content. A missing file yields an error matching
// fs.ErrNotExist.
func openPrivateFile(what, path string, checkPerm bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %s: %w", what, path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("%s %s: %w", what, path, unwrapPath(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s %s: %w", what, path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s %s: not a regular file", what, path)
	}
	if checkPerm && fi.Mode().Perm()&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("%s %s: mode %04o lets group or others access it; run chmod 600 %s", what, path, fi.Mode().Perm(), path)
	}
	return f, nil
}

func describeLength(n, limit int) string {
	if n >= limit {
		return "longer"
	}
	return fmt.Sprintf("%d bytes long", n)
}

// writeSecretFile writes data to path with mode 0600, atomically (temporary
// file in the same directory, fsync, rename, fsync of the directory), so a
// reader sees the old content or the new, never a torn or world-readable
// file. An existing file is replaced. The coordinator uses it for
// DATA_DIR/admin-token.
func writeSecretFile(path string, data []byte) error {
	return writeFileAtomic(path, data, 0o600)
}

// writeFileAtomic writes data to path with mode perm, atomically, replacing
// any existing file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeFileNoReplace is writeFileAtomic, but it fails with an error matching
// fs.ErrExist instead of replacing an existing file (hard link, then unlink
// of the temporary name). Used for the master key: a key that sealed data
// must never be silently replaced.
func writeFileNoReplace(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			return le.Err
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new temporary file beside path (created 0600,
// then set to perm), fsyncs and closes it, and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", unwrapPath(err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", unwrapPath(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", unwrapPath(err)
	}
	return name, nil
}

// syncDir fsyncs a directory so a rename or link in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return unwrapPath(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return unwrapPath(err)
	}
	return nil
}
