package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"tokend/appliance/tokenfile"
)

// Import formats and duplicate policies.
const (
	FormatCSV  = "csv"
	FormatPSKC = "pskc"
	// FormatRSA is RSA's token record XML (<TKNBatch>, also the .sdtid
	// file); FormatSDTID is accepted as its alias.
	FormatRSA   = "rsa"
	FormatSDTID = "sdtid"

	OnDuplicateSkip      = "skip"
	OnDuplicateOverwrite = "overwrite"
)

// Import job states. A job is written as running before its first token,
// so a token file that stops midway (a crash, a store failure, a cancelled
// request) always leaves a job that names its tokens.
const (
	JobRunning   = "running"
	JobCompleted = "completed"
	// JobInterrupted: the import stopped before its last row (the request
	// was cancelled, a commit failed, or tokend stopped and found the job
	// still running at its next start). Posting the same file again
	// resumes it.
	JobInterrupted = "interrupted"
	// JobFailed is the state an older tokend gave an import whose body
	// broke off midway; bodies are now spooled first, so that cannot
	// happen after a job is written.
	JobFailed = "failed"
)

// maxReportRows bounds the per-row lines kept in a stored import report.
const maxReportRows = 1000

// maxReportText bounds the text of one kept line, so 1,000 lines stay small
// whatever a file holds.
const maxReportText = 256

// DefaultMaxImportSize bounds an import body when the request sets no
// limit (ImportRequest.MaxSize).
const DefaultMaxImportSize = 64 << 20

// importChunk is how many tokens one transaction writes: two keys each,
// plus the inventory counter, the job's progress and its audit record
// (three), stays under MaxTxWrites.
const importChunk = 46

// importWorkers commit chunks concurrently so that group commit can put
// several chunks behind one fsync.
const importWorkers = 16

// maxResumeChain bounds how many earlier interrupted jobs of one file a
// resumed import looks back through.
const maxResumeChain = 64

// DefaultTokenLifetime is the expiry given to imported tokens whose file
// names none.
const DefaultTokenLifetime = 5 * 365 * 24 * time.Hour

// ErrImportFile wraps a problem that rejects a whole import file (bad
// header, malformed document, wrong PSKC key or MAC).
var ErrImportFile = errors.New("import file rejected")

// ErrImportBody wraps a failure to receive the import body (the client
// stopped sending, a read deadline passed, the connection broke). The body
// is received in full before any row is imported, so nothing was written.
var ErrImportBody = errors.New("import body not received in full; nothing was imported")

// ImportRequest is one token file to import.
type ImportRequest struct {
	Format       string
	DryRun       bool
	OnDuplicate  string
	Kind         string // overrides the file's token kind when set
	Body         io.Reader
	PSKCKey      []byte
	PSKCPassword Secret
	// FilePassword opens a password-protected RSA token file.
	FilePassword Secret
	// MaxSize bounds Body in bytes; 0 means DefaultMaxImportSize.
	MaxSize int64
}

// RowReport is one line of an import report.
type RowReport struct {
	Row    int    `json:"row"`
	Serial string `json:"serial,omitempty"`
	Reason string `json:"reason"`
}

// ImportJob is the report of one import. While the job runs, the stored
// record carries counts only; the per-row lines are added when it ends.
type ImportJob struct {
	ID            string      `json:"id"`
	Format        string      `json:"format"`
	DryRun        bool        `json:"dry_run"`
	OnDuplicate   string      `json:"on_duplicate"`
	Status        string      `json:"status"` // running | completed | interrupted | failed
	Imported      int         `json:"imported"`
	Overwritten   int         `json:"overwritten"`
	Skipped       int         `json:"skipped"`
	Rejected      []RowReport `json:"rejected"`
	RejectedTotal int         `json:"rejected_total"`
	SkippedRows   []RowReport `json:"skipped_rows"`
	Error         string      `json:"error,omitempty"`
	Actor         string      `json:"actor"`
	StartedAt     time.Time   `json:"started_at"`
	FinishedAt    time.Time   `json:"finished_at"`
	// SHA256 (hex) and Size identify the file; Rows is how many rows it
	// has (records and rejected rows).
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Rows   int    `json:"rows,omitempty"`
	// Chunks is how many chunks of tokens are committed so far.
	Chunks int `json:"chunks,omitempty"`
	// ResumedFrom is the interrupted job of the same file this one
	// resumes; Resumed counts the rows that job (or the jobs it resumed)
	// had already imported, which are neither imported again nor
	// reported as duplicates. ResumedBy is set on the interrupted job.
	ResumedFrom string `json:"resumed_from,omitempty"`
	Resumed     int    `json:"resumed,omitempty"`
	ResumedBy   string `json:"resumed_by,omitempty"`
	Message     string `json:"message,omitempty"`
	// Node is the node running the job; Heartbeat is refreshed by each
	// chunk it commits. A running job whose heartbeat is older than
	// JobStale is taken to be dead (its node was killed) and is marked
	// interrupted by any node (InterruptImports, InterruptStaleJobs).
	Node      string    `json:"node,omitempty"`
	Heartbeat time.Time `json:"heartbeat,omitzero"`
}

// JobStale is how long a running import or an applying rollout may go
// without a write from its node before another node takes it to be dead.
// Chunks commit in milliseconds; the margin covers a slow store.
const JobStale = 2 * time.Minute

// Which running jobs a sweep marks interrupted.
type jobSweep int

const (
	// sweepAll: every one. Only this process has the store (bbolt's lock).
	sweepAll jobSweep = iota
	// sweepStart: a node's start on a shared store: its own leftovers
	// (it runs nothing yet), jobs of no recorded node (written by an
	// older, single-node tokend) and other nodes' stale ones.
	sweepStart
	// sweepStale: only those whose heartbeat is older than JobStale (a
	// periodic sweep runs beside this node's live jobs).
	sweepStale
)

// staleJob reports whether the sweep marks a running job of node, last
// alive at beat.
func (s *Service) staleJob(mode jobSweep, node string, beat, now time.Time) bool {
	switch {
	case mode == sweepAll:
		return true
	case mode == sweepStart && (node == "" || node == s.node):
		return true
	}
	return now.Sub(beat) > JobStale
}

// reportRows keeps the first maxReportRows lines and counts them all, so a
// file of millions of bad rows costs a fixed amount of memory.
type reportRows struct {
	rows  []RowReport
	total int
}

func (r *reportRows) add(row RowReport) {
	r.total++
	if len(r.rows) < maxReportRows {
		row.Reason = clip(row.Reason, maxReportText)
		row.Serial = clip(row.Serial, maxReportText)
		r.rows = append(r.rows, row)
	}
}

// clip shortens s to at most n bytes on a UTF-8 boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

type pendingToken struct {
	row int
	tok Token
}

// chunkIn is one chunk of decoded tokens and how many rows the decoder had
// rejected by then (progress for the job record).
type chunkIn struct {
	toks     []pendingToken
	rejected int
}

// chunkResult is what one chunk's transaction decided, row by row.
type chunkResult struct {
	imported, overwritten, resumed int
	skipped                        []RowReport
}

// importRun is what every chunk of one import shares.
type importRun struct {
	req   ImportRequest
	id    string
	actor Actor
	// prior holds the interrupted jobs this import resumes: a stored token
	// stamped with one of them is counted as resumed, not as a duplicate.
	prior map[string]bool
}

// ImportTokens imports a token file. Imported tokens start disabled and
// unassigned and carry the job's id (Token.ImportJob). A duplicate serial
// is skipped and reported, or with OnDuplicateOverwrite replaces the stored
// token if it is unassigned. A malformed row is reported and never
// half-imported; a problem with the whole file (ErrImportFile) imports
// nothing. A dry run reports the same and writes no token.
//
// The body is first copied to a spool file (Config.SpoolDir, removed at
// once) and hashed, up to req.MaxSize; a body that stops short imports
// nothing (ErrImportBody). The file is then checked whole, and only then is
// the job written (running, with the file's SHA-256, row count and actor),
// followed by the tokens in chunks, each chunk committing with the job's
// progress and an audit record. If the file's SHA-256 matches an
// interrupted job, the import resumes it: rows that job committed count as
// resumed, and the report says so (ResumedFrom, Message).
func (s *Service) ImportTokens(ctx context.Context, req ImportRequest) (ImportJob, error) {
	v := &ValidationError{}
	if req.Format == FormatSDTID {
		req.Format = FormatRSA
	}
	if req.Format != FormatCSV && req.Format != FormatPSKC && req.Format != FormatRSA {
		v.Add("format", "must be csv, pskc or rsa (alias sdtid)")
	}
	if req.OnDuplicate == "" {
		req.OnDuplicate = OnDuplicateSkip
	}
	if req.OnDuplicate != OnDuplicateSkip && req.OnDuplicate != OnDuplicateOverwrite {
		v.Add("on_duplicate", "must be skip or overwrite")
	}
	if req.Kind != "" && req.Kind != KindSoftware && req.Kind != KindHardware {
		v.Add("kind", "must be software or hardware")
	}
	if err := v.Err(); err != nil {
		return ImportJob{}, err
	}
	if req.MaxSize <= 0 {
		req.MaxSize = DefaultMaxImportSize
	}
	f, sum, size, err := s.spool(req.Body, req.MaxSize)
	if err != nil {
		return ImportJob{}, err
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name()) // already gone where unlinking an open file works
	}()
	decode := func(sink tokenfile.Sink) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		switch req.Format {
		case FormatCSV:
			return tokenfile.DecodeCSV(f, sink)
		case FormatRSA:
			return tokenfile.StreamSDTID(f, tokenfile.SDTIDOptions{Password: req.FilePassword.Reveal(), Kind: req.Kind}, sink)
		}
		return tokenfile.StreamPSKC(f, tokenfile.PSKCOptions{Key: req.PSKCKey, Password: req.PSKCPassword.Reveal(), Kind: req.Kind}, sink)
	}

	// First pass: the whole file is checked (header, PSKC key and every
	// MAC) and its rows counted before anything is written.
	rows := 0
	if err := decode(tokenfile.Sink{
		Record: func(r tokenfile.Record) error { r.Seed.Zero(); rows++; return nil },
		Reject: func(tokenfile.Rejection) error { rows++; return nil },
	}); err != nil {
		if isFileError(err) {
			return ImportJob{}, fmt.Errorf("%w: %w", ErrImportFile, err)
		}
		return ImportJob{}, fmt.Errorf("reading the spooled import: %w", err)
	}

	start := s.now().UTC()
	// Time first so ids sort by start; a random suffix so imports started
	// at the same instant never share a report.
	suffix, err := s.newID()
	if err != nil {
		return ImportJob{}, err
	}
	run := &importRun{req: req, id: fmt.Sprintf("%016x-%s", start.UnixNano(), suffix), actor: ActorFrom(ctx)}
	job := ImportJob{ID: run.id, Format: req.Format, DryRun: req.DryRun, OnDuplicate: req.OnDuplicate, Status: JobRunning,
		Rejected: []RowReport{}, SkippedRows: []RowReport{}, Actor: run.actor.Name, StartedAt: start,
		SHA256: sum, Size: size, Rows: rows, Node: s.node, Heartbeat: start}
	if job, run.prior, err = s.startImport(ctx, job); err != nil {
		return ImportJob{}, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan chunkIn)
	results := make(chan chunkResult)
	var werr error
	var werrOnce sync.Once
	var wg sync.WaitGroup
	for range importWorkers {
		wg.Go(func() {
			for c := range chunks {
				res, err := s.importChunk(ctx, c, run)
				if err != nil {
					werrOnce.Do(func() { werr = err; cancel() })
					continue
				}
				results <- res
			}
		})
	}
	var skipped reportRows
	var counts chunkResult
	done := make(chan struct{})
	go func() {
		for r := range results {
			counts.imported += r.imported
			counts.overwritten += r.overwritten
			counts.resumed += r.resumed
			for _, sk := range r.skipped {
				skipped.add(sk)
			}
		}
		close(done)
	}()

	var chunk []pendingToken
	var rejected reportRows
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case chunks <- chunkIn{toks: chunk, rejected: rejected.total}:
		case <-ctx.Done():
			return ctx.Err()
		}
		chunk = nil
		return nil
	}
	derr := decode(tokenfile.Sink{
		Record: func(r tokenfile.Record) error {
			t, err := s.importedToken(r, req, start)
			r.Seed.Zero()
			if err != nil {
				return err
			}
			t.ImportJob = run.id
			chunk = append(chunk, pendingToken{row: r.Row, tok: t})
			if len(chunk) == importChunk {
				return send()
			}
			return nil
		},
		Reject: func(r tokenfile.Rejection) error {
			rejected.add(RowReport{Row: r.Row, Reason: r.Reason})
			return nil
		},
	})
	if derr == nil {
		derr = send()
	}
	close(chunks)
	wg.Wait()
	close(results)
	<-done
	cause := errors.Join(werr, derr)

	job.Rejected, job.RejectedTotal = nonNil(rejected.rows), rejected.total
	job.SkippedRows = nonNil(skipped.rows)
	job.FinishedAt = s.now().UTC()
	if req.DryRun {
		return s.finishDryRun(ctx, job, counts, skipped.total, cause)
	}
	return s.finishImport(ctx, job, cause)
}

func nonNil(rows []RowReport) []RowReport {
	if rows == nil {
		return []RowReport{}
	}
	return rows
}

// spool copies body to an unlinked temporary file, hashing it, and leaves
// the file at its start. A body over max is ErrImportFile (ErrTooLarge); a
// body that stops short is ErrImportBody, wrapping what the reader said
// (an *http.MaxBytesError stays visible to errors.As).
func (s *Service) spool(body io.Reader, max int64) (*os.File, string, int64, error) {
	if body == nil {
		body = strings.NewReader("")
	}
	f, err := os.CreateTemp(s.spoolDir, "tokend-import-*") // mode 0600
	if err != nil {
		return nil, "", 0, fmt.Errorf("spooling the import: %w", err)
	}
	// Unlinked at once where the system allows it, so a crash leaves no
	// copy of the file behind; ImportTokens removes it otherwise.
	_ = os.Remove(f.Name())
	fail := func(err error) (*os.File, string, int64, error) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, max+1))
	switch {
	case err != nil:
		return fail(fmt.Errorf("%w: after %d bytes: %w", ErrImportBody, n, err))
	case n > max:
		return fail(fmt.Errorf("%w: %w: the file is over %d bytes", ErrImportFile, tokenfile.ErrTooLarge, max))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(fmt.Errorf("spooling the import: %w", err))
	}
	return f, hex.EncodeToString(h.Sum(nil)), n, nil
}

// startImport writes the running job and its audit record before the first
// token, claiming the interrupted job of the same file if there is one. A
// dry run writes nothing and only looks the interrupted job up.
func (s *Service) startImport(ctx context.Context, job ImportJob) (ImportJob, map[string]bool, error) {
	var out ImportJob
	var prior map[string]bool
	fn := func(tx Tx) error {
		out, prior = job, nil
		old, chain, err := resumable(tx, job.SHA256, job.Format)
		if err != nil {
			return err
		}
		if old != nil {
			prior = chain
			out.ResumedFrom = old.ID
			verb := "resumes"
			if job.DryRun {
				verb = "would resume"
			}
			out.Message = fmt.Sprintf("this import %s the interrupted import %s of the same file: rows it imported are counted as resumed, not as duplicates", verb, old.ID)
		}
		if job.DryRun {
			return nil
		}
		if old != nil {
			old.ResumedBy = job.ID
			if err := putJSON(tx, jobKey(old.ID), old); err != nil {
				return err
			}
			if err := tx.Delete(resumeKey(job.SHA256)); err != nil {
				return err
			}
		}
		if err := putJSON(tx, jobKey(out.ID), out); err != nil {
			return err
		}
		detail := fmt.Sprintf("started format=%s rows=%d size=%d sha256=%s", out.Format, out.Rows, out.Size, out.SHA256)
		if old != nil {
			detail += " resumes=" + old.ID
		}
		return appendAudit(tx, out.StartedAt, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: out.ID,
			Outcome: OutcomeSuccess, Detail: detail})
	}
	var err error
	if job.DryRun {
		err = s.store.View(ctx, fn)
	} else {
		err = s.store.Update(ctx, fn)
	}
	return out, prior, err
}

// resumable finds the interrupted, unclaimed job of the file with this
// SHA-256 and format, and the set of job ids whose tokens it (and the jobs
// it resumed) committed.
func resumable(tx Tx, sum, format string) (*ImportJob, map[string]bool, error) {
	id, err := tx.Get(resumeKey(sum))
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var old ImportJob
	if err := getJSON(tx, jobKey(string(id)), &old); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	if old.Status != JobInterrupted || old.ResumedBy != "" || old.Format != format || old.SHA256 != sum {
		return nil, nil, nil
	}
	chain := map[string]bool{old.ID: true}
	for prev := old.ResumedFrom; prev != "" && len(chain) < maxResumeChain && !chain[prev]; {
		chain[prev] = true
		var j ImportJob
		if err := getJSON(tx, jobKey(prev), &j); err != nil {
			if errors.Is(err, ErrNotFound) {
				break
			}
			return nil, nil, err
		}
		prev = j.ResumedFrom
	}
	return &old, chain, nil
}

// finishImport records how the import ended. The stored counts are the
// ones the chunks committed, so they match the tokens whatever happened.
func (s *Service) finishImport(ctx context.Context, job ImportJob, cause error) (ImportJob, error) {
	status, outcome, reason := JobCompleted, OutcomeSuccess, ""
	if cause != nil {
		status, outcome, reason = JobInterrupted, OutcomeFailure, "interrupted"
	}
	var out ImportJob
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		if err := getJSON(tx, jobKey(job.ID), &out); err != nil {
			return err
		}
		out.Status, out.FinishedAt = status, job.FinishedAt
		out.Rejected, out.RejectedTotal, out.SkippedRows = job.Rejected, job.RejectedTotal, job.SkippedRows
		if cause != nil {
			out.Error = fmt.Sprintf("the import stopped after %d of %d rows; post the same file again to resume it", out.Imported+out.Overwritten+out.Resumed+out.Skipped, out.Rows)
			if err := tx.Put(resumeKey(out.SHA256), []byte(out.ID)); err != nil {
				return err
			}
		}
		if err := putJSON(tx, jobKey(out.ID), out); err != nil {
			return err
		}
		return appendAudit(tx, out.FinishedAt, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: out.ID,
			Outcome: outcome, Reason: reason, Detail: importDetail(out)})
	})
	if err != nil {
		// The job stays running in the store; the next start marks it
		// interrupted (InterruptImports).
		cause = errors.Join(cause, err)
		job.Status = JobInterrupted
		out = job
	}
	if cause != nil {
		return out, fmt.Errorf("import %s interrupted after %d tokens: %w", out.ID, out.Imported+out.Overwritten, cause)
	}
	return out, nil
}

// finishDryRun stores the report of a dry run, which wrote no token.
func (s *Service) finishDryRun(ctx context.Context, job ImportJob, counts chunkResult, skipped int, cause error) (ImportJob, error) {
	job.Imported, job.Overwritten, job.Resumed, job.Skipped = counts.imported, counts.overwritten, counts.resumed, skipped
	if cause != nil {
		return ImportJob{}, fmt.Errorf("dry run of import %s: %w", job.ID, cause)
	}
	job.Status = JobCompleted
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := putJSON(tx, jobKey(job.ID), job); err != nil {
			return err
		}
		return appendAudit(tx, job.FinishedAt, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: job.ID,
			Outcome: OutcomeSuccess, Detail: importDetail(job)})
	})
	return job, err
}

func importDetail(j ImportJob) string {
	d := fmt.Sprintf("format=%s dry_run=%t imported=%d overwritten=%d skipped=%d rejected=%d",
		j.Format, j.DryRun, j.Imported, j.Overwritten, j.Skipped, j.RejectedTotal)
	if j.ResumedFrom != "" {
		d += fmt.Sprintf(" resumed=%d resumed_from=%s", j.Resumed, j.ResumedFrom)
	}
	return d
}

// InterruptImports marks the import jobs a previous run of tokend left
// running as interrupted, with an audit record each, so that their tokens
// are traceable and posting the same file again resumes them. Call it once
// at start, before serving, on a store no other node uses (bbolt); on a
// shared one call InterruptLeftoverJobs. It returns the ids it marked.
func (s *Service) InterruptImports(ctx context.Context) ([]string, error) {
	return s.interruptImports(ctx, sweepAll)
}

// interruptImports marks the running jobs staleJob picks.
func (s *Service) interruptImports(ctx context.Context, mode jobSweep) ([]string, error) {
	var ids []string
	now := s.now().UTC()
	err := s.store.View(ctx, func(tx Tx) error {
		ids = ids[:0]
		kvs, err := tx.Scan([]byte(pfxJob), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var j struct {
				ID        string    `json:"id"`
				Status    string    `json:"status"`
				Node      string    `json:"node"`
				Heartbeat time.Time `json:"heartbeat"`
				StartedAt time.Time `json:"started_at"`
			}
			if err := decodeRecord(tx, kv.Value, &j); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			if j.Status == JobRunning && s.staleJob(mode, j.Node, jobBeat(j.Heartbeat, j.StartedAt), now) {
				ids = append(ids, j.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	const perTx = 20 // four writes each
	var marked []string
	for b := 0; b < len(ids); b += perTx {
		batch := ids[b:min(b+perTx, len(ids))]
		var done []string
		err := s.store.Update(ctx, func(tx Tx) error {
			done = done[:0]
			for _, id := range batch {
				var j ImportJob
				if err := getJSON(tx, jobKey(id), &j); err != nil {
					return err
				}
				// Re-checked: the job may have committed a chunk since.
				if j.Status != JobRunning || !s.staleJob(mode, j.Node, jobBeat(j.Heartbeat, j.StartedAt), now) {
					continue
				}
				j.Status, j.FinishedAt = JobInterrupted, now
				j.Error = fmt.Sprintf("tokend stopped during the import, after %d of %d rows; post the same file again to resume it",
					j.Imported+j.Overwritten+j.Resumed+j.Skipped, j.Rows)
				if err := putJSON(tx, jobKey(id), j); err != nil {
					return err
				}
				if j.SHA256 != "" {
					if err := tx.Put(resumeKey(j.SHA256), []byte(id)); err != nil {
						return err
					}
				}
				if err := appendAudit(tx, now, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: id,
					Outcome: OutcomeFailure, Reason: "interrupted", Detail: importDetail(j)}); err != nil {
					return err
				}
				done = append(done, id)
			}
			return nil
		})
		if err != nil {
			return marked, err
		}
		marked = append(marked, done...)
	}
	return marked, nil
}

// jobBeat is when a job was last known alive: its heartbeat, or its start
// for a job written before heartbeats.
func jobBeat(beat, started time.Time) time.Time {
	if beat.IsZero() {
		return started
	}
	return beat
}

func isFileError(err error) bool {
	for _, e := range []error{tokenfile.ErrHeader, tokenfile.ErrMalformed, tokenfile.ErrTooLarge, tokenfile.ErrDTD,
		tokenfile.ErrNeedKey, tokenfile.ErrWrongKey, tokenfile.ErrMACMismatch, tokenfile.ErrMACMissing, tokenfile.ErrUnsupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// importedToken turns a decoded row into a token, sealing its seed.
func (s *Service) importedToken(r tokenfile.Record, req ImportRequest, now time.Time) (Token, error) {
	t := Token{Serial: r.Serial, Kind: r.Kind, Algorithm: r.Algorithm, Hash: r.Hash, Digits: r.Digits,
		Interval: r.Interval, Counter: r.Counter, ExpiresAt: r.ExpiresAt.UTC(), PINMode: r.PINMode, State: StateDisabled,
		ManagedBy: ManagedLocal, CreatedAt: now, UpdatedAt: now}
	if req.Kind != "" {
		t.Kind = req.Kind
	}
	// An RSA token that needs a PIN arrives without one (RSA files carry
	// none): its holder sets one at first use, as after a CT-KIP issue.
	t.NewPINRequired = t.PINMode != "" && t.PINMode != PINModeNone
	if t.Algorithm == "" {
		t.Algorithm = AlgSecurID
	}
	if t.ExpiresAt.IsZero() {
		t.ExpiresAt = now.Add(DefaultTokenLifetime).Truncate(24 * time.Hour)
	}
	if len(r.Seed) > 0 && !req.DryRun {
		sealed, err := s.sealer.Seal(r.Seed, seedAAD(r.Serial))
		if err != nil {
			return Token{}, err
		}
		t.Seed, t.Provisioned, t.ProvisionedAt = sealed, true, now
	} else if len(r.Seed) > 0 {
		t.Provisioned = true
	}
	return t, nil
}

// importChunk writes (or, for a dry run, checks) one chunk of tokens, and
// in the same transaction the job's progress and an audit record, so the
// job always accounts for exactly the tokens that are in.
func (s *Service) importChunk(ctx context.Context, in chunkIn, run *importRun) (chunkResult, error) {
	req := run.req
	now := s.now().UTC()
	var res chunkResult
	chunkFn := func(tx Tx) error {
		res = chunkResult{}
		factors, err := importFactors(tx, req.OnDuplicate, run.actor)
		if err != nil {
			return err
		}
		for i := range in.toks {
			p := &in.toks[i]
			old, err := getToken(tx, p.tok.Serial)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if old != nil {
				switch {
				case run.prior[old.ImportJob]:
					// Committed by the interrupted job this one resumes.
					res.resumed++
					continue
				case req.OnDuplicate != OnDuplicateOverwrite:
					res.skipped = append(res.skipped, RowReport{Row: p.row, Serial: p.tok.Serial, Reason: "duplicate serial: already in the inventory"})
					continue
				case old.UserID != "":
					res.skipped = append(res.skipped, RowReport{Row: p.row, Serial: p.tok.Serial, Reason: "duplicate serial: assigned tokens are never overwritten"})
					continue
				case factors[old.Serial] != nil:
					res.skipped = append(res.skipped, RowReport{Row: p.row, Serial: p.tok.Serial, Reason: "duplicate serial: an admin's second factor is overwritten by a superadmin only"})
					continue
				}
				res.overwritten++
			} else {
				res.imported++
			}
			if req.DryRun {
				continue
			}
			t := p.tok
			if err := putToken(tx, &t, old); err != nil {
				return err
			}
		}
		if req.DryRun {
			return nil
		}
		var j ImportJob
		if err := getJSON(tx, jobKey(run.id), &j); err != nil {
			return err
		}
		if j.Status != JobRunning {
			return fmt.Errorf("import job %s is %s: %w", run.id, j.Status, ErrInvalidState)
		}
		j.Imported += res.imported
		j.Overwritten += res.overwritten
		j.Resumed += res.resumed
		j.Skipped += len(res.skipped)
		j.RejectedTotal = max(j.RejectedTotal, in.rejected)
		j.Chunks++
		j.Heartbeat = now
		if err := putJSON(tx, jobKey(run.id), j); err != nil {
			return err
		}
		return appendAudit(tx, now, run.actor, AuditEvent{Action: "token.import", Target: run.id, Outcome: OutcomeSuccess,
			Detail: fmt.Sprintf("chunk %d rows %d-%d imported=%d overwritten=%d skipped=%d resumed=%d", j.Chunks,
				in.toks[0].row, in.toks[len(in.toks)-1].row, res.imported, res.overwritten, len(res.skipped), res.resumed)})
	}
	// Counter changes are buffered so a chunk writes them once.
	fn := func(tx Tx) error { return withCounts(tx, chunkFn) }
	var err error
	if req.DryRun {
		err = s.store.View(ctx, fn)
	} else {
		err = s.store.Update(ctx, fn)
	}
	return res, err
}

// GetImportJob returns one import report.
func (s *Service) GetImportJob(ctx context.Context, id string) (ImportJob, error) {
	var out ImportJob
	err := s.store.View(ctx, func(tx Tx) error {
		if err := getJSON(tx, jobKey(id), &out); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("import job %q: %w", id, ErrNotFound)
			}
			return err
		}
		return nil
	})
	return out, err
}

// ListImportJobs returns import reports, newest first, without their
// per-row lines.
func (s *Service) ListImportJobs(ctx context.Context, limit int) ([]ImportJob, error) {
	limit = clampLimit(limit)
	var out []ImportJob
	err := s.store.View(ctx, func(tx Tx) error {
		kvs, err := tx.Scan([]byte(pfxJob), nil, 0)
		if err != nil {
			return err
		}
		out = make([]ImportJob, 0, min(limit, len(kvs)))
		for i := len(kvs) - 1; i >= 0 && len(out) < limit; i-- {
			var j ImportJob
			if err := decodeRecord(tx, kvs[i].Value, &j); err != nil {
				return fmt.Errorf("decode %q: %w", kvs[i].Key, err)
			}
			j.Rejected, j.SkippedRows = nil, nil
			out = append(out, j)
		}
		return nil
	})
	return out, err
}
