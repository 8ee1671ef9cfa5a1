package appliance

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

const apiTokenHashDomain = "api-token"

// apiTokenPrefix marks tokend API tokens so secret scanners can find leaks.
const apiTokenPrefix = "tkd_"

// ErrUnauthenticated is returned for an unknown or revoked API token.
var ErrUnauthenticated = errors.New("unauthenticated")

// CreateAPIToken creates a bearer token with a role. The token is returned
// once; only its keyed hash is stored.
func (s *Service) CreateAPIToken(ctx context.Context, name, role string) (APIToken, Secret, error) {
	v := &ValidationError{}
	if strings.TrimSpace(name) == "" || len(name) > 128 {
		v.Add("name", "required, at most 128 characters")
	}
	if !ValidRole(role) {
		v.Add("role", "must be superadmin, helpdesk, auditor or agent")
	}
	if err := v.Err(); err != nil {
		return APIToken{}, "", err
	}
	var raw [32]byte
	if _, err := io.ReadFull(s.rand, raw[:]); err != nil {
		return APIToken{}, "", fmt.Errorf("api token: %w", err)
	}
	secret := apiTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	id, err := s.newID()
	if err != nil {
		return APIToken{}, "", err
	}
	hash := s.sealer.Hash(apiTokenHashDomain, []byte(secret))
	var out APIToken
	err = s.change(ctx, AuditEvent{Action: "api_token.create", Target: id, Detail: role}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		out = APIToken{ID: id, Name: name, Role: role, Hash: hash, CreatedAt: now, CreatedBy: ActorFrom(ctx).Name}
		if err := putJSON(tx, apiTokenKey(id), out); err != nil {
			return err
		}
		return tx.Put(apiTokenIdxKey(hash), []byte(id))
	})
	if err != nil {
		return APIToken{}, "", err
	}
	return out, Secret(secret), nil
}

// RevokeAPIToken deletes a token.
func (s *Service) RevokeAPIToken(ctx context.Context, id string) error {
	return s.change(ctx, AuditEvent{Action: "api_token.revoke", Target: id}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		var t APIToken
		if err := getJSON(tx, apiTokenKey(id), &t); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("api token %q: %w", id, ErrNotFound)
			}
			return err
		}
		if err := tx.Delete(apiTokenKey(id)); err != nil {
			return err
		}
		return tx.Delete(apiTokenIdxKey(t.Hash))
	})
}

// ListAPITokens returns every API token (hashes included; callers render
// only the metadata).
func (s *Service) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	return listJSON[APIToken](ctx, s.store, pfxAPIToken)
}

// AuthenticateAPIToken maps a bearer token to its actor.
func (s *Service) AuthenticateAPIToken(ctx context.Context, secret string) (Actor, error) {
	if !strings.HasPrefix(secret, apiTokenPrefix) || len(secret) > 128 {
		return Actor{}, ErrUnauthenticated
	}
	hash := s.sealer.Hash(apiTokenHashDomain, []byte(secret))
	var out Actor
	err := s.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(apiTokenIdxKey(hash))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		}
		if err != nil {
			return err
		}
		var t APIToken
		if err := getJSON(tx, apiTokenKey(string(id)), &t); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrUnauthenticated
			}
			return err
		}
		out = Actor{ID: "token:" + t.ID, Name: t.Name, Role: t.Role}
		return nil
	})
	return out, err
}

// ReplaceNamedAPIToken revokes every token with the given name and creates
// a new one; main uses it to (re)write the bootstrap admin token file.
func (s *Service) ReplaceNamedAPIToken(ctx context.Context, name, role string) (APIToken, Secret, error) {
	toks, err := s.ListAPITokens(ctx)
	if err != nil {
		return APIToken{}, "", err
	}
	for _, t := range toks {
		if t.Name == name {
			if err := s.RevokeAPIToken(ctx, t.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return APIToken{}, "", err
			}
		}
	}
	return s.CreateAPIToken(ctx, name, role)
}
