package main

import (
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"tokend/appliance"
	"tokend/appliance/metrics"
	"tokend/ctkip"
	"tokend/internal/keyedlimit"
)

// newCTKIPServer wires the CT-KIP door onto the Service: the adapter below
// as Backend and Auditor, the guess limiter, metrics. Sessions between the
// two POSTs are kept in the store, for nodes sharing it.
func newCTKIPServer(c CTKIPConfig, svc *appliance.Service, key *rsa.PrivateKey, m *metrics.Metrics, log *slog.Logger,
	now func() time.Time, rnd io.Reader) (*ctkip.Server, error) {
	return newCTKIPDoor(c, true, svc, key, m, log, now, rnd)
}

// newCTKIPDoor is newCTKIPServer for a store shared by other nodes (etcd)
// or not (bbolt). On a store of its own the door keeps sessions in its
// memory: a second POST can only reach this node, and a stored session
// costs two more durable commits per exchange (save at the hello, take at
// the finish), which with 16 devices in flight left the one core idle
// waiting for fsyncs (issue 19, BenchmarkProvisionOneCore). A session lost
// to a restart costs the device a retry: its code is not consumed.
func newCTKIPDoor(c CTKIPConfig, shared bool, svc *appliance.Service, key *rsa.PrivateKey, m *metrics.Metrics,
	log *slog.Logger, now func() time.Time, rnd io.Reader) (*ctkip.Server, error) {
	b := ctkipBackend{svc: svc}
	var sessions ctkip.SessionStore // a nil interface: the Server's own table
	if shared {
		sessions = ctkipSessions{svc: svc}
	}
	return ctkip.NewServer(ctkip.Config{Key: key, Backend: b, Auditor: b,
		Limiter:  newGuessLimiter(c.RatePerClient, c.BurstPerClient, c.RateTotal, c.BurstTotal, now, log),
		Recorder: ctkipRecorder{m: m}, Logger: log, Now: now, Rand: rnd, SessionTTL: c.SessionTTL, Sessions: sessions,
		MaxPendingPerClient: c.MaxPendingPerClient, MaxHellosPerCode: c.MaxHellosPerCode})
}

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

// Refused audits a refusal about a real token (ctkip.Auditor). Successes
// are audited inside the provisioning transaction; anonymous refusals are
// only counted. The record outlives a client that hangs up, within a bound.
func (b ctkipBackend) Refused(ctx context.Context, serial string, step ctkip.Step, reason string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ctx = appliance.WithActor(ctx, appliance.Actor{ID: "ctkip", Name: "ctkip"})
	return b.svc.AuditProvisioningRefusal(ctx, serial, string(step), reason)
}

// ctkipSessions keeps CT-KIP sessions in the store (sealed by the
// Service), so the second POST may reach any node.
type ctkipSessions struct{ svc *appliance.Service }

func (c ctkipSessions) Save(ctx context.Context, id string, st ctkip.StoredSession) error {
	return c.svc.SaveCTKIPSession(ctx, id, appliance.CTKIPSession{Code: st.Code, Serial: st.Serial, Nonce: st.Nonce[:],
		Created: st.Created, ExpiresAt: st.ExpiresAt})
}

func (c ctkipSessions) Take(ctx context.Context, id string) (ctkip.StoredSession, error) {
	s, err := c.svc.TakeCTKIPSession(ctx, id)
	if errors.Is(err, appliance.ErrNotFound) {
		return ctkip.StoredSession{}, ctkip.ErrNoSession
	}
	if err != nil {
		return ctkip.StoredSession{}, err
	}
	out := ctkip.StoredSession{Code: s.Code, Serial: s.Serial, Created: s.Created, ExpiresAt: s.ExpiresAt}
	if copy(out.Nonce[:], s.Nonce) != len(out.Nonce) {
		return ctkip.StoredSession{}, ctkip.ErrNoSession
	}
	return out, nil
}

func (c ctkipSessions) Drop(ctx context.Context, id string) error {
	return c.svc.DropCTKIPSession(ctx, id)
}

func ctkipToken(t appliance.ProvisionTicket) ctkip.Token {
	return ctkip.Token{Serial: t.Serial, UserID: t.UserName, Digits: t.Digits, Interval: t.Interval, ExpiresAt: t.ExpiresAt}
}

func ctkipError(err error) error {
	ce, ok := errors.AsType[*appliance.CodeError](err)
	if !ok {
		return err
	}
	out := ctkip.ErrInvalidCode
	switch ce.Reason {
	case appliance.ProvisionExpired:
		out = ctkip.ErrCodeExpired
	case appliance.ProvisionUsed:
		out = ctkip.ErrCodeUsed
	}
	if ce.Serial != "" {
		return &ctkip.CodeError{Serial: ce.Serial, Err: out}
	}
	return out
}

// ctkipRecorder counts outcomes. It writes no audit record: anyone can
// send junk, and the audit chain holds only what identifies a token
// (ctkipBackend.Refused and the provisioning transaction).
type ctkipRecorder struct{ m *metrics.Metrics }

func (r ctkipRecorder) Outcome(step ctkip.Step, o ctkip.Outcome) {
	r.m.CTKIPOutcome(string(step), string(o))
}
func (r ctkipRecorder) Exchange(d time.Duration) { r.m.CTKIPExchange(d) }

// guessLimiter throttles failed activation-code checks with token buckets
// per client (ctkip.ClientPrefix: an IPv4 address or an IPv6 /64) and in
// total. The code is the only credential, so a guesser must be slowed
// wherever it comes from; but only failures are charged, and only a
// client's own bucket can stop its code being checked, so guessers
// elsewhere never lock out a device holding a valid code.
type guessLimiter struct {
	clients *keyedlimit.Table
	total   *rate.Limiter
	now     func() time.Time
	log     *slog.Logger

	mu       sync.Mutex
	over     int       // failures over the total budget since the last warning
	nextWarn time.Time // no warning before this
}

// maxTrackedClients bounds the per-client table.
const maxTrackedClients = 100_000

// overBudgetWarnEvery spaces the warnings that the total budget is spent.
const overBudgetWarnEvery = time.Minute

func newGuessLimiter(perClient float64, burst int, total float64, totalBurst int, now func() time.Time, log *slog.Logger) *guessLimiter {
	if now == nil {
		now = time.Now
	}
	return &guessLimiter{clients: keyedlimit.New(perClient, burst, maxTrackedClients),
		total: rate.NewLimiter(rate.Limit(total), totalBurst), now: now, log: log}
}

// Allow lets a client's code be checked while its own bucket has a token;
// the total budget is not consulted (ctkip.Limiter).
func (g *guessLimiter) Allow(client string) bool {
	return g.clients.Allows(client, g.now())
}

// Fail charges a failed check to the client and to the total budget, and
// reports whether the total budget had room.
func (g *guessLimiter) Fail(client string) bool {
	now := g.now()
	g.clients.Take(client, now)
	if g.total.AllowN(now, 1) {
		return true
	}
	var over int
	g.mu.Lock()
	g.over++
	if !now.Before(g.nextWarn) {
		over, g.over, g.nextWarn = g.over, 0, now.Add(overBudgetWarnEvery)
	}
	g.mu.Unlock()
	if over > 0 {
		g.log.Warn("CT-KIP failed activation-code checks exceed the total budget: refusals are answered rate-limited "+
			"and not audited; valid codes still provision", "failures_over_budget", over, "example_client", client)
	}
	return false
}

// perNodeCTKIP divides the total guess budget among the nodes sharing the
// store: each node's limiter lives in its own memory, so n nodes with the
// full budget each would let a guesser spread over them try n times as
// many codes. The per-client buckets stay whole: one client reaches one
// node at a time behind a load balancer, at worst n of them.
func perNodeCTKIP(c CTKIPConfig, nodes int) CTKIPConfig {
	if nodes <= 1 {
		return c
	}
	c.RateTotal /= float64(nodes)
	c.BurstTotal = max(1, c.BurstTotal/nodes)
	return c
}
