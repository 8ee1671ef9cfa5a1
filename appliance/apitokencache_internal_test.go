package appliance

import (
	"fmt"
	"testing"
	"time"
)

// TestAPITokenCacheBounded: however many tokens verify, the cache holds at
// most apiTokenCacheMax, and a fill from before an invalidation is dropped.
func TestAPITokenCacheBounded(t *testing.T) {
	var c apiTokenCache
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for i := range 3 * apiTokenCacheMax {
		_, gen, _ := c.get([]byte(fmt.Sprint(i)), now)
		c.put([]byte(fmt.Sprint(i)), APIToken{ID: fmt.Sprint(i)}, gen, now)
		if n := c.len(); n > apiTokenCacheMax {
			t.Fatalf("after %d tokens: %d cached, want at most %d", i+1, n, apiTokenCacheMax)
		}
	}
	if n := c.len(); n != apiTokenCacheMax {
		t.Errorf("full cache: %d entries, want %d", n, apiTokenCacheMax)
	}

	_, gen, _ := c.get([]byte("late"), now)
	c.invalidate()
	if n := c.len(); n != 0 {
		t.Errorf("after invalidate: %d entries", n)
	}
	c.put([]byte("late"), APIToken{ID: "late"}, gen, now)
	if _, _, ok := c.get([]byte("late"), now); ok {
		t.Error("a fill read before the invalidation was cached")
	}
	c.put([]byte("fresh"), APIToken{ID: "fresh", Hash: []byte("h")}, c.gen, now)
	got, _, ok := c.get([]byte("fresh"), now.Add(apiTokenCacheTTL-time.Nanosecond))
	if !ok || got.Hash != nil {
		t.Errorf("fresh entry: ok = %v, hash kept = %v", ok, got.Hash != nil)
	}
	if _, _, ok := c.get([]byte("fresh"), now.Add(apiTokenCacheTTL)); ok {
		t.Error("entry served at its TTL")
	}
	if _, _, ok := c.get([]byte("fresh"), now.Add(-time.Hour)); ok {
		t.Error("entry served after the clock went back an hour")
	}
}
