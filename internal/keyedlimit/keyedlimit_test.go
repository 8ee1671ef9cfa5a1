package keyedlimit

import (
	"strconv"
	"testing"
	"time"
)

func TestTakeAndAllows(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tb := New(1, 2, 10)
	if !tb.Allows("a", now) {
		t.Fatal("an untracked key is not allowed")
	}
	for i, want := range []bool{true, true, false} {
		ok, wait := tb.Take("a", now)
		if ok != want || (!ok && wait != time.Second) {
			t.Fatalf("take %d: %v (wait %s), want %v", i+1, ok, wait, want)
		}
	}
	if tb.Allows("a", now) || !tb.Allows("b", now) {
		t.Fatal("Allows does not follow the key's own bucket")
	}
	if !tb.Allows("a", now.Add(time.Second)) {
		t.Fatal("the bucket did not refill")
	}
}

// TestBounded: invented keys never grow the table past max, and pruning
// frees room for a tenth of it at once.
func TestBounded(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tb := New(0.001, 1, 50)
	for i := range 10_000 {
		tb.Take(strconv.Itoa(i), now)
		if n := tb.Len(); n > 50 {
			t.Fatalf("%d keys after %d takes, want at most 50", n, i+1)
		}
	}
	tb = New(0.001, 1, 50)
	for i := range 50 {
		tb.Take(strconv.Itoa(i), now)
	}
	tb.Take("new", now)
	if n := tb.Len(); n > 46 {
		t.Fatalf("%d keys after a prune of a full table of 50, want at most 46", n)
	}
}
