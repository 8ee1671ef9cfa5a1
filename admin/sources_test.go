package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tokend/appliance"
)

// bindPassword is the LDAP bind password the tests send; it must never come
// back in a response, an audit record or a log line.
const bindPassword = "s3cret-Bind-Pa55word"

func ldapSourceBody(name string) map[string]any {
	return map[string]any{"name": name, "type": "ldap", "grace_period": "48h", "deactivate_threshold": 0.25,
		"ldap": map[string]any{"url": "ldaps://dc1.corp.example:636", "bind_dn": "CN=tokend,OU=Service,DC=corp,DC=example",
			"bind_password": bindPassword, "base_dn": "OU=Staff,DC=corp,DC=example", "preset": "ad",
			"user_filter": "(objectClass=user)", "attributes": map[string]string{"email": "mail"},
			"page_size": 200, "interval": "30m", "full_interval": "12h"}}
}

func scimSourceBody(name string) map[string]any { return map[string]any{"name": name, "type": "scim"} }

// createSource creates a source as super admin and returns the answer.
func (e *env) createSource(body map[string]any) NewIdentitySourceDTO {
	e.t.Helper()
	var out NewIdentitySourceDTO
	want(e.t, e.call("POST", "/api/v1/identity-sources", body), http.StatusCreated, &out)
	return out
}

// noSecretsAnywhere checks that the bind password appears in no log line
// and no audit record.
func (e *env) noSecretsAnywhere() {
	e.t.Helper()
	if strings.Contains(e.logs.String(), bindPassword) {
		e.t.Errorf("the bind password is in the logs:\n%s", e.logs.String())
	}
	w := e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", role: appliance.RoleAuditor})
	if w.Code != http.StatusOK || strings.Contains(w.Body.String(), bindPassword) {
		e.t.Errorf("audit trail (%d) holds the bind password or failed: %s", w.Code, w.Body)
	}
}

func TestIdentitySourceLifecycle(t *testing.T) {
	e := newEnv(t)
	// Every response body, to check that none carries the password.
	var bodies []string

	// Create an LDAP source.
	w := e.call("POST", "/api/v1/identity-sources", ldapSourceBody("Corp AD"))
	bodies = append(bodies, w.Body.String())
	var ldapSrc NewIdentitySourceDTO
	want(t, w, http.StatusCreated, &ldapSrc)
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if got, wantLoc := w.Header().Get("Location"), "/api/v1/identity-sources/"+ldapSrc.ID; got != wantLoc {
		t.Errorf("Location %q, want %q", got, wantLoc)
	}
	created := epoch.UTC()
	wantLDAP := IdentitySourceDTO{ID: ldapSrc.ID, Name: "Corp AD", Type: "ldap", GracePeriod: "48h0m0s", DeactivateThreshold: 0.25,
		CreatedAt: &created, UpdatedAt: &created,
		LDAP: &LDAPSourceDTO{URL: "ldaps://dc1.corp.example:636", BindDN: "CN=tokend,OU=Service,DC=corp,DC=example",
			HasBindPassword: true, BaseDN: "OU=Staff,DC=corp,DC=example", Preset: "ad", UserFilter: "(objectClass=user)",
			Attributes: map[string]string{"email": "mail"}, PageSize: 200, Interval: "30m0s", FullInterval: "12h0m0s"}}
	if diff := cmp.Diff(NewIdentitySourceDTO{IdentitySourceDTO: wantLDAP}, ldapSrc); diff != "" {
		t.Errorf("created LDAP source (-want +got):\n%s", diff)
	}
	if strings.Contains(w.Body.String(), `"scim_token"`) || strings.Contains(w.Body.String(), `"bind_password"`) {
		t.Errorf("LDAP creation answer has a token or password field: %s", w.Body)
	}
	// The Service holds the password, sealed, for the syncer.
	if pw, err := e.svc.LDAPBindPassword(context.Background(), ldapSrc.ID); err != nil || pw.Reveal() != bindPassword {
		t.Errorf("stored bind password %q, %v; want the one sent", pw.Reveal(), err)
	}

	// Create a SCIM source with the defaults: its token is shown once.
	e.clock.Advance(time.Minute)
	w = e.call("POST", "/api/v1/identity-sources", scimSourceBody("Entra ID"))
	bodies = append(bodies, w.Body.String())
	var scimSrc NewIdentitySourceDTO
	want(t, w, http.StatusCreated, &scimSrc)
	if !strings.HasPrefix(scimSrc.SCIMToken, "tkds_") {
		t.Errorf("scim_token %q", scimSrc.SCIMToken)
	}
	if id, err := e.svc.AuthenticateSCIMToken(context.Background(), scimSrc.SCIMToken); err != nil || id != scimSrc.ID {
		t.Errorf("the token shown does not authenticate the source: %q, %v", id, err)
	}
	scimCreated := epoch.Add(time.Minute).UTC()
	wantSCIM := IdentitySourceDTO{ID: scimSrc.ID, Name: "Entra ID", Type: "scim", HasSCIMToken: true, SCIMURL: "/scim/v2",
		GracePeriod: "720h0m0s", DeactivateThreshold: 0.1, CreatedAt: &scimCreated, UpdatedAt: &scimCreated}
	if diff := cmp.Diff(wantSCIM, scimSrc.IdentitySourceDTO); diff != "" {
		t.Errorf("created SCIM source (-want +got):\n%s", diff)
	}

	// Get and list: never the token, never the password.
	for _, tc := range []struct {
		name string
		id   string
		want IdentitySourceDTO
	}{{"ldap", ldapSrc.ID, wantLDAP}, {"scim", scimSrc.ID, wantSCIM}} {
		t.Run("get "+tc.name, func(t *testing.T) {
			w := e.do(req{method: "GET", path: "/api/v1/identity-sources/" + tc.id, role: appliance.RoleAuditor})
			bodies = append(bodies, w.Body.String())
			var got IdentitySourceDTO
			want(t, w, http.StatusOK, &got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if strings.Contains(w.Body.String(), `"scim_token"`) {
				t.Errorf("GET shows a token: %s", w.Body)
			}
		})
	}
	w = e.do(req{method: "GET", path: "/api/v1/identity-sources", role: appliance.RoleAuditor})
	bodies = append(bodies, w.Body.String())
	var list List[IdentitySourceDTO]
	want(t, w, http.StatusOK, &list)
	if diff := cmp.Diff([]IdentitySourceDTO{wantLDAP, wantSCIM}, list.Items,
		cmpopts.SortSlices(func(a, b IdentitySourceDTO) bool { return a.Name < b.Name })); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if strings.Contains(w.Body.String(), scimSrc.SCIMToken) || strings.Contains(w.Body.String(), `"scim_token"`) {
		t.Errorf("the listing shows a token: %s", w.Body)
	}

	// Update without a password keeps the stored one.
	e.clock.Advance(time.Minute)
	body := ldapSourceBody("Corp AD (EMEA)")
	body["ldap"].(map[string]any)["bind_password"] = ""
	body["ldap"].(map[string]any)["page_size"] = 1000
	w = e.call("PUT", "/api/v1/identity-sources/"+ldapSrc.ID, body)
	bodies = append(bodies, w.Body.String())
	var upd IdentitySourceDTO
	want(t, w, http.StatusOK, &upd)
	if upd.Name != "Corp AD (EMEA)" || upd.LDAP.PageSize != 1000 || !upd.LDAP.HasBindPassword || !upd.UpdatedAt.Equal(epoch.Add(2*time.Minute)) {
		t.Errorf("updated source %+v %+v", upd, upd.LDAP)
	}
	if pw, err := e.svc.LDAPBindPassword(context.Background(), ldapSrc.ID); err != nil || pw.Reveal() != bindPassword {
		t.Errorf("an update without a password lost the stored one: %v", err)
	}
	// No credentials directory is configured: no file path is accepted
	// (TestIdentitySourceCredentialFiles covers the directory).
	body["ldap"].(map[string]any)["bind_password_file"] = "/etc/tokend/ldap-bind"
	wantProblem(t, e.call("PUT", "/api/v1/identity-sources/"+ldapSrc.ID, body), http.StatusBadRequest, CodeInvalidRequest)
	delete(body["ldap"].(map[string]any), "bind_password_file")
	// The type cannot change.
	p := wantProblem(t, e.call("PUT", "/api/v1/identity-sources/"+ldapSrc.ID, scimSourceBody("Corp AD")), http.StatusBadRequest, CodeInvalidRequest)
	if diff := cmp.Diff([]FieldProblem{{"type", "cannot be changed"}}, p.Errors); diff != "" {
		t.Errorf("type change (-want +got):\n%s", diff)
	}
	wantProblem(t, e.call("PUT", "/api/v1/identity-sources/nope", scimSourceBody("x")), http.StatusNotFound, CodeNotFound)
	// Names are unique.
	wantProblem(t, e.call("POST", "/api/v1/identity-sources", scimSourceBody("entra id")), http.StatusConflict, CodeExists)

	// Delete: refused while an active user belongs to the source.
	u, err := e.svc.CreateSourceUser(context.Background(), scimSrc.ID,
		appliance.SourceUser{User: appliance.User{UserName: "bob", ExternalID: "ext-bob", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, e.call("DELETE", "/api/v1/identity-sources/"+scimSrc.ID, nil), http.StatusConflict, CodeConflict)
	if _, err := e.svc.DeactivateSourceUser(context.Background(), scimSrc.ID, u.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{scimSrc.ID, ldapSrc.ID} {
		w := e.call("DELETE", "/api/v1/identity-sources/"+id, nil)
		if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
			t.Errorf("delete %s: %d %s", id, w.Code, w.Body)
		}
		wantProblem(t, e.call("GET", "/api/v1/identity-sources/"+id, nil), http.StatusNotFound, CodeNotFound)
	}
	wantProblem(t, e.call("DELETE", "/api/v1/identity-sources/"+ldapSrc.ID, nil), http.StatusNotFound, CodeNotFound)

	for _, b := range bodies {
		if strings.Contains(b, bindPassword) {
			t.Errorf("a response holds the bind password: %s", b)
		}
	}
	e.noSecretsAnywhere()
}

func TestRotateSCIMToken(t *testing.T) {
	e := newEnv(t)
	scimSrc := e.createSource(scimSourceBody("Okta"))
	ldapSrc := e.createSource(ldapSourceBody("Corp AD"))

	w := e.call("POST", "/api/v1/identity-sources/"+scimSrc.ID+"/scim-token", nil)
	var tok SCIMTokenDTO
	want(t, w, http.StatusCreated, &tok)
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
	}
	if !strings.HasPrefix(tok.SCIMToken, "tkds_") || tok.SCIMToken == scimSrc.SCIMToken || tok.SCIMURL != "/scim/v2" {
		t.Errorf("rotated token %+v (old %q)", tok, scimSrc.SCIMToken)
	}
	if _, err := e.svc.AuthenticateSCIMToken(context.Background(), scimSrc.SCIMToken); !errors.Is(err, appliance.ErrUnauthenticated) {
		t.Errorf("the old token still works: %v", err)
	}
	if id, err := e.svc.AuthenticateSCIMToken(context.Background(), tok.SCIMToken); err != nil || id != scimSrc.ID {
		t.Errorf("the new token: %q, %v", id, err)
	}
	wantProblem(t, e.call("POST", "/api/v1/identity-sources/"+ldapSrc.ID+"/scim-token", nil), http.StatusConflict, CodeInvalidState)
	wantProblem(t, e.call("POST", "/api/v1/identity-sources/nope/scim-token", nil), http.StatusNotFound, CodeNotFound)
	e.noSecretsAnywhere()
}

// brakeErr is shaped like main's: it implements SyncBrake and is wrapped.
type brakeErr struct{ would, active int }

func (b brakeErr) Error() string {
	return fmt.Sprintf("mirror: refusing to deactivate %d of %d", b.would, b.active)
}
func (b brakeErr) BrakeDetail() string {
	return fmt.Sprintf("this run would deactivate %d of %d active users; nothing was applied; repeat with ?force=true", b.would, b.active)
}

func TestSyncIdentitySource(t *testing.T) {
	started := epoch.Add(-3 * time.Second)
	run := appliance.SyncRun{ID: "run-1", Mode: "full", StartedAt: started, FinishedAt: epoch, Added: 3, Updated: 2,
		Deactivated: 1, Reactivated: 1, Unchanged: 40, Purged: 0, DurationMS: 3000}
	type call struct {
		source string
		force  bool
	}
	tests := []struct {
		name     string
		sync     func(ctx context.Context, id string, force bool) (appliance.SyncRun, error)
		nilSync  bool
		source   string // "ldap", "scim" or a literal id
		query    string
		status   int
		code     string // problem code when status is not 200
		detail   string // substring of the problem detail
		calls    []call // calls Sync must have seen; nil for none
		wantRun  *SyncRunDTO
		noSource bool
	}{
		{name: "runs and returns the summary", source: "ldap", status: http.StatusOK, calls: []call{{"ldap", false}},
			sync: func(_ context.Context, id string, _ bool) (appliance.SyncRun, error) {
				r := run
				r.SourceID = id
				return r, nil
			}},
		{name: "force is passed on", source: "ldap", query: "?force=true", status: http.StatusOK, calls: []call{{"ldap", true}},
			sync: func(_ context.Context, id string, _ bool) (appliance.SyncRun, error) {
				r := run
				r.SourceID = id
				return r, nil
			}},
		{name: "force=false", source: "ldap", query: "?force=false", status: http.StatusOK, calls: []call{{"ldap", false}},
			sync: func(_ context.Context, id string, _ bool) (appliance.SyncRun, error) {
				r := run
				r.SourceID = id
				return r, nil
			}},
		{name: "the brake refuses", source: "ldap", status: http.StatusConflict, code: CodeSyncBrake, calls: []call{{"ldap", false}},
			detail: "this run would deactivate 30 of 100 active users; nothing was applied; repeat with ?force=true",
			sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{Error: "brake"}, fmt.Errorf("sync: %w", brakeErr{30, 100})
			}},
		{name: "the directory is unreachable", source: "ldap", status: http.StatusBadGateway, code: CodeSyncFailed, calls: []call{{"ldap", false}},
			detail: "ldap: connecting to ldaps://dc1.corp.example:636: dial tcp 192.0.2.1:636: connect: connection refused",
			sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{}, errors.New("ldap: connecting to ldaps://dc1.corp.example:636: dial tcp 192.0.2.1:636: connect: connection refused")
			}},
		{name: "a run is already in progress", source: "ldap", status: http.StatusConflict, code: CodeConflict, calls: []call{{"ldap", false}},
			sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{}, fmt.Errorf("%w: ldap: a sync of this source is already running", appliance.ErrConflict)
			}},
		{name: "no syncer", nilSync: true, source: "ldap", status: http.StatusNotImplemented, code: CodeNotSupported},
		{name: "SCIM sources are pushed", source: "scim", status: http.StatusConflict, code: CodeInvalidState,
			detail: "SCIM sources are pushed, not pulled", sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{}, errors.New("must not be called")
			}},
		{name: "unknown source", source: "nope", status: http.StatusNotFound, code: CodeNotFound,
			sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{}, errors.New("must not be called")
			}},
		{name: "force is not a boolean", source: "ldap", query: "?force=yes please", status: http.StatusBadRequest, code: CodeInvalidRequest,
			sync: func(context.Context, string, bool) (appliance.SyncRun, error) {
				return appliance.SyncRun{}, errors.New("must not be called")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				got []call
			)
			e := newEnv(t, func(o *Options) {
				if tc.nilSync {
					return
				}
				o.Sync = func(ctx context.Context, id string, force bool) (appliance.SyncRun, error) {
					if a := appliance.ActorFrom(ctx); a.Role != appliance.RoleSuperAdmin {
						t.Errorf("Sync called without the super admin in the context: %+v", a)
					}
					mu.Lock()
					got = append(got, call{id, force})
					mu.Unlock()
					return tc.sync(ctx, id, force)
				}
			})
			ids := map[string]string{"ldap": e.createSource(ldapSourceBody("Corp AD")).ID, "scim": e.createSource(scimSourceBody("Okta")).ID}
			id := tc.source
			if v, ok := ids[id]; ok {
				id = v
			}
			w := e.do(req{method: "POST", path: "/api/v1/identity-sources/" + id + "/sync" + strings.ReplaceAll(tc.query, " ", "%20"),
				role: appliance.RoleSuperAdmin})
			if tc.status == http.StatusOK {
				var out SyncRunDTO
				want(t, w, http.StatusOK, &out)
				wantOut := SyncRunDTO{ID: "run-1", SourceID: id, Mode: "full", StartedAt: &started, FinishedAt: &epoch,
					Added: 3, Updated: 2, Deactivated: 1, Reactivated: 1, Unchanged: 40, DurationMS: 3000}
				if diff := cmp.Diff(wantOut, out); diff != "" {
					t.Errorf("summary (-want +got):\n%s", diff)
				}
			} else {
				p := wantProblem(t, w, tc.status, tc.code)
				if !strings.Contains(p.Detail, tc.detail) {
					t.Errorf("detail %q, want it to contain %q", p.Detail, tc.detail)
				}
			}
			var wantCalls []call
			for _, c := range tc.calls {
				wantCalls = append(wantCalls, call{ids[c.source], c.force})
			}
			if diff := cmp.Diff(wantCalls, got, cmp.AllowUnexported(call{})); diff != "" {
				t.Errorf("Sync calls (-want +got):\n%s", diff)
			}
			// Only unknown errors are logged as internal; sync outcomes are
			// answered, not logged here (main logs them).
			if strings.Contains(e.logs.String(), "admin request failed") {
				t.Errorf("a sync outcome was logged as an internal error:\n%s", e.logs)
			}
		})
	}
}

func TestListSyncRuns(t *testing.T) {
	e := newEnv(t)
	src := e.createSource(ldapSourceBody("Corp AD"))
	bg := appliance.WithActor(context.Background(), appliance.Actor{ID: "system", Name: "system"})
	for i := range 3 {
		_, err := e.svc.RecordSyncRun(bg, appliance.SyncRun{SourceID: src.ID, Mode: "full",
			StartedAt: epoch.Add(time.Duration(i) * time.Hour), FinishedAt: epoch.Add(time.Duration(i)*time.Hour + time.Second), Added: i})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.svc.RecordSyncRun(bg, appliance.SyncRun{SourceID: src.ID, Mode: "incremental",
		StartedAt: epoch.Add(3 * time.Hour), FinishedAt: epoch.Add(3*time.Hour + time.Second), Error: "ldap: bind as CN=tokend: invalid credentials"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query string
		added []int // Added of each run, in order
		modes []string
	}{
		{"newest first", "", []int{0, 2, 1, 0}, []string{"incremental", "full", "full", "full"}},
		{"limit", "?limit=2", []int{0, 2}, []string{"incremental", "full"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out List[SyncRunDTO]
			want(t, e.do(req{method: "GET", path: "/api/v1/identity-sources/" + src.ID + "/runs" + tc.query, role: appliance.RoleAuditor}),
				http.StatusOK, &out)
			var added []int
			var modes []string
			for _, r := range out.Items {
				added, modes = append(added, r.Added), append(modes, r.Mode)
				if r.SourceID != src.ID || r.ID == "" || r.StartedAt == nil || r.FinishedAt == nil || r.DurationMS != 1000 {
					t.Errorf("run %+v", r)
				}
			}
			if diff := cmp.Diff(tc.added, added); diff != "" {
				t.Errorf("added per run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.modes, modes); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
			if out.Items[0].Error != "ldap: bind as CN=tokend: invalid credentials" {
				t.Errorf("newest run's error %q", out.Items[0].Error)
			}
		})
	}
	// The last run shows on the source.
	var got IdentitySourceDTO
	want(t, e.call("GET", "/api/v1/identity-sources/"+src.ID, nil), http.StatusOK, &got)
	if got.LastRun == nil || got.LastRun.Mode != "incremental" || got.LastRun.Error == "" {
		t.Errorf("last_run %+v", got.LastRun)
	}
	wantProblem(t, e.call("GET", "/api/v1/identity-sources/nope/runs", nil), http.StatusNotFound, CodeNotFound)
	wantProblem(t, e.call("GET", "/api/v1/identity-sources/"+src.ID+"/runs?limit=-1", nil), http.StatusBadRequest, CodeInvalidRequest)
}

// TestIdentitySourceBadInput checks that bad bodies are refused with every
// problem listed, and that nothing is created.
func TestIdentitySourceBadInput(t *testing.T) {
	e := newEnv(t)
	existing := e.createSource(ldapSourceBody("Corp AD"))
	tests := []struct {
		name string
		body string
		code string
		want []FieldProblem
	}{
		{name: "everything at once", code: CodeInvalidRequest,
			body: `{"name":"x","type":"kerberos","grace_period":"a month","deactivate_threshold":1.5}`,
			want: []FieldProblem{{"type", "must be ldap or scim"}, {"grace_period", `must be a positive duration such as "720h"`},
				{"deactivate_threshold", "must be a share in (0, 1]"}}},
		{name: "ldap without url, bad durations, zero threshold", code: CodeInvalidRequest,
			body: `{"name":"","type":"ldap","grace_period":"-1h","deactivate_threshold":0,"ldap":{"base_dn":" ","interval":"often","full_interval":"0s"}}`,
			want: []FieldProblem{{"name", "required, at most 128 characters on one line"}, {"grace_period", `must be a positive duration such as "720h"`},
				{"deactivate_threshold", "must be a share in (0, 1]"}, {"ldap.url", "required"}, {"ldap.base_dn", "required"},
				{"ldap.interval", `must be a positive duration such as "15m"`}, {"ldap.full_interval", `must be a positive duration such as "24h"`}}},
		{name: "ldap type without ldap block", code: CodeInvalidRequest, body: `{"name":"x","type":"ldap"}`,
			want: []FieldProblem{{"ldap", "required for sources of type ldap"}}},
		{name: "scim with an ldap block", code: CodeInvalidRequest, body: `{"name":"x","type":"scim","ldap":{"url":"ldap://h","base_dn":"dc=x"}}`,
			want: []FieldProblem{{"ldap", "only for sources of type ldap"}}},
		{name: "missing type", code: CodeInvalidRequest, body: `{"name":"x"}`, want: []FieldProblem{{"type", "must be ldap or scim"}}},
		{name: "the Service's checks, all at once", code: CodeInvalidRequest,
			body: `{"name":"x","type":"ldap","ldap":{"url":"http://h","base_dn":"dc=x","bind_password":"` + bindPassword + `","bind_password_file":"/f","user_filter":"uid=*","preset":"novell","page_size":5000,"interval":"30s"}}`,
			want: []FieldProblem{{"ldap.url", "must be ldap://host[:port] or ldaps://host[:port]"},
				{"ldap.bind_password", "give either a password or a password file, not both"},
				{"ldap.bind_password_file", "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the password as bind_password"},
				{"ldap.user_filter", "must be an LDAP filter in parentheses"}, {"ldap.preset", "must be openldap or ad"},
				{"ldap.page_size", "must be between 1 and 1000 (AD caps pages at 1000)"}, {"ldap.interval", "must be at least one minute"}}},
		{name: "unknown field", code: CodeUnknownField, body: `{"name":"x","type":"ldap","ldap":{"url":"ldap://h","base_dn":"dc=x","bind_pasword":"p"}}`,
			want: []FieldProblem{{"bind_pasword", "unknown field"}}},
		{name: "wrong JSON type", code: CodeInvalidRequest, body: `{"name":"x","type":"scim","deactivate_threshold":"ten percent"}`,
			want: []FieldProblem{{"deactivate_threshold", "must be a number"}}},
	}
	for _, tc := range tests {
		for _, m := range []struct{ method, path string }{
			{"POST", "/api/v1/identity-sources"}, {"PUT", "/api/v1/identity-sources/" + existing.ID},
		} {
			t.Run(tc.name+" "+m.method, func(t *testing.T) {
				w := e.do(req{method: m.method, path: m.path, role: appliance.RoleSuperAdmin, body: strings.NewReader(tc.body)})
				p := wantProblem(t, w, http.StatusBadRequest, tc.code)
				if diff := cmp.Diff(tc.want, p.Errors, cmpopts.SortSlices(func(a, b FieldProblem) bool { return a.Field < b.Field })); diff != "" {
					t.Errorf("problems (-want +got):\n%s", diff)
				}
				if strings.Contains(w.Body.String(), bindPassword) {
					t.Errorf("the problem echoes the password: %s", w.Body)
				}
			})
		}
	}
	var list List[IdentitySourceDTO]
	want(t, e.call("GET", "/api/v1/identity-sources", nil), http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "Corp AD" {
		t.Errorf("bad bodies changed the sources: %+v", list.Items)
	}
	e.noSecretsAnywhere()
}
