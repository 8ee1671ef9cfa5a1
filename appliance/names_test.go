package appliance_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/memstore"
)

// wantFieldRule checks that err is a *ValidationError naming field with
// exactly the rule text.
func wantFieldRule(t *testing.T, err error, field, rule string) {
	t.Helper()
	var v *appliance.ValidationError
	if !errors.As(err, &v) {
		t.Fatalf("error %v, want a *ValidationError", err)
	}
	want := []appliance.FieldError{{Field: field, Reason: rule}}
	if diff := cmp.Diff(want, v.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestUserNameRule(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		ok    bool
		store string // stored form when ok
	}{
		{name: "ascii login", in: "alice", ok: true, store: "alice"},
		{name: "inner space", in: "Jane Doe", ok: true, store: "Jane Doe"},
		{name: "surrounding space trimmed", in: "  bob  ", ok: true, store: "bob"},
		{name: "punctuation and symbols", in: "o'brien+it@example.org", ok: true, store: "o'brien+it@example.org"},
		{name: "non-latin letters", in: "名前", ok: true, store: "名前"},
		{name: "decomposed stored composed", in: "zoe\u0308", ok: true, store: "zo\u00eb"},
		{name: "exactly 256 bytes", in: strings.Repeat("a", 256), ok: true, store: strings.Repeat("a", 256)},
		{name: "BEL", in: "ali\ace"},
		{name: "ESC sequence", in: "a\x1b[31mb"},
		{name: "DEL", in: "a\x7fb"},
		{name: "tab", in: "a\tb"},
		{name: "newline", in: "a\nb"},
		{name: "NUL", in: "a\x00b"},
		{name: "C1 control", in: "a\u0085b"},
		{name: "right-to-left override", in: "admin\u202egpj.exe"},
		{name: "left-to-right isolate", in: "a\u2066b"},
		{name: "zero-width space", in: "ali\u200bce"},
		{name: "zero-width joiner", in: "a\u200db"},
		{name: "byte order mark", in: "\ufeffalice"},
		{name: "no-break space", in: "jane\u00a0doe"},
		{name: "ideographic space", in: "jane\u3000doe"},
		{name: "line separator", in: "a\u2028b"},
		{name: "private use", in: "a\ue000b"},
		{name: "unassigned", in: "a\u0378b"},
		{name: "slash", in: "a/b"},
		{name: "invalid UTF-8", in: "a\xffb"},
		{name: "257 bytes", in: strings.Repeat("a", 257)},
	}
	f := newFixture(t, memstore.New())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: tt.in})
			if !tt.ok {
				wantFieldRule(t, err, "user_name", appliance.UserNameRule)
				return
			}
			if err != nil {
				t.Fatalf("CreateUser(%q): %v", tt.in, err)
			}
			if u.UserName != tt.store {
				t.Errorf("stored %q, want %q", u.UserName, tt.store)
			}
		})
	}
}

func TestUserNameNFCLookups(t *testing.T) {
	const composed, decomposed = "ren\u00e9e", "rene\u0301e"
	f := newFixture(t, memstore.New())
	u, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: decomposed, DisplayName: "Ren\u00e9e Dupont"})
	if err != nil {
		t.Fatal(err)
	}
	if u.UserName != composed {
		t.Fatalf("stored %q, want the NFC %q", u.UserName, composed)
	}
	for _, name := range []string{composed, decomposed, "RENE\u0301E"} {
		t.Run("find "+name, func(t *testing.T) {
			got, err := f.svc.FindUserByName(f.ctx, name)
			if err != nil || got.ID != u.ID {
				t.Fatalf("FindUserByName(%q) = %v, %v", name, got.ID, err)
			}
		})
	}
	for _, search := range []string{"ren\u00e9", "rene\u0301", "Ren\u00e9e D", "Rene\u0301e D"} {
		t.Run("search "+search, func(t *testing.T) {
			page, err := f.svc.ListUsers(f.ctx, appliance.UserQuery{Search: search})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) != 1 || page.Items[0].ID != u.ID {
				t.Fatalf("search %q found %v", search, page.Items)
			}
		})
	}
	t.Run("the other form is the same login", func(t *testing.T) {
		if _, err := f.svc.CreateUser(f.ctx, appliance.NewUser{UserName: composed}); !errors.Is(err, appliance.ErrExists) {
			t.Fatalf("CreateUser(composed) = %v, want ErrExists", err)
		}
	})
}

func TestAdminNameRule(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{name: "BEL", in: "jane\a"},
		{name: "inner space", in: "jane doe"},
		{name: "right-to-left override", in: "root\u202e"},
		{name: "zero-width space", in: "ro\u200bot"},
		{name: "no-break space", in: "jane\u00a0doe"},
		{name: "slash", in: "a/b"},
		{name: "65 bytes", in: strings.Repeat("a", 65)},
	}
	f := newFixture(t, memstore.New())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: tt.in, Role: appliance.RoleHelpdesk})
			wantFieldRule(t, err, "name", appliance.AdminNameRule)
		})
	}
	t.Run("decomposed stored composed", func(t *testing.T) {
		a, _, err := f.svc.CreateAdmin(f.ctx, appliance.NewAdmin{Name: "jose\u0301", Role: appliance.RoleHelpdesk})
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != "jos\u00e9" {
			t.Errorf("stored %q, want NFC", a.Name)
		}
		if _, err := f.svc.GetAdmin(f.ctx, "jose\u0301"); err != nil {
			t.Errorf("GetAdmin(decomposed): %v", err)
		}
	})
}

// TestDirectoryPlanRejectsOddNamesPerUser: one bad login in a pulled
// directory never fails the run; a new user with it is not added, an
// existing user keeps its stored login and is still deactivated.
func TestDirectoryPlanRejectsOddNamesPerUser(t *testing.T) {
	f := newFixture(t, memstore.New())
	src, _, err := f.svc.CreateIdentitySource(f.ctx, appliance.IdentitySource{Name: "Corp", Type: appliance.SourceTypeLDAP,
		LDAP: &appliance.LDAPSourceConfig{URL: "ldaps://dc.example:636", BaseDN: "dc=example"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Add: []appliance.DirectoryUser{
		{ExternalID: "u1", UserName: "carol", Active: true},
		{ExternalID: "u2", UserName: "mallory\u202e", Active: true},
		{ExternalID: "u3", UserName: "dave", Active: true},
		{ExternalID: "u4", UserName: "e\u0301mile", Active: true},
	}})
	if err != nil {
		t.Fatalf("a run with one odd name failed: %v", err)
	}
	if diff := cmp.Diff([]string{"u2"}, res.Rejected); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	dir, err := f.svc.DirectoryUsers(f.ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range dir {
		names = append(names, u.UserName)
	}
	slices.Sort(names)
	// The directory's spelling is kept so the next plan compares equal;
	// the login index is NFC either way.
	if diff := cmp.Diff([]string{"carol", "dave", "e\u0301mile"}, names); diff != "" {
		t.Errorf("stored users (-want +got):\n%s", diff)
	}
	if _, err := f.svc.FindUserByName(f.ctx, "\u00e9mile"); err != nil {
		t.Errorf("composed lookup of a decomposed directory login: %v", err)
	}

	dave := dir[slices.IndexFunc(dir, func(u appliance.DirectoryUser) bool { return u.ExternalID == "u3" })]
	renamed := dave
	renamed.UserName, renamed.Active, renamed.Disabled = "dave\u200b", false, true
	res, err = f.svc.ApplyDirectoryPlan(f.ctx, src.ID, appliance.DirectoryPlan{Deactivate: []appliance.DirectoryUser{renamed}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"u3"}, res.Rejected); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	got, err := f.svc.GetUser(f.ctx, dave.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserName != "dave" || got.Active {
		t.Errorf("after an odd rename with deactivation: name %q active %v, want \"dave\" inactive", got.UserName, got.Active)
	}
}
