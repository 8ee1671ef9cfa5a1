package appliance

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

const apiTokenHashDomain = "api-token"

// apiTokenPrefix marks tokend API tokens so secret scanners can find leaks.
const apiTokenPrefix = "tkd_"

// apiTokenUseEvery is how stale a token's stored last use may get: a token
// used all the time costs one store write a minute, not one per request.
const apiTokenUseEvery = time.Minute

// ErrUnauthenticated is returned for an unknown, revoked or expired API
// token.
var ErrUnauthenticated = errors.New("unauthenticated")

// NewAPIToken is the input of IssueAPIToken.
type NewAPIToken struct {
	Name string
	Role string
	// ExpiresAt, if set, must lie in the future; zero means no expiry.
	ExpiresAt time.Time
}

// CreateAPIToken creates a bearer token with a role and no expiry. The
// token is returned once; only its keyed hash is stored.
func (s *Service) CreateAPIToken(ctx context.Context, name, role string) (APIToken, Secret, error) {
	return s.IssueAPIToken(ctx, NewAPIToken{Name: name, Role: role})
}

// IssueAPIToken creates a bearer token. The token is returned once; only
// its keyed hash is stored.
func (s *Service) IssueAPIToken(ctx context.Context, in NewAPIToken) (APIToken, Secret, error) {
	v := &ValidationError{}
	if strings.TrimSpace(in.Name) == "" || len(in.Name) > 128 {
		v.Add("name", "required, at most 128 characters")
	}
	if !ValidRole(in.Role) {
		v.Add("role", "must be superadmin, helpdesk, auditor or agent")
	}
	if !in.ExpiresAt.IsZero() && !in.ExpiresAt.After(s.now()) {
		v.Add("expires_at", "must be in the future")
	}
	if err := v.Err(); err != nil {
		return APIToken{}, "", err
	}
	secret, hash, err := s.newAPITokenSecret()
	if err != nil {
		return APIToken{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return APIToken{}, "", err
	}
	var out APIToken
	err = s.change(ctx, AuditEvent{Action: "api_token.create", Target: id, Detail: apiTokenDetail(in.Role, in.ExpiresAt)},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			out = APIToken{ID: id, Name: in.Name, Role: in.Role, Hash: hash, CreatedAt: now, CreatedBy: ActorFrom(ctx).Name,
				ExpiresAt: in.ExpiresAt.UTC()}
			return putAPIToken(tx, out)
		})
	if err != nil {
		return APIToken{}, "", err
	}
	return out, secret, nil
}

func apiTokenDetail(role string, expires time.Time) string {
	if expires.IsZero() {
		return role
	}
	return role + ", expires " + expires.UTC().Format(time.RFC3339)
}

func (s *Service) newAPITokenSecret() (Secret, []byte, error) {
	var raw [32]byte
	if _, err := io.ReadFull(s.rand, raw[:]); err != nil {
		return "", nil, fmt.Errorf("api token: %w", err)
	}
	secret := apiTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return Secret(secret), s.sealer.Hash(apiTokenHashDomain, []byte(secret)), nil
}

func putAPIToken(tx Tx, t APIToken) error {
	if err := putJSON(tx, apiTokenKey(t.ID), t); err != nil {
		return err
	}
	return tx.Put(apiTokenIdxKey(t.Hash), []byte(t.ID))
}

func deleteAPIToken(tx Tx, t APIToken) error {
	if err := tx.Delete(apiTokenKey(t.ID)); err != nil {
		return err
	}
	return tx.Delete(apiTokenIdxKey(t.Hash))
}

func getAPIToken(tx Tx, id string) (APIToken, error) {
	var t APIToken
	if err := getJSON(tx, apiTokenKey(id), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return t, fmt.Errorf("api token %q: %w", id, ErrNotFound)
		}
		return t, err
	}
	return t, nil
}

// RevokeAPIToken deletes a token.
func (s *Service) RevokeAPIToken(ctx context.Context, id string) error {
	defer s.apiUse.cache.invalidate()
	return s.change(ctx, AuditEvent{Action: "api_token.revoke", Target: id}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		t, err := getAPIToken(tx, id)
		if err != nil {
			return err
		}
		return deleteAPIToken(tx, t)
	})
}

// RotateAPIToken gives token id a new secret in one transaction: the old
// secret is refused from the moment the new one exists. Name, role and
// expiry stay; an expired token is not renewed this way (ErrInvalidState:
// issue a new one with its own expiry).
func (s *Service) RotateAPIToken(ctx context.Context, id string) (APIToken, Secret, error) {
	secret, hash, err := s.newAPITokenSecret()
	if err != nil {
		return APIToken{}, "", err
	}
	var out APIToken
	defer s.apiUse.cache.invalidate()
	err = s.change(ctx, AuditEvent{Action: "api_token.rotate", Target: id}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		t, err := getAPIToken(tx, id)
		if err != nil {
			return err
		}
		if t.Expired(now) {
			return fmt.Errorf("api token %q expired at %s; create a new one: %w", id, t.ExpiresAt.UTC().Format(time.RFC3339), ErrInvalidState)
		}
		if err := deleteAPIToken(tx, t); err != nil {
			return err
		}
		t.Hash, t.CreatedAt, t.CreatedBy, t.LastUsedAt = hash, now, ActorFrom(ctx).Name, time.Time{}
		out = t
		return putAPIToken(tx, t)
	})
	if err != nil {
		return APIToken{}, "", err
	}
	return out, secret, nil
}

// ListAPITokens returns every API token (hashes included; callers render
// only the metadata). LastUsedAt includes uses not yet stored.
func (s *Service) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	toks, err := listJSON[APIToken](ctx, s.store, pfxAPIToken)
	if err != nil {
		return nil, err
	}
	for i := range toks {
		if at, ok := s.apiUse.pendingAt(toks[i].ID); ok && at.After(toks[i].LastUsedAt) {
			toks[i].LastUsedAt = at
		}
	}
	return toks, nil
}

// AuthenticateAPIToken maps a bearer token to its actor. Unknown, revoked
// and expired tokens are all ErrUnauthenticated.
func (s *Service) AuthenticateAPIToken(ctx context.Context, secret string) (Actor, error) {
	if !strings.HasPrefix(secret, apiTokenPrefix) || len(secret) > 128 {
		return Actor{}, ErrUnauthenticated
	}
	hash := s.sealer.Hash(apiTokenHashDomain, []byte(secret))
	now := s.now()
	t, gen, ok := s.apiUse.cache.get(hash, now)
	if ok {
		if t.Expired(now) {
			return Actor{}, ErrUnauthenticated
		}
		s.noteAPITokenUse(t.ID, t.LastUsedAt, now)
		return apiTokenActor(t), nil
	}
	err := s.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(apiTokenIdxKey(hash))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		}
		if err != nil {
			return err
		}
		t, err = getAPIToken(tx, string(id))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		}
		return err
	})
	if err != nil {
		return Actor{}, err
	}
	if t.Expired(now) {
		return Actor{}, ErrUnauthenticated
	}
	s.apiUse.cache.put(hash, t, gen, now)
	s.noteAPITokenUse(t.ID, t.LastUsedAt, now)
	return apiTokenActor(t), nil
}

func apiTokenActor(t APIToken) Actor {
	return Actor{ID: "token:" + t.ID, Name: t.Name, Role: t.Role}
}

// apiTokenCacheTTL is how long a verified token is trusted without a store
// read. A revoke, rotation or replacement on this node empties the cache
// when it commits; one made on another node (etcd) is seen here within
// this time.
const apiTokenCacheTTL = 5 * time.Second

// apiTokenCacheMax bounds the cache; only tokens that verified get in, so
// unknown bearer tokens cannot fill it.
const apiTokenCacheMax = 1024

// verifiedCache holds what a verified bearer secret (API token, SCIM
// token) maps to, by the secret's keyed hash (never the secret), sparing a
// store read per request. Only secrets that verified get in, so unknown
// ones cannot fill it; a change that can revoke one calls invalidate once
// it commits.
type verifiedCache[T any] struct {
	mu sync.Mutex
	// gen counts invalidations: a lookup that read the store before one
	// must not put what it read back in.
	gen     uint64
	entries map[string]verifiedEntry[T]
}

type verifiedEntry[T any] struct {
	val   T
	until time.Time
}

// get returns the cached value for hash, if fresh, and the generation to
// hand to put after a store read.
func (c *verifiedCache[T]) get(hash []byte, now time.Time) (T, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[string(hash)]
	// A clock stepped back must not stretch the TTL.
	if !ok || !now.Before(e.until) || now.Before(e.until.Add(-apiTokenCacheTTL)) {
		var zero T
		return zero, c.gen, false
	}
	return e.val, c.gen, true
}

func (c *verifiedCache[T]) put(hash []byte, v T, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.entries == nil {
		c.entries = map[string]verifiedEntry[T]{}
	}
	if _, ok := c.entries[string(hash)]; !ok && len(c.entries) >= apiTokenCacheMax {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < apiTokenCacheMax {
				break
			}
			delete(c.entries, k) // an arbitrary one: the next use reads the store
		}
	}
	c.entries[string(hash)] = verifiedEntry[T]{val: v, until: now.Add(apiTokenCacheTTL)}
}

// invalidate empties the cache and turns away puts of reads made before.
func (c *verifiedCache[T]) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

func (c *verifiedCache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// apiTokenCache holds verified API tokens, without their hashes.
type apiTokenCache struct{ verifiedCache[APIToken] }

func (c *apiTokenCache) put(hash []byte, t APIToken, gen uint64, now time.Time) {
	t.Hash = nil
	c.verifiedCache.put(hash, t, gen, now)
}

// ReplaceNamedAPIToken revokes every token with the given name and creates
// a new one, in one transaction (so no moment has both or neither); main
// uses it to (re)write the bootstrap admin token file.
func (s *Service) ReplaceNamedAPIToken(ctx context.Context, name, role string) (APIToken, Secret, error) {
	return s.putNamedAPIToken(ctx, name, role, true)
}

// CreateNamedAPIToken creates a token with the given name unless one
// exists, in which case it fails with ErrExists. The check and the write
// are one transaction, so of two nodes of a shared store starting at once
// exactly one creates the bootstrap token.
func (s *Service) CreateNamedAPIToken(ctx context.Context, name, role string) (APIToken, Secret, error) {
	return s.putNamedAPIToken(ctx, name, role, false)
}

func (s *Service) putNamedAPIToken(ctx context.Context, name, role string, replace bool) (APIToken, Secret, error) {
	secret, hash, err := s.newAPITokenSecret()
	if err != nil {
		return APIToken{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return APIToken{}, "", err
	}
	action := "api_token.replace"
	if !replace {
		action = "api_token.create"
	}
	var out APIToken
	defer s.apiUse.cache.invalidate()
	err = s.change(ctx, AuditEvent{Action: action, Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		kvs, err := tx.Scan([]byte(pfxAPIToken), nil, 0)
		if err != nil {
			return err
		}
		revoked := 0
		for _, kv := range kvs {
			var t APIToken
			if err := decodeRecord(tx, kv.Value, &t); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			if t.Name != name {
				continue
			}
			if !replace {
				return fmt.Errorf("API token %q: %w", name, ErrExists)
			}
			if err := deleteAPIToken(tx, t); err != nil {
				return err
			}
			revoked++
		}
		ev.Detail = apiTokenDetail(role, time.Time{})
		if replace {
			ev.Detail = fmt.Sprintf("%s; %d revoked", role, revoked)
		}
		out = APIToken{ID: id, Name: name, Role: role, Hash: hash, CreatedAt: now, CreatedBy: ActorFrom(ctx).Name}
		return putAPIToken(tx, out)
	})
	if err != nil {
		return APIToken{}, "", err
	}
	return out, secret, nil
}

// apiTokenUse coalesces the last-use times of API tokens: a use is queued
// only when the stored time is a minute old, and one background flush
// stores everything queued in one transaction. The request that used the
// token never waits for a store write. The cache of verified tokens calls
// noteAPITokenUse with the last use it has seen, at most apiTokenCacheTTL
// old; stored covers what was written since.
type apiTokenUse struct {
	mu      sync.Mutex
	pending map[string]time.Time // token id → last use not yet stored
	// stored is what recent flushes wrote: a request that read the
	// record before the flush committed must not queue the use again.
	stored   map[string]time.Time
	flushing bool
	// cache holds verified tokens; it lives here so that the Service
	// keeps one field for API token state.
	cache apiTokenCache
}

// pendingAt is the last use this node knows beyond what a record read
// earlier may hold: queued, or stored by a flush that committed after that
// read (a list racing a flush would otherwise show neither).
func (u *apiTokenUse) pendingAt(id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	at, ok := u.pending[id]
	if st, stOK := u.stored[id]; stOK && st.After(at) {
		at, ok = st, true
	}
	return at, ok
}

// noteAPITokenUse records that token id was used at now; stored is the
// last use the store holds.
func (s *Service) noteAPITokenUse(id string, stored, now time.Time) {
	u := &s.apiUse
	u.mu.Lock()
	defer u.mu.Unlock()
	if at, ok := u.pending[id]; ok {
		if now.After(at) {
			u.pending[id] = now // queued already: only the time moves
		}
		return
	}
	if at := u.stored[id]; at.After(stored) {
		stored = at
	}
	if d := now.Sub(stored); d < apiTokenUseEvery && d >= 0 {
		return
	}
	if u.pending == nil {
		u.pending = map[string]time.Time{}
		u.stored = map[string]time.Time{}
	}
	u.pending[id] = now
	if !u.flushing {
		u.flushing = true
		go s.flushAPITokenUse()
	}
}

// flushAPITokenUse stores queued last uses until none is left.
func (s *Service) flushAPITokenUse() {
	for {
		s.apiUse.mu.Lock()
		batch := make(map[string]time.Time, min(len(s.apiUse.pending), maxWritesPerFlush))
		for id, at := range s.apiUse.pending {
			if len(batch) == maxWritesPerFlush {
				break
			}
			batch[id] = at
		}
		if len(batch) == 0 {
			s.apiUse.flushing = false
			s.apiUse.mu.Unlock()
			return
		}
		s.apiUse.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.store.Update(ctx, func(tx Tx) error {
			for id, at := range batch {
				var t APIToken
				if err := getJSON(tx, apiTokenKey(id), &t); errors.Is(err, ErrNotFound) {
					continue // revoked meanwhile
				} else if err != nil {
					return err
				}
				if !at.After(t.LastUsedAt) {
					continue
				}
				t.LastUsedAt = at.UTC()
				if err := putJSON(tx, apiTokenKey(id), t); err != nil {
					return err
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			// Not retried: the next use a minute on queues it again.
			s.log.Warn("storing API token last-use times failed", "tokens", len(batch), "err", err)
		}
		// Uses since the batch was taken are dropped too: they are within
		// a minute of what was stored, and keeping them would turn a busy
		// token into a write per flush.
		s.apiUse.mu.Lock()
		for id, at := range batch {
			delete(s.apiUse.pending, id)
			if err == nil {
				s.apiUse.stored[id] = at
			}
		}
		// Entries a minute old say nothing the records do not.
		for id, at := range s.apiUse.stored {
			if _, ok := batch[id]; !ok && s.now().Sub(at) >= apiTokenUseEvery {
				delete(s.apiUse.stored, id)
			}
		}
		s.apiUse.mu.Unlock()
	}
}

// maxWritesPerFlush keeps one flush within the store's write limit.
const maxWritesPerFlush = 100
