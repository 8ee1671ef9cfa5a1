package ldap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"tokend/sync/mirror"
)

// Target is what a sync needs from the appliance, per identity source. The
// appliance Service implements it; tests use an in-memory one.
type Target interface {
	// LocalUsers returns every user of the source, active or not.
	LocalUsers(ctx context.Context, sourceID string) ([]mirror.Local, error)
	// Apply writes the plan (in chunks of at most 100 writes is fine: the
	// records are complete desired states, so a retry converges).
	Apply(ctx context.Context, sourceID string, plan mirror.Plan) error
	// Cookie returns the stored syncrepl cookie, nil when there is none.
	Cookie(ctx context.Context, sourceID string) ([]byte, error)
	// SaveCookie stores the cookie; called only after Apply succeeded.
	SaveCookie(ctx context.Context, sourceID string, cookie []byte) error
}

// RunOptions select the kind of run.
type RunOptions struct {
	Full  bool // a full pass even when a cookie is stored
	Force bool // apply even when the mass-deletion brake refuses
}

// ErrRunning means a run for the same source is already in progress.
var ErrRunning = errors.New("ldap: a sync of this source is already running")

// Modes reported in mirror.Summary.Mode.
const (
	ModeFull        = "full"
	ModeIncremental = "incremental"
)

// Syncer runs LDAP syncs into a Target. It is safe for concurrent use; runs
// of one source are serialised (a second one gets ErrRunning).
type Syncer struct {
	target Target
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	running map[string]bool

	// progress, when set (tests only), sees the count of entries received
	// by a full read, so a test can kill the server mid-stream.
	progress func(received int)
}

// NewSyncer returns a Syncer. now may be nil (time.Now); log may be nil
// (discarded).
func NewSyncer(target Target, log *slog.Logger, now func() time.Time) *Syncer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Syncer{target: target, log: log, now: now, running: map[string]bool{}}
}

// Run performs one sync of the source: read the directory completely, plan,
// check the brake, apply, and only then store the new cookie. On any error
// before Apply nothing is changed. The summary's Error mirrors err.
func (s *Syncer) Run(ctx context.Context, sourceID string, cfg Config, opts RunOptions) (mirror.Summary, error) {
	start := time.Now()
	log := s.log.With("source", sourceID)
	sum, err := s.run(ctx, log, sourceID, cfg, opts)
	sum.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		sum.Error = err.Error()
		log.Error("ldap sync failed", "mode", sum.Mode, "duration_ms", sum.DurationMS, "err", err)
		return sum, err
	}
	log.Info("ldap sync done", "mode", sum.Mode, "added", sum.Added, "updated", sum.Updated,
		"deactivated", sum.Deactivated, "reactivated", sum.Reactivated, "purged", sum.Purged,
		"unchanged", sum.Unchanged, "skipped", sum.Skipped, "duration_ms", sum.DurationMS)
	return sum, nil
}

func (s *Syncer) lock(sourceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[sourceID] {
		return false
	}
	s.running[sourceID] = true
	return true
}

func (s *Syncer) unlock(sourceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, sourceID)
}

func (s *Syncer) run(ctx context.Context, log *slog.Logger, sourceID string, cfg Config, opts RunOptions) (mirror.Summary, error) {
	sum := mirror.Summary{Mode: ModeFull}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	if !s.lock(sourceID) {
		return sum, ErrRunning
	}
	defer s.unlock(sourceID)

	var oldCookie []byte
	incremental := !opts.Full && cfg.incremental()
	if incremental {
		c, err := s.target.Cookie(ctx, sourceID)
		if err != nil {
			return sum, fmt.Errorf("ldap: loading the sync cookie: %w", err)
		}
		oldCookie = c
		incremental = len(c) > 0
	}
	conv := newConverter(cfg.Attributes)
	skipped := 0
	skip := func(dn string, err error) {
		skipped++
		if skipped <= 10 {
			log.Warn("ldap entry skipped", "dn", dn, "reason", err)
		}
	}
	mopts := mirror.Options{Now: s.now(), GracePeriod: cfg.GracePeriod, BrakeThreshold: cfg.BrakeThreshold, Force: opts.Force}

	var plan mirror.Plan
	var newCookie []byte
	var planErr error
	if incremental {
		sum.Mode = ModeIncremental
		ch, c, err := s.readIncremental(ctx, cfg, conv, oldCookie, skip)
		switch {
		case errors.Is(err, errNeedFull):
			log.Info("ldap incremental sync falls back to a full pass", "reason", err)
			incremental, skipped = false, 0
		case err != nil:
			return sum, err
		default:
			local, err := s.target.LocalUsers(ctx, sourceID)
			if err != nil {
				return sum, fmt.Errorf("ldap: loading local users: %w", err)
			}
			newCookie = c
			plan, planErr = mirror.Incremental(local, ch, mopts)
		}
	}
	if !incremental {
		sum.Mode = ModeFull
		remote, c, err := s.readFull(ctx, log, cfg, conv, skip)
		if err != nil {
			return sum, err
		}
		local, err := s.target.LocalUsers(ctx, sourceID)
		if err != nil {
			return sum, fmt.Errorf("ldap: loading local users: %w", err)
		}
		newCookie = c
		plan, planErr = mirror.Full(local, remote, mopts)
	}
	sum.Skipped = skipped
	if planErr != nil {
		return sum, planErr
	}
	if plan.Writes() > 0 {
		if err := s.target.Apply(ctx, sourceID, plan); err != nil {
			// The cookie stays where it was: the next run re-reads these changes.
			return sum, fmt.Errorf("ldap: applying the sync plan: %w", err)
		}
	}
	if len(newCookie) > 0 && !bytes.Equal(newCookie, oldCookie) {
		if err := s.target.SaveCookie(ctx, sourceID, newCookie); err != nil {
			return sum, fmt.Errorf("ldap: saving the sync cookie (changes were applied): %w", err)
		}
	}
	ps := plan.Summary()
	ps.Mode, ps.Skipped = sum.Mode, skipped
	return ps, nil
}

func (s *Syncer) readIncremental(ctx context.Context, cfg Config, conv converter, cookie []byte, skip skipFunc) (mirror.Changes, []byte, error) {
	conn, err := connect(cfg)
	if err != nil {
		return mirror.Changes{}, nil, err
	}
	defer conn.Close()
	return readChanges(ctx, conn, cfg, conv, cookie, skip)
}

// readFull takes a cookie first (when incremental runs are possible), then
// reads every user. The connection is closed before planning.
func (s *Syncer) readFull(ctx context.Context, log *slog.Logger, cfg Config, conv converter, skip skipFunc) ([]mirror.Entry, []byte, error) {
	conn, err := connect(cfg)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	var cookie []byte
	if cfg.incremental() {
		c, err := currentCookie(ctx, conn, cfg)
		if err != nil {
			// No syncprov (or no access to it): full passes still work.
			log.Warn("ldap: no syncrepl cookie; incremental runs will be full passes", "err", err)
		}
		cookie = c
	}
	remote, err := readAll(ctx, conn, cfg, conv, skip, s.progress)
	if err != nil {
		return nil, nil, err
	}
	return remote, cookie, nil
}

// Loop runs the source until ctx ends: a full pass first, then incremental
// runs every IncrementalInterval and a full pass every FullInterval (zero
// intervals take the defaults). report, if not nil, gets every outcome
// (for metrics and alarms); failures are also logged by Run.
func (s *Syncer) Loop(ctx context.Context, sourceID string, cfg Config, report func(mirror.Summary, error)) {
	cfg = cfg.WithDefaults()
	nextFull := time.Time{}
	tick := time.NewTicker(cfg.IncrementalInterval)
	defer tick.Stop()
	for {
		full := !time.Now().Before(nextFull)
		sum, err := s.Run(ctx, sourceID, cfg, RunOptions{Full: full})
		if full && err == nil {
			nextFull = time.Now().Add(cfg.FullInterval)
		}
		if report != nil {
			report(sum, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
