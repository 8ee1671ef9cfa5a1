package console

import (
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"tokend/ctkip"
	"tokend/internal/keyedlimit"
)

// LoginLimits throttles sign-in attempts before any password is hashed:
// one token bucket per client address (IPv6 by /64, which one host
// usually holds whole) and one per account name. Zero fields take the
// defaults in parentheses.
type LoginLimits struct {
	RatePerClient   float64 // attempts per second refilled per client address (0.2)
	BurstPerClient  int     // bucket size per client address (10)
	RatePerAccount  float64 // attempts per second refilled per account name (0.1)
	BurstPerAccount int     // bucket size per account name (10)
	// MaxTracked bounds each table of buckets (10000).
	MaxTracked int
}

func (l LoginLimits) withDefaults() LoginLimits {
	if !(l.RatePerClient > 0) {
		l.RatePerClient = 0.2
	}
	if l.BurstPerClient <= 0 {
		l.BurstPerClient = 10
	}
	if !(l.RatePerAccount > 0) {
		l.RatePerAccount = 0.1
	}
	if l.BurstPerAccount <= 0 {
		l.BurstPerAccount = 10
	}
	if l.MaxTracked <= 0 {
		l.MaxTracked = 10000
	}
	return l
}

// SignInRecorder counts sign-in refusals made by the console itself (the
// Service counts the rest); *metrics.Metrics implements it.
type SignInRecorder interface {
	AdminSignIn(outcome, reason string)
}

// Reasons of the console's own refusals, for metrics and the log.
const (
	reasonLimitedClient  = "rate_limited_client"
	reasonLimitedAccount = "rate_limited_account"
)

// loginLimiter holds both tables and the rate-limited log of refusals.
type loginLimiter struct {
	clients, accounts *keyedlimit.Table
	rec               SignInRecorder
	log               *slog.Logger

	mu       sync.Mutex
	loggedAt time.Time
	refused  map[string]int
}

func newLoginLimiter(l LoginLimits, rec SignInRecorder, log *slog.Logger) *loginLimiter {
	l = l.withDefaults()
	return &loginLimiter{clients: keyedlimit.New(l.RatePerClient, l.BurstPerClient, l.MaxTracked),
		accounts: keyedlimit.New(l.RatePerAccount, l.BurstPerAccount, l.MaxTracked), rec: rec, log: log, refused: map[string]int{}}
}

// allow spends an attempt of the client's and then of the account's
// bucket. The account is charged only when the client may try, so one
// address cannot fill the account table with invented names.
func (l *loginLimiter) allow(remoteAddr, name string, now time.Time) (bool, time.Duration) {
	if ok, wait := l.clients.Take(ctkip.ClientPrefix(remoteAddr), now); !ok {
		l.refuse(reasonLimitedClient, now)
		return false, wait
	}
	if ok, wait := l.accounts.Take(accountKey(name), now); !ok {
		l.refuse(reasonLimitedAccount, now)
		return false, wait
	}
	return true, 0
}

// refuse counts a throttled attempt and logs the tally at most once a
// minute (never the name or the address: both are the attacker's choice
// and the name may be a mistyped password).
func (l *loginLimiter) refuse(reason string, now time.Time) {
	if l.rec != nil {
		l.rec.AdminSignIn("failure", reason)
	}
	l.mu.Lock()
	l.refused[reason]++
	if !l.loggedAt.IsZero() && now.Sub(l.loggedAt) < time.Minute && !now.Before(l.loggedAt) {
		l.mu.Unlock()
		return
	}
	attrs := make([]any, 0, 2*len(l.refused))
	for r, n := range l.refused {
		attrs = append(attrs, slog.Int(r, n))
	}
	clear(l.refused)
	l.loggedAt = now
	l.mu.Unlock()
	l.log.Warn("console sign-ins throttled", slog.Group("refusals", attrs...))
}

// accountKey folds a name as the Service does and bounds its length.
func accountKey(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if len(name) > 256 {
		name = name[:256]
	}
	return name
}

// retryAfter renders a wait as whole seconds for Retry-After, at least 1.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}
