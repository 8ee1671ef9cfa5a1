package appliance

import (
	"context"
	"fmt"
	"io"
	"time"

	"tokend/appliance/otp"
)

// PINChange is an admin's change to a token's PIN: set one, clear it, or
// require the user to choose a new one at the next authentication.
type PINChange struct {
	PIN        Secret
	Clear      bool
	RequireNew bool
}

// ChangePIN applies a PIN change to a token.
func (s *Service) ChangePIN(ctx context.Context, serial string, ch PINChange) (Token, error) {
	n := 0
	for _, b := range []bool{ch.PIN != "", ch.Clear, ch.RequireNew} {
		if b {
			n++
		}
	}
	if n != 1 {
		return Token{}, &ValidationError{Problems: []FieldError{{"", "give exactly one of pin, clear or require_new"}}}
	}
	cur, err := s.GetToken(ctx, serial)
	if err != nil {
		return Token{}, err
	}
	var hash string
	if ch.PIN != "" {
		mode := cur.PINMode
		if mode == "" || mode == PINModeNone {
			return Token{}, fmt.Errorf("token %s has no PIN mode: %w", serial, ErrInvalidState)
		}
		if err := s.policy.PIN.check(ch.PIN.Reveal(), mode, cur.Digits); err != nil {
			return Token{}, err
		}
		if hash, err = hashPIN(s.argon, ch.PIN.Reveal(), s.rand); err != nil {
			return Token{}, err
		}
	}
	action := map[bool]string{true: "token.pin.set", false: "token.pin.clear"}[ch.PIN != ""]
	if ch.RequireNew {
		action = "token.pin.require_new"
	}
	var out Token
	actor := ActorFrom(ctx)
	err = s.changeGuarded(ctx, AuditEvent{Action: action, Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		old := *t
		switch {
		case ch.PIN != "":
			t.PINHash, t.PINLength, t.NewPINRequired = hash, len(ch.PIN), false
		case ch.Clear:
			t.PINHash, t.PINLength = "", 0
			t.NewPINRequired = t.PINMode != "" && t.PINMode != PINModeNone
		case ch.RequireNew:
			t.PINHash, t.PINLength, t.NewPINRequired = "", 0, true
		}
		t.UpdatedAt = now
		out = *t
		return putToken(tx, t, &old)
	})
	return out, err
}

// Resync finds two consecutive tokencodes (without PIN) near the token's
// clock, stores the token's clock offset and marks the second code used.
func (s *Service) Resync(ctx context.Context, serial, first, second string) (Token, error) {
	cur, err := s.GetToken(ctx, serial)
	if err != nil {
		return Token{}, err
	}
	if !usable(&cur, s.now()) {
		return Token{}, fmt.Errorf("token %s is not enabled and provisioned: %w", serial, ErrInvalidState)
	}
	seed, err := s.sealer.Open(cur.Seed, seedAAD(serial))
	if err != nil {
		return Token{}, err
	}
	gen, err := generator(&cur, seed)
	if err != nil {
		return Token{}, err
	}
	now := s.now()
	cur.Drift = 0
	c := centre(&cur, now)
	window := int64(otp.MaxWindow)
	start := c - window
	if cur.Algorithm == AlgHOTP {
		start = c
	}
	codes, err := gen.Codes(start, int(2*window+2))
	if err != nil {
		return Token{}, err
	}
	found := int64(-1)
	for i := 0; i+1 < len(codes); i++ {
		if otp.Equal(codes[i], first) && otp.Equal(codes[i+1], second) && found < 0 {
			found = start + int64(i) + 1
		}
	}
	actor := ActorFrom(ctx)
	if found < 0 {
		// Run the refusal through change so it is audited like any other;
		// guarded too, so it is no oracle for an admin's second factor.
		return Token{}, s.changeGuarded(ctx, AuditEvent{Action: "token.resync", Serial: serial}, func(tx Tx, _ time.Time, ev *AuditEvent) error {
			if err := guardAdminFactor(tx, actor, ev, serial); err != nil {
				return err
			}
			return fmt.Errorf("the two codes are not consecutive codes of token %s: %w", serial, ErrConflict)
		})
	}
	var out Token
	err = s.changeGuarded(ctx, AuditEvent{Action: "token.resync", Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		old := *t
		if t.Algorithm == AlgHOTP {
			t.Counter = uint64(found) + 1
		} else {
			if found <= t.LastStep {
				return fmt.Errorf("code already used: %w", ErrConflict)
			}
			t.Drift = found - now.Unix()/int64(t.Interval)
			t.LastStep = found
		}
		t.UpdatedAt = now
		out = *t
		return putToken(tx, t, &old)
	})
	return out, err
}

// UnlockUser clears a user's failure counter and lockout.
func (s *Service) UnlockUser(ctx context.Context, userID string) (User, error) {
	var out User
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: "user.unlock", UserID: userID}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		u, err := getUser(tx, userID)
		if err != nil {
			return err
		}
		// The lockout is what stops online guessing of the admin's factor.
		if err := guardUserAdminFactor(tx, actor, ev, userID); err != nil {
			return err
		}
		old := *u
		u.Failures, u.LockedUntil, u.UpdatedAt = 0, time.Time{}, now
		out = *u
		return putUser(tx, u, &old)
	})
	return out, err
}

// Emergency access kinds.
const (
	EmergencyFixed   = "fixed"
	EmergencyOneTime = "onetime"
)

const emergencyHashDomain = "emergency-code"

type emergencyCode struct {
	Hash []byte `json:"hash"`
	Used bool   `json:"used,omitempty"`
}

type emergencyAccess struct {
	Kind      string          `json:"kind"`
	Codes     []emergencyCode `json:"codes"`
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// EmergencyAccess is issued emergency access, with its codes shown once.
type EmergencyAccess struct {
	Kind      string
	Codes     []Secret
	ExpiresAt time.Time
}

// emergencyDigits is the length of emergency codes: longer than tokencodes,
// since a fixed code is valid for hours.
const emergencyDigits = 10

// IssueEmergencyAccess gives a user a temporary fixed code, or count one-time
// codes, valid for lifetime (capped by the policy's hard maximum). It
// replaces any earlier emergency access of the user.
func (s *Service) IssueEmergencyAccess(ctx context.Context, userID, kind string, count int, lifetime time.Duration) (EmergencyAccess, error) {
	out, rec, err := s.newEmergency(kind, count, lifetime) // lifecycle.go: shared with MarkLost
	if err != nil {
		return EmergencyAccess{}, err
	}
	actor := ActorFrom(ctx)
	err = s.changeGuarded(ctx, AuditEvent{Action: "user.emergency_access.issue", UserID: userID, Detail: kind}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		if _, err := getUser(tx, userID); err != nil {
			return err
		}
		// An emergency code stands in for the user's tokens.
		if err := guardUserAdminFactor(tx, actor, ev, userID); err != nil {
			return err
		}
		rec.IssuedAt, rec.ExpiresAt = now, now.Add(lifetime)
		out.ExpiresAt = rec.ExpiresAt
		return putJSON(tx, emergencyKey(userID), rec)
	})
	if err != nil {
		return EmergencyAccess{}, err
	}
	return out, nil
}

// RevokeEmergencyAccess removes a user's emergency access.
func (s *Service) RevokeEmergencyAccess(ctx context.Context, userID string) error {
	actor := ActorFrom(ctx)
	return s.changeGuarded(ctx, AuditEvent{Action: "user.emergency_access.revoke", UserID: userID}, func(tx Tx, _ time.Time, ev *AuditEvent) error {
		if err := guardUserAdminFactor(tx, actor, ev, userID); err != nil {
			return err
		}
		ok, err := exists(tx, emergencyKey(userID))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %s has no emergency access: %w", userID, ErrNotFound)
		}
		return tx.Delete(emergencyKey(userID))
	})
}

// randomDigits draws n uniformly distributed decimal digits.
func randomDigits(r io.Reader, n int) (string, error) {
	b := make([]byte, n)
	var buf [1]byte
	for i := 0; i < n; {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", fmt.Errorf("random digits: %w", err)
		}
		if buf[0] < 250 { // 250 = 25·10: reject the biased tail
			b[i] = '0' + buf[0]%10
			i++
		}
	}
	return string(b), nil
}
