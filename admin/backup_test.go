package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
)

// TestBackup streams a copy through the route, as a super admin, with the
// backup function main wires from the store.
func TestBackup(t *testing.T) {
	store := []byte("bolt\x00\x01\x02 a consistent copy of the store\xff")
	tests := []struct {
		name    string
		backup  func(w io.Writer) (int64, error)
		status  int
		code    string // problem code, when status is not 200
		outcome string // audit outcome, "" for no record
	}{
		{name: "streams the copy", status: http.StatusOK, outcome: appliance.OutcomeSuccess,
			backup: func(w io.Writer) (int64, error) {
				// Two writes: the copy is streamed, not buffered.
				n1, err := w.Write(store[:10])
				if err != nil {
					return int64(n1), err
				}
				n2, err := w.Write(store[10:])
				return int64(n1 + n2), err
			}},
		{name: "no backup function", status: http.StatusNotImplemented, code: CodeNotSupported},
		{name: "fails before the first byte", status: http.StatusInternalServerError, code: CodeInternal, outcome: appliance.OutcomeFailure,
			backup: func(io.Writer) (int64, error) { return 0, errors.New("store closed") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Backup = tc.backup })
			w := e.do(req{method: "GET", path: "/api/v1/backup", role: appliance.RoleSuperAdmin})
			if tc.status == http.StatusOK {
				want(t, w, http.StatusOK, nil)
				if diff := cmp.Diff(store, w.Body.Bytes()); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				h := w.Header()
				if h.Get("Content-Type") != "application/octet-stream" || h.Get("Cache-Control") != "no-store" ||
					h.Get("Content-Disposition") != `attachment; filename=tokend-20260102T030405Z.db` {
					t.Errorf("headers %v", h)
				}
			} else {
				wantProblem(t, w, tc.status, tc.code)
				if cd := w.Header().Get("Content-Disposition"); cd != "" {
					t.Errorf("a problem sent as an attachment: %q", cd)
				}
			}
			var audit AuditPageDTO
			want(t, e.do(req{method: "GET", path: "/api/v1/audit?action=store.backup", role: appliance.RoleAuditor}), http.StatusOK, &audit)
			var got []string
			for _, r := range audit.Items {
				got = append(got, r.Actor.Name+" "+r.Outcome)
			}
			var wantAudit []string
			if tc.outcome != "" {
				wantAudit = []string{"test-superadmin " + tc.outcome}
			}
			if diff := cmp.Diff(wantAudit, got); diff != "" {
				t.Errorf("audit of store.backup (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBackupFailsMidStream checks over a real connection that a copy that
// fails part-way reaches the client as a broken transfer, never as a
// complete-looking short file.
func TestBackupFailsMidStream(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Backup = func(w io.Writer) (int64, error) {
			n, _ := w.Write([]byte(strings.Repeat("x", 4096)))
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			return int64(n), errors.New("disk read error")
		}
	})
	srv := httptest.NewServer(e.srv)
	t.Cleanup(srv.Close)
	r, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/v1/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+e.tok[appliance.RoleSuperAdmin])
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a failed backup read as a complete file")
	}
	if logs := e.logs.String(); !strings.Contains(logs, "disk read error") {
		t.Errorf("the failure is not logged:\n%s", logs)
	}
	var audit AuditPageDTO
	want(t, e.do(req{method: "GET", path: "/api/v1/audit?action=store.backup", role: appliance.RoleAuditor}), http.StatusOK, &audit)
	if len(audit.Items) != 1 || audit.Items[0].Outcome != appliance.OutcomeFailure {
		t.Errorf("audit of the failed backup %+v", audit.Items)
	}
}
