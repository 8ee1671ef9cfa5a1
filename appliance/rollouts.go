package appliance

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// A rollout gives every user of a group a token of one profile. Planning
// is a dry run stored as a journal: the rollout record and one item per
// user saying which token they would get, or why they are skipped. Apply
// walks the items in chunks; each user's assignment and distribution are
// written in the same transaction as their item's new state, so an apply
// that stops (a crash, a restart, a second apply) never assigns a user
// twice and resumes from its cursor.
//
//	ro/<id>                 Rollout
//	roi/<id>/<seq %06d>     RolloutItem ("roi/" does not start with "ro/")

// Rollout states.
const (
	RolloutPlanning    = "planning"    // items being written; never applied
	RolloutPlanned     = "planned"     // the dry run is complete
	RolloutScheduled   = "scheduled"   // applied before its schedule: starts then
	RolloutApplying    = "applying"    // an apply holds it
	RolloutInterrupted = "interrupted" // apply stopped before the end; apply again resumes
	RolloutCompleted   = "completed"
	RolloutAbandoned   = "abandoned" // tokend stopped while planning: plan again
	RolloutCancelled   = "cancelled" // an admin discarded it before it completed
)

// Rollout item statuses: the plan's verdict, then the apply's outcome.
const (
	ItemAssign     = "assign"      // will get Serial
	ItemHasProfile = "has_profile" // skipped: holds a token of the profile already
	ItemAtLimit    = "at_limit"    // skipped: holds MaxTokensPerUser tokens
	ItemInactive   = "inactive"    // skipped: deactivated (directory-deleted or disabled)
	ItemNoToken    = "no_token"    // skipped: the pool ran short
	ItemDone       = "done"
	ItemFailed     = "failed"
)

// RolloutItemStatuses are the statuses ListRolloutItems filters by, for the
// doors to check ?status= against one list.
func RolloutItemStatuses() []string {
	return []string{ItemAssign, ItemHasProfile, ItemAtLimit, ItemInactive, ItemNoToken, ItemDone, ItemFailed}
}

// Rollout results counted by RolloutRecorder.
const (
	RolloutResultDone    = "done"
	RolloutResultFailed  = "failed"
	RolloutResultSkipped = "skipped"
)

// RolloutRecorder counts the users rollouts handle, by result (done,
// failed, skipped). Called outside transactions.
type RolloutRecorder interface {
	RolloutUsers(result string, n int)
}

// MaxRolloutUsers bounds one rollout (a SCIM group holds at most as many).
const MaxRolloutUsers = MaxGroupMembers

// Rollout export parts: the links go by one channel, the codes by another.
const (
	ExportLinks = "links"
	ExportCodes = "codes"
)

const (
	pfxRollout     = "ro/"
	pfxRolloutItem = "roi/"
	// rolloutChunk users per apply transaction: each writes at most 8
	// records (token, its two indexes, code, token again, item, audit
	// record and head), plus the rollout and the counters: 82 < MaxTxWrites.
	rolloutChunk = 10
	// rolloutPage users are planned per read transaction.
	rolloutPage = 500
	// rolloutItemWrites items are written per planning transaction.
	rolloutItemWrites = 90
	// rolloutStale: an applying rollout whose runner wrote nothing for this
	// long is taken over (its process died without InterruptRollouts).
	rolloutStale = 2 * time.Minute
)

func rolloutKey(id string) []byte { return []byte(pfxRollout + id) }
func rolloutItemPrefix(id string) []byte {
	return []byte(pfxRolloutItem + id + "/")
}
func rolloutItemKey(id string, seq int) []byte {
	return fmt.Appendf(nil, "%s%s/%06d", pfxRolloutItem, id, seq)
}
func codeAAD(rollout string, seq int) string {
	return fmt.Sprintf("rollout/%s/%06d/activation-code", rollout, seq)
}
func linkAAD(rollout string, seq int) string {
	return fmt.Sprintf("rollout/%s/%06d/link", rollout, seq)
}
func fileAAD(rollout string, seq int) string {
	return fmt.Sprintf("rollout/%s/%06d/file", rollout, seq)
}

// RolloutGroup names a group: a SCIM group (Source and ID) or every user
// of an identity source (Source only; an LDAP source's filter is its group).
type RolloutGroup struct {
	Source string `json:"source"`
	ID     string `json:"id,omitempty"`
}

// RolloutPool is where tokens come from: unassigned software tokens whose
// serial starts with SerialPrefix, or any (AnySoftware).
type RolloutPool struct {
	SerialPrefix string `json:"serial_prefix,omitempty"`
	AnySoftware  bool   `json:"any_software,omitempty"`
}

// RolloutRequest asks for a plan. Exactly one of Group and Users is given;
// Users are ids or user names.
type RolloutRequest struct {
	Group    *RolloutGroup
	Users    []string
	Profile  string
	Pool     RolloutPool
	Delivery string
	// Schedule, if set, is the earliest time the rollout may be applied.
	Schedule time.Time
}

// Rollout is a stored plan and its progress.
type Rollout struct {
	ID         string        `json:"id"`
	State      string        `json:"state"`
	Group      *RolloutGroup `json:"group,omitempty"`
	UsersGiven int           `json:"users_given,omitempty"`
	Profile    string        `json:"profile"`
	DeviceType string        `json:"device_type"`
	Pool       RolloutPool   `json:"pool"`
	Delivery   string        `json:"delivery"`
	Schedule   time.Time     `json:"schedule,omitzero"`
	CreatedBy  string        `json:"created_by"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	FinishedAt time.Time     `json:"finished_at,omitzero"`
	// Plan counts: Users = every user of the group; ToAssign get a token.
	Users      int `json:"users"`
	ToAssign   int `json:"to_assign"`
	HasProfile int `json:"has_profile"`
	AtLimit    int `json:"at_limit"`
	Inactive   int `json:"inactive"`
	// PoolShortfall is how many tokens the pool lacks.
	PoolShortfall int `json:"pool_shortfall"`
	// Progress of apply: Done + Failed of ToAssign.
	Done   int `json:"done"`
	Failed int `json:"failed"`
	// Cursor is the last item apply has handled.
	Cursor int `json:"cursor"`
	// CTKIPURL is the endpoint the distributions name (set by apply).
	CTKIPURL        string    `json:"ctkip_url,omitempty"`
	LinksExportedAt time.Time `json:"links_exported_at,omitzero"`
	CodesExportedAt time.Time `json:"codes_exported_at,omitzero"`
	Error           string    `json:"error,omitempty"`
	Runner          string    `json:"runner,omitempty"`
	// Node is the node planning or applying the rollout; UpdatedAt is its
	// heartbeat (each chunk writes it). See JobStale.
	Node string `json:"node,omitempty"`
	// ScheduledBy is who applied the rollout before its schedule; the
	// apply that starts at the scheduled time acts as them.
	ScheduledBy *Actor `json:"scheduled_by,omitempty"`
}

// RolloutItem is one user of a rollout. Its delivery is stored sealed until
// it is taken (TakeRolloutDelivery) or exported: Code is the activation
// code (ctkip) or the generated password (file, ctf), Link the CTF link,
// File the token file.
type RolloutItem struct {
	Seq       int       `json:"seq"`
	UserID    string    `json:"user_id"`
	UserName  string    `json:"user_name"`
	Email     string    `json:"email,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Code      Sealed    `json:"code,omitempty"`
	Link      Sealed    `json:"link,omitempty"`
	File      Sealed    `json:"file,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	// Taken: the delivery was handed out one by one; it is not stored any
	// more and the exports leave the user out.
	Taken bool `json:"taken,omitempty"`
	// Stored is set by ListRolloutItems (which drops the sealed fields):
	// some of the delivery is still stored.
	Stored bool `json:"-"`
}

// Waiting reports whether the item's delivery is still stored.
func (it RolloutItem) Waiting() bool { return len(it.Code) > 0 || len(it.Link) > 0 || len(it.File) > 0 }

// RolloutItemPage is one page of a rollout's items in seq order.
type RolloutItemPage struct {
	Items []RolloutItem
	// NextAfter is the seq to pass as after for the next page; 0 at the end.
	NextAfter int
}

// RolloutDelivery is one user's delivery, shown once.
type RolloutDelivery struct {
	// Distribution: the CT-KIP URL, activation code and device link
	// (ctkip); Serial, Profile and, for ctf, DeviceURL (the CTF link).
	Distribution
	Method                  string
	UserID, UserName, Email string
	// Password protects the token file (file) or binds the CTF string (ctf).
	Password Secret
	// File is the .sdtid token file (file).
	File []byte
}

// rolloutRunner tracks background applies.
type rolloutRunner struct {
	rec     RolloutRecorder
	wg      sync.WaitGroup
	mu      sync.Mutex
	cancels map[string]context.CancelFunc // by runner
}

func (r *rolloutRunner) count(result string, n int) {
	if r.rec != nil && n > 0 {
		r.rec.RolloutUsers(result, n)
	}
}

func getRollout(tx Tx, id string) (*Rollout, error) {
	var r Rollout
	if err := getJSON(tx, rolloutKey(id), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return &r, nil
}

func getRolloutItem(tx Tx, id string, seq int) (*RolloutItem, error) {
	var it RolloutItem
	if err := getJSON(tx, rolloutItemKey(id, seq), &it); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("rollout %s item %d: %w", id, seq, ErrNotFound)
		}
		return nil, err
	}
	return &it, nil
}

func validSerialPrefix(p string) bool {
	if len(p) > 12 {
		return false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (req *RolloutRequest) validate() *ValidationError {
	v := &ValidationError{}
	switch {
	case req.Group == nil && len(req.Users) == 0:
		v.Add("group", "a group or a list of users is required")
	case req.Group != nil && len(req.Users) > 0:
		v.Add("users", "give a group or a list of users, not both")
	case req.Group != nil && req.Group.Source == "":
		v.Add("group.source", "required")
	case len(req.Users) > MaxRolloutUsers:
		v.Add("users", fmt.Sprintf("at most %d users", MaxRolloutUsers))
	}
	for _, u := range req.Users {
		if u == "" || len(u) > 256 {
			v.Add("users", "a user is an id or a user name of 1 to 256 bytes")
			break
		}
	}
	if req.Profile == "" {
		v.Add("profile", "required")
	}
	switch {
	case req.Pool.AnySoftware && req.Pool.SerialPrefix != "":
		v.Add("pool", "a serial prefix or any unassigned software token, not both")
	case !req.Pool.AnySoftware && req.Pool.SerialPrefix == "":
		v.Add("pool", "a serial prefix or any unassigned software token is required")
	case !validSerialPrefix(req.Pool.SerialPrefix):
		v.Add("pool.serial_prefix", "up to 12 digits")
	}
	switch req.Delivery {
	case DeliveryCTKIP, DeliveryFile, DeliveryCTF:
	default:
		v.Add("delivery", "must be ctkip, file or ctf")
	}
	return v
}

// PlanRollout resolves the group, decides for every user which token they
// would get or why they are skipped, and stores that plan. Nothing else
// changes until ApplyRollout.
func (s *Service) PlanRollout(ctx context.Context, req RolloutRequest) (Rollout, error) {
	if err := req.validate().Err(); err != nil {
		return Rollout{}, err
	}
	id, err := s.newID()
	if err != nil {
		return Rollout{}, err
	}
	var userIDs []string
	var prof *Profile
	err = s.store.View(ctx, func(tx Tx) error {
		p, err := getProfile(tx, req.Profile)
		if err != nil {
			return err
		}
		if p.DeliveryMethod != req.Delivery {
			return &ValidationError{Problems: []FieldError{{"delivery",
				fmt.Sprintf("profile %s delivers by %s", p.Name, p.DeliveryMethod)}}}
		}
		if p.DeliveryMethod == DeliveryCTF && p.CTFBinding != CTFBindingPassword {
			// The password goes by the other channel; a string bound to
			// nothing is the seed in clear, one bound to a device needs
			// each user's device id.
			return &ValidationError{Problems: []FieldError{{"profile",
				fmt.Sprintf("a rollout binds each CTF string to a generated password; profile %s binds to %s", p.Name, p.CTFBinding)}}}
		}
		prof = p
		userIDs, err = resolveRolloutUsers(tx, req)
		return err
	})
	if err != nil {
		return Rollout{}, err
	}
	now := s.now().UTC()
	actor := ActorFrom(ctx)
	r := Rollout{ID: id, State: RolloutPlanning, Node: s.node, Group: req.Group, UsersGiven: len(req.Users), Profile: prof.Name,
		DeviceType: prof.DeviceType, Pool: req.Pool, Delivery: req.Delivery, Schedule: req.Schedule.UTC(),
		CreatedBy: actor.Name, CreatedAt: now, UpdatedAt: now, Users: len(userIDs)}
	if req.Schedule.IsZero() {
		r.Schedule = time.Time{}
	}
	if err := s.store.Update(ctx, func(tx Tx) error { return putJSON(tx, rolloutKey(id), &r) }); err != nil {
		return Rollout{}, err
	}
	// A plan that fails half-written is marked abandoned at once, not left
	// planning until the next start.
	abandon := func(cause error) (Rollout, error) {
		r.State, r.Error = RolloutAbandoned, "planning failed ("+ReasonOf(cause)+"); plan again"
		if err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error { return putJSON(tx, rolloutKey(id), &r) }); err != nil {
			s.log.Error("rollout: marking an abandoned plan failed", "rollout", id, "err", err)
		}
		return Rollout{}, cause
	}
	// Tokens other open rollouts will assign are not promised again (two
	// overlapping plans would otherwise fail the later apply's users with
	// token_taken).
	var reserved map[string]bool
	if err := s.store.View(ctx, func(tx Tx) error {
		var err error
		reserved, err = reservedSerials(tx, id)
		return err
	}); err != nil {
		return abandon(err)
	}
	// A page of users is read in one snapshot, its items written in a few
	// transactions: memory stays bounded by the page, not the group.
	var poolAfter []byte
	seq := 0
	for start := 0; start < len(userIDs); start += rolloutPage {
		page := userIDs[start:min(start+rolloutPage, len(userIDs))]
		var items []RolloutItem
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			items, poolAfter, err = planPage(tx, page, prof.Name, req.Pool, reserved, poolAfter, seq, now)
			return err
		})
		if err != nil {
			return abandon(err)
		}
		seq += len(items)
		for _, it := range items {
			switch it.Status {
			case ItemAssign:
				r.ToAssign++
			case ItemHasProfile:
				r.HasProfile++
			case ItemAtLimit:
				r.AtLimit++
			case ItemInactive:
				r.Inactive++
			case ItemNoToken:
				r.PoolShortfall++
			}
		}
		for b := 0; b < len(items); b += rolloutItemWrites {
			part := items[b:min(b+rolloutItemWrites, len(items))]
			if err := s.store.Update(ctx, func(tx Tx) error {
				for i := range part {
					if err := putJSON(tx, rolloutItemKey(id, part[i].Seq), &part[i]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return abandon(err)
			}
		}
	}
	r.State = RolloutPlanned
	err = s.change(ctx, AuditEvent{Action: "rollout.plan", Target: id, Detail: rolloutDetail(&r)},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			r.UpdatedAt = now
			return putJSON(tx, rolloutKey(id), &r)
		})
	if err != nil {
		return abandon(err)
	}
	return r, nil
}

func rolloutDetail(r *Rollout) string {
	return fmt.Sprintf("profile=%s delivery=%s users=%d to_assign=%d has_profile=%d at_limit=%d inactive=%d pool_shortfall=%d",
		r.Profile, r.Delivery, r.Users, r.ToAssign, r.HasProfile, r.AtLimit, r.Inactive, r.PoolShortfall)
}

// resolveRolloutUsers lists the user ids of the request's group, each
// once, in a stable order.
func resolveRolloutUsers(tx Tx, req RolloutRequest) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) error {
		if seen[id] {
			return nil
		}
		if len(ids) >= MaxRolloutUsers {
			return fmt.Errorf("the group has more than %d users: %w", MaxRolloutUsers, ErrLimit)
		}
		seen[id] = true
		ids = append(ids, id)
		return nil
	}
	switch {
	case len(req.Users) > 0:
		v := &ValidationError{}
		for _, ref := range req.Users {
			id, err := lookupUserRef(tx, ref)
			if errors.Is(err, ErrNotFound) {
				v.Add("users", fmt.Sprintf("no user %q", truncate(ref, 64)))
				continue
			}
			if err != nil {
				return nil, err
			}
			if err := add(id); err != nil {
				return nil, err
			}
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
	case req.Group.ID != "":
		// A SCIM group, its nested groups included.
		src := req.Group.Source
		g, err := getGroup(tx, src, req.Group.ID)
		if err != nil {
			return nil, err
		}
		queue, visited := []*Group{g}, map[string]bool{g.ID: true}
		for len(queue) > 0 {
			g, queue = queue[0], queue[1:]
			for _, m := range g.Members {
				u, err := getUser(tx, m)
				switch {
				case err == nil && u.Source == src:
					if err := add(u.ID); err != nil {
						return nil, err
					}
					continue
				case err != nil && !errors.Is(err, ErrNotFound):
					return nil, err
				}
				if visited[m] {
					continue
				}
				sub, err := getGroup(tx, src, m)
				if errors.Is(err, ErrNotFound) {
					continue // a member not pushed yet
				}
				if err != nil {
					return nil, err
				}
				visited[m] = true
				queue = append(queue, sub)
			}
		}
	default:
		// Every user of the identity source (an LDAP source's filter).
		if err := requireSource(tx, req.Group.Source); err != nil {
			return nil, err
		}
		var failed error
		err := walkRange(tx, []byte(pfxUserLogin), nil, func(kv KV) bool {
			if li := parseLoginIndex(kv.Value); li.Source == req.Group.Source {
				if failed = add(li.ID); failed != nil {
					return false
				}
			}
			return true
		})
		if err == nil {
			err = failed
		}
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// lookupUserRef finds a user by id, else by user name.
func lookupUserRef(tx Tx, ref string) (string, error) {
	if ok, err := exists(tx, userKey(ref)); err != nil || ok {
		return ref, err
	}
	v, err := tx.Get(loginKey(ref))
	if err != nil {
		return "", err
	}
	return parseLoginIndex(v).ID, nil
}

// reservedSerials lists the tokens that open rollouts other than except
// (planned, scheduled, applying or interrupted) still plan to assign.
func reservedSerials(tx Tx, except string) (map[string]bool, error) {
	out := map[string]bool{}
	kvs, err := tx.Scan([]byte(pfxRollout), nil, 0)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var r Rollout
		if err := decodeRecord(tx, kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode %q: %w", kv.Key, err)
		}
		switch r.State {
		case RolloutPlanned, RolloutScheduled, RolloutApplying, RolloutInterrupted:
		default:
			continue
		}
		if r.ID == except {
			continue
		}
		var failed error
		err := walkRange(tx, rolloutItemPrefix(r.ID), nil, func(kv KV) bool {
			var it RolloutItem
			if failed = decodeRecord(tx, kv.Value, &it); failed != nil {
				return false
			}
			if it.Status == ItemAssign && it.Serial != "" {
				out[it.Serial] = true
			}
			return true
		})
		if err == nil {
			err = failed
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// planPage decides for each user of page, numbering items from seq+1, and
// takes tokens from the pool after poolAfter: unassigned, not cloud-managed
// software tokens that are no admin's second factor, not expired and not
// reserved by another open rollout. It returns where the pool walk stopped.
func planPage(tx Tx, page []string, profile string, pool RolloutPool, reserved map[string]bool, poolAfter []byte, seq int, now time.Time) ([]RolloutItem, []byte, error) {
	factors, err := adminFactors(tx)
	if err != nil {
		return nil, nil, err
	}
	poolPrefix := []byte(pfxTokenState + pool.SerialPrefix)
	poolDry := false
	nextToken := func() (string, error) {
		if poolDry {
			return "", nil
		}
		for {
			kvs, err := tx.Scan(poolPrefix, poolAfter, 64)
			if err != nil {
				return "", err
			}
			for _, kv := range kvs {
				poolAfter = kv.Key
				ti := parseTokenState(kv)
				if ti.Kind != KindSoftware || ti.UserID != "" || ti.ManagedBy == ManagedCloud || len(factors[ti.Serial]) > 0 || reserved[ti.Serial] {
					continue
				}
				t, err := getToken(tx, ti.Serial)
				if err != nil {
					return "", err
				}
				if t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt) {
					return ti.Serial, nil
				}
			}
			if len(kvs) < 64 {
				poolDry = true
				return "", nil
			}
		}
	}
	items := make([]RolloutItem, 0, len(page))
	for _, id := range page {
		seq++
		u, err := getUser(tx, id)
		if err != nil {
			return nil, nil, err
		}
		it := RolloutItem{Seq: seq, UserID: u.ID, UserName: u.UserName, Email: u.Email}
		held, err := userTokens(tx, u.ID)
		if err != nil {
			return nil, nil, err
		}
		n, has := 0, false
		for i := range held {
			if countsTowardLimit(&held[i]) {
				n++
			}
			has = has || held[i].Profile == profile
		}
		switch {
		case !u.Active:
			it.Status = ItemInactive
		case has:
			it.Status = ItemHasProfile
		case n >= MaxTokensPerUser:
			it.Status = ItemAtLimit
		default:
			sn, err := nextToken()
			if err != nil {
				return nil, nil, err
			}
			it.Status, it.Serial = ItemAssign, sn
			if sn == "" {
				it.Status = ItemNoToken
			}
		}
		items = append(items, it)
	}
	return items, poolAfter, nil
}

// GetRollout returns a rollout with its progress.
func (s *Service) GetRollout(ctx context.Context, id string) (Rollout, error) {
	var out Rollout
	err := s.store.View(ctx, func(tx Tx) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		out = *r
		return nil
	})
	return out, err
}

// ListRollouts returns up to limit rollouts, newest first.
func (s *Service) ListRollouts(ctx context.Context, limit int) ([]Rollout, error) {
	limit = clampLimit(limit)
	all, err := listJSON[Rollout](ctx, s.store, pfxRollout)
	if err != nil {
		return nil, err
	}
	slices.Reverse(all) // ids are time-ordered
	if len(all) > limit {
		all = all[:limit]
	}
	if all == nil {
		all = []Rollout{}
	}
	return all, nil
}

// ListRolloutItems pages through a rollout's users in plan order, after
// the seq after (0: from the start), filtered by status when given.
func (s *Service) ListRolloutItems(ctx context.Context, id string, after, limit int, status string) (RolloutItemPage, error) {
	limit = clampLimit(limit)
	var page RolloutItemPage
	err := s.store.View(ctx, func(tx Tx) error {
		page = RolloutItemPage{Items: []RolloutItem{}}
		if _, err := getRollout(tx, id); err != nil {
			return err
		}
		var from []byte
		if after > 0 {
			from = rolloutItemKey(id, after)
		}
		var failed error
		err := walkRange(tx, rolloutItemPrefix(id), from, func(kv KV) bool {
			var it RolloutItem
			if failed = decodeRecord(tx, kv.Value, &it); failed != nil {
				return false
			}
			if status != "" && it.Status != status {
				return true
			}
			if len(page.Items) == limit {
				page.NextAfter = page.Items[limit-1].Seq
				return false
			}
			it.Stored = it.Waiting()
			it.Code, it.Link, it.File = nil, nil, nil // never leave the Service
			page.Items = append(page.Items, it)
			return true
		})
		if err == nil {
			err = failed
		}
		return err
	})
	return page, err
}

// ApplyRollout applies a planned (or interrupted) rollout and returns it
// when every user is handled. Only one apply holds a rollout at a time: a
// second one fails with ErrConflict while the first runs.
//
// A rollout applied before its schedule is marked scheduled and returned
// as it is; StartDueRollouts starts it when the time comes.
func (s *Service) ApplyRollout(ctx context.Context, id string) (Rollout, error) {
	runner, err := s.claimRollout(ctx, id)
	if err != nil || runner == "" {
		return s.scheduledOr(ctx, id, err)
	}
	return s.runRollout(ctx, id, runner)
}

// scheduledOr is err, or (without a runner) the rollout just scheduled.
func (s *Service) scheduledOr(ctx context.Context, id string, err error) (Rollout, error) {
	if err != nil {
		return Rollout{}, err
	}
	return s.GetRollout(ctx, id)
}

// StartRollout claims the rollout as ApplyRollout does and applies it in
// the background (detached from ctx's cancellation, keeping its actor,
// until StopRollouts); progress is read with GetRollout.
func (s *Service) StartRollout(ctx context.Context, id string) (Rollout, error) {
	runner, err := s.claimRollout(ctx, id)
	if err != nil || runner == "" {
		return s.scheduledOr(ctx, id, err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rr := &s.rollouts
	rr.mu.Lock()
	if rr.cancels == nil {
		rr.cancels = map[string]context.CancelFunc{}
	}
	rr.cancels[runner] = cancel
	rr.wg.Add(1)
	rr.mu.Unlock()
	go func() {
		defer rr.wg.Done()
		defer func() {
			rr.mu.Lock()
			delete(rr.cancels, runner)
			rr.mu.Unlock()
			cancel()
		}()
		if _, err := s.runRollout(bg, id, runner); err != nil {
			s.log.Warn("rollout stopped", "rollout", id, "reason", ReasonOf(err), "err", err)
		}
	}()
	return s.GetRollout(ctx, id)
}

// WaitRollouts waits for the rollouts StartRollout runs to end.
func (s *Service) WaitRollouts() { s.rollouts.wg.Wait() }

// StopRollouts stops the rollouts StartRollout runs after their current
// chunk, marks them interrupted (apply again, or the next start, resumes
// them) and waits for them. main calls it before closing the store.
func (s *Service) StopRollouts() {
	s.rollouts.mu.Lock()
	for _, cancel := range s.rollouts.cancels {
		cancel()
	}
	s.rollouts.mu.Unlock()
	s.rollouts.wg.Wait()
}

// StartDueRollouts starts, in the background, every scheduled rollout whose
// time has come, acting as the admin who scheduled it. It returns the ids
// it started.
func (s *Service) StartDueRollouts(ctx context.Context) ([]string, error) {
	all, err := listJSON[Rollout](ctx, s.store, pfxRollout)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var started []string
	for _, r := range all {
		if r.State != RolloutScheduled || now.Before(r.Schedule) {
			continue
		}
		actx := ctx
		if r.ScheduledBy != nil {
			actx = WithActor(ctx, *r.ScheduledBy)
		}
		if _, err := s.StartRollout(actx, r.ID); err != nil {
			if isDomainError(err) {
				continue // claimed meanwhile
			}
			return started, err
		}
		started = append(started, r.ID)
	}
	return started, nil
}

// RunRolloutSchedule calls StartDueRollouts every interval until ctx ends
// (main runs it for the life of the daemon).
func (s *Service) RunRolloutSchedule(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ids, err := s.StartDueRollouts(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("starting scheduled rollouts", "err", err)
		} else if len(ids) > 0 {
			s.log.Info("scheduled rollouts started", "rollouts", ids)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ResumeRollouts starts, in the background, every interrupted rollout (as
// InterruptRollouts leaves them at start). It returns the ids it started.
func (s *Service) ResumeRollouts(ctx context.Context) ([]string, error) {
	all, err := listJSON[Rollout](ctx, s.store, pfxRollout)
	if err != nil {
		return nil, err
	}
	var started []string
	for _, r := range all {
		if r.State != RolloutInterrupted {
			continue
		}
		if _, err := s.StartRollout(ctx, r.ID); err != nil {
			if isDomainError(err) {
				continue // claimed meanwhile, or not due yet
			}
			return started, err
		}
		started = append(started, r.ID)
	}
	return started, nil
}

// CancelRollout discards a rollout that is planned, scheduled or
// interrupted: it is never applied (or resumed), and the tokens it planned
// are free for other plans again. Users an interrupted apply already
// handled keep their tokens and deliveries. A rollout being applied gets
// ErrConflict (it is cancelled once interrupted); a completed one,
// ErrInvalidState.
func (s *Service) CancelRollout(ctx context.Context, id string) (Rollout, error) {
	var out Rollout
	err := s.change(ctx, AuditEvent{Action: "rollout.cancel", Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		switch r.State {
		case RolloutPlanned, RolloutScheduled, RolloutInterrupted:
		case RolloutApplying:
			return fmt.Errorf("rollout %s is being applied: %w", id, ErrConflict)
		default:
			return fmt.Errorf("rollout %s is %s: %w", id, r.State, ErrInvalidState)
		}
		ev.Detail = fmt.Sprintf("was %s; done=%d failed=%d of %d", r.State, r.Done, r.Failed, r.ToAssign)
		r.State, r.UpdatedAt, r.Error = RolloutCancelled, now, ""
		out = *r
		return putJSON(tx, rolloutKey(id), r)
	})
	return out, err
}

// errRolloutLost: another apply took the rollout over.
var errRolloutLost = fmt.Errorf("the rollout is being applied by another request: %w", ErrConflict)

// It returns the runner id that holds the claim, or "" when the rollout
// was scheduled instead.
func (s *Service) claimRollout(ctx context.Context, id string) (string, error) {
	claimant, err := s.newID()
	if err != nil {
		return "", err
	}
	var runner string
	err = s.change(ctx, AuditEvent{Action: "rollout.apply", Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		switch r.State {
		case RolloutPlanned, RolloutInterrupted, RolloutScheduled:
		case RolloutApplying:
			if now.Sub(r.UpdatedAt) < rolloutStale {
				return errRolloutLost
			}
		case RolloutCompleted:
			return fmt.Errorf("rollout %s is completed: %w", id, ErrInvalidState)
		default:
			return fmt.Errorf("rollout %s is %s; plan it again: %w", id, r.State, ErrInvalidState)
		}
		if !r.Schedule.IsZero() && now.Before(r.Schedule) {
			// Not yet: remember who asked; StartDueRollouts starts it.
			actor := ActorFrom(ctx)
			r.State, r.ScheduledBy, r.UpdatedAt = RolloutScheduled, &actor, now
			ev.Detail = "scheduled for " + r.Schedule.Format(time.RFC3339)
			runner = ""
			return putJSON(tx, rolloutKey(id), r)
		}
		runner = claimant
		if r.StartedAt.IsZero() {
			r.StartedAt = now
		}
		ev.Detail = fmt.Sprintf("start at item %d of %d", r.Cursor, r.Users)
		r.State, r.Runner, r.UpdatedAt, r.Error, r.Node = RolloutApplying, runner, now, "", s.node
		r.CTKIPURL = s.CTKIPURL()
		return putJSON(tx, rolloutKey(id), r)
	})
	return runner, err
}

// pendingItem is one user of a chunk with the secrets drawn for them
// before the transaction (which must be re-runnable).
type pendingItem struct {
	seq   int
	code  string
	hash  []byte
	nonce []byte
	// file and ctf: the seed, its sealing nonce, the generated password,
	// the token file's batch secret and the nonces sealing link and file.
	seedBuf, seedNonce, fileRand, linkNonce, fileNonce []byte
	password                                           Secret
}

func (p *pendingItem) clear() { clear(p.seedBuf); clear(p.fileRand) }

// rolloutWorkers chunks are applied at once: their commits share fsyncs
// (group commit), which a lone chunk's few dozen writes would not fill.
const rolloutWorkers = 4

// rolloutJob is one chunk for a worker.
type rolloutJob struct {
	pend          []pendingItem
	last, skipped int
}

// runRollout applies the rollout's items from its cursor, chunk by chunk,
// while it holds the claim. Chunks run concurrently, so the stored cursor
// is a low-water mark: every item up to it is handled; a resumed apply
// reads the items after it and skips those a chunk already applied.
func (s *Service) runRollout(parent context.Context, id, runner string) (Rollout, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		inflight []int // last seq of each dispatched chunk, in order
		finished = map[int]bool{}
		mark     int
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	watermark := func() int {
		mu.Lock()
		defer mu.Unlock()
		return mark
	}
	finish := func(last int) {
		mu.Lock()
		defer mu.Unlock()
		finished[last] = true
		for len(inflight) > 0 && finished[inflight[0]] {
			mark = inflight[0]
			delete(finished, mark)
			inflight = inflight[1:]
		}
	}
	jobs := make(chan rolloutJob)
	var wg sync.WaitGroup
	for range rolloutWorkers {
		wg.Go(func() {
			for j := range jobs {
				done, failed, err := s.applyChunkOrEach(ctx, id, runner, j.pend, watermark())
				for i := range j.pend {
					j.pend[i].clear()
				}
				s.rollouts.count(RolloutResultDone, done)
				s.rollouts.count(RolloutResultFailed, failed)
				if err != nil {
					fail(err)
					continue
				}
				s.rollouts.count(RolloutResultSkipped, j.skipped)
				finish(j.last)
			}
		})
	}
	after := -1
	for ctx.Err() == nil {
		r, items, err := s.nextRolloutChunk(ctx, id, after)
		if err != nil {
			fail(err)
			break
		}
		if after < 0 {
			mu.Lock()
			mark = r.Cursor
			mu.Unlock()
		}
		if len(items) == 0 {
			break
		}
		j := rolloutJob{last: items[len(items)-1].Seq}
		for _, it := range items {
			if it.Status != ItemAssign {
				j.skipped++
				continue
			}
			p, err := s.drawPending(it.Seq, r.Delivery)
			if err != nil {
				fail(err)
				break
			}
			j.pend = append(j.pend, p)
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		inflight = append(inflight, j.last)
		mu.Unlock()
		select {
		case jobs <- j:
		case <-ctx.Done():
		}
		after = j.last
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return s.stopRollout(parent, id, runner, firstErr)
	}
	var out Rollout
	err := s.change(parent, AuditEvent{Action: "rollout.complete", Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		if r.Runner != runner || r.State != RolloutApplying {
			return errRolloutLost
		}
		r.State, r.Runner, r.FinishedAt, r.UpdatedAt = RolloutCompleted, "", now, now
		r.Cursor = max(r.Cursor, after)
		ev.Detail = fmt.Sprintf("done=%d failed=%d of %d", r.Done, r.Failed, r.ToAssign)
		out = *r
		return putJSON(tx, rolloutKey(id), r)
	})
	return out, err
}

// applyChunkOrEach applies a chunk in one transaction; if one user's
// refusal rolls it back, it applies the chunk's users one by one, so the
// refusal fails that user only.
func (s *Service) applyChunkOrEach(ctx context.Context, id, runner string, pend []pendingItem, mark int) (done, failed int, err error) {
	if len(pend) == 0 {
		return 0, 0, nil
	}
	done, failed, err = s.applyChunk(ctx, id, runner, pend, mark)
	var ie *itemError
	if !errors.As(err, &ie) || !isRefusal(ie.err) {
		return done, failed, err
	}
	done, failed = 0, 0
	for i := range pend {
		d, f, err := s.applyChunk(ctx, id, runner, pend[i:i+1], mark)
		if errors.As(err, &ie) && isRefusal(ie.err) {
			d, f, err = s.failItem(ctx, id, runner, pend[i].seq, mark, ie.err)
		}
		if err != nil {
			return done, failed, err
		}
		done, failed = done+d, failed+f
	}
	return done, failed, nil
}

func (s *Service) drawPending(seq int, delivery string) (pendingItem, error) {
	nonce, err := s.sealer.Nonce()
	if err != nil {
		return pendingItem{}, err
	}
	if delivery == DeliveryCTKIP {
		code, err := s.newCode()
		if err != nil {
			return pendingItem{}, err
		}
		return pendingItem{seq: seq, code: code, hash: s.codeHash(code), nonce: nonce}, nil
	}
	p := pendingItem{seq: seq, nonce: nonce, seedBuf: make([]byte, 64), fileRand: make([]byte, 16)}
	if _, err := io.ReadFull(s.rand, p.seedBuf); err != nil {
		return pendingItem{}, fmt.Errorf("new seed: %w", err)
	}
	if _, err := io.ReadFull(s.rand, p.fileRand); err != nil {
		return pendingItem{}, fmt.Errorf("token file: %w", err)
	}
	for _, n := range []*[]byte{&p.seedNonce, &p.linkNonce, &p.fileNonce} {
		if *n, err = s.sealer.Nonce(); err != nil {
			return pendingItem{}, err
		}
	}
	if p.password, err = s.filePassword(); err != nil {
		return pendingItem{}, err
	}
	return p, nil
}

// nextRolloutChunk reads the rollout and the items after seq after (after
// its cursor when after < 0).
func (s *Service) nextRolloutChunk(ctx context.Context, id string, after int) (*Rollout, []RolloutItem, error) {
	var (
		r     *Rollout
		items []RolloutItem
	)
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		if r, err = getRollout(tx, id); err != nil {
			return err
		}
		if after < 0 {
			after = r.Cursor
		}
		var from []byte
		if after > 0 {
			from = rolloutItemKey(id, after)
		}
		kvs, err := tx.Scan(rolloutItemPrefix(id), from, rolloutChunk)
		if err != nil {
			return err
		}
		items = make([]RolloutItem, len(kvs))
		for i, kv := range kvs {
			if err := decodeRecord(tx, kv.Value, &items[i]); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
		}
		return nil
	})
	return r, items, err
}

// itemError is a refusal of one user inside a chunk.
type itemError struct {
	seq int
	err error
}

func (e *itemError) Error() string { return fmt.Sprintf("item %d: %v", e.seq, e.err) }
func (e *itemError) Unwrap() error { return e.err }

// applyChunk assigns and distributes the pending users' tokens and moves
// the cursor to mark, in one transaction that first checks the claim. An
// item no longer waiting (a previous run applied it) is left alone.
func (s *Service) applyChunk(ctx context.Context, id, runner string, pend []pendingItem, mark int) (done, failed int, err error) {
	actor := ActorFrom(ctx)
	now := s.now().UTC()
	err = s.store.Update(ctx, func(tx Tx) error {
		done, failed = 0, 0
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		if r.Runner != runner || r.State != RolloutApplying {
			return errRolloutLost
		}
		err = withCounts(tx, func(tx Tx) error {
			for _, p := range pend {
				it, err := getRolloutItem(tx, r.ID, p.seq)
				if err != nil {
					return err
				}
				if it.Status != ItemAssign {
					continue
				}
				if err := s.applyItem(tx, r, it, p, actor, now); err != nil {
					return &itemError{p.seq, err}
				}
				done++
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.Done += done
		r.Cursor = max(r.Cursor, mark)
		r.UpdatedAt = now
		return putJSON(tx, rolloutKey(r.ID), r)
	})
	return done, failed, err
}

// applyItem gives one user their token: the user must still be active and
// without a token of the profile; assignInTx enforces the token limit and
// that the token is free, distributeInTx issues the activation code.
func (s *Service) applyItem(tx Tx, r *Rollout, it *RolloutItem, p pendingItem, actor Actor, now time.Time) error {
	u, err := getUser(tx, it.UserID)
	if err != nil {
		return err
	}
	if !u.Active {
		return fmt.Errorf("user %s: %w (%w)", u.UserName, errInactive, ErrInvalidState)
	}
	held, err := userTokens(tx, u.ID)
	if err != nil {
		return err
	}
	for i := range held {
		if held[i].Profile == r.Profile {
			return fmt.Errorf("user %s holds token %s of profile %s already: %w", u.UserName, held[i].Serial, r.Profile, ErrExists)
		}
	}
	ev := AuditEvent{Action: "rollout.assign", UserID: u.ID, Serial: it.Serial, Target: r.ID}
	if err := guardAdminFactor(tx, actor, &ev, it.Serial); err != nil {
		return err
	}
	var uv UserView
	if err := s.assignInTx(tx, u.ID, []string{it.Serial}, now, &uv); err != nil {
		return err
	}
	it.Status, it.DoneAt, it.Reason = ItemDone, now, ""
	if r.Delivery == DeliveryCTKIP {
		d, err := distributeInTx(tx, actor, &ev, it.Serial, r.Profile, p.code, p.hash, r.CTKIPURL, now)
		if err != nil {
			return err
		}
		it.ExpiresAt = d.ExpiresAt
		it.Code = Sealed(s.sealer.SealNonce(p.nonce, []byte(p.code), codeAAD(r.ID, it.Seq)))
	} else {
		// A token file or a CTF string bound to the generated password.
		req := SeedDeliveryRequest{Profile: r.Profile, Password: p.password}
		o, err := s.deliverSeedInTx(tx, actor, &ev, it.Serial, req, p.seedBuf, p.seedNonce, now)
		if err != nil {
			return err
		}
		out, doc, err := seedDeliveryOf(o, req, now, bytes.NewReader(p.fileRand))
		if err != nil {
			return err
		}
		it.Code = Sealed(s.sealer.SealNonce(p.nonce, []byte(p.password.Reveal()), codeAAD(r.ID, it.Seq)))
		if doc != nil {
			it.File = Sealed(s.sealer.SealNonce(p.fileNonce, doc, fileAAD(r.ID, it.Seq)))
			clear(doc)
		}
		if out.DeviceURL != "" {
			it.Link = Sealed(s.sealer.SealNonce(p.linkNonce, []byte(out.DeviceURL.Reveal()), linkAAD(r.ID, it.Seq)))
		}
	}
	if err := putJSON(tx, rolloutItemKey(r.ID, it.Seq), it); err != nil {
		return err
	}
	ev.Outcome, ev.Detail = OutcomeSuccess, "profile="+r.Profile+" delivery="+r.Delivery
	return appendAudit(tx, now, actor, ev)
}

// failItem records one user's refusal and moves the cursor to mark.
func (s *Service) failItem(ctx context.Context, id, runner string, seq, mark int, cause error) (done, failed int, err error) {
	actor := ActorFrom(ctx)
	now := s.now().UTC()
	reason := itemReason(cause)
	err = s.store.Update(ctx, func(tx Tx) error {
		failed = 0
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		if r.Runner != runner || r.State != RolloutApplying {
			return errRolloutLost
		}
		it, err := getRolloutItem(tx, r.ID, seq)
		if err != nil {
			return err
		}
		if it.Status == ItemAssign {
			it.Status, it.Reason, it.DoneAt = ItemFailed, reason, now
			if err := putJSON(tx, rolloutItemKey(r.ID, seq), it); err != nil {
				return err
			}
			if err := appendAudit(tx, now, actor, AuditEvent{Action: "rollout.assign", UserID: it.UserID, Serial: it.Serial,
				Target: r.ID, Outcome: OutcomeFailure, Reason: reason}); err != nil {
				return err
			}
			failed = 1
		}
		r.Failed += failed
		r.Cursor = max(r.Cursor, mark)
		r.UpdatedAt = now
		return putJSON(tx, rolloutKey(r.ID), r)
	})
	return 0, failed, err
}

// itemReason names why a user was not given their token.
func itemReason(err error) string {
	var afe *AdminFactorError
	switch {
	case errors.As(err, &afe):
		return AdminFactorReason
	case errors.Is(err, ErrLimit):
		return "limit"
	case errors.Is(err, ErrConflict):
		return "token_taken"
	case errors.Is(err, ErrExists):
		return ItemHasProfile
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, errInactive):
		return ItemInactive
	}
	return ReasonOf(err)
}

// isRefusal tells a user's refusal (which fails that user) from an error
// of the store (which stops the apply).
func isRefusal(err error) bool {
	var afe *AdminFactorError
	return isDomainError(err) || errors.As(err, &afe)
}

// errInactive: the user was deactivated after the plan.
var errInactive = errors.New("user is inactive")

// stopRollout marks the rollout interrupted (if this runner still holds
// it) and returns cause.
func (s *Service) stopRollout(ctx context.Context, id, runner string, cause error) (Rollout, error) {
	if errors.Is(cause, errRolloutLost) {
		return Rollout{}, cause
	}
	now := s.now().UTC()
	var out Rollout
	// Detached: a cancelled request still leaves the record resumable.
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		out = *r
		if r.Runner != runner || r.State != RolloutApplying {
			return nil
		}
		r.State, r.Runner, r.UpdatedAt = RolloutInterrupted, "", now
		r.Error = fmt.Sprintf("apply stopped after item %d (%s); apply again to resume", r.Cursor, ReasonOf(cause))
		out = *r
		return putJSON(tx, rolloutKey(id), r)
	})
	if err != nil {
		s.log.Error("rollout: marking interrupted failed", "rollout", id, "err", err)
	}
	return out, fmt.Errorf("rollout %s interrupted: %w", id, cause)
}

// InterruptRollouts marks the rollouts a previous run of tokend left
// applying as interrupted (apply again resumes them) and those it left
// planning as abandoned. Call it once at start, before serving, on a
// store no other node uses (bbolt); on a shared one call
// InterruptLeftoverJobs. It returns the ids it marked.
func (s *Service) InterruptRollouts(ctx context.Context) ([]string, error) {
	return s.interruptRollouts(ctx, sweepAll)
}

// interruptRollouts marks the rollouts staleJob picks.
func (s *Service) interruptRollouts(ctx context.Context, mode jobSweep) ([]string, error) {
	all, err := listJSON[Rollout](ctx, s.store, pfxRollout)
	if err != nil {
		return nil, err
	}
	var marked []string
	now := s.now().UTC()
	for _, r := range all {
		if r.State != RolloutApplying && r.State != RolloutPlanning || !s.staleJob(mode, r.Node, r.UpdatedAt, now) {
			continue
		}
		skipped := false
		err := s.store.Update(ctx, func(tx Tx) error {
			skipped = false
			cur, err := getRollout(tx, r.ID)
			if err != nil {
				return err
			}
			// Re-checked: its node may have committed a chunk since.
			if !s.staleJob(mode, cur.Node, cur.UpdatedAt, now) {
				skipped = true
				return nil
			}
			reason := ""
			switch cur.State {
			case RolloutApplying:
				cur.State, reason = RolloutInterrupted, "interrupted"
				cur.Error = fmt.Sprintf("tokend stopped during the apply, after item %d of %d; apply again to resume", cur.Cursor, cur.Users)
			case RolloutPlanning:
				cur.State, reason = RolloutAbandoned, "abandoned"
				cur.Error = "tokend stopped while planning; plan again"
			default:
				skipped = true
				return nil
			}
			cur.Runner, cur.UpdatedAt = "", now
			if err := putJSON(tx, rolloutKey(r.ID), cur); err != nil {
				return err
			}
			return appendAudit(tx, now, ActorFrom(ctx), AuditEvent{Action: "rollout.apply", Target: r.ID,
				Outcome: OutcomeFailure, Reason: reason})
		})
		if err != nil {
			return marked, err
		}
		if !skipped {
			marked = append(marked, r.ID)
		}
	}
	return marked, nil
}

// StaleJobs is what InterruptStaleJobs did.
type StaleJobs struct {
	Imports  []string // import jobs marked interrupted
	Rollouts []string // rollouts marked interrupted or abandoned
	Resumed  []string // of those, the rollouts started again here
}

// InterruptLeftoverJobs is InterruptImports and InterruptRollouts for a
// node's start on a shared store (etcd): it marks this node's leftover
// jobs (and those of no recorded node) and other nodes' stale ones, and
// leaves alone the jobs live nodes run. ResumeRollouts then resumes.
func (s *Service) InterruptLeftoverJobs(ctx context.Context) (StaleJobs, error) {
	var out StaleJobs
	var err error
	if out.Imports, err = s.interruptImports(ctx, sweepStart); err != nil {
		return out, err
	}
	out.Rollouts, err = s.interruptRollouts(ctx, sweepStart)
	return out, err
}

// InterruptStaleJobs marks the import jobs and rollouts of any node that
// have written nothing for JobStale as interrupted (a node killed mid-job
// never does it itself), and starts the interrupted rollouts again on this
// node. The elected runner calls it periodically; this node's live jobs
// are left alone (their heartbeat is fresh).
func (s *Service) InterruptStaleJobs(ctx context.Context) (StaleJobs, error) {
	var out StaleJobs
	var err error
	if out.Imports, err = s.interruptImports(ctx, sweepStale); err != nil {
		return out, err
	}
	if out.Rollouts, err = s.interruptRollouts(ctx, sweepStale); err != nil {
		return out, err
	}
	for _, id := range out.Rollouts {
		r, err := s.GetRollout(ctx, id)
		if err != nil {
			return out, err
		}
		if r.State != RolloutInterrupted {
			continue // abandoned while planning: plan again
		}
		if _, err := s.StartRollout(ctx, id); err != nil {
			if isDomainError(err) {
				continue // claimed meanwhile
			}
			return out, err
		}
		out.Resumed = append(out.Resumed, id)
	}
	return out, nil
}

// TakeRolloutDelivery hands out one user's delivery once: the CT-KIP URL,
// activation code and device link (ctkip), the CTF link and its password
// (ctf) or the token file and its password (file). The sealed delivery is
// deleted in the same transaction.
func (s *Service) TakeRolloutDelivery(ctx context.Context, id string, seq int) (RolloutDelivery, error) {
	var out RolloutDelivery
	actor := ActorFrom(ctx)
	err := s.change(ctx, AuditEvent{Action: "rollout.delivery.take", Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		r, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		it, err := getRolloutItem(tx, id, seq)
		if err != nil {
			return err
		}
		ev.UserID, ev.Serial = it.UserID, it.Serial
		if err := guardAdminFactor(tx, actor, ev, it.Serial); err != nil {
			return err
		}
		if !it.Waiting() || it.Taken {
			return fmt.Errorf("rollout %s item %d has no delivery waiting: each is handed out once: %w", id, seq, ErrNotFound)
		}
		secrets, err := s.openItem(r, it)
		if err != nil {
			return err
		}
		out = RolloutDelivery{Distribution: Distribution{Serial: it.Serial, Profile: r.Profile, ExpiresAt: it.ExpiresAt,
			DeviceURL: Secret(secrets.link)}, Method: r.Delivery, UserID: it.UserID, UserName: it.UserName, Email: it.Email,
			Password: Secret(secrets.code), File: secrets.file}
		if r.Delivery == DeliveryCTKIP {
			out.CTKIPURL, out.ActivationCode, out.Password = r.CTKIPURL, Secret(secrets.code), ""
			out.DeviceURL = Secret(deviceURL(r.DeviceType, r.CTKIPURL, secrets.code))
		}
		it.Code, it.Link, it.File, it.Taken = nil, nil, nil, true
		return putJSON(tx, rolloutItemKey(id, seq), it)
	})
	return out, err
}

// itemSecrets is an item's delivery, opened.
type itemSecrets struct {
	code, link string
	file       []byte
}

func (s *Service) openItem(r *Rollout, it *RolloutItem) (itemSecrets, error) {
	var out itemSecrets
	for _, f := range []struct {
		sealed Sealed
		aad    string
		to     func([]byte)
	}{
		{it.Code, codeAAD(r.ID, it.Seq), func(b []byte) { out.code = string(b) }},
		{it.Link, linkAAD(r.ID, it.Seq), func(b []byte) { out.link = string(b) }},
		{it.File, fileAAD(r.ID, it.Seq), func(b []byte) { out.file = b }},
	} {
		if len(f.sealed) == 0 {
			continue
		}
		b, err := s.sealer.Open(f.sealed, f.aad)
		if err != nil {
			return itemSecrets{}, err
		}
		f.to(b)
	}
	return out, nil
}

// ExportRollout writes one part of a completed rollout's deliveries, once
// per part, for split-channel mail merge: the links for one channel, the
// codes for another. As CSV (user_name, email, serial, then):
//
//	links, ctkip: ctkip_url, expires_at (no secret)
//	links, ctf:   link (the CTF string, bound to the password)
//	codes, ctkip: activation_code
//	codes, file and ctf: password
//
// and for file the links part is a ZIP of one .sdtid file per user with a
// manifest.csv. The claim is stored before start is called with the
// part's file name and media type for the writer; what an export hands out
// is deleted from the store before it is written. Users whose delivery was
// taken one by one are left out.
func (s *Service) ExportRollout(ctx context.Context, id, part string, start func(name, mediaType string) io.Writer) error {
	if part != ExportLinks && part != ExportCodes {
		return &ValidationError{Problems: []FieldError{{"part", "must be links or codes"}}}
	}
	var r Rollout
	err := s.change(ctx, AuditEvent{Action: "rollout.export", Target: id, Detail: "part=" + part}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		cur, err := getRollout(tx, id)
		if err != nil {
			return err
		}
		if cur.State != RolloutCompleted {
			return fmt.Errorf("rollout %s is %s; its deliveries are exported once it is completed: %w", id, cur.State, ErrInvalidState)
		}
		at := &cur.LinksExportedAt
		if part == ExportCodes {
			at = &cur.CodesExportedAt
		}
		if !at.IsZero() {
			return fmt.Errorf("the %s of rollout %s were exported at %s; each part is handed out once: %w",
				part, id, at.Format(time.RFC3339), ErrInvalidState)
		}
		*at = now
		cur.UpdatedAt = now
		r = *cur
		return putJSON(tx, rolloutKey(id), cur)
	})
	if err != nil {
		return err
	}
	zipped := part == ExportLinks && r.Delivery == DeliveryFile
	name, media := fmt.Sprintf("rollout-%s-%s.csv", id, part), "text/csv; charset=utf-8"
	if zipped {
		name, media = fmt.Sprintf("rollout-%s-files.zip", id), "application/zip"
	}
	w := start(name, media)
	var zw *zip.Writer
	if zipped {
		zw = zip.NewWriter(w)
	}
	// The manifest is written whole after the files: buffer its rows.
	var manifest bytes.Buffer
	cw := csv.NewWriter(w)
	if zipped {
		cw = csv.NewWriter(&manifest)
	}
	head := []string{"user_name", "email", "serial"}
	switch {
	case part == ExportCodes && r.Delivery == DeliveryCTKIP:
		head = append(head, "activation_code")
	case part == ExportCodes:
		head = append(head, "password")
	case r.Delivery == DeliveryCTKIP:
		head = append(head, "ctkip_url", "expires_at")
	case r.Delivery == DeliveryCTF:
		head = append(head, "link")
	default:
		head = append(head, "file")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	// What a part hands out is deleted in the transaction that reads it,
	// before it is written out: a concurrent take or export cannot hand
	// the same secret out again. The links of a ctkip rollout hold none.
	secretPart := part == ExportCodes || r.Delivery != DeliveryCTKIP
	after := 0
	for {
		var page []RolloutItem
		read := func(tx Tx) error {
			page = page[:0]
			var from []byte
			if after > 0 {
				from = rolloutItemKey(id, after)
			}
			kvs, err := tx.Scan(rolloutItemPrefix(id), from, rolloutItemWrites)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				var it RolloutItem
				if err := decodeRecord(tx, kv.Value, &it); err != nil {
					return err
				}
				page = append(page, it)
				if !secretPart || it.Status != ItemDone || it.Taken {
					continue
				}
				left := it
				if part == ExportCodes {
					left.Code = nil
				} else {
					left.Link, left.File = nil, nil
				}
				if len(left.Code) != len(it.Code) || len(left.Link) != len(it.Link) || len(left.File) != len(it.File) {
					if err := putJSON(tx, kv.Key, &left); err != nil {
						return err
					}
				}
			}
			return nil
		}
		var err error
		if secretPart {
			err = s.store.Update(ctx, read)
		} else {
			err = s.store.View(ctx, read)
		}
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Seq
		for i := range page {
			it := &page[i]
			if it.Status != ItemDone || it.Taken {
				continue
			}
			row := []string{CSVCell(it.UserName), CSVCell(it.Email), it.Serial}
			switch {
			case part == ExportLinks && r.Delivery == DeliveryCTKIP:
				// No secret: the code goes by the other channel.
				row = append(row, r.CTKIPURL, it.ExpiresAt.UTC().Format(time.RFC3339))
			case part == ExportLinks && len(it.Link) == 0 && len(it.File) == 0,
				part == ExportCodes && len(it.Code) == 0:
				continue
			default:
				sec, err := s.openItem(&r, &RolloutItem{Seq: it.Seq, Code: pick(part == ExportCodes, it.Code),
					Link: pick(part == ExportLinks, it.Link), File: pick(part == ExportLinks, it.File)})
				if err != nil {
					return err
				}
				switch {
				case part == ExportCodes:
					row = append(row, sec.code)
				case r.Delivery == DeliveryCTF:
					row = append(row, sec.link)
				default:
					fname := fmt.Sprintf("%s-%s.sdtid", zipName(it.UserName), it.Serial)
					f, err := zw.Create(fname)
					if err == nil {
						_, err = f.Write(sec.file)
					}
					clear(sec.file)
					if err != nil {
						return err
					}
					row = append(row, fname)
				}
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	if zipped {
		m, err := zw.Create("manifest.csv")
		if err == nil {
			_, err = m.Write(manifest.Bytes())
		}
		if err == nil {
			err = zw.Close()
		}
		return err
	}
	return nil
}

func pick(ok bool, b Sealed) Sealed {
	if ok {
		return b
	}
	return nil
}

// zipName keeps a user name safe as a file name inside the archive.
func zipName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-', r == '@':
			return r
		}
		return '_'
	}, s)
}

// CSVCell keeps a spreadsheet from running a value as a formula (user
// names come from directories and SCIM pushes); every CSV tokend writes uses it.
func CSVCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
