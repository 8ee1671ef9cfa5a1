package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tokend/appliance/tokenfile"
)

// Token lifecycle: replace, lost / found, extend, delete. Every action is
// one transaction with its audit record, so the admin API, the console and
// automation share the same rules.
//
// A replacement never locks the user out: the new token is assigned next to
// the old one, and the old one keeps working until the new one first
// authenticates (retired in that same transaction), the grace period ends
// (it stops authenticating at once — usable — and SweepReplacements retires
// it), or an admin completes the replacement. Retiring unassigns and
// disables the old token (unassignInTx). While pending, the pair counts as
// one token against MaxTokensPerUser.

// DefaultReplacementGrace is how long a replaced token keeps working when
// the Config sets no grace period.
const DefaultReplacementGrace = 14 * 24 * time.Hour

// DefaultMaxTokenLifetime bounds a software token's extended expiry when
// its profile sets no max_lifetime (or it has no profile).
const DefaultMaxTokenLifetime = DefaultTokenLifetime

// maxProfileLifetime bounds a profile's max_lifetime.
const maxProfileLifetime = 20 * 365 * 24 * time.Hour

// pfxReplacing indexes pending replacements by the old token's serial; the
// value is the end of the grace period (RFC 3339), so the sweep reads no
// token record that is not due.
const pfxReplacing = "rp/"

func replacingKey(serial string) []byte { return []byte(pfxReplacing + serial) }

// ReplaceRequest names the new token of a replacement and, optionally, the
// profile to distribute it by (and that method's inputs).
type ReplaceRequest struct {
	Serial   string
	Profile  string
	Password Secret
	DeviceID string
}

// Replacement is a started replacement: both tokens as stored, and the new
// token's distribution when a profile was given (one of the two is set,
// by the profile's delivery method).
type Replacement struct {
	Old, New     Token
	Distribution *Distribution
	SeedDelivery *SeedDelivery
}

// limitCount counts a user's tokens against MaxTokensPerUser. A pending
// replacement whose two tokens are both held counts once: the user is
// moving from one to the other, not gaining one.
func limitCount(held []Token) int {
	by := make(map[string]*Token, len(held))
	for i := range held {
		by[held[i].Serial] = &held[i]
	}
	n := 0
	for i := range held {
		t := &held[i]
		if !countsTowardLimit(t) {
			continue
		}
		if o, ok := by[t.Replaces]; ok && t.Replaces != "" && o.ReplacedBy == t.Serial && countsTowardLimit(o) {
			continue
		}
		n++
	}
	return n
}

// HeldTowardLimit is how many of a user's tokens count against
// MaxTokensPerUser, a pending replacement once (for displays; the Service
// checks the limit itself).
func HeldTowardLimit(held []Token) int { return limitCount(held) }

// graceEnded reports whether t is a replaced token whose grace period is
// over: it no longer authenticates, even before the sweep retires it.
func graceEnded(t *Token, now time.Time) bool {
	return t.ReplacedBy != "" && !t.ReplaceUntil.IsZero() && !now.Before(t.ReplaceUntil)
}

// unlinkReplacement ends t's part in a pending replacement: t's links are
// cleared (the caller writes t) and the partner's link back to t is cleared
// and written, with the index entry.
func unlinkReplacement(tx Tx, t *Token) error {
	partner := t.ReplacedBy
	if partner == "" {
		partner = t.Replaces
	}
	if partner == "" {
		return nil
	}
	if t.ReplacedBy != "" {
		if err := tx.Delete(replacingKey(t.Serial)); err != nil {
			return err
		}
	}
	t.ReplacedBy, t.Replaces, t.ReplaceUntil = "", "", time.Time{}
	p, err := getToken(tx, partner)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if p.Replaces != t.Serial && p.ReplacedBy != t.Serial {
		return nil
	}
	old := *p
	if p.ReplacedBy == t.Serial {
		if err := tx.Delete(replacingKey(p.Serial)); err != nil {
			return err
		}
	}
	p.ReplacedBy, p.Replaces, p.ReplaceUntil = "", "", time.Time{}
	return putToken(tx, p, &old)
}

// ReplaceToken starts replacing the assigned token oldSerial with the
// unassigned token req.Serial: the new token is assigned to the same user
// and enabled, the old one keeps working until the replacement ends. With
// a profile the new token is distributed by it at once; if that fails, the
// replacement is cancelled and the error returned.
func (s *Service) ReplaceToken(ctx context.Context, oldSerial string, req ReplaceRequest) (Replacement, error) {
	v := &ValidationError{}
	if !tokenfile.ValidSerial(req.Serial) {
		v.Add("serial", "must be 12 digits")
	} else if req.Serial == oldSerial {
		v.Add("serial", "a token cannot replace itself")
	}
	// Checked here too, not only by DeliverSeed: a replacement refused
	// there is committed first and then cancelled.
	validateSeedProtection(req.Password, req.DeviceID, v)
	if err := v.Err(); err != nil {
		return Replacement{}, err
	}
	var (
		out    Replacement
		method string
	)
	actor := ActorFrom(ctx)
	ev := AuditEvent{Action: "token.replace", Serial: oldSerial, Target: req.Serial}
	err := s.changeGuarded(ctx, ev, func(tx Tx, now time.Time, ev *AuditEvent) error {
		old, err := getToken(tx, oldSerial)
		if err != nil {
			return err
		}
		ev.UserID = old.UserID
		if err := guardAdminFactor(tx, actor, ev, oldSerial, req.Serial); err != nil {
			return err
		}
		switch {
		case old.UserID == "":
			return fmt.Errorf("token %s is not assigned to a user: %w", oldSerial, ErrInvalidState)
		case old.ReplacedBy != "":
			return fmt.Errorf("token %s is already being replaced by %s: %w", oldSerial, old.ReplacedBy, ErrConflict)
		case old.Replaces != "":
			return fmt.Errorf("token %s is itself the pending replacement of %s; complete or cancel that first: %w",
				oldSerial, old.Replaces, ErrInvalidState)
		}
		nt, err := getToken(tx, req.Serial)
		if err != nil {
			return err
		}
		switch {
		case nt.UserID != "":
			return fmt.Errorf("token %s is already assigned: %w", req.Serial, ErrConflict)
		case nt.Lost:
			return fmt.Errorf("token %s is lost: %w", req.Serial, ErrInvalidState)
		}
		method = ""
		if req.Profile != "" {
			p, err := getProfile(tx, req.Profile)
			if err != nil {
				return err
			}
			if nt.Kind != KindSoftware {
				return fmt.Errorf("token %s is a %s token; only software tokens are distributed: %w", req.Serial, nt.Kind, ErrInvalidState)
			}
			method = p.DeliveryMethod
			if method == DeliveryCTKIP && (req.Password != "" || req.DeviceID != "") {
				// CT-KIP derives the seed on the device: a password or
				// device id would protect nothing, so it is refused.
				return &ValidationError{Problems: []FieldError{{"password", "a ctkip profile takes no password or device_id"}}}
			}
		}
		return withCounts(tx, func(tx Tx) error {
			held, err := userTokens(tx, old.UserID)
			if err != nil {
				return err
			}
			prevOld, prevNew := *old, *nt
			old.ReplacedBy, old.ReplaceUntil, old.UpdatedAt = nt.Serial, now.Add(s.grace), now
			nt.UserID, nt.State, nt.AssignedAt, nt.UpdatedAt, nt.Replaces = old.UserID, StateEnabled, now, now, old.Serial
			for i := range held {
				if held[i].Serial == old.Serial {
					held[i] = *old
				}
			}
			if limitCount(append(held, *nt)) > MaxTokensPerUser {
				return fmt.Errorf("the user would hold more than %d tokens: %w", MaxTokensPerUser, ErrLimit)
			}
			if err := putToken(tx, old, &prevOld); err != nil {
				return err
			}
			if err := putToken(tx, nt, &prevNew); err != nil {
				return err
			}
			if err := tx.Put(replacingKey(old.Serial), []byte(old.ReplaceUntil.UTC().Format(time.RFC3339Nano))); err != nil {
				return err
			}
			out = Replacement{Old: *old, New: *nt}
			return nil
		})
	})
	if err != nil || req.Profile == "" {
		return out, err
	}
	var derr error
	if method == DeliveryCTKIP {
		var d Distribution
		if d, derr = s.Distribute(ctx, req.Serial, req.Profile); derr == nil {
			out.Distribution = &d
		}
	} else {
		var d SeedDelivery
		if d, derr = s.DeliverSeed(ctx, req.Serial, SeedDeliveryRequest{Profile: req.Profile, Password: req.Password,
			DeviceID: req.DeviceID}); derr == nil {
			out.SeedDelivery = &d
		}
	}
	if derr != nil {
		// All or nothing for the caller: a replacement whose new token
		// cannot be delivered would sit assigned and useless.
		if cerr := s.endReplacement(ctx, oldSerial, false, "distribution_failed"); cerr != nil {
			return Replacement{}, errors.Join(derr, cerr)
		}
		return Replacement{}, derr
	}
	if nt, err := s.GetToken(ctx, req.Serial); err == nil {
		out.New = nt
	}
	return out, nil
}

// CompleteReplacement ends the pending replacement of oldSerial now: the
// old token is unassigned and disabled, the new one stays.
func (s *Service) CompleteReplacement(ctx context.Context, oldSerial string) error {
	return s.endReplacement(ctx, oldSerial, true, "admin")
}

// CancelReplacement abandons the pending replacement of oldSerial: the new
// token is unassigned (and disabled, its seed wiped), the old one stays.
func (s *Service) CancelReplacement(ctx context.Context, oldSerial string) error {
	return s.endReplacement(ctx, oldSerial, false, "admin")
}

func (s *Service) endReplacement(ctx context.Context, oldSerial string, complete bool, why string) error {
	action := "token.replace.cancel"
	if complete {
		action = "token.replace.complete"
	}
	actor := ActorFrom(ctx)
	return s.changeGuarded(ctx, AuditEvent{Action: action, Serial: oldSerial, Detail: why}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		old, err := getToken(tx, oldSerial)
		if err != nil {
			return err
		}
		ev.UserID, ev.Target = old.UserID, old.ReplacedBy
		if old.ReplacedBy == "" {
			return fmt.Errorf("token %s has no pending replacement: %w", oldSerial, ErrNotFound)
		}
		if err := guardAdminFactor(tx, actor, ev, oldSerial, old.ReplacedBy); err != nil {
			return err
		}
		return withCounts(tx, func(tx Tx) error {
			if complete {
				return unassignInTx(tx, old, now)
			}
			nt, err := getToken(tx, old.ReplacedBy)
			if err != nil {
				return err
			}
			return unassignInTx(tx, nt, now)
		})
	})
}

// retireReplacedInTx is the verification hook: tok, the new token of a
// pending replacement, has just authenticated, so its old token is retired
// in the same transaction. tok's link is cleared in memory; the caller
// writes tok. It returns the old token's serial ("" when none was retired).
func retireReplacedInTx(tx Tx, tok *Token, now time.Time) (string, error) {
	oldSerial := tok.Replaces
	tok.Replaces = ""
	old, err := getToken(tx, oldSerial)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	if old.ReplacedBy != tok.Serial {
		return "", nil
	}
	return oldSerial, unassignInTx(tx, old, now)
}

// sweepChunk is how many replacements one sweep transaction retires: each
// costs about a dozen writes (two tokens, indexes, counters, audit).
const sweepChunk = 6

// SweepReplacements retires every replaced token whose grace period has
// ended (main runs it periodically; verification already refuses such a
// token). It returns how many it retired.
func (s *Service) SweepReplacements(ctx context.Context) (int, error) {
	total := 0
	for {
		now := s.now().UTC()
		var due []string
		err := s.store.View(ctx, func(tx Tx) error {
			due = due[:0]
			var after []byte
			for len(due) < sweepChunk {
				kvs, err := tx.Scan([]byte(pfxReplacing), after, 256)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					until, err := time.Parse(time.RFC3339Nano, string(kv.Value))
					if err == nil && now.Before(until) {
						continue
					}
					if due = append(due, string(kv.Key[len(pfxReplacing):])); len(due) == sweepChunk {
						break
					}
				}
				if len(kvs) < 256 {
					break
				}
				after = kvs[len(kvs)-1].Key
			}
			return nil
		})
		if err != nil || len(due) == 0 {
			return total, err
		}
		n := 0
		err = s.store.Update(ctx, func(tx Tx) error {
			n = 0
			return withCounts(tx, func(tx Tx) error {
				for _, serial := range due {
					old, err := getToken(tx, serial)
					if errors.Is(err, ErrNotFound) {
						if err := tx.Delete(replacingKey(serial)); err != nil {
							return err
						}
						continue
					} else if err != nil {
						return err
					}
					if old.ReplacedBy == "" {
						if err := tx.Delete(replacingKey(serial)); err != nil {
							return err
						}
						continue
					}
					if !graceEnded(old, now) {
						continue
					}
					ev := AuditEvent{Action: "token.replace.complete", Serial: serial, UserID: old.UserID, Target: old.ReplacedBy,
						Outcome: OutcomeSuccess, Detail: "grace_ended"}
					if err := unassignInTx(tx, old, now); err != nil {
						return err
					}
					if err := appendAudit(tx, now, Actor{ID: "system", Name: "system"}, ev); err != nil {
						return err
					}
					n++
				}
				return nil
			})
		})
		if err != nil {
			return total, err
		}
		total += n
		if len(due) < sweepChunk {
			return total, nil
		}
	}
}

// EmergencyRequest asks for emergency access together with another action
// (a token marked lost).
type EmergencyRequest struct {
	Kind     string
	Count    int
	Lifetime time.Duration
}

// newEmergency draws emergency codes (outside any transaction) and builds
// both the record to store and the codes to show once.
func (s *Service) newEmergency(kind string, count int, lifetime time.Duration) (EmergencyAccess, emergencyAccess, error) {
	v := &ValidationError{}
	switch kind {
	case EmergencyFixed:
		count = 1
	case EmergencyOneTime:
		if count < 1 || count > 20 {
			v.Add("count", "must be 1 to 20")
		}
	default:
		v.Add("kind", "must be fixed or onetime")
	}
	if lifetime <= 0 || lifetime > s.policy.MaxEmergency {
		v.Add("lifetime", fmt.Sprintf("must be positive and at most %s", s.policy.MaxEmergency))
	}
	if err := v.Err(); err != nil {
		return EmergencyAccess{}, emergencyAccess{}, err
	}
	out := EmergencyAccess{Kind: kind}
	rec := emergencyAccess{Kind: kind}
	for range count {
		code, err := randomDigits(s.rand, emergencyDigits)
		if err != nil {
			return EmergencyAccess{}, emergencyAccess{}, err
		}
		out.Codes = append(out.Codes, Secret(code))
		rec.Codes = append(rec.Codes, emergencyCode{Hash: s.sealer.Hash(emergencyHashDomain, []byte(code))})
	}
	return out, rec, nil
}

// LostResult is a token marked lost, with the emergency access granted in
// the same step (nil when none was asked for).
type LostResult struct {
	Token     Token
	Emergency *EmergencyAccess
}

// MarkLost marks a token lost: it stops authenticating at once (it is
// disabled and its outstanding activation code voided) and, if em is set,
// its user gets emergency access in the same transaction.
func (s *Service) MarkLost(ctx context.Context, serial string, em *EmergencyRequest) (LostResult, error) {
	var (
		out LostResult
		ea  EmergencyAccess
		rec emergencyAccess
	)
	if em != nil {
		var err error
		if ea, rec, err = s.newEmergency(em.Kind, em.Count, em.Lifetime); err != nil {
			return LostResult{}, err
		}
	}
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: "token.lost", Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		if t.Lost {
			return fmt.Errorf("token %s is already marked lost: %w", serial, ErrConflict)
		}
		if em != nil && t.UserID == "" {
			return &ValidationError{Problems: []FieldError{{"emergency_access", "the token is not assigned to a user"}}}
		}
		if em != nil {
			if err := guardUserAdminFactor(tx, actor, ev, t.UserID); err != nil {
				return err
			}
		}
		old := *t
		if err := voidCode(tx, t); err != nil {
			return err
		}
		t.Lost, t.LostAt, t.LostFrom, t.State, t.UpdatedAt = true, now, t.State, StateDisabled, now
		if err := putToken(tx, t, &old); err != nil {
			return err
		}
		out = LostResult{Token: *t}
		if em == nil {
			return nil
		}
		r := rec
		r.IssuedAt, r.ExpiresAt = now, now.Add(em.Lifetime)
		if err := putJSON(tx, emergencyKey(t.UserID), r); err != nil {
			return err
		}
		e := ea
		e.ExpiresAt = r.ExpiresAt
		out.Emergency = &e
		return appendAudit(tx, now, actor, AuditEvent{Action: "user.emergency_access.issue", UserID: t.UserID,
			Serial: serial, Detail: em.Kind, Outcome: OutcomeSuccess})
	})
	if err != nil {
		return LostResult{}, err
	}
	return out, nil
}

// MarkFound undoes MarkLost: the token gets back the state it had. Emergency
// access granted with the loss stays until it expires or is revoked.
func (s *Service) MarkFound(ctx context.Context, serial string) (Token, error) {
	var out Token
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: "token.found", Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		if !t.Lost {
			return fmt.Errorf("token %s is not marked lost: %w", serial, ErrInvalidState)
		}
		old := *t
		state := t.LostFrom
		if state == "" || t.UserID == "" {
			// An unassigned token is disabled whatever it was.
			state = StateDisabled
		}
		t.Lost, t.LostAt, t.LostFrom, t.State, t.UpdatedAt = false, time.Time{}, "", state, now
		out = *t
		return putToken(tx, t, &old)
	})
	return out, err
}

// ExtendToken moves a software token's expiry to expiresAt: later than
// now and than its current expiry, and at most its profile's max_lifetime
// (DefaultMaxTokenLifetime) after it was provisioned (or assigned, or
// created). A hardware token's expiry is the device's and cannot move.
func (s *Service) ExtendToken(ctx context.Context, serial string, expiresAt time.Time) (Token, error) {
	if expiresAt.IsZero() {
		return Token{}, &ValidationError{Problems: []FieldError{{"expires_at", "required"}}}
	}
	expiresAt = expiresAt.UTC()
	var out Token
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: "token.extend", Serial: serial, Detail: expiresAt.Format(time.RFC3339)},
		func(tx Tx, now time.Time, ev *AuditEvent) error {
			t, err := guardedToken(tx, actor, ev, serial)
			if err != nil {
				return err
			}
			if t.Kind != KindSoftware {
				return fmt.Errorf("token %s is a %s token; its expiry is the device's: %w", serial, t.Kind, ErrInvalidState)
			}
			if !expiresAt.After(now) || (!t.ExpiresAt.IsZero() && !expiresAt.After(t.ExpiresAt)) {
				return &ValidationError{Problems: []FieldError{{"expires_at", "must be later than now and than the token's current expiry"}}}
			}
			max := DefaultMaxTokenLifetime
			if t.Profile != "" {
				p, err := getProfile(tx, t.Profile)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if p != nil && p.MaxLifetime > 0 {
					max = p.MaxLifetime
				}
			}
			base := t.ProvisionedAt
			for _, b := range []time.Time{t.AssignedAt, t.CreatedAt, now} {
				if base.IsZero() {
					base = b
				}
			}
			if limit := base.Add(max); expiresAt.After(limit) {
				return &ValidationError{Problems: []FieldError{{"expires_at", fmt.Sprintf(
					"beyond the maximum lifetime of %s (profile %q): at most %s", max, t.Profile, limit.UTC().Format(time.RFC3339))}}}
			}
			old := *t
			t.ExpiresAt, t.UpdatedAt = expiresAt, now
			out = *t
			return putToken(tx, t, &old)
		})
	return out, err
}

// DeleteToken removes an unassigned token from the inventory. The audit
// record (serial, actor, time) is its tombstone.
func (s *Service) DeleteToken(ctx context.Context, serial string) error {
	actor := ActorFrom(ctx)
	return s.changeGuarded(ctx, AuditEvent{Action: "token.delete", Serial: serial}, func(tx Tx, _ time.Time, ev *AuditEvent) error {
		t, err := getToken(tx, serial)
		if err != nil {
			return err
		}
		if err := guardAdminFactor(tx, actor, ev, serial); err != nil {
			return err
		}
		if t.UserID != "" {
			return fmt.Errorf("token %s is assigned; unassign it first: %w", serial, ErrInvalidState)
		}
		// An admin account bound to a deleted serial could never sign in.
		factors, err := adminFactors(tx)
		if err != nil {
			return err
		}
		if len(factors[serial]) > 0 {
			return fmt.Errorf("token %s is an administrator's second factor; unbind it first: %w", serial, ErrInvalidState)
		}
		ev.Detail = t.Kind
		return withCounts(tx, func(tx Tx) error {
			if err := voidCode(tx, t); err != nil {
				return err
			}
			if err := count(tx, keyTokenCounts, tokenCountOf(t), ""); err != nil {
				return err
			}
			for _, k := range [][]byte{tokenKey(serial), tokenStateKey(serial), replacingKey(serial)} {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
