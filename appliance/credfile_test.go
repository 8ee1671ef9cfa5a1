package appliance_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/appliancetest"
	"tokend/internal/credtest"
)

// testCAPEM returns a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) string { return credtest.CAPEM(t, "test CA") }

// credFixture is a credentials directory beside an outside directory that
// holds a secret, the way /etc/tokend/ldap sits beside the master key.
type credFixture struct {
	dir, outside, secret, ca, pw string
}

const outsideSecret = "0123456789abcdef-MASTER-KEY-BYTES"

func newCredFixture(t *testing.T) credFixture {
	t.Helper()
	var f credFixture
	f.dir, f.outside, f.secret = credtest.Dirs(t, outsideSecret)
	f.ca = credtest.WriteFile(t, filepath.Join(f.dir, "ca.pem"), testCAPEM(t))
	f.pw = credtest.WriteFile(t, filepath.Join(f.dir, "bind.pw"), "inside-Pa55\n")
	credtest.WriteFile(t, filepath.Join(f.dir, "notpem"), "just text\n")
	credtest.WriteFile(t, filepath.Join(f.dir, "empty"), "\n")
	if err := os.Symlink(f.secret, filepath.Join(f.dir, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside/master.key", filepath.Join(f.dir, "rel-link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ca.pem", filepath.Join(f.dir, "link-in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(f.dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestReadCredentialFile tries every way out of the credentials directory:
// each is refused with the one error that says nothing about the file.
func TestReadCredentialFile(t *testing.T) {
	f := newCredFixture(t)
	tests := []struct {
		name string
		dir  string
		path string
		want string // "" = refused
	}{
		{name: "inside, absolute", dir: f.dir, path: f.pw, want: "inside-Pa55\n"},
		{name: "inside, relative to the directory", dir: f.dir, path: "bind.pw", want: "inside-Pa55\n"},
		{name: "symlink staying inside", dir: f.dir, path: filepath.Join(f.dir, "link-in"), want: testPEMPrefix},
		{name: "no directory configured", dir: "", path: f.pw},
		{name: "outside, absolute", dir: f.dir, path: f.secret},
		{name: "dot-dot escape", dir: f.dir, path: filepath.Join(f.dir, "..", "outside", "master.key")},
		{name: "dot-dot escape, unjoined", dir: f.dir, path: f.dir + "/../outside/master.key"},
		{name: "relative dot-dot escape", dir: f.dir, path: "../outside/master.key"},
		{name: "absolute symlink out", dir: f.dir, path: filepath.Join(f.dir, "link-out")},
		{name: "relative symlink out", dir: f.dir, path: filepath.Join(f.dir, "rel-link-out")},
		{name: "the directory itself", dir: f.dir, path: f.dir},
		{name: "a subdirectory", dir: f.dir, path: filepath.Join(f.dir, "sub")},
		{name: "a FIFO (must not hang)", dir: f.dir, path: filepath.Join(f.dir, "fifo")},
		{name: "missing", dir: f.dir, path: filepath.Join(f.dir, "nope")},
		{name: "proc", dir: f.dir, path: "/proc/self/environ"},
		{name: "NUL in the path", dir: f.dir, path: f.pw + "\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appliance.ReadCredentialFile(tt.dir, tt.path)
			if tt.want == "" {
				if err == nil || err != appliance.ErrCredentialFile || len(b) != 0 {
					t.Fatalf("got %q, %v; want ErrCredentialFile itself", b, err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(string(b), tt.want) {
				t.Fatalf("got %q, %v; want %q…", b, err, tt.want)
			}
		})
	}
}

const testPEMPrefix = "-----BEGIN CERTIFICATE-----"

// TestCredentialFileErrorsAreIdentical probes like an attacker would: a
// missing file, a file without PEM, an unreadable file and a file outside
// must give the very same answer.
func TestCredentialFileErrorsAreIdentical(t *testing.T) {
	f := newCredFixture(t)
	probes := []string{filepath.Join(f.dir, "nope"), filepath.Join(f.dir, "notpem"), f.secret, f.dir,
		filepath.Join(f.dir, "link-out"), filepath.Join(f.dir, "empty"), "/etc/passwd"}
	if os.Geteuid() != 0 { // root reads a mode-0 file
		unreadable := credtest.WriteFile(t, filepath.Join(f.dir, "unreadable"), "x")
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		probes = append(probes, unreadable)
	}
	for _, p := range probes {
		_, err := appliance.LoadCAFile(f.dir, p)
		if err == nil || err.Error() != appliance.ErrCAFile.Error() || !errors.Is(err, appliance.ErrCredentialFile) {
			t.Errorf("ca file %s: %v, want %v", p, err, appliance.ErrCAFile)
		}
		// PEM files are not passwords, but the probes that are not
		// usable files at all must answer alike as password files too.
		if p == filepath.Join(f.dir, "notpem") {
			continue
		}
		_, err = appliance.LoadPasswordFile(f.dir, p)
		if err == nil || err.Error() != appliance.ErrPasswordFile.Error() {
			t.Errorf("password file %s: %v, want %v", p, err, appliance.ErrPasswordFile)
		}
	}
	if certs, err := appliance.LoadCAFile(f.dir, f.ca); err != nil || len(certs) != 1 {
		t.Fatalf("good CA file: %d, %v", len(certs), err)
	}
	if pw, err := appliance.LoadPasswordFile(f.dir, f.pw); err != nil || pw.Reveal() != "inside-Pa55" {
		t.Fatalf("good password file: %v", err)
	}
}

// TestIdentitySourceFilePaths checks the Service's rule: without a
// credentials directory no file path is stored; with one, only usable
// files inside it, and the reasons never vary with the file.
func TestIdentitySourceFilePaths(t *testing.T) {
	f := newCredFixture(t)
	ctx := context.Background()
	noDir := appliancetest.Service(t, appliance.Config{})
	withDir := appliancetest.Service(t, appliance.Config{CredentialsDir: f.dir})
	src := func(l appliance.LDAPSourceConfig) appliance.IdentitySource {
		l.URL, l.BaseDN, l.BindDN = "ldap://127.0.0.1:1", "dc=x", "cn=r,dc=x"
		return appliance.IdentitySource{Name: "corp", Type: appliance.SourceTypeLDAP, LDAP: &l}
	}
	const noDirCA = "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the CA certificates as ca_pem"
	const noDirPW = "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the password as bind_password"
	caBad := appliance.ErrCAFile.Error()
	pwBad := appliance.ErrPasswordFile.Error()
	tests := []struct {
		name string
		svc  *appliance.Service
		ldap appliance.LDAPSourceConfig
		want []appliance.FieldError // nil = accepted
	}{
		{name: "no dir: secret as password file", svc: noDir, ldap: appliance.LDAPSourceConfig{BindPasswordFile: f.secret},
			want: []appliance.FieldError{{Field: "ldap.bind_password_file", Reason: noDirPW}}},
		{name: "no dir: even a path inside", svc: noDir, ldap: appliance.LDAPSourceConfig{CAFile: f.ca, BindPasswordFile: f.pw},
			want: []appliance.FieldError{{Field: "ldap.ca_file", Reason: noDirCA}, {Field: "ldap.bind_password_file", Reason: noDirPW}}},
		{name: "no dir: inline secrets are fine", svc: noDir, ldap: appliance.LDAPSourceConfig{BindPassword: "p", CAPEM: testCAPEM(t)}},
		{name: "dir: files inside", svc: withDir, ldap: appliance.LDAPSourceConfig{CAFile: f.ca, BindPasswordFile: f.pw}},
		{name: "dir: secret outside", svc: withDir, ldap: appliance.LDAPSourceConfig{BindPasswordFile: f.secret},
			want: []appliance.FieldError{{Field: "ldap.bind_password_file", Reason: pwBad}}},
		{name: "dir: symlink out", svc: withDir, ldap: appliance.LDAPSourceConfig{BindPasswordFile: filepath.Join(f.dir, "link-out")},
			want: []appliance.FieldError{{Field: "ldap.bind_password_file", Reason: pwBad}}},
		{name: "dir: dot-dot out", svc: withDir, ldap: appliance.LDAPSourceConfig{BindPasswordFile: f.dir + "/../outside/master.key"},
			want: []appliance.FieldError{{Field: "ldap.bind_password_file", Reason: pwBad}}},
		{name: "dir: ca_file probe of a missing file", svc: withDir, ldap: appliance.LDAPSourceConfig{CAFile: filepath.Join(f.dir, "nope")},
			want: []appliance.FieldError{{Field: "ldap.ca_file", Reason: caBad}}},
		{name: "dir: ca_file probe of a non-PEM file", svc: withDir, ldap: appliance.LDAPSourceConfig{CAFile: filepath.Join(f.dir, "notpem")},
			want: []appliance.FieldError{{Field: "ldap.ca_file", Reason: caBad}}},
		{name: "ca_pem without a certificate", svc: noDir, ldap: appliance.LDAPSourceConfig{CAPEM: outsideSecret},
			want: []appliance.FieldError{{Field: "ldap.ca_pem", Reason: "must be PEM certificates: holds no PEM certificate"}}},
		{name: "ca_pem and ca_file", svc: withDir, ldap: appliance.LDAPSourceConfig{CAPEM: testCAPEM(t), CAFile: f.ca},
			want: []appliance.FieldError{{Field: "ldap.ca_pem", Reason: "give either ca_pem or ca_file, not both"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, op := range []string{"create", "update"} {
				var err error
				if op == "create" {
					var got appliance.IdentitySource
					got, _, err = tt.svc.CreateIdentitySource(ctx, src(tt.ldap))
					if err == nil {
						if got.LDAP.CAPEM != tt.ldap.CAPEM {
							t.Errorf("ca_pem not kept as given")
						}
						if err := tt.svc.DeleteIdentitySource(ctx, got.ID); err != nil {
							t.Fatal(err)
						}
					}
				} else {
					ok, _, cerr := tt.svc.CreateIdentitySource(ctx, src(appliance.LDAPSourceConfig{BindPassword: "p"}))
					if cerr != nil {
						t.Fatal(cerr)
					}
					_, err = tt.svc.UpdateIdentitySource(ctx, ok.ID, src(tt.ldap))
					if err := tt.svc.DeleteIdentitySource(ctx, ok.ID); err != nil {
						t.Fatal(err)
					}
				}
				var ve *appliance.ValidationError
				if tt.want == nil {
					if err != nil {
						t.Errorf("%s: %v", op, err)
					}
					continue
				}
				if !errors.As(err, &ve) {
					t.Fatalf("%s: %v, want a ValidationError", op, err)
				}
				if diff := cmp.Diff(tt.want, ve.Problems); diff != "" {
					t.Errorf("%s (-want +got):\n%s", op, diff)
				}
				if strings.Contains(err.Error(), outsideSecret) {
					t.Errorf("%s: the error holds the file's bytes", op)
				}
			}
		})
	}
}
