package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/seal"
)

// killAfter passes the first live Updates to the store and fails the rest,
// as a tokend killed midway writes nothing more. The failures wait until
// the live Updates have returned, so that exactly those are in.
type killAfter struct {
	appliance.Store
	live        int64
	calls, done atomic.Int64
	allIn       chan struct{}
}

func newKillAfter(st appliance.Store, live int64) *killAfter {
	return &killAfter{Store: st, live: live, allIn: make(chan struct{})}
}

var errKilled = errors.New("killed")

func (k *killAfter) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if k.calls.Add(1) > k.live {
		<-k.allIn
		return errKilled
	}
	err := k.Store.Update(ctx, fn)
	if k.done.Add(1) == k.live {
		close(k.allIn)
	}
	return err
}

// TestInterruptedImportEndToEnd: an import killed after a few chunks
// leaves a running job in the data dir; the next tokend start marks it
// interrupted (visible in GET /import-jobs, with its tokens stamped), and
// posting the same file over HTTPS resumes it.
func TestInterruptedImportEndToEnd(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	const rows = 2000
	var file strings.Builder
	file.WriteString("serial\n")
	for i := range rows {
		fmt.Fprintf(&file, "%012d\n", 700100000000+i)
	}

	// The killed import, on the store of the stopped tokend.
	key, err := readMasterKey(filepath.Join(dir, "master.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The job and three chunks get in; everything after fails.
	svc, err := appliance.New(appliance.Config{Store: newKillAfter(st, 4), Sealer: sealer, SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "ops", Name: "ops"})
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file.String())}); !errors.Is(err, errKilled) {
		t.Fatalf("killed import: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	in = startTokend(t, dir)
	var jobs struct {
		Items []struct {
			ID       string `json:"job_id"`
			Status   string `json:"status"`
			Imported int    `json:"imported"`
			Chunks   int    `json:"chunks"`
			Rows     int    `json:"rows"`
			SHA256   string `json:"sha256"`
		} `json:"items"`
	}
	in.call(t, "GET", "/api/v1/import-jobs", "", nil, http.StatusOK, &jobs)
	if len(jobs.Items) != 1 || jobs.Items[0].Status != "interrupted" || jobs.Items[0].Rows != rows ||
		jobs.Items[0].Chunks != 3 || jobs.Items[0].Imported != 3*46 {
		t.Fatalf("jobs after the restart: %+v", jobs.Items)
	}
	old := jobs.Items[0]
	if !strings.Contains(in.logs.String(), old.ID) {
		t.Errorf("the start did not log the interrupted job %s", old.ID)
	}
	var job struct {
		ID          string `json:"job_id"`
		Status      string `json:"status"`
		Imported    int    `json:"imported"`
		Skipped     int    `json:"skipped"`
		Resumed     int    `json:"resumed"`
		ResumedFrom string `json:"resumed_from"`
		Message     string `json:"message"`
	}
	in.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader(file.String()), http.StatusCreated, &job)
	if job.Status != "completed" || job.ResumedFrom != old.ID || job.Resumed != old.Imported || job.Imported != rows-old.Imported ||
		job.Skipped != 0 || job.Message == "" {
		t.Fatalf("re-post: %+v (interrupted job imported %d)", job, old.Imported)
	}
	var page struct {
		Total int `json:"total"`
	}
	in.call(t, "GET", "/api/v1/tokens?limit=1", "", nil, http.StatusOK, &page)
	if page.Total != rows {
		t.Errorf("%d tokens after the resume, want %d", page.Total, rows)
	}
}
