package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"tokend/appliance"
	"tokend/appliance/metrics"
	"tokend/sync/ldap"
	"tokend/sync/mirror"
)

// syncRunner runs identity-source syncs: on demand from the admin API and
// on each LDAP source's schedule, and the grace-period purge of SCIM
// sources. Every run is recorded (runs list, metrics, audit).
type syncRunner struct {
	svc    *appliance.Service
	syncer *ldap.Syncer
	m      *metrics.Metrics
	log    *slog.Logger
	now    func() time.Time
	// isRunner says whether this node runs scheduled syncs and purges
	// (runner.go); nil means always. SyncNow runs on any node.
	isRunner func() bool

	mu       sync.Mutex
	lastFull map[string]time.Time // per source, this process's last full pass
	lastRun  map[string]time.Time
}

func newSyncRunner(svc *appliance.Service, m *metrics.Metrics, log *slog.Logger, now func() time.Time) *syncRunner {
	return &syncRunner{svc: svc, syncer: ldap.NewSyncer(ldap.ServiceTarget{Dir: svc}, log, now), m: m, log: log, now: now,
		lastFull: map[string]time.Time{}, lastRun: map[string]time.Time{}}
}

// brakeError carries the mass-deactivation brake to the admin API, which
// answers 409 sync_brake with its detail.
type brakeError struct{ *mirror.BrakeError }

func (e brakeError) BrakeDetail() string {
	return fmt.Sprintf("this run would deactivate %d of %d active users (over the %.0f%% threshold); nothing was applied; "+
		"repeat with ?force=true to apply it", e.WouldDeactivate, e.Active, e.Threshold*100)
}

func (e brakeError) Unwrap() error { return e.BrakeError }

// SyncNow runs a full sync of an LDAP source (the admin API's "sync now").
func (r *syncRunner) SyncNow(ctx context.Context, sourceID string, force bool) (appliance.SyncRun, error) {
	return r.run(ctx, sourceID, ldap.RunOptions{Full: true, Force: force})
}

func (r *syncRunner) run(ctx context.Context, sourceID string, opts ldap.RunOptions) (appliance.SyncRun, error) {
	src, err := r.svc.GetIdentitySource(ctx, sourceID)
	if err != nil {
		return appliance.SyncRun{}, err
	}
	if src.Type != appliance.SourceTypeLDAP {
		return appliance.SyncRun{}, fmt.Errorf("source %s is pushed over SCIM, not pulled: %w", sourceID, appliance.ErrInvalidState)
	}
	pw, err := r.svc.LDAPBindPassword(ctx, sourceID)
	if err != nil {
		return appliance.SyncRun{}, err
	}
	start := r.now()
	cfg := ldap.ConfigFromSource(src, pw)
	cfg.CredentialsDir = r.svc.CredentialsDir()
	sum, err := r.syncer.Run(ctx, sourceID, cfg, opts)
	if errors.Is(err, ldap.ErrRunning) {
		return appliance.SyncRun{}, fmt.Errorf("%w: %w", appliance.ErrConflict, err)
	}
	run := appliance.SyncRun{SourceID: sourceID, Mode: sum.Mode, StartedAt: start, FinishedAt: r.now(), Added: sum.Added,
		Updated: sum.Updated, Deactivated: sum.Deactivated, Reactivated: sum.Reactivated, Unchanged: sum.Unchanged,
		Purged: sum.Purged, DurationMS: sum.DurationMS, Error: sum.Error}
	rec, rerr := r.svc.RecordSyncRun(ctx, run)
	if rerr != nil {
		r.log.Error("recording a sync run", "source", sourceID, "err", rerr)
		rec = run
	}
	r.m.SyncRun(appliance.SourceTypeLDAP, sourceID, err == nil, time.Duration(sum.DurationMS)*time.Millisecond,
		map[string]int{"added": sum.Added, "updated": sum.Updated, "deactivated": sum.Deactivated, "reactivated": sum.Reactivated, "purged": sum.Purged})
	var brake *mirror.BrakeError
	var bind *ldap.BindError
	r.m.DirectoryReachable(sourceID, err == nil || errors.As(err, &brake) || errors.As(err, &bind))
	r.mu.Lock()
	r.lastRun[sourceID] = start
	if err == nil && sum.Mode == ldap.ModeFull {
		r.lastFull[sourceID] = start
	}
	r.mu.Unlock()
	if errors.As(err, &brake) {
		r.log.Warn("sync refused by the mass-deactivation brake", "source", sourceID, "would_deactivate", brake.WouldDeactivate, "active", brake.Active)
		return rec, brakeError{brake}
	}
	if err != nil {
		r.log.Error("sync failed; nothing applied", "source", sourceID, "err", err)
	}
	return rec, err
}

// loop runs due syncs every tick until ctx ends.
func (r *syncRunner) loop(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPurge := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.isRunner != nil && !r.isRunner() {
			continue
		}
		srcs, err := r.svc.ListIdentitySources(ctx)
		if err != nil {
			r.log.Error("listing identity sources", "err", err)
			continue
		}
		now := r.now()
		purge := now.Sub(lastPurge) >= time.Hour
		for _, src := range srcs {
			switch src.Type {
			case appliance.SourceTypeLDAP:
				r.recall(ctx, src)
				if full, due := r.due(src, now); due {
					_, _ = r.run(ctx, src.ID, ldap.RunOptions{Full: full})
				}
			case appliance.SourceTypeSCIM:
				if purge {
					if n, err := r.svc.PurgeExpiredUsers(ctx, src.ID, now); err != nil {
						r.log.Error("purging removed SCIM users", "source", src.ID, "err", err)
					} else if n > 0 {
						r.log.Info("purged SCIM users past their grace period", "source", src.ID, "users", n)
					}
				}
			}
		}
		if purge {
			lastPurge = now
		}
	}
}

// recall brings the schedule up to date with the runs the store holds, so
// a node that just became the runner (or just started) does not start with
// a full pass another node made minutes ago: the last run from the
// source's record, and once per source the last successful full pass from
// its stored runs.
func (r *syncRunner) recall(ctx context.Context, src appliance.IdentitySource) {
	r.mu.Lock()
	_, known := r.lastFull[src.ID]
	r.mu.Unlock()
	var lastFull time.Time
	if !known {
		runs, err := r.svc.ListSyncRuns(ctx, src.ID, 100)
		if err != nil {
			r.log.Error("reading a source's sync runs", "source", src.ID, "err", err)
			return
		}
		for _, run := range runs {
			if run.Mode == ldap.ModeFull && run.Error == "" && run.StartedAt.After(lastFull) {
				lastFull = run.StartedAt
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if lr := src.LastRun; lr != nil {
		if lr.StartedAt.After(r.lastRun[src.ID]) {
			r.lastRun[src.ID] = lr.StartedAt
		}
		if lr.Mode == ldap.ModeFull && lr.Error == "" && lr.StartedAt.After(lastFull) {
			lastFull = lr.StartedAt
		}
	}
	if !known || lastFull.After(r.lastFull[src.ID]) {
		r.lastFull[src.ID] = lastFull // an entry, even zero: the runs are read once
	}
}

// due says whether a source's incremental (or full) sync is due.
func (r *syncRunner) due(src appliance.IdentitySource, now time.Time) (full, due bool) {
	cfg := ldap.ConfigFromSource(src, "").WithDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	lastFull, lastRun := r.lastFull[src.ID], r.lastRun[src.ID]
	if lastFull.IsZero() || now.Sub(lastFull) >= cfg.FullInterval {
		return true, lastRun.IsZero() || now.Sub(lastRun) >= cfg.IncrementalInterval
	}
	return false, now.Sub(lastRun) >= cfg.IncrementalInterval
}
