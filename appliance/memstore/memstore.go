package memstore

import (
	"context"
	"errors"
	"sync"

	"tokend/appliance"
)

// maxKeySize matches bbolt's limit so that a key accepted in tests is also
// accepted in production.
const maxKeySize = 32 << 10

// errTxDone is returned by a Tx used after its function returned.
var errTxDone = errors.New("memstore: transaction used after its function returned")

// Option configures a Store.
type Option func(*Store)

// WithRetries makes every Update run its function n extra times before the
// attempt that counts; the writes of the extra attempts are discarded. It
// imitates etcd retrying a transaction on conflict, so tests can prove that
// functions given to Update are retry safe. An error from any attempt ends
// the Update with that error.
func WithRetries(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.retries = n
		}
	}
}

// Store is an in-memory appliance.Store. The zero value is not usable; call
// New.
type Store struct {
	retries int

	// writeMu serialises Update (and Close, which waits for the Update in
	// flight).
	writeMu sync.Mutex

	// mu guards snap and closed. snap is never modified after it is
	// published, so readers hold mu only to load it.
	mu     sync.RWMutex
	snap   snapshot
	closed bool
}

var _ appliance.Store = (*Store)(nil)

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{}
	for _, o := range opts {
		o(s)
	}
	return s
}

// snapshot returns the current data, or ErrClosed.
func (s *Store) snapshot() (snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, appliance.ErrClosed
	}
	return s.snap, nil
}

// View runs fn against the snapshot current when View starts; Updates that
// commit while fn runs are invisible to it.
func (s *Store) View(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("memstore: View with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	snap, err := s.snapshot()
	if err != nil {
		return err
	}
	tx := &tx{base: snap, readOnly: true, ws: appliance.WriteSet{MaxKeySize: maxKeySize}}
	defer tx.end()
	return fn(tx)
}

// Update runs fn in a serialised read-write transaction and publishes its
// writes if fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("memstore: Update with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// The context may have ended while we waited for the lock.
	if err := ctx.Err(); err != nil {
		return err
	}
	base, err := s.snapshot()
	if err != nil {
		return err
	}
	var t *tx
	for range s.retries + 1 {
		t = &tx{base: base, ws: appliance.WriteSet{MaxKeySize: maxKeySize}}
		err := fn(t)
		t.end()
		if t.ws.Err() != nil {
			// A failed write poisons the transaction even if fn ignored the
			// error: nothing of it may be written.
			return t.ws.Err()
		}
		if err != nil {
			return err
		}
	}
	if len(t.ws.Keys()) == 0 {
		return nil
	}
	next := t.merged()
	s.mu.Lock()
	s.snap = next
	s.mu.Unlock()
	return nil
}

// Close releases the data. Later calls of View and Update return
// appliance.ErrClosed; Close itself may be called more than once.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.snap = nil
	return nil
}

// write is one buffered Put (del false) or Delete (del true).
// tx is a transaction over an immutable snapshot plus a write buffer that
// the transaction's own reads see.
type tx struct {
	base     snapshot
	readOnly bool
	done     bool

	ws appliance.WriteSet // pending writes; the first refused one poisons the transaction
}

func (t *tx) end() { t.done = true }

func (t *tx) Get(key []byte) ([]byte, error) {
	if t.done {
		return nil, errTxDone
	}
	if w, ok := t.ws.Lookup(string(key)); ok {
		if w.Delete {
			return nil, appliance.ErrNotFound
		}
		return clone(w.Value), nil
	}
	v, ok := t.base.get(key)
	if !ok {
		return nil, appliance.ErrNotFound
	}
	return clone(v), nil
}

func (t *tx) Put(key, value []byte) error {
	return t.write(key, value, false)
}

func (t *tx) Delete(key []byte) error {
	return t.write(key, nil, true)
}

func (t *tx) write(key, value []byte, del bool) error {
	switch {
	case t.done:
		return errTxDone
	case t.readOnly:
		return appliance.ErrReadOnly
	}
	return t.ws.Add(key, value, del)
}

func (t *tx) Scan(prefix, after []byte, limit int) ([]appliance.KV, error) {
	if t.done {
		return nil, errTxDone
	}
	it := t.base.seek(appliance.ScanStart(prefix, after))
	return t.ws.Scan(&it, prefix, after, limit), nil
}

// merged returns the next snapshot: base with the writes applied. Only the
// chunks a write falls into are rebuilt; the others are shared with base.
func (t *tx) merged() snapshot {
	return t.base.apply(&t.ws)
}

// lowerBound returns the first index in [0,n) whose key compares > 0 to the
// bound, or >= 0 when the bound is inclusive; cmp(i) compares key i to it.
func lowerBound(n int, cmp func(int) int, exclusive bool) int {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		c := cmp(m)
		if c < 0 || (c == 0 && exclusive) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// clone returns a copy of b that is never nil, so an empty value reads back
// as an empty, non-nil slice.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
