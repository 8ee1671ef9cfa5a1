package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"tokend/admin/console"
	"tokend/appliance"
	"tokend/appliance/appliancetest"
)

// failAfter passes the first live Updates and fails the rest, once the live
// ones have returned, as a tokend killed midway writes nothing more.
type failAfter struct {
	appliance.Store
	live        int64
	calls, done atomic.Int64
	allIn       chan struct{}
}

func (k *failAfter) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if k.calls.Add(1) > k.live {
		<-k.allIn
		return errors.New("killed")
	}
	err := k.Store.Update(ctx, fn)
	if k.done.Add(1) == k.live {
		close(k.allIn)
	}
	return err
}

// TestImportPageResumesInterruptedFile: the console imports through the
// same Service path, so uploading the file of an interrupted import
// previews and applies a resume, and says so.
func TestImportPageResumesInterruptedFile(t *testing.T) {
	f := newFixture(t, console.Options{})
	var file strings.Builder
	file.WriteString("serial\n")
	for i := range 500 {
		fmt.Fprintf(&file, "%012d\n", 210000000000+i)
	}
	// An import killed after its job and two chunks, on the
	// console's own store.
	// CSV rows carry no seed, so another master key does no harm here.
	sealer, _ := appliancetest.Sealer(t)
	dying, err := appliance.New(appliance.Config{Store: &failAfter{Store: f.svc.Store(), live: 3, allIn: make(chan struct{})}, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dying.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file.String())})
	if err == nil {
		t.Fatal("the killed import succeeded")
	}
	ids, err := f.svc.InterruptImports(f.ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("InterruptImports = %v, %v", ids, err)
	}

	// How many rows the two chunks held depends on the chunk's write budget
	// (audit and counter records share it): take it from the job.
	job, err := f.svc.GetImportJob(f.ctx, ids[0])
	if err != nil || job.Imported == 0 {
		t.Fatalf("interrupted job = %+v, %v", job, err)
	}
	resumed := job.Imported
	imported := 500 - resumed

	b := f.browser(t)
	b.signIn("help", helpPW)
	b.get("/console/tokens/import")
	var buf strings.Builder
	const boundary = "XbOuNdArY"
	for _, kv := range [][2]string{{"csrf", b.csrf}, {"format", "csv"}, {"on_duplicate", "skip"}} {
		fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, kv[0], kv[1])
	}
	fmt.Fprintf(&buf, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\nContent-Type: text/csv\r\n\r\n%s\r\n--%s--\r\n", boundary, file.String(), boundary)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/console/tokens/import", strings.NewReader(buf.String()))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	p := b.do(req)
	if p.status != http.StatusOK || !contains(p, fmt.Sprintf(`<dd id="imported">%d</dd>`, imported)) || !contains(p, fmt.Sprintf(`<dd id="resumed">%d</dd>`, resumed)) ||
		!contains(p, "would resume the interrupted import "+ids[0]) {
		t.Fatalf("preview: %s", p)
	}
	p = b.post("/console/tokens/import/apply", nil)
	if p.status != http.StatusOK || !contains(p, fmt.Sprintf(`<dd id="imported">%d</dd>`, imported)) || !contains(p, fmt.Sprintf(`<dd id="resumed">%d</dd>`, resumed)) ||
		!contains(p, "resumes the interrupted import "+ids[0]) {
		t.Fatalf("apply: %s", p)
	}
}
