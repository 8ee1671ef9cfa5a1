package appliance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CTKIPSession is a CT-KIP exchange between its two POSTs. It lives in the
// store so that a device whose second POST reaches another node (behind a
// load balancer) finishes there. Code and Nonce are secrets: the record
// holds them sealed, bound to the session id.
type CTKIPSession struct {
	Code      string    // the activation code the ClientHello carried
	Serial    string    // the token's serial, for auditing a failed ClientNonce
	Nonce     []byte    // the server nonce R_S
	Created   time.Time // when the ClientHello arrived
	ExpiresAt time.Time
}

const (
	pfxCTKIPSession = "cks/"
	ctkipSessionDom = "ctkip-session"
	// maxCTKIPSessionID bounds session ids a caller may send (RSA's shape
	// is 111 characters).
	maxCTKIPSessionID = 256
)

// ctkipSessionRecord is what the store holds: only the expiry in clear
// (for the purge), the rest sealed.
type ctkipSessionRecord struct {
	ExpiresAt time.Time `json:"expires_at"`
	Sealed    []byte    `json:"sealed"`
}

type ctkipSessionSecret struct {
	Code    string    `json:"code"`
	Serial  string    `json:"serial"`
	Nonce   []byte    `json:"nonce"`
	Created time.Time `json:"created"`
}

// ctkipSessionKey names a session by a keyed hash of its id: the id is the
// device's bearer secret for the second POST and never reaches the store.
func (s *Service) ctkipSessionKey(id string) (key []byte, hash string) {
	h := hex.EncodeToString(s.sealer.Hash(ctkipSessionDom, []byte(id)))
	return []byte(pfxCTKIPSession + h), h
}

// ctkipSessionAAD binds a sealed session to its key (the hash of its id),
// so a record copied under another session's key does not open.
func ctkipSessionAAD(h string) string { return ctkipSessionDom + ":" + h }

// SaveCTKIPSession stores a session under id until sess.ExpiresAt.
func (s *Service) SaveCTKIPSession(ctx context.Context, id string, sess CTKIPSession) error {
	if id == "" || len(id) > maxCTKIPSessionID {
		return &ValidationError{Problems: []FieldError{{Field: "session_id", Reason: "empty or too long"}}}
	}
	plain, err := json.Marshal(ctkipSessionSecret{Code: sess.Code, Serial: sess.Serial, Nonce: sess.Nonce, Created: sess.Created.UTC()})
	if err != nil {
		return fmt.Errorf("ctkip session: %w", err)
	}
	key, h := s.ctkipSessionKey(id)
	sealed, err := s.sealer.Seal(plain, ctkipSessionAAD(h))
	clear(plain)
	if err != nil {
		return fmt.Errorf("ctkip session: %w", err)
	}
	rec := ctkipSessionRecord{ExpiresAt: sess.ExpiresAt.UTC(), Sealed: sealed}
	return s.store.Update(ctx, func(tx Tx) error { return putJSON(tx, key, rec) })
}

// TakeCTKIPSession removes and returns a session, so its second POST is
// answered once however many nodes it reaches. An unknown or expired
// session is ErrNotFound.
func (s *Service) TakeCTKIPSession(ctx context.Context, id string) (CTKIPSession, error) {
	if id == "" || len(id) > maxCTKIPSessionID {
		return CTKIPSession{}, fmt.Errorf("ctkip session: %w", ErrNotFound)
	}
	key, h := s.ctkipSessionKey(id)
	var rec ctkipSessionRecord
	err := s.store.Update(ctx, func(tx Tx) error {
		rec = ctkipSessionRecord{}
		if err := getJSON(tx, key, &rec); err != nil {
			return err
		}
		return tx.Delete(key)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return CTKIPSession{}, fmt.Errorf("ctkip session: %w", ErrNotFound)
		}
		return CTKIPSession{}, err
	}
	if !s.now().Before(rec.ExpiresAt) {
		return CTKIPSession{}, fmt.Errorf("ctkip session: %w", ErrNotFound)
	}
	plain, err := s.sealer.Open(rec.Sealed, ctkipSessionAAD(h))
	if err != nil {
		return CTKIPSession{}, fmt.Errorf("ctkip session: %w", err)
	}
	defer clear(plain)
	var sec ctkipSessionSecret
	if err := json.Unmarshal(plain, &sec); err != nil {
		return CTKIPSession{}, fmt.Errorf("ctkip session: %w", err)
	}
	return CTKIPSession{Code: sec.Code, Serial: sec.Serial, Nonce: sec.Nonce, Created: sec.Created, ExpiresAt: rec.ExpiresAt}, nil
}

// DropCTKIPSession forgets a session (a newer ClientHello replaced it). An
// absent one is no error.
func (s *Service) DropCTKIPSession(ctx context.Context, id string) error {
	if id == "" || len(id) > maxCTKIPSessionID {
		return nil
	}
	key, _ := s.ctkipSessionKey(id)
	return s.store.Update(ctx, func(tx Tx) error { return tx.Delete(key) })
}
