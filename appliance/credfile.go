package appliance

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Identity sources name files (an LDAP CA bundle, a bind password file)
// that tokend reads with its own rights. A path from the admin API could
// otherwise name the master key or /proc/self/environ and have the next
// sync send it to any LDAP server, so such paths are only ever read inside
// the one directory the operator configured (identity_sources.
// credentials_dir), at write time and again at every read.

// ErrCredentialFile is the one answer for a credential file that cannot be
// used, whatever the reason (no directory configured, outside it, through a
// symlink that leaves it, missing, unreadable, not a regular file, too
// large, wrong content): telling them apart would let an API caller probe
// which files exist.
var ErrCredentialFile = errors.New("not usable (must be a readable file inside credentials_dir)")

// ErrCAFile and ErrPasswordFile are ErrCredentialFile for one kind of file:
// a CA bundle and a bind password. Their texts are fixed for the same
// reason.
var (
	ErrCAFile       error = &credentialFileError{"not usable (must be a readable PEM file inside credentials_dir)"}
	ErrPasswordFile error = &credentialFileError{"not usable (must be a readable, non-empty file inside credentials_dir)"}
)

type credentialFileError struct{ msg string }

func (e *credentialFileError) Error() string { return e.msg }
func (e *credentialFileError) Unwrap() error { return ErrCredentialFile }

// LoadCAFile reads a PEM CA bundle from the credentials directory. Every
// failure, a file without a certificate included, is ErrCAFile.
func LoadCAFile(dir, name string) ([]*x509.Certificate, error) {
	b, err := ReadCredentialFile(dir, name)
	if err != nil {
		return nil, ErrCAFile
	}
	certs, err := ParseCAPEM(b)
	if err != nil {
		return nil, ErrCAFile
	}
	return certs, nil
}

// LoadPasswordFile reads a bind password from the credentials directory,
// without its trailing line end. Every failure, an empty file included, is
// ErrPasswordFile.
func LoadPasswordFile(dir, name string) (Secret, error) {
	b, err := ReadCredentialFile(dir, name)
	if err != nil {
		return "", ErrPasswordFile
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", ErrPasswordFile
	}
	return Secret(pw), nil
}

// maxCredentialFile bounds what is read from a credential file: a CA
// bundle or a password is a few KiB.
const maxCredentialFile = 1 << 20

// MaxCAPEM bounds an inline CA bundle (ca_pem) so a source record stays
// far below a transaction's size limit.
const MaxCAPEM = 128 << 10

// ReadCredentialFile reads name, which must be a regular file inside dir.
// A relative name is relative to dir. The check is lexical first (no ".."
// escape, no absolute path elsewhere), then os.Root opens the file so no
// symlink can lead out of dir, not even one swapped in after a check. Every
// failure is ErrCredentialFile, with nothing of the file or the OS error.
func ReadCredentialFile(dir, name string) ([]byte, error) {
	rel, ok := credentialRel(dir, name)
	if !ok {
		return nil, ErrCredentialFile
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, ErrCredentialFile
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO planted in the directory must not hang
	// the caller; it is refused below as not a regular file.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, ErrCredentialFile
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxCredentialFile {
		return nil, ErrCredentialFile
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
	if err != nil || len(b) > maxCredentialFile {
		return nil, ErrCredentialFile
	}
	return b, nil
}

// credentialRel returns name relative to dir when it lies strictly inside
// it, lexically. An absolute name may be given through dir as configured or
// through dir with its symlinks resolved.
func credentialRel(dir, name string) (string, bool) {
	if dir == "" || name == "" || strings.ContainsRune(name, 0) {
		return "", false
	}
	name = filepath.Clean(name)
	if !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	bases := []string{filepath.Clean(dir)}
	if abs, err := filepath.Abs(dir); err == nil {
		bases = append(bases, abs)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		bases = append(bases, real)
	}
	for _, base := range bases {
		rel, err := filepath.Rel(base, name)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			continue
		}
		return rel, true
	}
	return "", false
}

// ParseCAPEM returns the certificates of a PEM bundle; an error when it
// holds none or a CERTIFICATE block does not parse. Other blocks (a
// private key pasted by mistake) are refused too: a CA bundle has none.
func ParseCAPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, errors.New("holds a PEM block that is not a CERTIFICATE")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, errors.New("holds a CERTIFICATE that does not parse")
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return certs, nil
}
