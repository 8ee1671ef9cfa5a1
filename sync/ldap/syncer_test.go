package ldap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/internal/credtest"
	"tokend/internal/slapdtest"
	"tokend/sync/mirror"
)

type env struct {
	srv    *slapdtest.Server
	cfg    Config
	target *memTarget
	syncer *Syncer
	logs   *bytes.Buffer
}

func newEnv(t *testing.T, opts slapdtest.Options) *env {
	t.Helper()
	srv := slapdtest.Start(t, opts)
	logs := &bytes.Buffer{}
	e := &env{
		srv:    srv,
		target: newMemTarget(),
		logs:   logs,
		cfg: Config{URL: srv.URL, BindDN: srv.ReaderDN, BindPassword: Secret(srv.ReaderPassword),
			BaseDN: srv.PeopleDN, Timeout: 10 * time.Second},
	}
	e.syncer = NewSyncer(e.target, slog.New(slog.NewTextHandler(logs, nil)), nil)
	return e
}

func (e *env) run(t *testing.T, opts RunOptions) mirror.Summary {
	t.Helper()
	sum, err := e.syncer.Run(context.Background(), "src", e.cfg, opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sum
}

// counts drops the fields that vary from run to run.
func counts(s mirror.Summary) mirror.Summary { s.DurationMS = 0; return s }

func TestFullSync(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 50})
	got := counts(e.run(t, RunOptions{}))
	if diff := cmp.Diff(mirror.Summary{Added: 50, Mode: ModeFull}, got); diff != "" {
		t.Fatalf("first run (-want +got):\n%s", diff)
	}
	u, ok := e.target.byName("user7")
	if !ok {
		t.Fatal("user7 not synced")
	}
	if u.DisplayName != "Test User 7" || u.Email != "user7@example.org" || !u.Active || len(u.ExternalID) != 36 {
		t.Errorf("user7 = %+v", u)
	}
	if len(e.target.cookie) == 0 {
		t.Error("no cookie saved after the full pass")
	}
	// Nothing changed: an incremental run (cookie stored) and a forced full pass.
	if diff := cmp.Diff(mirror.Summary{Unchanged: 50, Mode: ModeIncremental}, counts(e.run(t, RunOptions{}))); diff != "" {
		t.Errorf("incremental run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(mirror.Summary{Unchanged: 50, Mode: ModeFull}, counts(e.run(t, RunOptions{Full: true}))); diff != "" {
		t.Errorf("second full run (-want +got):\n%s", diff)
	}
	if strings.Contains(e.logs.String(), e.srv.ReaderPassword) {
		t.Error("password in the logs")
	}
}

func TestModifyRenameDeleteReappear(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 20})
	// employeeType=gone takes a user out of scope, as moving it out of the
	// synced subtree would; removing it brings the same entry back.
	e.cfg.UserFilter = "(&(objectClass=inetOrgPerson)(!(employeeType=gone)))"
	e.run(t, RunOptions{})
	before, c0 := e.target.snapshot(), e.target.cookie
	u2, _ := e.target.byName("user2")
	u3, _ := e.target.byName("user3")

	e.srv.Replace(t, e.srv.UserDN(1), "mail", "first@example.org")
	e.srv.Rename(t, e.srv.UserDN(2), "uid=renamed2")
	e.srv.Replace(t, e.srv.UserDN(3), "employeeType", "gone")

	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			e.target.users = maps(before)
			e.target.cookie = nil
			if !full {
				e.target.cookie = c0
			}
			got := counts(e.run(t, RunOptions{Full: full}))
			want := mirror.Summary{Updated: 2, Deactivated: 1, Unchanged: 17, Mode: ModeFull}
			if !full {
				want.Mode = ModeIncremental
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			r, ok := e.target.byName("renamed2")
			if !ok || r.UserID != u2.UserID || r.ExternalID != u2.ExternalID {
				t.Errorf("rename: got %+v, want user %s", r, u2.UserID)
			}
			if u, _ := e.target.byName("user1"); u.Email != "first@example.org" {
				t.Errorf("modify: %+v", u)
			}
			g, _ := e.target.byName("user3")
			if g.Active || g.UserID != u3.UserID || g.DeactivatedAt.IsZero() {
				t.Errorf("gone: %+v", g)
			}
		})
	}
	// Reappear: the same entry back in scope is reactivated intact.
	e.srv.Modify(t, fmt.Sprintf("dn: %s\nchangetype: modify\ndelete: employeeType\n", e.srv.UserDN(3)))
	got := counts(e.run(t, RunOptions{}))
	if diff := cmp.Diff(mirror.Summary{Reactivated: 1, Unchanged: 19, Mode: ModeIncremental}, got); diff != "" {
		t.Fatalf("reappear (-want +got):\n%s", diff)
	}
	if g, _ := e.target.byName("user3"); !g.Active || g.UserID != u3.UserID || !g.DeactivatedAt.IsZero() {
		t.Errorf("reappeared: %+v", g)
	}
	// Delete for real: inactive, kept with its id.
	e.srv.Delete(t, e.srv.UserDN(3))
	if got := counts(e.run(t, RunOptions{})); got.Deactivated != 1 {
		t.Fatalf("delete: %+v", got)
	}
	if g, ok := e.target.byName("user3"); !ok || g.Active || g.UserID != u3.UserID {
		t.Errorf("deleted user: %+v %v", g, ok)
	}
}

func maps(m map[string]mirror.Local) map[string]mirror.Local {
	out := make(map[string]mirror.Local, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestOutageMidSync(t *testing.T) {
	if testing.Short() {
		t.Skip("20k directory")
	}
	e := newEnv(t, slapdtest.Options{Users: 20000})
	// 5000 is the end of a page (page size 500), 5250 is inside one: the
	// two ways a cut stream shows up in go-ldap.
	for _, killAt := range []int{5000, 5250} {
		t.Run(fmt.Sprint(killAt), func(t *testing.T) {
			e.syncer.progress = func(n int) {
				if n == killAt {
					e.srv.Kill()
				}
			}
			_, err := e.syncer.Run(context.Background(), "src", e.cfg, RunOptions{Force: true})
			var re *ReadError
			if !errors.As(err, &re) || re.Entries < killAt || re.Entries >= 20000 {
				t.Fatalf("error %v, want a ReadError mid-stream", err)
			}
			t.Logf("error: %v", err)
			if n := len(e.target.snapshot()); n != 0 || e.target.applies != 0 || e.target.cookie != nil {
				t.Fatalf("partial apply: %d users, %d applies, cookie %q", n, e.target.applies, e.target.cookie)
			}
			e.srv.Restart(t)
		})
	}
	// The server is back: the next run syncs everything.
	e.syncer.progress = nil
	if got := e.run(t, RunOptions{}); got.Added != 20000 {
		t.Fatalf("after restart: %+v", got)
	}
}

func TestServerDown(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 3})
	e.srv.Kill()
	_, err := e.syncer.Run(context.Background(), "src", e.cfg, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "ldap: connecting to "+e.srv.URL) {
		t.Fatalf("got %v", err)
	}
}

func TestBrake(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 50})
	e.run(t, RunOptions{})
	before, cookie := e.target.snapshot(), e.target.cookie
	var dns []string
	for i := 1; i <= 10; i++ { // 20%
		dns = append(dns, e.srv.UserDN(i))
	}
	e.srv.Delete(t, dns...)
	for _, full := range []bool{false, true} {
		sum, err := e.syncer.Run(context.Background(), "src", e.cfg, RunOptions{Full: full})
		var be *BrakeErrorAlias
		if !errors.As(err, &be) {
			t.Fatalf("full=%v: error %v, want a BrakeError", full, err)
		}
		if diff := cmp.Diff(&mirror.BrakeError{WouldDeactivate: 10, Active: 50, Threshold: 0.1}, be); diff != "" {
			t.Errorf("full=%v (-want +got):\n%s", full, diff)
		}
		if sum.Error != err.Error() || sum.Deactivated != 0 {
			t.Errorf("summary %+v", sum)
		}
		if diff := cmp.Diff(before, e.target.snapshot()); diff != "" || !bytes.Equal(cookie, e.target.cookie) {
			t.Fatalf("full=%v: something applied:\n%s", full, diff)
		}
	}
	got := counts(e.run(t, RunOptions{Force: true}))
	if diff := cmp.Diff(mirror.Summary{Deactivated: 10, Unchanged: 40, Mode: ModeIncremental}, got); diff != "" {
		t.Fatalf("forced (-want +got):\n%s", diff)
	}
	if n := e.target.count(false); n != 10 {
		t.Errorf("%d inactive, want 10", n)
	}
}

// BrakeErrorAlias keeps errors.As readable above.
type BrakeErrorAlias = mirror.BrakeError

func TestIncrementalCookie(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 30})
	e.run(t, RunOptions{})
	c1 := e.target.cookie
	e.srv.Replace(t, e.srv.UserDN(1), "displayName", "Changed")
	e.srv.Rename(t, e.srv.UserDN(2), "uid=renamed2")
	e.srv.Delete(t, e.srv.UserDN(3))
	e.srv.AddUsers(t, 31, 1)

	// Apply fails: the cookie must not move, so the changes come again.
	e.target.applyErr = errors.New("disk full")
	if _, err := e.syncer.Run(context.Background(), "src", e.cfg, RunOptions{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("got %v", err)
	}
	if !bytes.Equal(e.target.cookie, c1) {
		t.Fatal("cookie saved although Apply failed")
	}
	e.target.applyErr = nil
	got := counts(e.run(t, RunOptions{}))
	if diff := cmp.Diff(mirror.Summary{Added: 1, Updated: 2, Deactivated: 1, Unchanged: 27, Mode: ModeIncremental}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if bytes.Equal(e.target.cookie, c1) {
		t.Fatal("cookie not advanced")
	}
	if u, ok := e.target.byName("user31"); !ok || !u.Active {
		t.Errorf("user31: %+v", u)
	}

	// Present phase: a cookie older than what the restarted server's session
	// log covers makes slapd enumerate; the run turns into a full pass.
	e.srv.Replace(t, e.srv.UserDN(4), "mail", "four@example.org")
	c2 := e.target.cookie
	e.srv.Restart(t)
	e.srv.Delete(t, e.srv.UserDN(5))
	e.target.cookie = c1 // as if the last save was long ago
	got = counts(e.run(t, RunOptions{}))
	want := mirror.Summary{Updated: 1, Deactivated: 1, Unchanged: 29, Mode: ModeFull}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("present-phase fallback (-want +got):\n%s\nlogs:\n%s", diff, e.logs)
	}
	if !strings.Contains(e.logs.String(), "falls back to a full pass") {
		t.Error("fallback not logged")
	}
	_ = c2
}

func TestTLS(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 3, TLS: true})
	untrusted := writeSelfSigned(t)
	caPEM, err := os.ReadFile(e.srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	untrustedPEM, err := os.ReadFile(untrusted)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		url     string
		start   bool
		ca      string // a file, read inside its own directory
		pem     string
		wantErr string
	}{
		{name: "StartTLS with CA", url: e.srv.URL, start: true, ca: e.srv.CAFile},
		{name: "LDAPS with CA", url: e.srv.LDAPSURL, ca: e.srv.CAFile},
		{name: "StartTLS with CA PEM", url: e.srv.URL, start: true, pem: string(caPEM)},
		{name: "LDAPS with CA PEM", url: e.srv.LDAPSURL, pem: string(caPEM)},
		{name: "StartTLS untrusted CA", url: e.srv.URL, start: true, ca: untrusted, wantErr: "certificate signed by unknown authority"},
		{name: "LDAPS untrusted CA", url: e.srv.LDAPSURL, ca: untrusted, wantErr: "certificate signed by unknown authority"},
		{name: "LDAPS untrusted CA PEM", url: e.srv.LDAPSURL, pem: string(untrustedPEM), wantErr: "certificate signed by unknown authority"},
		{name: "LDAPS system roots", url: e.srv.LDAPSURL, wantErr: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.cfg
			cfg.URL, cfg.StartTLS, cfg.CAFile, cfg.CAPEM = tt.url, tt.start, tt.ca, tt.pem
			if tt.ca != "" {
				cfg.CredentialsDir = filepath.Dir(tt.ca)
			}
			target := newMemTarget()
			sum, err := NewSyncer(target, nil, nil).Run(context.Background(), "src", cfg, RunOptions{})
			if tt.wantErr == "" {
				if err != nil || sum.Added != 3 {
					t.Fatalf("got %+v, %v", sum, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if len(target.users) != 0 {
				t.Fatal("applied over an untrusted connection")
			}
		})
	}
}

func writeSelfSigned(t *testing.T) string {
	t.Helper()
	return credtest.WriteFile(t, filepath.Join(t.TempDir(), "untrusted.pem"), credtest.CAPEM(t, "untrusted"))
}

func TestWrongPassword(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 3})
	e.cfg.BindPassword = "wrong-Pa55"
	sum, err := e.syncer.Run(context.Background(), "src", e.cfg, RunOptions{})
	want := `ldap: bind as "cn=reader,dc=example,dc=org" failed: invalid credentials`
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	var be *BindError
	if !errors.As(err, &be) || sum.Error != want {
		t.Fatalf("not a BindError / summary %+v", sum)
	}
	if strings.Contains(e.logs.String(), "wrong-Pa55") {
		t.Fatal("password logged")
	}
	// The password file is read at connect time.
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(e.srv.ReaderPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.BindPassword, e.cfg.BindPasswordFile, e.cfg.CredentialsDir = "", pw, filepath.Dir(pw)
	if got := e.run(t, RunOptions{}); got.Added != 3 {
		t.Fatalf("with password file: %+v", got)
	}
}

func TestADPreset(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 20, AD: true})
	e.cfg.Preset = PresetAD
	// the fixture's objectCategory is a DN: AD's (objectCategory=person) shortcut does not apply
	e.cfg.UserFilter = "(objectClass=user)"
	got := counts(e.run(t, RunOptions{}))
	if diff := cmp.Diff(mirror.Summary{Added: 20, Mode: ModeFull}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	u1, _ := e.target.byName("user1")
	want := mirror.Local{UserID: u1.UserID, ExternalID: "00000001-1122-3344-5566-778899aabbcc", UserName: "user1",
		DisplayName: "Test User 1", Email: "user1@example.org", Active: true}
	if diff := cmp.Diff(want, u1); diff != "" {
		t.Errorf("user1 (-want +got):\n%s", diff)
	}
	for _, n := range []string{"user10", "user20"} { // userAccountControl 514
		if u, _ := e.target.byName(n); u.Active || !u.Disabled {
			t.Errorf("%s: %+v, want disabled", n, u)
		}
	}
	if len(e.target.cookie) != 0 {
		t.Error("cookie saved although syncrepl cannot report objectGUID deletes")
	}
	e.srv.Replace(t, e.srv.UserDN(1), "userAccountControl", "514")
	got = counts(e.run(t, RunOptions{}))
	if diff := cmp.Diff(mirror.Summary{Deactivated: 1, Unchanged: 19, Mode: ModeFull}, got); diff != "" {
		t.Fatalf("disable (-want +got):\n%s", diff)
	}
}

func TestRunning(t *testing.T) {
	s := NewSyncer(newMemTarget(), nil, nil)
	if !s.lock("a") {
		t.Fatal("lock")
	}
	cfg := Config{URL: "ldap://127.0.0.1:1", BaseDN: "dc=x"}
	if _, err := s.Run(context.Background(), "a", cfg, RunOptions{}); !errors.Is(err, ErrRunning) {
		t.Fatalf("got %v", err)
	}
}
