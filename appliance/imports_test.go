package appliance_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/memstore"
	"tokend/appliance/seal"
)

// badRows streams a CSV header and then n malformed rows ("x"), generated
// as they are read so the file itself never sits in memory.
type badRows struct {
	n, sent int
	head    bool
}

func (b *badRows) Read(p []byte) (int, error) {
	i := 0
	if !b.head {
		if len(p) < 7 {
			return 0, io.ErrShortBuffer
		}
		i += copy(p, "serial\n")
		b.head = true
	}
	for ; i+2 <= len(p) && b.sent < b.n; i += 2 {
		p[i], p[i+1] = 'x', '\n'
		b.sent++
	}
	if i == 0 && b.sent == b.n {
		return 0, io.EOF
	}
	return i, nil
}

// procStatusBytes reads a field such as VmRSS or VmHWM of /proc/self/status.
func procStatusBytes(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Skipf("no %s in /proc/self/status", field)
	return 0
}

// peakHeap samples the live heap objects every few milliseconds until stop
// is called, and returns the largest value seen.
func peakHeap() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// TestImportMillionsOfBadRowsStaysBounded streams 33 million malformed rows
// (66 MB, under the 64 MiB default limit) through the import: only the
// first rows of the report and a count are kept, so the process grows by
// far less than 256 MB. Under -race or -short the file has 3 million rows,
// which at 2 bytes a row still held over 200 MB of report lines before the
// fix.
func TestImportMillionsOfBadRowsStaysBounded(t *testing.T) {
	n := 33_000_000
	if raceEnabled || testing.Short() {
		n = 3_000_000
	}
	f := newFixture(t, memstore.New())
	svc := f.svc
	runtime.GC()
	base := procStatusBytes(t, "VmRSS")
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	heapBase := sample[0].Value.Uint64()
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	stop := peakHeap()
	start := time.Now()
	job, err := svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: &badRows{n: n}})
	heapPeak := stop()
	if err != nil {
		t.Fatal(err)
	}
	hwm := procStatusBytes(t, "VmHWM")
	t.Logf("%d rows in %v; heap peak %d MiB over %d MiB; VmRSS before %d MiB, VmHWM after %d MiB (reset: %t)",
		n, time.Since(start).Round(time.Millisecond), (heapPeak-heapBase)>>20, heapBase>>20, base>>20, hwm>>20, hwmReset)

	if job.RejectedTotal != n || len(job.Rejected) != 1000 || job.Imported != 0 || job.Rows != n {
		t.Errorf("job: rejected_total %d, %d rejected lines, imported %d, rows %d; want %d, 1000, 0, %d",
			job.RejectedTotal, len(job.Rejected), job.Imported, job.Rows, n, n)
	}
	if got, want := job.Rejected[999].Row, 1001; got != want {
		t.Errorf("last kept line is row %d, want %d", got, want)
	}
	// 256 MB is the bound at full size; the smaller file gets a quarter,
	// still far above what it needs and far below its report lines.
	bound := int64(256 << 20)
	if n < 33_000_000 {
		bound = 64 << 20
	}
	if growth := int64(heapPeak) - int64(heapBase); growth > bound {
		t.Errorf("live heap grew by %d MiB, want under %d MiB", growth>>20, bound>>20)
	}
	if hwmReset {
		if growth := hwm - base; growth > bound {
			t.Errorf("peak RSS grew by %d MiB, want under %d MiB", growth>>20, bound>>20)
		}
	}
}

// TestImportReportLinesAreBounded checks that one kept line cannot carry an
// unbounded text: a row with five long bad fields has a longer reason.
func TestImportReportLinesAreBounded(t *testing.T) {
	f := newFixture(t, memstore.New())
	long := strings.Repeat("y", 1000)
	row := strings.Join([]string{long, long, long, long, long}, ",")
	job := f.importCSV(t, "serial,kind,digits,interval,expires_at\n"+row+"\n")
	if job.RejectedTotal != 1 || len(job.Rejected) != 1 {
		t.Fatalf("job %+v", job)
	}
	if r := job.Rejected[0].Reason; len(r) > 256 || !strings.HasSuffix(r, "…") || !strings.HasPrefix(r, `serial "yyy`) {
		t.Errorf("reason is %d bytes: %q", len(r), r)
	}
}

// brokenBody returns a prefix of a file and then fails, as a connection
// that drops midway does.
type brokenBody struct {
	r   io.Reader
	err error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, b.err
	}
	return n, err
}

// TestImportBodyCutMidwayImportsNothing: the body is spooled before any row
// is imported, so a body that breaks off after 10,000 rows leaves no token
// and no job behind.
func TestImportBodyCutMidwayImportsNothing(t *testing.T) {
	f := newFixture(t, memstore.New())
	cut := errors.New("connection reset")
	_, err := f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV,
		Body: &brokenBody{r: strings.NewReader(serials(10_000, 300000000000)), err: cut}})
	if !errors.Is(err, appliance.ErrImportBody) || !errors.Is(err, cut) {
		t.Fatalf("err = %v, want ErrImportBody wrapping the read error", err)
	}
	page, _ := f.svc.ListTokens(f.ctx, appliance.TokenQuery{})
	jobs, _ := f.svc.ListImportJobs(f.ctx, 0)
	if page.Total != 0 || len(jobs) != 0 {
		t.Fatalf("%d tokens and %d jobs after a cut body", page.Total, len(jobs))
	}
	// Over the request's limit is a file problem, also before any row.
	_, err = f.svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, MaxSize: 1000,
		Body: strings.NewReader(serials(1000, 300000000000))})
	if !errors.Is(err, appliance.ErrImportFile) {
		t.Fatalf("oversize err = %v", err)
	}
	if page, _ := f.svc.ListTokens(f.ctx, appliance.TokenQuery{}); page.Total != 0 {
		t.Fatalf("%d tokens after an oversize body", page.Total)
	}
}

// TestImportSpoolsIntoSpoolDir: the spool file lives in Config.SpoolDir
// and is gone when the import returns.
func TestImportSpoolsIntoSpoolDir(t *testing.T) {
	dir := t.TempDir()
	sealer, err := seal.New(make([]byte, seal.KeySize), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: memstore.New(), Sealer: sealer, SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := appliance.WithActor(context.Background(), appliance.Actor{ID: "test", Name: "tester", Role: appliance.RoleSuperAdmin})
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	var seen []string
	body := io.MultiReader(strings.NewReader("serial\n123456789012\n"), readerFunc(func([]byte) (int, error) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			info, _ := e.Info()
			seen = append(seen, fmt.Sprintf("%s %v", e.Name(), info.Mode().Perm()))
		}
		return 0, io.EOF
	}))
	if _, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: body}); err != nil {
		t.Fatal(err)
	}
	// Unlinked as soon as it is created: a crash leaves nothing behind.
	if len(seen) != 0 {
		t.Errorf("spool dir during the upload: %v", seen)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool dir after the import holds %d files", len(ents))
	}
	// An unusable spool dir fails the import before anything is written.
	svc2, _ := appliance.New(appliance.Config{Store: memstore.New(), Sealer: sealer, SpoolDir: filepath.Join(dir, "missing")})
	if err := svc2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svc2.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader("serial\n123456789012\n")}); err == nil {
		t.Error("import with a missing spool dir succeeded")
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// newService builds a second Service over store under the same master key,
// as a restarted tokend does.
func newService(t *testing.T, store appliance.Store, key []byte) *appliance.Service {
	t.Helper()
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := appliance.New(appliance.Config{Store: store, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

// dyingStore passes the first `live` Updates to the real store and fails
// every later one, as a process killed midway writes nothing more. The
// failures wait until the live Updates have returned, so that exactly those
// are in (a failure cancels the import, which would abort them).
type dyingStore struct {
	appliance.Store
	live        int64
	calls, done atomic.Int64
	allIn       chan struct{}
}

func newDyingStore(st appliance.Store, live int64) *dyingStore {
	return &dyingStore{Store: st, live: live, allIn: make(chan struct{})}
}

var errKilled = errors.New("killed")

func (d *dyingStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if d.calls.Add(1) > d.live {
		<-d.allIn
		return errKilled
	}
	err := d.Store.Update(ctx, fn)
	if d.done.Add(1) == d.live {
		close(d.allIn)
	}
	return err
}

// stampedTokens counts the stored tokens by import job.
func stampedTokens(t *testing.T, svc *appliance.Service, ctx context.Context) map[string]int {
	t.Helper()
	out := map[string]int{}
	q := appliance.TokenQuery{Limit: 1000}
	for {
		page, err := svc.ListTokens(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range page.Items {
			out[tok.ImportJob]++
		}
		if page.NextCursor == "" {
			return out
		}
		q.Cursor = page.NextCursor
	}
}

// importAudit returns the token.import audit records of job id.
func importAudit(t *testing.T, svc *appliance.Service, ctx context.Context, id string) (chunks, others []appliance.AuditRecord) {
	t.Helper()
	q := appliance.AuditQuery{Action: "token.import", Limit: 1000}
	for {
		page, err := svc.ListAudit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Items {
			switch {
			case r.Target != id:
			case strings.HasPrefix(r.Detail, "chunk "):
				chunks = append(chunks, r)
			default:
				others = append(others, r)
			}
		}
		if page.NextCursor == "" {
			return chunks, others
		}
		q.After = page.NextCursor
	}
}

// TestImportKilledMidwayIsTraceableAndResumes kills an import after k
// chunks (the store stops taking writes, as a killed process does), then
// reopens the bbolt
// file with a new Service: the job is there, interrupted, with progress
// that matches the tokens, which carry its id, and one audit record per
// chunk. Posting the same file again resumes it: the rows it had committed
// count as resumed, not as duplicates, and the rest is imported.
func TestImportKilledMidwayIsTraceableAndResumes(t *testing.T) {
	const rows, k = 5_000, 7
	path := filepath.Join(t.TempDir(), "tokend.db")
	open := func() appliance.Store {
		st, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	file := serials(rows, 400000000000)
	st := open()
	f := newFixture(t, st)
	// Update 1 is Init, 2 writes the running job, 3..k+2 are chunks; the
	// rest fail.
	dying := newDyingStore(st, k+2)
	svc := newService(t, dying, f.key)
	_, err := svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file)})
	if !errors.Is(err, errKilled) {
		t.Fatalf("killed import: err = %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open()
	t.Cleanup(func() { st.Close() })
	svc = newService(t, st, f.key)
	if jobs, err := svc.ListImportJobs(f.ctx, 0); err != nil || len(jobs) != 1 || jobs[0].Status != appliance.JobRunning {
		t.Fatalf("before the restart: jobs %+v, %v; want one running job", jobs, err)
	}
	ids, err := svc.InterruptImports(f.ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("InterruptImports = %v, %v", ids, err)
	}
	old, err := svc.GetImportJob(f.ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	const in = k * 46
	want := appliance.ImportJob{ID: ids[0], Format: "csv", OnDuplicate: "skip", Status: appliance.JobInterrupted,
		Imported: in, Chunks: k, Rows: rows, Actor: "tester", SHA256: old.SHA256, Size: int64(len(file)), Node: appliance.DefaultNodeID}
	if diff := cmp.Diff(want, old, cmpJob); diff != "" {
		t.Errorf("interrupted job (-want +got):\n%s", diff)
	}
	if len(old.SHA256) != 64 || !strings.Contains(old.Error, "resume") {
		t.Errorf("sha256 %q, error %q", old.SHA256, old.Error)
	}
	if got := stampedTokens(t, svc, f.ctx); !cmp.Equal(got, map[string]int{old.ID: in}) {
		t.Errorf("tokens by job after the kill: %v, want %d of job %s", got, in, old.ID)
	}
	chunks, others := importAudit(t, svc, f.ctx, old.ID)
	if len(chunks) != old.Chunks || len(others) != 2 || !strings.HasPrefix(others[0].Detail, "started") || others[1].Reason != "interrupted" {
		t.Errorf("audit of the killed job: %d chunk records, others %+v", len(chunks), others)
	}
	// A second start finds nothing left running.
	if ids, err := svc.InterruptImports(f.ctx); err != nil || len(ids) != 0 {
		t.Errorf("second InterruptImports = %v, %v", ids, err)
	}

	// The dry run of the same file says it would resume and finds no
	// duplicate.
	dry, err := svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, DryRun: true, Body: strings.NewReader(file)})
	if err != nil || dry.ResumedFrom != old.ID || dry.Resumed != in || dry.Imported != rows-in || dry.Skipped != 0 ||
		!strings.Contains(dry.Message, "would resume") {
		t.Fatalf("dry run = %+v, %v", dry, err)
	}

	job, err := svc.ImportTokens(f.ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file)})
	if err != nil {
		t.Fatal(err)
	}
	if job.ResumedFrom != old.ID || job.Resumed != in || job.Imported != rows-in || job.Skipped != 0 ||
		len(job.SkippedRows) != 0 || job.Status != appliance.JobCompleted || !strings.Contains(job.Message, old.ID) {
		t.Errorf("resumed job = %+v", job)
	}
	if got := stampedTokens(t, svc, f.ctx); !cmp.Equal(got, map[string]int{old.ID: in, job.ID: rows - in}) {
		t.Errorf("tokens by job after the resume: %v", got)
	}
	if old, _ = svc.GetImportJob(f.ctx, old.ID); old.ResumedBy != job.ID || old.Status != appliance.JobInterrupted {
		t.Errorf("old job after the resume: status %s, resumed_by %q", old.Status, old.ResumedBy)
	}
	// Once resumed, the file is an ordinary re-post: all duplicates.
	again := f2import(t, svc, f.ctx, file)
	if again.ResumedFrom != "" || again.Skipped != rows || again.Imported != 0 {
		t.Errorf("third post = resumed_from %q, skipped %d, imported %d", again.ResumedFrom, again.Skipped, again.Imported)
	}
}

func f2import(t *testing.T, svc *appliance.Service, ctx context.Context, file string) appliance.ImportJob {
	t.Helper()
	job, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file)})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// cmpJob compares job reports without their clocks, ids of runs and lines.
var cmpJob = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".StartedAt", ".FinishedAt", ".Error", ".Rejected", ".SkippedRows", ".Message", ".Heartbeat":
		return true
	}
	return false
}, cmp.Ignore())

// TestImportCancelledMidwayIsInterrupted cancels the request's context
// after k chunks: the job ends interrupted at once (no restart needed),
// its counts match the tokens stamped with its id, and a re-post resumes
// it, twice over if the resumed import is cancelled too.
func TestImportCancelledMidwayIsInterrupted(t *testing.T) {
	const rows = 3_000
	file := serials(rows, 500000000000)
	st := memstore.New()
	f := newFixture(t, st)
	var ids []string
	for _, k := range []int64{4, 9} {
		ctx, cancel := context.WithCancel(f.ctx)
		// Cancel once Init, the job and k chunks are in.
		svc := newService(t, &cancelAfter{Store: st, n: k + 2, cancel: cancel}, f.key)
		job, err := svc.ImportTokens(ctx, appliance.ImportRequest{Format: appliance.FormatCSV, Body: strings.NewReader(file)})
		cancel()
		if !errors.Is(err, context.Canceled) || job.Status != appliance.JobInterrupted {
			t.Fatalf("cancelled import: %+v, %v", job, err)
		}
		stored, err := f.svc.GetImportJob(f.ctx, job.ID)
		if err != nil || stored.Status != appliance.JobInterrupted || stored.Chunks < int(k) {
			t.Fatalf("stored job %+v, %v", stored, err)
		}
		if got := stampedTokens(t, f.svc, f.ctx)[job.ID]; got != stored.Imported {
			t.Errorf("job %s counts %d imported, %d tokens carry its id", job.ID, stored.Imported, got)
		}
		ids = append(ids, job.ID)
	}
	job := f.importCSV(t, file)
	byJob := stampedTokens(t, f.svc, f.ctx)
	if job.ResumedFrom != ids[1] || job.Resumed != byJob[ids[0]]+byJob[ids[1]] || job.Imported != rows-job.Resumed || job.Skipped != 0 {
		t.Errorf("resumed job = %+v, tokens by job %v", job, byJob)
	}
	if byJob[ids[0]]+byJob[ids[1]]+byJob[job.ID] != rows || len(byJob) != 3 {
		t.Errorf("tokens by job %v, want %d in all", byJob, rows)
	}
}

// cancelAfter cancels a context once its n-th Update has committed.
type cancelAfter struct {
	appliance.Store
	n      int64
	calls  atomic.Int64
	cancel func()
}

func (c *cancelAfter) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	err := c.Store.Update(ctx, fn)
	if c.calls.Add(1) == c.n {
		c.cancel()
	}
	return err
}
