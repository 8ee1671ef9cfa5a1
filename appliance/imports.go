package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"tokend/appliance/tokenfile"
)

// Import formats and duplicate policies.
const (
	FormatCSV  = "csv"
	FormatPSKC = "pskc"

	OnDuplicateSkip      = "skip"
	OnDuplicateOverwrite = "overwrite"
)

// maxReportRows bounds the per-row lines kept in a stored import report.
const maxReportRows = 1000

// importChunk is how many tokens one transaction writes (two keys each,
// leaving room under MaxTxWrites).
const importChunk = 48

// importWorkers commit chunks concurrently so that group commit can put
// several chunks behind one fsync.
const importWorkers = 16

// DefaultTokenLifetime is the expiry given to imported tokens whose file
// names none.
const DefaultTokenLifetime = 5 * 365 * 24 * time.Hour

// ErrImportFile wraps a problem that rejects a whole import file (bad
// header, malformed document, wrong PSKC key or MAC).
var ErrImportFile = errors.New("import file rejected")

// ImportRequest is one token file to import.
type ImportRequest struct {
	Format       string
	DryRun       bool
	OnDuplicate  string
	Kind         string // overrides the file's token kind when set
	Body         io.Reader
	PSKCKey      []byte
	PSKCPassword string
}

// RowReport is one line of an import report.
type RowReport struct {
	Row    int    `json:"row"`
	Serial string `json:"serial,omitempty"`
	Reason string `json:"reason"`
}

// ImportJob is the report of one import.
type ImportJob struct {
	ID            string      `json:"id"`
	Format        string      `json:"format"`
	DryRun        bool        `json:"dry_run"`
	OnDuplicate   string      `json:"on_duplicate"`
	Status        string      `json:"status"` // completed | failed
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
}

func (j *ImportJob) reject(r RowReport) {
	j.RejectedTotal++
	if len(j.Rejected) < maxReportRows {
		j.Rejected = append(j.Rejected, r)
	}
}

func (j *ImportJob) skip(r RowReport) {
	j.Skipped++
	if len(j.SkippedRows) < maxReportRows {
		j.SkippedRows = append(j.SkippedRows, r)
	}
}

type pendingToken struct {
	row int
	tok Token
}

// chunkResult is what one chunk's transaction decided, row by row.
type chunkResult struct {
	imported, overwritten int
	skipped               []RowReport
}

// ImportTokens imports a token file. Imported tokens start disabled and
// unassigned. A duplicate serial is skipped and reported, or with
// OnDuplicateOverwrite replaces the stored token if it is unassigned. A
// malformed row is reported and never half-imported; a problem with the
// whole file (ErrImportFile) imports nothing. A dry run reports the same
// and writes no token.
func (s *Service) ImportTokens(ctx context.Context, req ImportRequest) (ImportJob, error) {
	v := &ValidationError{}
	if req.Format != FormatCSV && req.Format != FormatPSKC {
		v.Add("format", "must be csv or pskc")
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
	start := s.now().UTC()
	// Time first so ids sort by start; a random suffix so imports started
	// at the same instant never share a report.
	suffix, err := s.newID()
	if err != nil {
		return ImportJob{}, err
	}
	id := fmt.Sprintf("%016x-%s", start.UnixNano(), suffix)
	job := ImportJob{ID: id, Format: req.Format, DryRun: req.DryRun, OnDuplicate: req.OnDuplicate, Status: "completed",
		Rejected: []RowReport{}, SkippedRows: []RowReport{}, Actor: ActorFrom(ctx).Name, StartedAt: start}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []pendingToken)
	results := make(chan chunkResult)
	var werr error
	var werrOnce sync.Once
	var wg sync.WaitGroup
	for range importWorkers {
		wg.Go(func() {
			for c := range chunks {
				res, err := s.importChunk(ctx, c, req, start)
				if err != nil {
					werrOnce.Do(func() { werr = err; cancel() })
					continue
				}
				results <- res
			}
		})
	}
	done := make(chan struct{})
	go func() {
		for r := range results {
			job.Imported += r.imported
			job.Overwritten += r.overwritten
			for _, sk := range r.skipped {
				job.skip(sk)
			}
		}
		close(done)
	}()

	var chunk []pendingToken
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case chunks <- chunk:
		case <-ctx.Done():
			return ctx.Err()
		}
		chunk = nil
		return nil
	}
	var rejects []RowReport
	sink := tokenfile.Sink{
		Record: func(r tokenfile.Record) error {
			t, err := s.importedToken(r, req, start)
			r.Seed.Zero()
			if err != nil {
				return err
			}
			chunk = append(chunk, pendingToken{row: r.Row, tok: t})
			if len(chunk) == importChunk {
				return send()
			}
			return nil
		},
		Reject: func(r tokenfile.Rejection) error {
			rejects = append(rejects, RowReport{Row: r.Row, Reason: r.Reason})
			return nil
		},
	}
	var derr error
	switch req.Format {
	case FormatCSV:
		derr = tokenfile.DecodeCSV(req.Body, sink)
	case FormatPSKC:
		derr = tokenfile.DecodePSKC(req.Body, tokenfile.PSKCOptions{Key: req.PSKCKey, Password: req.PSKCPassword, Kind: req.Kind}, sink)
	}
	if derr == nil {
		derr = send()
	}
	close(chunks)
	wg.Wait()
	close(results)
	<-done
	for _, r := range rejects {
		job.reject(r)
	}
	if derr != nil && isFileError(derr) && job.Imported+job.Overwritten == 0 {
		return ImportJob{}, fmt.Errorf("%w: %w", ErrImportFile, derr)
	}
	job.FinishedAt = s.now().UTC()
	if cause := errors.Join(werr, derr); cause != nil {
		// The body broke off (or a commit failed) after some chunks were
		// written: keep a failed report of what is in, so nothing is
		// imported silently.
		job.Status, job.Error = "failed", "import interrupted; the counts show what was imported before it stopped"
		if errors.Is(cause, ErrImportFile) || isFileError(cause) {
			job.Error = cause.Error()
		}
		if err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
			if err := putJSON(tx, jobKey(job.ID), job); err != nil {
				return err
			}
			return appendAudit(tx, job.FinishedAt, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: job.ID,
				Outcome: OutcomeFailure, Reason: "interrupted", Detail: fmt.Sprintf("imported=%d", job.Imported+job.Overwritten)})
		}); err != nil {
			s.log.Error("recording a failed import", "job", job.ID, "err", err)
		}
		return job, fmt.Errorf("import %s interrupted after %d tokens: %w", job.ID, job.Imported+job.Overwritten, cause)
	}
	detail := fmt.Sprintf("format=%s dry_run=%t imported=%d overwritten=%d skipped=%d rejected=%d",
		job.Format, job.DryRun, job.Imported, job.Overwritten, job.Skipped, job.RejectedTotal)
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := putJSON(tx, jobKey(job.ID), job); err != nil {
			return err
		}
		return appendAudit(tx, job.FinishedAt, ActorFrom(ctx), AuditEvent{Action: "token.import", Target: job.ID,
			Outcome: OutcomeSuccess, Detail: detail})
	})
	return job, err
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
		Interval: r.Interval, Counter: r.Counter, ExpiresAt: r.ExpiresAt.UTC(), State: StateDisabled,
		ManagedBy: ManagedLocal, CreatedAt: now, UpdatedAt: now}
	if req.Kind != "" {
		t.Kind = req.Kind
	}
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

// importChunk writes (or, for a dry run, checks) one chunk of tokens.
func (s *Service) importChunk(ctx context.Context, chunk []pendingToken, req ImportRequest, now time.Time) (chunkResult, error) {
	var res chunkResult
	var fn func(tx Tx) error
	chunkFn := func(tx Tx) error {
		res = chunkResult{}
		for i := range chunk {
			p := &chunk[i]
			old, err := getToken(tx, p.tok.Serial)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if old != nil {
				switch {
				case req.OnDuplicate != OnDuplicateOverwrite:
					res.skipped = append(res.skipped, RowReport{Row: p.row, Serial: p.tok.Serial, Reason: "duplicate serial: already in the inventory"})
					continue
				case old.UserID != "":
					res.skipped = append(res.skipped, RowReport{Row: p.row, Serial: p.tok.Serial, Reason: "duplicate serial: assigned tokens are never overwritten"})
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
		return nil
	}
	// Counter changes are buffered so a chunk writes them once.
	fn = func(tx Tx) error { return withCounts(tx, chunkFn) }
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
