package mirror

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultGracePeriod    = 30 * 24 * time.Hour
	DefaultBrakeThreshold = 0.10
)

// ErrInvalidInput reports inputs no plan can be built from (an empty or
// duplicate external id, an id both changed and deleted, bad options). It
// is wrapped with the detail; nothing should be applied.
var ErrInvalidInput = errors.New("mirror: invalid input")

// Entry is one user as the directory reports it, in the compact form the
// LDAP reader streams into (a few strings per user, so 100k fit in a few MB).
type Entry struct {
	ExternalID  string // the directory's immutable id: entryUUID, objectGUID, SCIM id
	UserName    string
	DisplayName string
	Email       string
	Disabled    bool // the directory says the account is disabled (AD bit 0x2)
}

// Local is a user of one source as the appliance holds it. Only the fields
// sync manages are here.
type Local struct {
	UserID      string // the appliance's own id; empty in Plan.Add
	ExternalID  string
	UserName    string
	DisplayName string
	Email       string
	// Active is false when sync deactivated the user: missing from the
	// directory or disabled there. An inactive user cannot authenticate but
	// keeps its tokens.
	Active bool
	// Disabled records that the directory reported the account disabled;
	// inactive and not Disabled means missing from the directory (see
	// Missing). Only missing users are purged after the grace period.
	Disabled bool
	// DeactivatedAt is when the user became inactive, or for a missing user
	// when it went missing: the grace period counts from here.
	DeactivatedAt time.Time
}

// Missing reports whether the user is inactive because the directory no
// longer has it.
func (l Local) Missing() bool { return !l.Active && !l.Disabled }

// Changes is what an incremental read reports: entries added or modified
// since the last cookie, and the external ids of deleted entries. The two
// must be disjoint (the reader keeps the last state per id).
type Changes struct {
	Upserts []Entry
	Deletes []string
}

// Options tune planning. Zero values take the defaults.
type Options struct {
	Now            time.Time     // required: "now" for DeactivatedAt and grace
	GracePeriod    time.Duration // how long a missing user is kept; default 30 days
	BrakeThreshold float64       // share of active users a run may deactivate; default 0.10
	Force          bool          // apply even when the brake would refuse
}

func (o Options) withDefaults() (Options, error) {
	if o.GracePeriod == 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.BrakeThreshold == 0 {
		o.BrakeThreshold = DefaultBrakeThreshold
	}
	var problems []error
	if o.Now.IsZero() {
		problems = append(problems, errors.New("Now is zero"))
	}
	if o.GracePeriod < 0 {
		problems = append(problems, fmt.Errorf("grace period %v is negative", o.GracePeriod))
	}
	if math.IsNaN(o.BrakeThreshold) || o.BrakeThreshold < 0 {
		problems = append(problems, fmt.Errorf("brake threshold %v is not a share in (0, 1]", o.BrakeThreshold))
	}
	if len(problems) > 0 {
		return o, fmt.Errorf("%w: options: %w", ErrInvalidInput, errors.Join(problems...))
	}
	return o, nil
}

// Plan is what a run changes. Every list holds complete desired records
// (except Purge, which holds the current records to delete), so a target
// writes them as they are; each user appears in at most one list.
type Plan struct {
	Add        []Local // new users (UserID empty); directory-disabled ones start inactive
	Update     []Local // changed fields, or an inactive user's reason/time changed
	Deactivate []Local // active → inactive (missing or disabled); these count for the brake
	Reactivate []Local // inactive → active: back in the directory, or enabled again
	Purge      []Local // missing for longer than the grace period: delete
	Unchanged  int     // local users left as they are
	Active     int     // the source's active users before the run (the brake's base)
}

// Writes is the number of records the plan writes or deletes.
func (p Plan) Writes() int {
	return len(p.Add) + len(p.Update) + len(p.Deactivate) + len(p.Reactivate) + len(p.Purge)
}

// Summary counts the plan. Duration, error and mode are the caller's.
func (p Plan) Summary() Summary {
	return Summary{
		Added:       len(p.Add),
		Updated:     len(p.Update),
		Deactivated: len(p.Deactivate),
		Reactivated: len(p.Reactivate),
		Unchanged:   p.Unchanged,
		Purged:      len(p.Purge),
	}
}

// Summary is the outcome of one run, as reported to admins and logs.
type Summary struct {
	Added       int    `json:"added"`
	Updated     int    `json:"updated"`
	Deactivated int    `json:"deactivated"`
	Reactivated int    `json:"reactivated"`
	Unchanged   int    `json:"unchanged"`
	Purged      int    `json:"purged"`
	Skipped     int    `json:"skipped,omitempty"` // directory entries without a usable id or login
	Mode        string `json:"mode,omitempty"`    // "full" or "incremental"
	DurationMS  int64  `json:"duration_ms"`
	Error       string `json:"error,omitempty"`
}

// BrakeError is the mass-deletion brake: the run would deactivate more than
// Threshold of the Active users. Nothing was applied.
type BrakeError struct {
	WouldDeactivate int
	Active          int
	Threshold       float64
}

func (e *BrakeError) Error() string {
	return fmt.Sprintf("mirror: refusing to deactivate %d of %d active users (%.1f%% > brake threshold %.1f%%); check the directory, or force the run",
		e.WouldDeactivate, e.Active, 100*float64(e.WouldDeactivate)/float64(max(e.Active, 1)), 100*e.Threshold)
}

// Full plans a full pass: remote is the complete set of entries the
// directory returned for the source. Local users absent from remote go
// missing; missing users past the grace period are purged. When the brake
// refuses, the plan is returned with a *BrakeError so the caller can report
// it; it must not be applied.
func Full(local []Local, remote []Entry, opts Options) (Plan, error) {
	opts, idx, active, err := prepare(local, opts)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Active: active}
	seen := make([]bool, len(local))
	added := make(map[string]struct{})
	for _, e := range remote {
		if e.ExternalID == "" {
			return Plan{}, fmt.Errorf("%w: directory entry %q has an empty external id", ErrInvalidInput, e.UserName)
		}
		i, ok := idx[e.ExternalID]
		if !ok {
			if _, dup := added[e.ExternalID]; dup {
				return Plan{}, fmt.Errorf("%w: directory returned external id %q twice", ErrInvalidInput, e.ExternalID)
			}
			added[e.ExternalID] = struct{}{}
			p.Add = append(p.Add, newLocal(e, opts.Now))
			continue
		}
		if seen[i] {
			return Plan{}, fmt.Errorf("%w: directory returned external id %q twice", ErrInvalidInput, e.ExternalID)
		}
		seen[i] = true
		p.present(local[i], e, opts.Now)
	}
	for i, l := range local {
		if !seen[i] {
			p.missing(l, opts, true)
		}
	}
	return p, p.brake(opts)
}

// Incremental plans the changes an incremental read reported. Users not
// mentioned stay as they are; purges wait for a full pass, which is the
// only proof that a user is still missing.
func Incremental(local []Local, ch Changes, opts Options) (Plan, error) {
	opts, idx, active, err := prepare(local, opts)
	if err != nil {
		return Plan{}, err
	}
	deleted := make(map[string]struct{}, len(ch.Deletes))
	for _, id := range ch.Deletes {
		if id == "" {
			return Plan{}, fmt.Errorf("%w: empty external id among deletes", ErrInvalidInput)
		}
		deleted[id] = struct{}{}
	}
	p := Plan{Active: active}
	touched := make(map[string]struct{}, len(ch.Upserts))
	for _, e := range ch.Upserts {
		if e.ExternalID == "" {
			return Plan{}, fmt.Errorf("%w: changed entry %q has an empty external id", ErrInvalidInput, e.UserName)
		}
		if _, dup := touched[e.ExternalID]; dup {
			return Plan{}, fmt.Errorf("%w: external id %q changed twice", ErrInvalidInput, e.ExternalID)
		}
		if _, del := deleted[e.ExternalID]; del {
			return Plan{}, fmt.Errorf("%w: external id %q both changed and deleted", ErrInvalidInput, e.ExternalID)
		}
		touched[e.ExternalID] = struct{}{}
		if i, ok := idx[e.ExternalID]; ok {
			p.present(local[i], e, opts.Now)
		} else {
			p.Add = append(p.Add, newLocal(e, opts.Now))
		}
	}
	for id := range deleted {
		if i, ok := idx[id]; ok { // deletes of unknown ids (groups, other entries) are no-ops
			p.missing(local[i], opts, false)
		}
	}
	p.Unchanged = len(local) - (p.Writes() - len(p.Add))
	return p, p.brake(opts)
}

// index maps external ids to positions and counts active users.
// prepare checks the options and indexes the local users by external id.
func prepare(local []Local, opts Options) (Options, map[string]int, int, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return opts, nil, 0, err
	}
	idx, active, err := index(local)
	return opts, idx, active, err
}

func index(local []Local) (map[string]int, int, error) {
	idx := make(map[string]int, len(local))
	active := 0
	for i, l := range local {
		if l.ExternalID == "" {
			return nil, 0, fmt.Errorf("%w: local user %q has an empty external id", ErrInvalidInput, l.UserID)
		}
		if j, dup := idx[l.ExternalID]; dup {
			return nil, 0, fmt.Errorf("%w: local users %q and %q share external id %q",
				ErrInvalidInput, local[j].UserID, l.UserID, l.ExternalID)
		}
		idx[l.ExternalID] = i
		if l.Active {
			active++
		}
	}
	return idx, active, nil
}

func newLocal(e Entry, now time.Time) Local {
	l := Local{ExternalID: e.ExternalID, UserName: e.UserName, DisplayName: e.DisplayName,
		Email: e.Email, Active: !e.Disabled, Disabled: e.Disabled}
	if e.Disabled {
		l.DeactivatedAt = now
	}
	return l
}

// present handles a local user the directory still has.
func (p *Plan) present(l Local, e Entry, now time.Time) {
	want := l
	want.UserName, want.DisplayName, want.Email, want.Disabled = e.UserName, e.DisplayName, e.Email, e.Disabled
	switch {
	case l.Active && e.Disabled:
		want.Active, want.DeactivatedAt = false, now
		p.Deactivate = append(p.Deactivate, want)
	case !l.Active && !e.Disabled:
		want.Active, want.DeactivatedAt = true, time.Time{}
		p.Reactivate = append(p.Reactivate, want)
	default:
		if !want.Active && want.DeactivatedAt.IsZero() {
			want.DeactivatedAt = now
		}
		if want == l {
			p.Unchanged++
		} else {
			p.Update = append(p.Update, want)
		}
	}
}

// missing handles a local user the directory no longer has.
func (p *Plan) missing(l Local, opts Options, mayPurge bool) {
	want := l
	switch {
	case l.Active:
		want.Active, want.Disabled, want.DeactivatedAt = false, false, opts.Now
		p.Deactivate = append(p.Deactivate, want)
	case l.Disabled || l.DeactivatedAt.IsZero():
		// It was inactive for another reason (disabled), or we do not know
		// since when: the grace period starts now, never retroactively.
		want.Disabled, want.DeactivatedAt = false, opts.Now
		p.Update = append(p.Update, want)
	case mayPurge && opts.Now.Sub(l.DeactivatedAt) >= opts.GracePeriod:
		p.Purge = append(p.Purge, l)
	default:
		p.Unchanged++
	}
}

func (p *Plan) brake(opts Options) error {
	n := len(p.Deactivate)
	if opts.Force || n == 0 || p.Active == 0 {
		return nil
	}
	if float64(n) > opts.BrakeThreshold*float64(p.Active) {
		return &BrakeError{WouldDeactivate: n, Active: p.Active, Threshold: opts.BrakeThreshold}
	}
	return nil
}
