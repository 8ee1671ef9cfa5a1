package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
)

// tlsImport starts the env's server on a real TLS listener on 127.0.0.1
// with the listener timeouts given, and returns a function that posts a
// CSV body, written by write, to the import endpoint.
func tlsImport(t *testing.T, e *env, readTimeout, writeTimeout time.Duration) func(write func(w io.Writer) error) (*http.Response, []byte, error) {
	t.Helper()
	srv := httptest.NewUnstartedServer(e.srv)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = readTimeout, writeTimeout
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return func(write func(w io.Writer) error) (*http.Response, []byte, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(write(pw)) }()
		defer pr.Close()
		r, err := http.NewRequest("POST", srv.URL+"/api/v1/tokens/import?format=csv", pr)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+e.tok[appliance.RoleSuperAdmin])
		r.Header.Set("Content-Type", "text/csv")
		resp, err := srv.Client().Do(r)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
}

func importedNothing(t *testing.T, e *env) {
	t.Helper()
	page, err := e.svc.ListTokens(context.Background(), appliance.TokenQuery{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := e.svc.ListImportJobs(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 || len(jobs) != 0 {
		t.Errorf("%d tokens and %d import jobs after a cut upload, want none", page.Total, len(jobs))
	}
}

// TestImportStalledUploadIsCutAndImportsNothing sends 100 rows at once and
// then a row every 200 ms, far under the (scaled-down) minimum rate: the
// server stops waiting after the grace plus what the bytes so far allow,
// answers 400, and nothing is imported, since the body is spooled first.
func TestImportStalledUploadIsCutAndImportsNothing(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ImportMinRate, o.ImportGrace = 64<<10, 300*time.Millisecond })
	post := tlsImport(t, e, 30*time.Second, 60*time.Second)
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	resp, body, err := post(func(w io.Writer) error {
		if _, err := io.WriteString(w, "serial\n"); err != nil {
			return err
		}
		for i := range 100 {
			if _, err := fmt.Fprintf(w, "%012d\n", 600000000000+i); err != nil {
				return err
			}
		}
		for i := 100; ; i++ {
			select {
			case <-stop:
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(w, "%012d\n", 600000000000+i); err != nil {
				return err
			}
		}
	})
	took := time.Since(start)
	t.Logf("cut after %v", took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != http.StatusBadRequest || p.Code != CodeInvalidRequest ||
		!strings.Contains(p.Detail, "nothing was imported") {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	// 0.3 s of grace plus 1.3 kB at 64 KiB/s: well under the 30 s of the
	// listener, with a wide margin for a loaded machine.
	if took > 10*time.Second {
		t.Errorf("the stalled upload was cut after %v", took)
	}
	importedNothing(t, e)
}

// TestImportSteadyUploadOutlivesListenerTimeouts sends 3,000 rows in 3 kB
// pieces every 80 ms (about 37 kB/s, above the 16 KiB/s minimum) for about
// a second, more than three times the listener's read and write timeouts:
// the upload is paced instead, and the answer still goes out.
func TestImportSteadyUploadOutlivesListenerTimeouts(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ImportMinRate, o.ImportGrace = 16<<10, 300*time.Millisecond })
	post := tlsImport(t, e, 300*time.Millisecond, 300*time.Millisecond)
	const rows = 3000
	var file strings.Builder
	file.WriteString("serial\n")
	for i := range rows {
		fmt.Fprintf(&file, "%012d\n", 610000000000+i)
	}
	data := file.String()
	start := time.Now()
	resp, body, err := post(func(w io.Writer) error {
		for len(data) > 0 {
			n := min(3000, len(data))
			if _, err := io.WriteString(w, data[:n]); err != nil {
				return err
			}
			data = data[n:]
			time.Sleep(80 * time.Millisecond)
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("after %v: %v", took, err)
	}
	var job ImportJobDTO
	if err := json.Unmarshal(body, &job); err != nil || resp.StatusCode != http.StatusCreated || job.Imported != rows {
		t.Fatalf("after %v: answer %d %s", took, resp.StatusCode, body)
	}
	if took < 600*time.Millisecond {
		t.Errorf("the upload took %v, not longer than the listener timeouts: the test proves nothing", took)
	}
}
