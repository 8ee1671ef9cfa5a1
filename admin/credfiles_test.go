package admin

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/internal/credtest"
)

// daemonSecret stands for the master key: bytes the daemon can read that
// no API caller may ever get.
const daemonSecret = "MASTER-KEY-feedface0123456789-never-sent"

func attackBody(url string, ldap map[string]any) map[string]any {
	l := map[string]any{"url": url, "bind_dn": "cn=x,dc=evil", "base_dn": "dc=evil"}
	for k, v := range ldap {
		l[k] = v
	}
	return map[string]any{"name": "evil", "type": "ldap", "ldap": l}
}

// TestIdentitySourceFilePathsRefused is the reported attack: a superadmin
// token creates an LDAP source whose bind password file is the daemon's
// secret and whose URL is the attacker's server. With no credentials
// directory configured (the default) every file path is refused with 400,
// nothing is stored, and the server never hears from tokend.
func TestIdentitySourceFilePathsRefused(t *testing.T) {
	secret := credtest.WriteFile(t, filepath.Join(t.TempDir(), "master.key"), daemonSecret)
	e := newEnv(t)
	existing := e.createSource(ldapSourceBody("Corp AD"))
	evil := credtest.NewRecorder(t)
	const detailPW = "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the password as bind_password"
	const detailCA = "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the CA certificates as ca_pem"
	tests := []struct {
		name string
		ldap map[string]any
		want []FieldProblem
	}{
		{name: "bind_password_file is the master key", ldap: map[string]any{"bind_password_file": secret},
			want: []FieldProblem{{"ldap.bind_password_file", detailPW}}},
		{name: "bind_password_file is /proc/self/environ", ldap: map[string]any{"bind_password_file": "/proc/self/environ"},
			want: []FieldProblem{{"ldap.bind_password_file", detailPW}}},
		{name: "ca_file probe, existing file", ldap: map[string]any{"bind_password": "p", "ca_file": secret},
			want: []FieldProblem{{"ldap.ca_file", detailCA}}},
		{name: "ca_file probe, missing file", ldap: map[string]any{"bind_password": "p", "ca_file": secret + ".nope"},
			want: []FieldProblem{{"ldap.ca_file", detailCA}}},
	}
	for _, tt := range tests {
		for _, m := range []struct{ method, path string }{
			{"POST", "/api/v1/identity-sources"}, {"PUT", "/api/v1/identity-sources/" + existing.ID},
		} {
			t.Run(tt.name+" "+m.method, func(t *testing.T) {
				w := e.call(m.method, m.path, attackBody(evil.URL(), tt.ldap))
				p := wantProblem(t, w, http.StatusBadRequest, CodeInvalidRequest)
				if diff := cmp.Diff(tt.want, p.Errors); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				if strings.Contains(w.Body.String(), daemonSecret) {
					t.Errorf("the answer holds the file: %s", w.Body)
				}
			})
		}
	}
	var list List[IdentitySourceDTO]
	want(t, e.call("GET", "/api/v1/identity-sources", nil), http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].ID != existing.ID || list.Items[0].LDAP.BindPasswordFile != "" || list.Items[0].LDAP.CAFile != "" {
		t.Fatalf("a refused request changed the sources: %+v", list.Items)
	}
	if n, got := evil.Seen(); n != 0 || got != "" {
		t.Fatalf("the attacker's server was reached: %d connections, %q", n, got)
	}
	if strings.Contains(e.logs.String(), daemonSecret) {
		t.Fatal("the secret is in the logs")
	}
}

// TestIdentitySourceCredentialFiles: with a credentials directory, files in
// it are accepted; paths that leave it (outside, "..", a symlink) are
// refused, and a probe cannot tell a missing file from one that is not
// PEM or is outside: the answers are byte for byte the same.
func TestIdentitySourceCredentialFiles(t *testing.T) {
	dir, _, secret := credtest.Dirs(t, daemonSecret)
	pwFile := credtest.WriteFile(t, filepath.Join(dir, "bind.pw"), bindPassword+"\n")
	caFile := credtest.WriteFile(t, filepath.Join(dir, "ca.pem"), credtest.CAPEM(t, "corp CA"))
	credtest.WriteFile(t, filepath.Join(dir, "notes.txt"), "not a certificate\n")
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	e := newEnvWithConfig(t, appliance.Config{CredentialsDir: dir})

	// Files inside are accepted and shown as given; a password file
	// replaces a stored password.
	src := e.createSource(ldapSourceBody("Corp AD"))
	body := ldapSourceBody("Corp AD")
	l := body["ldap"].(map[string]any)
	l["bind_password"], l["bind_password_file"], l["ca_file"] = "", pwFile, caFile
	var upd IdentitySourceDTO
	want(t, e.call("PUT", "/api/v1/identity-sources/"+src.ID, body), http.StatusOK, &upd)
	if upd.LDAP.HasBindPassword || upd.LDAP.BindPasswordFile != pwFile || upd.LDAP.CAFile != caFile {
		t.Errorf("with files inside: %+v", upd.LDAP)
	}

	pwUnusable := appliance.ErrPasswordFile.Error()
	tests := []struct {
		name  string
		field string
		path  string
	}{
		{"password file outside", "bind_password_file", secret},
		{"password file through ..", "bind_password_file", dir + "/../outside/master.key"},
		{"password file through a symlink out", "bind_password_file", filepath.Join(dir, "link")},
		{"password file missing", "bind_password_file", filepath.Join(dir, "nope")},
		{"password file the directory", "bind_password_file", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := attackBody("ldap://127.0.0.1:1", map[string]any{tt.field: tt.path})
			w := e.call("POST", "/api/v1/identity-sources", b)
			p := wantProblem(t, w, http.StatusBadRequest, CodeInvalidRequest)
			if diff := cmp.Diff([]FieldProblem{{"ldap." + tt.field, pwUnusable}}, p.Errors); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	// ca_file probes: every answer is the same bytes.
	var first string
	for _, probe := range []string{filepath.Join(dir, "nope"), filepath.Join(dir, "notes.txt"), secret,
		filepath.Join(dir, "link"), "/etc/passwd", "/nonexistent/x", dir + "/../outside/master.key"} {
		w := e.call("POST", "/api/v1/identity-sources", attackBody("ldap://127.0.0.1:1", map[string]any{"bind_password": "p", "ca_file": probe}))
		p := wantProblem(t, w, http.StatusBadRequest, CodeInvalidRequest)
		if diff := cmp.Diff([]FieldProblem{{"ldap.ca_file", appliance.ErrCAFile.Error()}}, p.Errors); diff != "" {
			t.Errorf("ca_file %s (-want +got):\n%s", probe, diff)
		}
		if first == "" {
			first = w.Body.String()
		} else if w.Body.String() != first {
			t.Errorf("ca_file %s: answer differs from the first probe's:\n%s\n%s", probe, w.Body, first)
		}
	}
	if strings.Contains(e.logs.String(), daemonSecret) || strings.Contains(e.logs.String(), bindPassword) {
		t.Fatal("a secret is in the logs")
	}
}

// TestIdentitySourceCAPEM: the CA is sent as PEM text, validated, stored
// and shown back as sent; the bind password beside it never comes back.
func TestIdentitySourceCAPEM(t *testing.T) {
	e := newEnv(t)
	ca := credtest.CAPEM(t, "corp CA")
	body := ldapSourceBody("Corp AD")
	body["ldap"].(map[string]any)["ca_pem"] = ca
	w := e.call("POST", "/api/v1/identity-sources", body)
	var src NewIdentitySourceDTO
	want(t, w, http.StatusCreated, &src)
	if src.LDAP.CAPEM != ca || !src.LDAP.HasBindPassword {
		t.Fatalf("created: %+v", src.LDAP)
	}
	var got IdentitySourceDTO
	w2 := e.do(req{method: "GET", path: "/api/v1/identity-sources/" + src.ID, role: appliance.RoleAuditor})
	want(t, w2, http.StatusOK, &got)
	if got.LDAP.CAPEM != ca {
		t.Errorf("ca_pem read back %q", got.LDAP.CAPEM)
	}
	for _, b := range []string{w.Body.String(), w2.Body.String()} {
		if strings.Contains(b, bindPassword) || strings.Contains(b, `"bind_password"`) {
			t.Errorf("an answer holds the bind password: %s", b)
		}
	}
	tests := []struct {
		name string
		ldap map[string]any
		want []FieldProblem
	}{
		{name: "not PEM", ldap: map[string]any{"ca_pem": "hello"},
			want: []FieldProblem{{"ldap.ca_pem", "must be PEM certificates: holds no PEM certificate"}}},
		{name: "a key, not a certificate", ldap: map[string]any{"ca_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
			want: []FieldProblem{{"ldap.ca_pem", "must be PEM certificates: holds a PEM block that is not a CERTIFICATE"}}},
		{name: "too large", ldap: map[string]any{"ca_pem": strings.Repeat(ca, appliance.MaxCAPEM/len(ca)+1)},
			want: []FieldProblem{{"ldap.ca_pem", "at most 131072 bytes"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ldapSourceBody("other")
			for k, v := range tt.ldap {
				b["ldap"].(map[string]any)[k] = v
			}
			p := wantProblem(t, e.call("POST", "/api/v1/identity-sources", b), http.StatusBadRequest, CodeInvalidRequest)
			if diff := cmp.Diff(tt.want, p.Errors); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	e.noSecretsAnywhere()
}
