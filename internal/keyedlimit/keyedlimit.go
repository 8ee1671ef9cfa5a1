// Package keyedlimit keeps one token bucket per key (a client address, an
// account name) in a table bounded against the keys an attacker can invent.
// The console's sign-in limits and the CT-KIP door's guess limiter share it.
package keyedlimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Table is a bounded map of token buckets. It is safe for concurrent use.
type Table struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// New returns a table of buckets refilled at perSecond up to burst,
// holding at most max keys.
func New(perSecond float64, burst, max int) *Table {
	return &Table{limit: rate.Limit(perSecond), burst: burst, max: max, m: map[string]*rate.Limiter{}}
}

// Take spends one token of key's bucket. When the bucket is empty it
// spends nothing and returns false and how long until a token is back.
func (t *Table) Take(key string, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m[key]
	if l == nil {
		t.prune(now)
		l = rate.NewLimiter(t.limit, t.burst)
		t.m[key] = l
	}
	if l.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - l.TokensAt(now)) / float64(t.limit) * float64(time.Second))
}

// Allows reports whether key's bucket holds a whole token, spending
// nothing; an untracked key's bucket is full.
func (t *Table) Allows(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m[key]
	return l == nil || l.TokensAt(now) >= 1
}

// Len reports how many keys are tracked.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// prune makes room when the table is full: full buckets carry no
// information and go first; if that frees too little, arbitrary ones go
// (map order), which only forgives some keys some attempts. It frees a
// tenth of the table, so a flood of new keys pays the scan once per
// max/10 keys, not on every one.
func (t *Table) prune(now time.Time) {
	if len(t.m) < t.max {
		return
	}
	for k, l := range t.m {
		if l.TokensAt(now) >= float64(t.burst) {
			delete(t.m, k)
		}
	}
	for k := range t.m {
		if len(t.m) < t.max-t.max/10 {
			break
		}
		delete(t.m, k)
	}
}
