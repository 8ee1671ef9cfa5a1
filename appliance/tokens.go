package appliance

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tokend/appliance/tokenfile"
)

// GetToken returns one token.
func (s *Service) GetToken(ctx context.Context, serial string) (Token, error) {
	var out Token
	err := s.store.View(ctx, func(tx Tx) error {
		t, err := getToken(tx, serial)
		if err != nil {
			return err
		}
		toks := []Token{*t}
		if err := markAdminFactors(tx, toks); err != nil {
			return err
		}
		out = toks[0]
		return nil
	})
	return out, err
}

// ListTokens pages through tokens in serial order, filtered by serial
// prefix, assignment and kind, from the small state index.
func (s *Service) ListTokens(ctx context.Context, q TokenQuery) (TokenPage, error) {
	limit := clampLimit(q.Limit)
	v := &ValidationError{}
	for _, r := range q.Search {
		if r < '0' || r > '9' {
			v.Add("search", "a serial prefix has digits only")
			break
		}
	}
	if q.Kind != "" && q.Kind != KindSoftware && q.Kind != KindHardware {
		v.Add("kind", "must be software or hardware")
	}
	if err := v.Err(); err != nil {
		return TokenPage{}, err
	}
	var page TokenPage
	err := s.store.View(ctx, func(tx Tx) error {
		page = TokenPage{Items: []Token{}}
		match := func(kind, user []byte) bool {
			return (q.Kind == "" || string(kind) == q.Kind) && (q.Assigned == nil || *q.Assigned == (len(user) > 0))
		}
		// Without a search the total comes from the counters and the page
		// needs only the index entries up to its last token; a serial
		// prefix is counted over its (shorter) range of the index.
		counted := q.Search == ""
		if counted {
			counts, err := tokenCounts(tx)
			if err != nil {
				return err
			}
			for _, c := range counts {
				if (q.Kind == "" || c.Kind == q.Kind) && (q.Assigned == nil || *q.Assigned == c.Assigned) {
					page.Total += c.N
				}
			}
		}
		prefix := []byte(pfxTokenState + q.Search)
		var after []byte
		if q.Cursor != "" {
			after = []byte(pfxTokenState + q.Cursor)
		}
		var serials []string
		if !counted {
			after = nil // the total needs the whole range
		}
		err := walkRange(tx, prefix, after, func(kv KV) bool {
			if !match(field(kv.Value, 0), field(kv.Value, 2)) {
				return true
			}
			if !counted {
				page.Total++
			}
			if serial := string(kv.Key[len(pfxTokenState):]); serial > q.Cursor && len(serials) <= limit {
				serials = append(serials, serial)
			}
			return !counted || len(serials) <= limit
		})
		if err != nil {
			return err
		}
		if len(serials) > limit {
			serials = serials[:limit]
			page.NextCursor = serials[limit-1]
		}
		for _, serial := range serials {
			t, err := getToken(tx, serial)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, *t)
		}
		return markAdminFactors(tx, page.Items)
	})
	return page, err
}

// SetTokenEnabled enables or disables a token.
func (s *Service) SetTokenEnabled(ctx context.Context, serial string, enabled bool) (Token, error) {
	action, state := "token.disable", StateDisabled
	if enabled {
		action, state = "token.enable", StateEnabled
	}
	var out Token
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: action, Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		if enabled && t.Lost {
			return fmt.Errorf("token %s is marked lost; mark it found instead: %w", serial, ErrInvalidState)
		}
		if t.State != state {
			old := *t
			t.State, t.UpdatedAt = state, now
			if err := putToken(tx, t, &old); err != nil {
				return err
			}
		}
		out = *t
		return nil
	})
	return out, err
}

// AssignTokens assigns tokens to a user and enables them. The whole request
// fails if any serial is unknown or taken, or if the user would then hold
// more than MaxTokensPerUser hardware/software tokens (ErrLimit).
func (s *Service) AssignTokens(ctx context.Context, userID string, serials []string) (UserView, error) {
	v := &ValidationError{}
	if len(serials) == 0 {
		v.Add("serials", "at least one serial is required")
	}
	seen := map[string]bool{}
	for _, sn := range serials {
		if !tokenfile.ValidSerial(sn) {
			v.Add("serials", fmt.Sprintf("%q is not a 12-digit serial", sn))
		} else if seen[sn] {
			v.Add("serials", fmt.Sprintf("%s given twice", sn))
		}
		seen[sn] = true
	}
	if len(serials) > MaxTxWrites/4 {
		v.Add("serials", "too many serials in one request")
	}
	if err := v.Err(); err != nil {
		return UserView{}, err
	}
	var out UserView
	actor := ActorFrom(ctx)
	err := s.changeGuarded(ctx, AuditEvent{Action: "token.assign", UserID: userID, Serial: strings.Join(serials, ",")}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		// A super admin may have unassigned an admin's factor without
		// unbinding it: whoever assigns it next holds the admin's sign-in.
		if err := guardAdminFactor(tx, actor, ev, serials...); err != nil {
			return err
		}
		// Counter changes are buffered: one write for the whole request.
		return withCounts(tx, func(tx Tx) error { return s.assignInTx(tx, userID, serials, now, &out) })
	})
	return out, err
}

// assignInTx is AssignTokens inside its transaction.
func (s *Service) assignInTx(tx Tx, userID string, serials []string, now time.Time, out *UserView) error {
	u, err := getUser(tx, userID)
	if err != nil {
		return err
	}
	held, err := userTokens(tx, userID)
	if err != nil {
		return err
	}
	n := limitCount(held) // a pending replacement counts once
	for _, sn := range serials {
		t, err := getToken(tx, sn)
		if err != nil {
			return err
		}
		if t.UserID != "" {
			return fmt.Errorf("token %s is already assigned: %w", sn, ErrConflict)
		}
		if t.Lost {
			// Assigning enables: a lost token would work for whoever has it.
			return fmt.Errorf("token %s is marked lost; mark it found first: %w", sn, ErrInvalidState)
		}
		if countsTowardLimit(t) {
			n++
		}
		if n > MaxTokensPerUser {
			return fmt.Errorf("user %s would hold more than %d tokens: %w", u.UserName, MaxTokensPerUser, ErrLimit)
		}
		old := *t
		t.UserID, t.State, t.AssignedAt, t.UpdatedAt = userID, StateEnabled, now, now
		if err := putToken(tx, t, &old); err != nil {
			return err
		}
		held = append(held, *t)
	}
	*out = UserView{User: *u, Tokens: held}
	return nil
}

// UnassignToken takes a token away from a user. It is disabled, its
// activation code voided and, for a software token, its seed wiped: the old
// device still holds that seed, so the token must be provisioned afresh
// before anyone else can use it.
func (s *Service) UnassignToken(ctx context.Context, userID, serial string) error {
	actor := ActorFrom(ctx)
	return s.changeGuarded(ctx, AuditEvent{Action: "token.unassign", UserID: userID, Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := getToken(tx, serial)
		if err != nil {
			return err
		}
		if t.UserID != userID {
			return fmt.Errorf("token %s is not assigned to user %s: %w", serial, userID, ErrNotFound)
		}
		if err := guardAdminFactor(tx, actor, ev, serial); err != nil {
			return err
		}
		return unassignInTx(tx, t, now)
	})
}

// voidCode voids the token's outstanding activation code, if any. The
// record is deleted: a voided code then reads as unknown, which is what a
// device is told for every refused code anyway (the audit trail keeps the
// voiding).
func voidCode(tx Tx, t *Token) error {
	if len(t.CodeHash) == 0 {
		return nil
	}
	if err := tx.Delete(codeKey(t.CodeHash)); err != nil {
		return err
	}
	t.CodeHash = nil
	return nil
}
