package ctkip

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
)

// mapSessions is a SessionStore shared by several Servers, as the store
// is shared by the nodes of a cluster.
type mapSessions struct {
	mu      sync.Mutex
	m       map[string]StoredSession
	dropped []string
	fail    error
}

func (s *mapSessions) Save(_ context.Context, id string, st StoredSession) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[id] = st
	return nil
}

func (s *mapSessions) Take(_ context.Context, id string) (StoredSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return StoredSession{}, s.fail
	}
	st, ok := s.m[id]
	if !ok {
		return StoredSession{}, ErrNoSession
	}
	delete(s.m, id)
	return st, nil
}

func (s *mapSessions) Drop(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	s.dropped = append(s.dropped, id)
	return nil
}

// TestSessionStoreAcrossServers: with a shared SessionStore, the ClientNonce
// of a session one Server opened is answered by another (and only once);
// a hello that replaces its code's session drops the old one from the
// store; a store that fails turns into an internal fault, never a success.
func TestSessionStoreAcrossServers(t *testing.T) {
	store := &mapSessions{m: map[string]StoredSession{}}
	a := newFixture(t, func(c *Config) { c.Sessions = store })
	b := newFixture(t, func(c *Config) { c.Sessions = store; c.Backend = a.backend; c.Key = a.key })

	t.Run("hello at a, nonce at b", func(t *testing.T) {
		sid, rs := hello(t, a, testCode)
		if len(store.m) != 1 {
			t.Fatalf("%d stored sessions, want 1", len(store.m))
		}
		rc := make([]byte, 16)
		body := nonceRequest(t, &a.key.PublicKey, testCode, sid, rc, rs)
		resp := post(t, b, http.MethodPost, contentTypeCTKIP, testCode, body)
		var d xdoc
		sr, err := parseServerResponse(&d, resp)
		if err != nil {
			t.Fatalf("%v\n%s", err, resp)
		}
		if _, err := parseServerFinished(&d, sr.Message); err != nil {
			t.Fatalf("no ServerFinished from b: %v\n%s", err, resp)
		}
		// The same ClientNonce again, at a: the session is gone.
		resp = post(t, a, http.MethodPost, contentTypeCTKIP, testCode, body)
		if _, err := parseServerResponse(&d, resp); err == nil {
			t.Fatal("a replayed ClientNonce was answered")
		}
	})

	t.Run("a newer hello drops the older session", func(t *testing.T) {
		first, _ := hello(t, a, otherCode)
		second, _ := hello(t, a, otherCode)
		if len(store.dropped) == 0 || store.dropped[len(store.dropped)-1] != first {
			t.Fatalf("dropped %v, want the first session", store.dropped)
		}
		if _, ok := store.m[second]; !ok || len(store.m) != 1 {
			t.Fatalf("store holds %d sessions, want only the second", len(store.m))
		}
	})

	t.Run("a failing store is an internal fault", func(t *testing.T) {
		store.mu.Lock()
		store.fail = errors.New("etcd: no quorum")
		store.mu.Unlock()
		defer func() { store.mu.Lock(); store.fail = nil; store.mu.Unlock() }()
		_, err := b.client().Provision(context.Background(), b.ts.URL, otherCode)
		var fe *FaultError
		if !errors.As(err, &fe) || fe.Exception != excInternal {
			t.Fatalf("err = %v, want an internal fault", err)
		}
	})
}
