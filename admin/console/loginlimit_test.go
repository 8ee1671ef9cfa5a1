package console

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLoginLimiterBounded: invented names and addresses cannot grow the
// tables past MaxTracked, and a client's bucket is shared by its /64.
func TestLoginLimiterBounded(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	l := newLoginLimiter(LoginLimits{BurstPerClient: 2, RatePerClient: 0.001, BurstPerAccount: 1000, MaxTracked: 50}, nil)
	for i := range 10_000 {
		l.allow(fmt.Sprintf("[2001:db8:%x::1]:1", i), fmt.Sprintf("name%d", i), now)
	}
	if n := l.clients.Len(); n > 50 {
		t.Fatalf("%d client buckets, want at most 50", n)
	}
	if n := l.accounts.Len(); n > 50 {
		t.Fatalf("%d account buckets, want at most 50", n)
	}
	for i, want := range []bool{true, true, false} { // burst 2, then empty for the whole /64
		ok, wait := l.allow(fmt.Sprintf("[2001:db8:ffff:1::%x]:1", i+1), "root", now)
		if ok != want || (!ok && wait <= 0) {
			t.Fatalf("attempt %d from the same /64: allowed %v (wait %s), want %v", i+1, ok, wait, want)
		}
	}
}

// TestAccountKeyFoldsAsService: the spellings of one name the Service
// treats as one account (case, surrounding space, NFC) share one bucket.
func TestAccountKeyFoldsAsService(t *testing.T) {
	want := accountKey("r\u00f3ot")
	for _, name := range []string{"R\u00d3OT", " ro\u0301ot\t", "RO\u0301OT"} {
		if got := accountKey(name); got != want {
			t.Errorf("accountKey(%q) = %q, want %q", name, got, want)
		}
	}
	if got := accountKey(strings.Repeat("a", 5000)); len(got) != 256 {
		t.Errorf("a long name's key has %d bytes, want 256", len(got))
	}
}
