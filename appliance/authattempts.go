package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AuthAttempt is an authentication attempt of the RSA SecurID
// Authentication API between its calls (initialize → verify …). It lives in
// the store, not in a node's memory, so another tokend node can continue
// it; it is bound to the agent that opened it and expires with the
// challenge sessions (auth.session_ttl).
type AuthAttempt struct {
	ID       string `json:"id"`
	AgentID  string `json:"agent_id"`
	UserName string `json:"user_name"`
	// Session is the Service's challenge session, if a challenge is open.
	Session string `json:"session,omitempty"`
	// Expect is the method the next verify must answer (door vocabulary).
	Expect string `json:"expect"`
	// MessageID is the id of the last answer; a follow-up names it.
	MessageID string    `json:"message_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

const pfxAuthAttempt = "aat/"

func authAttemptKey(id string) []byte { return []byte(pfxAuthAttempt + id) }

// maxAttemptID bounds attempt ids a caller may send.
const maxAttemptID = 64

// SaveAuthAttempt stores an attempt, giving it an id if it has none and a
// fresh expiry.
func (s *Service) SaveAuthAttempt(ctx context.Context, a *AuthAttempt) error {
	if a.ID == "" {
		id, err := s.newID()
		if err != nil {
			return err
		}
		a.ID = id
	}
	a.ExpiresAt = s.now().UTC().Add(s.policy.SessionTTL)
	rec := *a
	return s.store.Update(ctx, func(tx Tx) error { return putJSON(tx, authAttemptKey(rec.ID), rec) })
}

// TakeAuthAttempt removes and returns an attempt of the given agent, so one
// attempt step is answered once however many nodes or requests race for
// it. An unknown, expired or other agent's attempt is ErrNotFound (another
// agent's is left alone).
func (s *Service) TakeAuthAttempt(ctx context.Context, agentID, id string) (AuthAttempt, error) {
	if id == "" || len(id) > maxAttemptID {
		return AuthAttempt{}, fmt.Errorf("auth attempt: %w", ErrNotFound)
	}
	now := s.now().UTC()
	var a AuthAttempt
	var expired bool
	err := s.store.Update(ctx, func(tx Tx) error {
		a, expired = AuthAttempt{}, false
		if err := getJSON(tx, authAttemptKey(id), &a); err != nil {
			return err
		}
		if a.AgentID != agentID {
			return ErrNotFound
		}
		// An expired attempt is deleted too, and reported absent.
		expired = !now.Before(a.ExpiresAt)
		return tx.Delete(authAttemptKey(id))
	})
	if err == nil && expired {
		err = ErrNotFound
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return AuthAttempt{}, fmt.Errorf("auth attempt: %w", ErrNotFound)
		}
		return AuthAttempt{}, err
	}
	return a, nil
}

// PurgeExpiredAuthState deletes expired REST attempts, challenge sessions
// and CT-KIP sessions that nobody came back for. It returns how many it deleted.
func (s *Service) PurgeExpiredAuthState(ctx context.Context) (int, error) {
	now := s.now().UTC()
	total := 0
	for _, pfx := range []string{pfxAuthAttempt, pfxAuthSession, pfxCTKIPSession} {
		var after []byte
		for {
			var batch [][]byte
			var last []byte
			err := s.store.View(ctx, func(tx Tx) error {
				batch, last = nil, nil
				kvs, err := tx.Scan([]byte(pfx), after, 500)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					last = kv.Key
					var rec struct {
						ExpiresAt time.Time `json:"expires_at"`
					}
					if err := decodeRecord(tx, kv.Value, &rec); err != nil || !now.Before(rec.ExpiresAt) {
						batch = append(batch, kv.Key)
					}
				}
				return nil
			})
			if err != nil {
				return total, err
			}
			for len(batch) > 0 {
				n := min(len(batch), MaxTxWrites)
				chunk := batch[:n]
				if err := s.store.Update(ctx, func(tx Tx) error {
					for _, k := range chunk {
						if err := tx.Delete(k); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					return total, err
				}
				total += n
				batch = batch[n:]
			}
			if last == nil {
				break
			}
			after = last
		}
	}
	return total, nil
}
