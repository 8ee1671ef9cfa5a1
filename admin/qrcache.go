package admin

import (
	"sync"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// qrCache keeps the device links of recent distributions, because the store
// holds only a keyed hash of each activation code and the QR code cannot be
// drawn again from it. It is small and short-lived on purpose: every entry
// is a live activation code in memory. A new distribution replaces a
// token's entry; voiding or unassigning drops it; entries expire after the
// TTL or at the code's own expiry, whichever comes first. Being per
// process, a QR code is only available from the instance that issued it.
type qrCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[string]qrEntry
}

type qrEntry struct {
	link    string
	expires time.Time
	once    bool // drawn once, then dropped (a CTF link carries the seed)
}

func newQRCache(max int, ttl time.Duration) *qrCache {
	return &qrCache{max: max, ttl: ttl, entries: make(map[string]qrEntry)}
}

func (q *qrCache) put(serial, link string, codeExpires, now time.Time) {
	exp := now.Add(q.ttl)
	if !codeExpires.IsZero() && codeExpires.Before(exp) {
		exp = codeExpires
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.entries, serial)
	if len(q.entries) >= q.max {
		q.evict(now)
	}
	q.entries[serial] = qrEntry{link: link, expires: exp}
}

// evict drops expired entries and, if still full, the one closest to
// expiry. Linear, but the cache is small and puts are admin clicks.
func (q *qrCache) evict(now time.Time) {
	var victim string
	var soonest time.Time
	for k, e := range q.entries {
		if !now.Before(e.expires) {
			delete(q.entries, k)
			continue
		}
		if victim == "" || e.expires.Before(soonest) {
			victim, soonest = k, e.expires
		}
	}
	if len(q.entries) >= q.max && victim != "" {
		delete(q.entries, victim)
	}
}

func (q *qrCache) get(serial string, now time.Time) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[serial]
	if !ok {
		return "", false
	}
	if !now.Before(e.expires) {
		delete(q.entries, serial)
		return "", false
	}
	return e.link, true
}

func (q *qrCache) drop(serial string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.entries, serial)
}

func (q *qrCache) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// qrPNG draws a 256-pixel QR code with medium error correction, enough for
// a phone camera off a screen.
func qrPNG(content string) ([]byte, error) { return qrcode.Encode(content, qrcode.Medium, 256) }
