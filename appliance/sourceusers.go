package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SourceUser is a user pushed by an identity source (SCIM) together with
// the attributes the source sent, kept so that GET returns what was PUT.
// RemovedAt is set when the source deleted the user (SCIM DELETE): the user
// is inactive, keeps its tokens, and is purged once the source's grace
// period has passed. A user that is merely disabled (active=false) has no
// RemovedAt and is never purged.
type SourceUser struct {
	User
	Attributes map[string]any `json:"attributes,omitempty"`
	RemovedAt  time.Time      `json:"removed_at,omitzero"`
}

// sourceUserRecord is stored under sx/<source>/<user id>.
type sourceUserRecord struct {
	Attributes map[string]any `json:"attributes,omitempty"`
	RemovedAt  time.Time      `json:"removed_at,omitzero"`
}

// maxSourceAttrBytes bounds the stored attribute map of one user.
const maxSourceAttrBytes = 64 << 10

const pfxSourceUser = "sx/"

func sourceUserPrefix(source string) []byte { return []byte(pfxSourceUser + source + "/") }
func sourceUserKey(source, id string) []byte {
	return []byte(pfxSourceUser + source + "/" + id)
}

func decodeSourceUserRecord(b []byte) (*sourceUserRecord, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // numbers round-trip exactly as the source sent them
	var r sourceUserRecord
	if err := d.Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

func getSourceUserRecord(tx Tx, source, id string) (*sourceUserRecord, error) {
	b, err := tx.Get(sourceUserKey(source, id))
	if errors.Is(err, ErrNotFound) {
		return &sourceUserRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := decodeSourceUserRecord(b)
	if err != nil {
		return nil, fmt.Errorf("decode source user %q: %w", id, err)
	}
	return r, nil
}

func putSourceUserRecord(tx Tx, source, id string, r *sourceUserRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode source user %q: %w", id, err)
	}
	if len(b) > maxSourceAttrBytes {
		v := &ValidationError{}
		v.Add("attributes", fmt.Sprintf("at most %d bytes per user", maxSourceAttrBytes))
		return v
	}
	return tx.Put(sourceUserKey(source, id), b)
}

// getSourceUser loads a user that must belong to source.
func getSourceUser(tx Tx, source, id string) (*User, *sourceUserRecord, error) {
	u, err := getUser(tx, id)
	if err != nil {
		return nil, nil, err
	}
	if u.Source != source {
		return nil, nil, fmt.Errorf("user %q in source %q: %w", id, source, ErrNotFound)
	}
	r, err := getSourceUserRecord(tx, source, id)
	if err != nil {
		return nil, nil, err
	}
	return u, r, nil
}

func requireSource(tx Tx, id string) error {
	_, err := getSource(tx, id)
	return err
}

// CreateSourceUser adds a user pushed by a source. The login is unique
// case-insensitively across the appliance (ErrExists); the external id is
// not (RFC 7643 §3.1). A user with this login that the same source deleted
// earlier (still in its grace period) is revived instead: same id, same
// tokens, the new fields, active again. The external id never revives: it
// names no one, and reviving by it could hand one user's tokens to another.
func (s *Service) CreateSourceUser(ctx context.Context, sourceID string, in SourceUser) (SourceUser, error) {
	in.UserName = NormalizeName(in.UserName)
	if err := validateUserFields(in.UserName, in.DisplayName, in.Email).Err(); err != nil {
		return SourceUser{}, err
	}
	id, err := s.newID()
	if err != nil {
		return SourceUser{}, err
	}
	var out SourceUser
	err = s.change(ctx, AuditEvent{Action: "scim.user.create", Target: in.UserName}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		if err := requireSource(tx, sourceID); err != nil {
			return err
		}
		revive, err := removedNamesake(tx, sourceID, in.UserName)
		if err != nil {
			return err
		}
		if revive != nil {
			ev.Action = "scim.user.revive"
			u := in.User
			u.ID, u.Source, u.CreatedAt, u.UpdatedAt = revive.ID, sourceID, revive.CreatedAt, now
			u.Failures, u.LockedUntil = revive.Failures, revive.LockedUntil
			u.DeactivatedAt = time.Time{}
			if !u.Active {
				u.DeactivatedAt = now
			}
			ev.UserID = u.ID
			if err := putUser(tx, &u, revive); err != nil {
				return err
			}
			rec := sourceUserRecord{Attributes: in.Attributes}
			if err := putSourceUserRecord(tx, sourceID, u.ID, &rec); err != nil {
				return err
			}
			out = SourceUser{User: u, Attributes: in.Attributes}
			return nil
		}
		u := in.User
		u.ID, u.Source, u.CreatedAt, u.UpdatedAt = id, sourceID, now, now
		u.Failures, u.LockedUntil, u.DeactivatedAt = 0, time.Time{}, time.Time{}
		if !u.Active {
			u.DeactivatedAt = now
		}
		ev.UserID = id
		if err := putUser(tx, &u, nil); err != nil {
			return err
		}
		rec := sourceUserRecord{Attributes: in.Attributes}
		if err := putSourceUserRecord(tx, sourceID, id, &rec); err != nil {
			return err
		}
		out = SourceUser{User: u, Attributes: in.Attributes}
		return nil
	})
	return out, err
}

// removedNamesake returns the user of source that holds the login if it was
// removed by the source; nil if the login is free. It fails with ErrExists
// when the login is held by a live user or another source.
func removedNamesake(tx Tx, source, userName string) (*User, error) {
	var found *User
	check := func(id string) error {
		u, r, err := getSourceUser(tx, source, id)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("user name %q: %w", userName, ErrExists)
		}
		if err != nil {
			return err
		}
		if r.RemovedAt.IsZero() || (found != nil && found.ID != u.ID) {
			return fmt.Errorf("user %q: %w", userName, ErrExists)
		}
		found = u
		return nil
	}
	v, err := tx.Get(loginKey(userName))
	switch {
	case err == nil:
		if err := check(parseLoginIndex(v).ID); err != nil {
			return nil, err
		}
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	return found, nil
}

// GetSourceUser returns a user of the source with its attributes (removed
// users included; RemovedAt tells them apart).
func (s *Service) GetSourceUser(ctx context.Context, sourceID, id string) (SourceUser, error) {
	var out SourceUser
	err := s.store.View(ctx, func(tx Tx) error {
		u, r, err := getSourceUser(tx, sourceID, id)
		if err != nil {
			return err
		}
		out = SourceUser{User: *u, Attributes: r.Attributes, RemovedAt: r.RemovedAt}
		return nil
	})
	return out, err
}

// FindSourceUserByName returns the source's user with this login
// (case-insensitive), or ErrNotFound.
func (s *Service) FindSourceUserByName(ctx context.Context, sourceID, userName string) (SourceUser, error) {
	return s.findSourceUser(ctx, sourceID, loginKey(userName))
}

// FindSourceUserByExternalID returns a user of the source with this
// external id (case-sensitive; a live one before a removed one, then in id
// order), or ErrNotFound. Several users may share an external id:
// FindSourceUsersByExternalID returns them all.
func (s *Service) FindSourceUserByExternalID(ctx context.Context, sourceID, externalID string) (SourceUser, error) {
	all, err := s.FindSourceUsersByExternalID(ctx, sourceID, externalID)
	if err != nil {
		return SourceUser{}, err
	}
	for _, su := range all {
		if su.RemovedAt.IsZero() {
			return su, nil
		}
	}
	if len(all) == 0 {
		return SourceUser{}, fmt.Errorf("user in source %q: %w", sourceID, ErrNotFound)
	}
	return all[0], nil
}

func (s *Service) findSourceUser(ctx context.Context, sourceID string, idx []byte) (SourceUser, error) {
	var out SourceUser
	err := s.store.View(ctx, func(tx Tx) error {
		v, err := tx.Get(idx)
		if err != nil {
			return err
		}
		id := parseLoginIndex(v).ID
		u, r, err := getSourceUser(tx, sourceID, id)
		if err != nil {
			return err
		}
		out = SourceUser{User: *u, Attributes: r.Attributes, RemovedAt: r.RemovedAt}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return SourceUser{}, fmt.Errorf("user in source %q: %w", sourceID, ErrNotFound)
	}
	return out, err
}

// ScanSourceUsers pages through the users pushed by a source, in id order,
// starting after the given user id (""= from the start). The returned cursor
// is "" at the end. Filtering is the caller's: this is the streaming scan a
// filter evaluator runs over.
func (s *Service) ScanSourceUsers(ctx context.Context, sourceID, after string, limit int) ([]SourceUser, string, error) {
	limit = clampLimit(limit)
	var out []SourceUser
	var next string
	err := s.store.View(ctx, func(tx Tx) error {
		out, next = make([]SourceUser, 0, limit), ""
		var afterKey []byte
		if after != "" {
			afterKey = sourceUserKey(sourceID, after)
		}
		kvs, err := tx.Scan(sourceUserPrefix(sourceID), afterKey, limit+1)
		if err != nil {
			return err
		}
		more := len(kvs) > limit
		if more {
			kvs = kvs[:limit]
		}
		pfx := len(sourceUserPrefix(sourceID))
		for _, kv := range kvs {
			id := string(kv.Key[pfx:])
			r, err := decodeSourceUserRecord(kv.Value)
			if err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			u, err := getUser(tx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, SourceUser{User: *u, Attributes: r.Attributes, RemovedAt: r.RemovedAt})
			if more {
				next = id
			}
		}
		return nil
	})
	return out, next, err
}

// UpdateSourceUser changes a user of the source inside one transaction: fn
// gets the stored user and may change its fields and attributes (it runs
// inside the transaction, may run more than once and must be pure). The id,
// source, creation time, lockout state and RemovedAt cannot be changed by
// fn. Setting Active false deactivates (tokens stay assigned); setting it
// true reactivates and ends a removal's grace period.
func (s *Service) UpdateSourceUser(ctx context.Context, sourceID, id string, fn func(*SourceUser) error) (SourceUser, error) {
	var out SourceUser
	err := s.change(ctx, AuditEvent{Action: "scim.user.update", UserID: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		old, rec, err := getSourceUser(tx, sourceID, id)
		if err != nil {
			return err
		}
		ev.Target = old.UserName
		su := SourceUser{User: *old, Attributes: rec.Attributes, RemovedAt: rec.RemovedAt}
		if err := fn(&su); err != nil {
			return err
		}
		u := su.User
		u.UserName = NormalizeName(u.UserName)
		if err := validateUserFields(u.UserName, u.DisplayName, u.Email).Err(); err != nil {
			return err
		}
		u.ID, u.Source, u.CreatedAt, u.UpdatedAt = old.ID, old.Source, old.CreatedAt, now
		u.Failures, u.LockedUntil = old.Failures, old.LockedUntil
		removed := rec.RemovedAt
		switch {
		case u.Active && !old.Active:
			u.DeactivatedAt, removed = time.Time{}, time.Time{}
			ev.Action = "scim.user.reactivate"
		case !u.Active && old.Active:
			u.DeactivatedAt = now
			ev.Action = "scim.user.deactivate"
		default:
			u.DeactivatedAt = old.DeactivatedAt
		}
		if err := putUser(tx, &u, old); err != nil {
			return err
		}
		nr := sourceUserRecord{Attributes: su.Attributes, RemovedAt: removed}
		if err := putSourceUserRecord(tx, sourceID, id, &nr); err != nil {
			return err
		}
		out = SourceUser{User: u, Attributes: su.Attributes, RemovedAt: removed}
		return nil
	})
	return out, err
}

// DeactivateSourceUser makes a user inactive: it cannot authenticate, and
// its tokens stay assigned. With removed (the source deleted the user, SCIM
// DELETE) the grace period starts; after it, PurgeExpiredUsers takes the
// tokens away. Deactivating an inactive user only records a removal.
func (s *Service) DeactivateSourceUser(ctx context.Context, sourceID, id string, removed bool) (SourceUser, error) {
	return s.DeactivateSourceUserIf(ctx, sourceID, id, removed, nil)
}

// DeactivateSourceUserIf is DeactivateSourceUser that first calls check
// (when not nil) with the stored user inside the same transaction and
// changes nothing if it fails: a precondition (SCIM If-Match) no
// concurrent write can slip past. check must be pure; it may run more than
// once.
func (s *Service) DeactivateSourceUserIf(ctx context.Context, sourceID, id string, removed bool, check func(SourceUser) error) (SourceUser, error) {
	action := "scim.user.deactivate"
	if removed {
		action = "scim.user.delete"
	}
	var out SourceUser
	err := s.change(ctx, AuditEvent{Action: action, UserID: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		u, rec, err := getSourceUser(tx, sourceID, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(SourceUser{User: *u, Attributes: rec.Attributes, RemovedAt: rec.RemovedAt}); err != nil {
				return err
			}
		}
		ev.Target = u.UserName
		old := *u
		if u.Active {
			u.Active, u.DeactivatedAt = false, now
		}
		if removed && rec.RemovedAt.IsZero() {
			rec.RemovedAt = now
		}
		u.UpdatedAt = now
		if err := putUser(tx, u, &old); err != nil {
			return err
		}
		if err := putSourceUserRecord(tx, sourceID, id, rec); err != nil {
			return err
		}
		out = SourceUser{User: *u, Attributes: rec.Attributes, RemovedAt: rec.RemovedAt}
		return nil
	})
	return out, err
}

// ReactivateSourceUser makes a user active again and ends a removal.
func (s *Service) ReactivateSourceUser(ctx context.Context, sourceID, id string) (SourceUser, error) {
	return s.UpdateSourceUser(ctx, sourceID, id, func(su *SourceUser) error {
		su.Active = true
		return nil
	})
}

// PurgeExpiredUsers purges the users the source removed (SCIM DELETE) more
// than the source's grace period before now: their tokens are unassigned
// (disabled, codes voided, software seeds wiped, as UnassignToken does),
// their records deleted and their group memberships dropped. Users that are
// only disabled are never purged. It works in chunked transactions, each
// re-checking its users, and returns how many users it purged.
func (s *Service) PurgeExpiredUsers(ctx context.Context, sourceID string, now time.Time) (int, error) {
	src, err := s.GetIdentitySource(ctx, sourceID)
	if err != nil {
		return 0, err
	}
	grace := src.GracePeriod
	expired := func(u *User, r *sourceUserRecord) bool {
		return !u.Active && !r.RemovedAt.IsZero() && !now.Before(r.RemovedAt.Add(grace))
	}
	var ids []string
	after := ""
	for {
		page, next, err := s.ScanSourceUsers(ctx, sourceID, after, 1000)
		if err != nil {
			return 0, err
		}
		for i := range page {
			su := &page[i]
			if expired(&su.User, &sourceUserRecord{RemovedAt: su.RemovedAt}) {
				ids = append(ids, su.ID)
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	return s.purgeUsers(ctx, sourceID, ids, expired, now)
}

// PurgeSourceUsers purges the given users of the source now (for a sync
// whose plan says they have been missing for longer than the grace period).
// Active users are skipped: a purge never takes tokens from a user who may
// still use them.
func (s *Service) PurgeSourceUsers(ctx context.Context, sourceID string, ids []string) (int, error) {
	return s.purgeUsers(ctx, sourceID, ids, func(u *User, _ *sourceUserRecord) bool { return !u.Active }, time.Time{})
}

// purgeBudget is the write budget of one purge transaction, under
// MaxTxWrites with room to spare.
const purgeBudget = 90

// purgeUsers deletes the users for which ok holds (checked again inside
// each transaction), unassigning their tokens first.
func (s *Service) purgeUsers(ctx context.Context, sourceID string, ids []string, ok func(*User, *sourceUserRecord) bool, _ time.Time) (int, error) {
	purged := 0
	var gone []string
	for len(ids) > 0 {
		var done int
		var deleted []string
		now := s.now().UTC()
		actor := ActorFrom(ctx)
		// Counter changes are buffered: one write per transaction.
		err := s.store.Update(ctx, func(tx Tx) error {
			return withCounts(tx, func(tx Tx) error {
				done, deleted = 0, nil
				used := 0
				for _, id := range ids {
					u, rec, err := getSourceUser(tx, sourceID, id)
					if errors.Is(err, ErrNotFound) {
						done++
						continue
					}
					if err != nil {
						return err
					}
					if !ok(u, rec) {
						done++
						continue
					}
					toks, err := userTokens(tx, id)
					if err != nil {
						return err
					}
					// Per token: record, state index, user index, voided code.
					// Per user: 4 indexes, record, attributes, emergency
					// access, the audit record with its indexes. Counter
					// changes are one write per transaction (withCounts).
					cost := 7 + AuditWrites + 4*len(toks)
					if used+cost > purgeBudget {
						if used > 0 {
							break
						}
						// One user holding very many (cloud) tokens: unassign
						// a slice of them now, the rest in the next round.
						n := (purgeBudget - AuditWrites) / 4
						for i := 0; i < n && i < len(toks); i++ {
							if err := unassignInTx(tx, &toks[i], now); err != nil {
								return err
							}
						}
						return appendAudit(tx, now, actor, AuditEvent{Action: "source.user.purge", UserID: id, Target: u.UserName,
							Outcome: OutcomeSuccess, Detail: fmt.Sprintf("unassigned %d tokens, more to go", min(n, len(toks)))})
					}
					used += cost
					for i := range toks {
						if err := unassignInTx(tx, &toks[i], now); err != nil {
							return err
						}
					}
					if err := deleteUserIndexes(tx, u); err != nil {
						return err
					}
					for _, k := range [][]byte{userKey(id), sourceUserKey(sourceID, id), emergencyKey(id)} {
						if err := tx.Delete(k); err != nil {
							return err
						}
					}
					if err := appendAudit(tx, now, actor, AuditEvent{Action: "source.user.purge", UserID: id, Target: u.UserName,
						Outcome: OutcomeSuccess, Detail: fmt.Sprintf("unassigned %d tokens", len(toks))}); err != nil {
						return err
					}
					deleted = append(deleted, id)
					done++
				}
				return nil
			})
		})
		if err != nil {
			return purged, err
		}
		purged += len(deleted)
		gone = append(gone, deleted...)
		ids = ids[done:]
	}
	if len(gone) > 0 {
		if err := s.dropGroupMembers(ctx, sourceID, gone); err != nil {
			return purged, err
		}
	}
	return purged, nil
}

// unassignInTx takes a token away from its user as UnassignToken does.
func unassignInTx(tx Tx, t *Token, now time.Time) error {
	old := *t
	if err := voidCode(tx, t); err != nil {
		return err
	}
	// Either token of a pending replacement leaving ends it (lifecycle.go).
	if err := unlinkReplacement(tx, t); err != nil {
		return err
	}
	t.UserID, t.State, t.UpdatedAt, t.AssignedAt = "", StateDisabled, now, time.Time{}
	t.Profile, t.PINMode = "", ""
	t.PINHash, t.PINLength, t.NewPINRequired, t.Drift = "", 0, false, 0
	if t.Kind == KindSoftware && t.Provisioned {
		t.Seed, t.Provisioned, t.ProvisionedAt = nil, false, time.Time{}
	}
	return putToken(tx, t, &old)
}

// sourceUserIDs lists every user whose Source is the source (pushed or
// pulled), and how many of them are active.
func (s *Service) sourceUserIDs(ctx context.Context, sourceID string) ([]string, int, error) {
	var ids []string
	active := 0
	err := s.store.View(ctx, func(tx Tx) error {
		ids, active = nil, 0
		var after []byte
		for {
			kvs, err := tx.Scan([]byte(pfxUserLogin), after, 1000)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				li := parseLoginIndex(kv.Value)
				if li.Source != sourceID {
					continue
				}
				ids = append(ids, li.ID)
				if li.Active {
					active++
				}
			}
			if len(kvs) < 1000 {
				return nil
			}
			after = kvs[len(kvs)-1].Key
		}
	})
	return ids, active, err
}
