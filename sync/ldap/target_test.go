package ldap

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"tokend/sync/mirror"
)

// memTarget is an in-memory Target that applies plans the way the Service
// is meant to: complete records, in chunks of at most 100 writes.
type memTarget struct {
	mu       sync.Mutex
	users    map[string]mirror.Local // by UserID
	nextID   int
	cookie   []byte
	applyErr error
	applies  int
	saves    int
	chunks   int
}

func newMemTarget() *memTarget { return &memTarget{users: map[string]mirror.Local{}} }

func (m *memTarget) LocalUsers(ctx context.Context, sourceID string) ([]mirror.Local, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]mirror.Local, 0, len(m.users))
	for _, u := range m.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

func (m *memTarget) Apply(ctx context.Context, sourceID string, p mirror.Plan) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.applyErr != nil {
		return m.applyErr
	}
	m.applies++
	type write struct {
		l      mirror.Local
		add    bool
		delete bool
	}
	var ws []write
	for _, l := range p.Add {
		ws = append(ws, write{l: l, add: true})
	}
	for _, list := range [][]mirror.Local{p.Update, p.Deactivate, p.Reactivate} {
		for _, l := range list {
			ws = append(ws, write{l: l})
		}
	}
	for _, l := range p.Purge {
		ws = append(ws, write{l: l, delete: true})
	}
	for chunk := range slices.Chunk(ws, 100) {
		m.chunks++
		for _, w := range chunk {
			switch {
			case w.add:
				m.nextID++
				w.l.UserID = fmt.Sprintf("u%06d", m.nextID)
				m.users[w.l.UserID] = w.l
			case w.delete:
				delete(m.users, w.l.UserID)
			default:
				if _, ok := m.users[w.l.UserID]; !ok {
					return fmt.Errorf("memTarget: update of unknown user %q", w.l.UserID)
				}
				m.users[w.l.UserID] = w.l
			}
		}
	}
	return nil
}

func (m *memTarget) Cookie(ctx context.Context, sourceID string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cookie), nil
}

func (m *memTarget) SaveCookie(ctx context.Context, sourceID string, cookie []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	m.cookie = slices.Clone(cookie)
	return nil
}

func (m *memTarget) snapshot() map[string]mirror.Local {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]mirror.Local, len(m.users))
	for k, v := range m.users {
		out[k] = v
	}
	return out
}

func (m *memTarget) byName(name string) (mirror.Local, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if u.UserName == name {
			return u, true
		}
	}
	return mirror.Local{}, false
}

func (m *memTarget) count(active bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, u := range m.users {
		if u.Active == active {
			n++
		}
	}
	return n
}
