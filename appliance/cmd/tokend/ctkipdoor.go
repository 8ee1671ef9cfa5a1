package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"tokend/appliance"
	"tokend/appliance/metrics"
	"tokend/ctkip"
)

// ctkipBackend adapts the Service to the CT-KIP handler and translates the
// Service's refusals once, into the protocol's sentinels.
type ctkipBackend struct{ svc *appliance.Service }

func (b ctkipBackend) Begin(ctx context.Context, code string) (ctkip.Token, error) {
	t, err := b.svc.BeginProvisioning(ctx, code)
	if err != nil {
		return ctkip.Token{}, ctkipError(err)
	}
	return ctkipToken(t), nil
}

func (b ctkipBackend) Complete(ctx context.Context, code string, seed ctkip.Seed) (ctkip.Token, error) {
	t, err := b.svc.CompleteProvisioning(ctx, code, seed[:])
	if err != nil {
		return ctkip.Token{}, ctkipError(err)
	}
	return ctkipToken(t), nil
}

func ctkipToken(t appliance.ProvisionTicket) ctkip.Token {
	return ctkip.Token{Serial: t.Serial, UserID: t.UserName, Digits: t.Digits, Interval: t.Interval, ExpiresAt: t.ExpiresAt}
}

func ctkipError(err error) error {
	var ce *appliance.CodeError
	if errors.As(err, &ce) {
		switch ce.Reason {
		case appliance.ProvisionExpired:
			return ctkip.ErrCodeExpired
		case appliance.ProvisionUsed:
			return ctkip.ErrCodeUsed
		}
		return ctkip.ErrInvalidCode
	}
	return err
}

// ctkipRecorder counts outcomes and writes an audit record for every
// refused request (successes are audited inside the provisioning
// transaction). Audit records never hold the code.
type ctkipRecorder struct {
	m   *metrics.Metrics
	svc *appliance.Service
	log *slog.Logger
}

func (r ctkipRecorder) Outcome(step ctkip.Step, o ctkip.Outcome) {
	r.m.CTKIPOutcome(string(step), string(o))
	if o == ctkip.OutcomeSuccess {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = appliance.WithActor(ctx, appliance.Actor{ID: "ctkip", Name: "ctkip"})
	err := r.svc.Audit(ctx, appliance.AuditEvent{Action: "ctkip." + string(step), Outcome: appliance.OutcomeFailure, Reason: string(o)})
	if err != nil {
		r.log.Error("audit of a CT-KIP refusal failed", "err", err)
	}
}

func (r ctkipRecorder) Exchange(d time.Duration) { r.m.CTKIPExchange(d) }

// guessLimiter throttles failed activation-code checks with token buckets
// per client address and in total: the code is the only credential, so a
// guesser must be slowed wherever it comes from.
type guessLimiter struct {
	perClient rate.Limit
	burst     int
	total     *rate.Limiter
	log       *slog.Logger

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

// maxTrackedClients bounds the per-address table; full buckets are dropped
// first since they carry no information.
const maxTrackedClients = 100_000

func newGuessLimiter(perClient float64, burst int, total float64, totalBurst int, log *slog.Logger) *guessLimiter {
	return &guessLimiter{perClient: rate.Limit(perClient), burst: burst, total: rate.NewLimiter(rate.Limit(total), totalBurst),
		log: log, clients: map[string]*rate.Limiter{}}
}

func clientHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func (g *guessLimiter) client(remote string, create bool) *rate.Limiter {
	host := clientHost(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.clients[host]
	if l == nil && create {
		if len(g.clients) >= maxTrackedClients {
			for k, v := range g.clients {
				if v.Tokens() >= float64(g.burst) {
					delete(g.clients, k)
				}
			}
		}
		l = rate.NewLimiter(g.perClient, g.burst)
		g.clients[host] = l
	}
	return l
}

// Allow lets a code be checked while neither bucket of failures is empty.
func (g *guessLimiter) Allow(remote string) bool {
	if g.total.Tokens() < 1 {
		return false
	}
	l := g.client(remote, false)
	return l == nil || l.Tokens() >= 1
}

// Fail takes a token from both buckets.
func (g *guessLimiter) Fail(remote string) {
	g.total.Allow()
	if !g.client(remote, true).Allow() {
		g.log.Warn("CT-KIP activation code guesses throttled", "client", clientHost(remote))
	}
}
