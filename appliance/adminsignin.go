package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// AdminSignInPolicy bounds console sign-ins. Zero fields take defaults.
type AdminSignInPolicy struct {
	// MaxFailures is the number of consecutive refused sign-ins that lock
	// an admin account (5).
	MaxFailures int
	// LockoutDuration is how long a lockout lasts (30m); negative: until
	// another superadmin or the command line unlocks the account
	// (UnlockAdmin). The same rules as AuthPolicy's for users.
	LockoutDuration time.Duration
	// ArgonSlots is how many admin-password checks (argon2id, 64 MiB each)
	// may run at once; PIN hashing (19 MiB) shares the same memory budget.
	// Zero means DefaultArgonSlots().
	ArgonSlots int
	// ArgonWait is how long a check waits for a slot before ErrBusy
	// (DefaultArgonWait).
	ArgonWait time.Duration
	// Recorder counts sign-in outcomes; nil counts nothing.
	Recorder AdminSignInRecorder
}

// AdminSignInRecorder counts console sign-in outcomes. outcome is
// OutcomeSuccess or OutcomeFailure; reason is one of a few fixed words
// (ok, unknown_admin, bad_password, bad_passcode, passcode_required,
// locked, disabled, busy, and the console's own rate_limited_*), never a name.
type AdminSignInRecorder interface {
	AdminSignIn(outcome, reason string)
}

// adminFailureAuditEvery bounds the audit records of refused sign-ins to
// one per account per this interval (the lockout is audited besides).
const adminFailureAuditEvery = time.Minute

// adminSignIn is the Service's sign-in policy and its counters of refusals
// that are not audited, reported in a log line at most once per interval.
type adminSignIn struct {
	policy AdminSignInPolicy

	mu        sync.Mutex
	loggedAt  time.Time
	unaudited map[string]int
}

func newAdminSignIn(p AdminSignInPolicy) adminSignIn {
	if p.MaxFailures <= 0 {
		p.MaxFailures = 5
	}
	if p.LockoutDuration == 0 {
		p.LockoutDuration = 30 * time.Minute
	}
	return adminSignIn{policy: p, unaudited: map[string]int{}}
}

func (a *adminSignIn) count(outcome, reason string) {
	if a.policy.Recorder != nil {
		a.policy.Recorder.AdminSignIn(outcome, reason)
	}
}

func (a *adminSignIn) succeeded() { a.count(OutcomeSuccess, ReasonOK) }

// refused counts a refusal; one that left no audit record is also tallied
// into a warning logged at most once per adminFailureAuditEvery, so a flood
// of anonymous guesses is visible without growing the audit chain or the
// log without bound. Names and passwords are never logged.
func (a *adminSignIn) refused(log *slog.Logger, now time.Time, reason string, audited bool) {
	a.count(OutcomeFailure, reason)
	if audited {
		return
	}
	a.mu.Lock()
	a.unaudited[reason]++
	if !a.loggedAt.IsZero() && now.Sub(a.loggedAt) < adminFailureAuditEvery && !now.Before(a.loggedAt) {
		a.mu.Unlock()
		return
	}
	attrs := make([]any, 0, 2*len(a.unaudited))
	for r, n := range a.unaudited {
		attrs = append(attrs, slog.Int(r, n))
	}
	clear(a.unaudited)
	a.loggedAt = now
	a.mu.Unlock()
	log.Warn("console sign-ins refused (counted, not audited one by one)", slog.Group("refusals", attrs...))
}

// AdminSignInThrottled counts a sign-in a door refused before asking the
// Service (its own rate limits; reason is one of its fixed words, such as
// the console's rate_limited_client and rate_limited_account, never a
// name): the same metric and once-a-minute warning as the Service's own
// refusals that are not audited one by one.
func (s *Service) AdminSignInThrottled(reason string) {
	s.signIn.refused(s.log, s.now(), reason, false)
}

// refuseAdmin records a refused sign-in of an existing account: the
// failure counts toward the lockout, the refusal is audited at most once
// per account per minute and the lockout once when it starts. Attempts on
// a locked account neither count nor extend the lockout (as for users).
// It always returns ErrUnauthenticated.
func (s *Service) refuseAdmin(ctx context.Context, acc *AdminAccount, reason string, now time.Time) error {
	pol := s.signIn.policy
	actor := Actor{ID: "admin:" + acc.ID, Name: acc.Name, Role: acc.Role}
	var audited bool
	err := s.store.Update(ctx, func(tx Tx) error {
		audited = false
		a, err := getAdmin(tx, acc.Name)
		if err != nil {
			return err
		}
		if a.ID != acc.ID {
			return errAdminChanged
		}
		changed, lockedNow := false, false
		// A disabled account is refused anyway: counting would leave it
		// locked when it is enabled again.
		if !a.Locked(now) && reason != adminReasonDisabled {
			a.Failures++
			changed = true
			if a.Failures >= pol.MaxFailures {
				a.LockedUntil, lockedNow = lockEnd(now, pol.LockoutDuration), true
			}
		}
		if a.FailureAuditedAt.IsZero() || now.Sub(a.FailureAuditedAt) >= adminFailureAuditEvery || now.Before(a.FailureAuditedAt) {
			a.FailureAuditedAt, changed, audited = now, true, true
			ev := AuditEvent{Action: "admin.login", Target: a.Name, Outcome: OutcomeFailure, Reason: reason,
				Detail: fmt.Sprintf("%d consecutive failures", a.Failures)}
			if err := appendAudit(tx, now, actor, ev); err != nil {
				return err
			}
		}
		if lockedNow {
			until := "until unlocked"
			if pol.LockoutDuration > 0 {
				until = "until " + a.LockedUntil.UTC().Format(time.RFC3339)
			}
			ev := AuditEvent{Action: "admin.lockout", Target: a.Name, Outcome: OutcomeSuccess, Reason: "max_failures",
				Detail: fmt.Sprintf("locked after %d consecutive failures, %s", a.Failures, until)}
			if err := appendAudit(tx, now, Actor{ID: "console", Name: "console"}, ev); err != nil {
				return err
			}
		}
		if !changed {
			return nil // a locked account within the minute: nothing to write
		}
		return putJSON(tx, adminKey(a.Name), a)
	})
	if err != nil {
		audited = false
		if ctx.Err() == nil && !isAdminGone(err) {
			s.log.Error("recording a refused console sign-in failed", "err", err)
		}
	}
	s.signIn.refused(s.log, now, reason, audited)
	return ErrUnauthenticated
}

func isAdminGone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, errAdminChanged)
}

// UnlockAdmin clears an admin account's failure counter and lockout. It
// is for another superadmin (the admin API) or the command line: an admin
// cannot unlock their own account.
func (s *Service) UnlockAdmin(ctx context.Context, name string) (AdminAccount, error) {
	actor := ActorFrom(ctx)
	var out AdminAccount
	err := s.change(ctx, AuditEvent{Action: "admin.unlock", Target: name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		if actor.ID == "admin:"+a.ID {
			return fmt.Errorf("admin %q cannot unlock their own account: %w", a.Name, ErrInvalidState)
		}
		a.Failures, a.LockedUntil, a.FailureAuditedAt, a.UpdatedAt = 0, time.Time{}, time.Time{}, now
		out = *a
		return putJSON(tx, adminKey(a.Name), a)
	})
	return out, err
}
