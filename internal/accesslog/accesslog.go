package accesslog

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults: enough for every request of a busy appliance's admins and
// devices; a flood is cut to this and summarised.
const (
	DefaultRate  = 100 // lines per second, sustained
	DefaultBurst = 1000
)

// Log writes access lines for one listener. It is safe for concurrent use.
type Log struct {
	log        *slog.Logger
	listener   string
	lim        *rate.Limiter
	suppressed atomic.Int64
}

// New returns the access log of the named listener; perSecond <= 0 takes
// the defaults.
func New(log *slog.Logger, listener string, perSecond float64, burst int) *Log {
	if perSecond <= 0 {
		perSecond, burst = DefaultRate, DefaultBurst
	}
	if burst < 1 {
		burst = 1
	}
	return &Log{log: log, listener: listener, lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Request logs one handled request, or counts it when over the limit. The
// method is logged as Method gives it.
func (l *Log) Request(ctx context.Context, method, route string, status int, d time.Duration, remote string) {
	if !l.lim.Allow() {
		l.suppressed.Add(1)
		return
	}
	attrs := []slog.Attr{
		slog.String("listener", l.listener), slog.String("method", Method(method)), slog.String("route", route),
		slog.Int("status", status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("remote", Host(remote)),
	}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed", n))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "http request", attrs...)
}

// Host strips the port from an address ("192.0.2.1:4711" → "192.0.2.1").
func Host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Method names a request method for a log line or a metric label: one of
// the methods of RFC 9110 (and PATCH), or "OTHER". A client may send any
// token as its method, of any length, so the raw one would be an unbounded
// label and an attacker-sized log field.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}
