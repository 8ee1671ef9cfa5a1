package console

import (
	"math"
	"strconv"
	"strings"
	"time"

	"tokend/appliance"
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

// Reasons of the console's own refusals, for metrics and the log.
const (
	reasonLimitedClient  = "rate_limited_client"
	reasonLimitedAccount = "rate_limited_account"
)

// loginLimiter holds both tables.
type loginLimiter struct {
	clients, accounts *keyedlimit.Table
	refused           func(reason string) // counts and logs a refusal; may be nil
}

func newLoginLimiter(l LoginLimits, refused func(reason string)) *loginLimiter {
	l = l.withDefaults()
	return &loginLimiter{clients: keyedlimit.New(l.RatePerClient, l.BurstPerClient, l.MaxTracked),
		accounts: keyedlimit.New(l.RatePerAccount, l.BurstPerAccount, l.MaxTracked), refused: refused}
}

// allow spends an attempt of the client's and then of the account's
// bucket. The account is charged only when the client may try, so one
// address cannot fill the account table with invented names.
func (l *loginLimiter) allow(remoteAddr, name string, now time.Time) (bool, time.Duration) {
	if ok, wait := l.clients.Take(ctkip.ClientPrefix(remoteAddr), now); !ok {
		l.refuse(reasonLimitedClient)
		return false, wait
	}
	if ok, wait := l.accounts.Take(accountKey(name), now); !ok {
		l.refuse(reasonLimitedAccount)
		return false, wait
	}
	return true, 0
}

// refuse reports a throttled attempt by its reason only: never the name
// or the address (both are the attacker's choice and the name may be a
// mistyped password).
func (l *loginLimiter) refuse(reason string) {
	if l.refused != nil {
		l.refused(reason)
	}
}

// accountKey is the name as the Service looks an admin up (trimmed, NFC,
// lower case), so every spelling of one account shares its bucket. A name
// is cut to 256 bytes first: the Service looks no longer one up, and the
// cut bounds the work spent on an attacker's name.
func accountKey(name string) string {
	if len(name) > 256 {
		name = name[:256]
	}
	return strings.ToLower(appliance.NormalizeName(name))
}

// retryAfter renders a wait as whole seconds for Retry-After, at least 1.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}
