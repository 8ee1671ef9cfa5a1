// Package radius is the RADIUS door (RFC 2865 with RFC 3579's
// Message-Authenticator): VPN concentrators, gateways and Linux PAM ask it
// to verify passcodes, and it relays each Access-Request to the Service's
// authentication rules, answering Access-Accept, Access-Reject or, for next
// tokencode and new PIN mode, Access-Challenge with a State.
//
// Clients are agents: identified by source address, each with its own
// shared secret. Packets from unknown addresses, with a wrong secret or a
// bad or (by default) missing Message-Authenticator are dropped without an
// answer, counted and logged at a bounded rate. A retransmission (same
// source, Identifier and Request Authenticator) is answered from a short
// cache, so a passcode is verified once.
package radius

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"tokend/appliance"
)

// Service is what the RADIUS door needs of the appliance.
type Service interface {
	// RADIUSClients returns the enabled RADIUS agents with their secrets.
	RADIUSClients(ctx context.Context) ([]appliance.RADIUSClient, error)
	// AgentsGeneration changes when agents change (cheap; read per packet).
	AgentsGeneration() uint64
	// AgentAuthenticate applies the authentication rules for an agent.
	AgentAuthenticate(ctx context.Context, agent appliance.Agent, req appliance.AuthRequest) (appliance.AuthResult, error)
}

// Recorder counts the door's outcomes. Labels are small fixed vocabularies:
// never a user name or an address.
type Recorder interface {
	// AgentAuthentication counts one decision: kind "radius", result as
	// appliance.Auth*.
	AgentAuthentication(kind, result string)
	// RADIUSDropped counts a packet dropped without an answer.
	RADIUSDropped(reason string)
}

// Reasons a packet is dropped.
const (
	DropUnknownClient = "unknown_client"
	DropMalformed     = "malformed"
	DropNotRequest    = "not_access_request"
	DropBadAuth       = "bad_authenticator"
	DropMissingMA     = "missing_message_authenticator"
	DropRateLimited   = "rate_limited"
	DropOverloaded    = "overloaded"
	DropInProgress    = "retransmission_in_progress"
	DropError         = "internal_error"
)

var dropReasons = []string{DropUnknownClient, DropMalformed, DropNotRequest, DropBadAuth, DropMissingMA, DropRateLimited,
	DropOverloaded, DropInProgress, DropError}

// Config configures a Server. Service is required.
type Config struct {
	Service  Service
	Logger   *slog.Logger
	Recorder Recorder
	// RatePerAgent and BurstPerAgent are each agent's token bucket
	// (requests per second; defaults 100 and 200).
	RatePerAgent  float64
	BurstPerAgent int
	// MaxInFlight bounds requests being decided at once (default 256);
	// more are dropped (the agent retransmits).
	MaxInFlight int
	// DuplicateWindow is how long an answer is kept for retransmissions
	// (default 10s).
	DuplicateWindow time.Duration
	// ReloadInterval re-reads the agents for changes other nodes made
	// (default 30s); this node's changes are seen at once.
	ReloadInterval time.Duration
	// PINMinLength and PINMaxLength only word the new-PIN prompt.
	PINMinLength, PINMaxLength int
	Now                        func() time.Time
}

// Server is the RADIUS door. Serve it on a UDP socket; Shutdown drains it.
type Server struct {
	cfg   Config
	log   *slog.Logger
	rec   Recorder
	table atomic.Pointer[clientTable]

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	dups     map[dupKey]*dupEntry
	lastDup  time.Time

	inflight chan struct{}
	wg       sync.WaitGroup
	closing  atomic.Bool
	conn     atomic.Pointer[net.PacketConn]
	logDrops map[string]*rate.Sometimes
}

type client struct {
	agent   appliance.Agent
	prefix  netip.Prefix
	secret  []byte
	limiter *rate.Limiter
}

type clientTable struct {
	gen     uint64
	clients []client // most specific prefix first
}

type dupKey struct {
	src   netip.AddrPort
	id    byte
	auth  [16]byte
	agent string
}

type dupEntry struct {
	at   time.Time
	resp []byte // nil while the request is being decided
}

// New builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("radius: Service is required")
	}
	if cfg.RatePerAgent <= 0 {
		cfg.RatePerAgent = 100
	}
	if cfg.BurstPerAgent <= 0 {
		cfg.BurstPerAgent = 200
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 10 * time.Second
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = 30 * time.Second
	}
	if cfg.PINMinLength <= 0 {
		cfg.PINMinLength = 4
	}
	if cfg.PINMaxLength < cfg.PINMinLength {
		cfg.PINMaxLength = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, rec: cfg.Recorder, limiters: map[string]*rate.Limiter{}, dups: map[dupKey]*dupEntry{},
		inflight: make(chan struct{}, cfg.MaxInFlight), logDrops: map[string]*rate.Sometimes{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.rec == nil {
		s.rec = nopRecorder{}
	}
	for _, r := range dropReasons {
		s.logDrops[r] = &rate.Sometimes{First: 1, Interval: 10 * time.Second}
	}
	s.table.Store(&clientTable{gen: ^uint64(0)})
	return s, nil
}

type nopRecorder struct{}

func (nopRecorder) AgentAuthentication(string, string) {}
func (nopRecorder) RADIUSDropped(string)               {}

// Reload re-reads the RADIUS agents now.
func (s *Server) Reload(ctx context.Context) error {
	gen := s.cfg.Service.AgentsGeneration()
	list, err := s.cfg.Service.RADIUSClients(ctx)
	if err != nil {
		return fmt.Errorf("radius: load agents: %w", err)
	}
	t := &clientTable{gen: gen, clients: make([]client, 0, len(list))}
	s.mu.Lock()
	seen := map[string]bool{}
	for _, c := range list {
		lim := s.limiters[c.ID]
		if lim == nil {
			lim = rate.NewLimiter(rate.Limit(s.cfg.RatePerAgent), s.cfg.BurstPerAgent)
			s.limiters[c.ID] = lim
		}
		seen[c.ID] = true
		t.clients = append(t.clients, client{agent: c.Agent, prefix: c.Prefix, secret: []byte(c.SharedSecret.Reveal()), limiter: lim})
	}
	for id := range s.limiters {
		if !seen[id] {
			delete(s.limiters, id)
		}
	}
	s.mu.Unlock()
	s.table.Store(t)
	return nil
}

// lookup finds the agent a source address belongs to, reloading the table
// first if this node changed an agent since it was read.
func (s *Server) lookup(ctx context.Context, addr netip.Addr) (*client, bool) {
	t := s.table.Load()
	if t.gen != s.cfg.Service.AgentsGeneration() {
		if err := s.Reload(ctx); err != nil {
			s.log.Error("radius: reloading agents", "err", err)
		}
		t = s.table.Load()
	}
	for i := range t.clients {
		if t.clients[i].prefix.Contains(addr) {
			return &t.clients[i], true
		}
	}
	return nil, false
}

// Serve reads Access-Requests from conn until Shutdown (then it returns
// nil) or a read fails. conn is closed by Shutdown.
func (s *Server) Serve(conn net.PacketConn) error {
	if !s.conn.CompareAndSwap(nil, &conn) {
		return errors.New("radius: Serve called twice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Reload(ctx); err != nil {
		s.log.Error("radius: loading agents", "err", err)
	}
	go func() {
		t := time.NewTicker(s.cfg.ReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.Reload(ctx); err != nil {
					s.log.Error("radius: reloading agents", "err", err)
				}
			}
		}
	}()
	buf := make([]byte, radius.MaxPacketLength+1)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("radius: read: %w", err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		c, ok := s.lookup(ctx, src.Addr())
		if !ok {
			s.drop(DropUnknownClient, src)
			continue
		}
		if n > radius.MaxPacketLength {
			s.drop(DropMalformed, src)
			continue
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			s.drop(DropOverloaded, src)
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer func() { <-s.inflight; s.wg.Done() }()
			s.handle(conn, c, src, from, pkt)
		}()
	}
}

// Shutdown stops reading, waits for the requests being decided to be
// answered (bounded by ctx) and closes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	cp := s.conn.Load()
	if cp == nil {
		return nil
	}
	conn := *cp
	// Unblock ReadFrom without closing the socket the answers still need.
	_ = conn.SetReadDeadline(time.Now())
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("radius: requests still running at shutdown: %w", ctx.Err())
	}
	return errors.Join(err, conn.Close())
}

func (s *Server) drop(reason string, src netip.AddrPort) {
	s.rec.RADIUSDropped(reason)
	if st := s.logDrops[reason]; st != nil {
		st.Do(func() {
			s.log.Warn("radius: packet dropped (logged at most every 10s per reason)", "reason", reason, "source", src.String())
		})
	}
}

// request is a decoded, authentic Access-Request.
type request struct {
	pkt      *radius.Packet
	userName string
	passcode string
	hasPW    bool
	state    string
}

// decode parses and authenticates one Access-Request from a known client.
// The error is a drop reason.
func decode(b, secret []byte, requireMA bool) (*request, string) {
	pkt, err := radius.Parse(b, secret)
	if err != nil {
		return nil, DropMalformed
	}
	if pkt.Code != radius.CodeAccessRequest {
		return nil, DropNotRequest
	}
	length := int(b[2])<<8 | int(b[3])
	has, err := checkRequestMA(b[:length], secret)
	switch {
	case errors.Is(err, errBadMA):
		return nil, DropBadAuth
	case err != nil:
		return nil, DropMalformed
	case !has && requireMA:
		return nil, DropMissingMA
	}
	r := &request{pkt: pkt}
	r.userName = rfc2865.UserName_GetString(pkt)
	if raw, ok := pkt.Lookup(rfc2865.UserPassword_Type); ok {
		pw, err := radius.UserPassword(raw, secret, pkt.Authenticator[:])
		if err != nil {
			return nil, DropMalformed
		}
		r.passcode, r.hasPW = string(pw), true
	}
	r.state = string(rfc2865.State_Get(pkt))
	return r, ""
}

// statePrefix marks the States tokend issues.
const statePrefix = "tkd1:"

// maxPasscode bounds what is handed to the Service (PIN + code fits many
// times over; the admin API uses the same bound).
const maxPasscode = 64

func (s *Server) handle(conn net.PacketConn, c *client, src netip.AddrPort, to net.Addr, b []byte) {
	req, reason := decode(b, c.secret, c.agent.RequireMessageAuthenticator)
	if req == nil {
		s.drop(reason, src)
		return
	}
	key := dupKey{src: src, id: req.pkt.Identifier, auth: req.pkt.Authenticator, agent: c.agent.ID}
	if resp, seen := s.dupCheck(key); seen {
		if resp != nil {
			_, _ = conn.WriteTo(resp, to)
		} else {
			s.drop(DropInProgress, src)
		}
		return
	}
	if !c.limiter.Allow() {
		s.dupForget(key)
		s.drop(DropRateLimited, src)
		return
	}
	resp, err := s.decide(c, req)
	if err != nil {
		// No answer: the agent retransmits and may find the store back.
		s.dupForget(key)
		s.rec.RADIUSDropped(DropError)
		s.log.Error("radius: deciding a request", "agent", c.agent.Name, "err", err)
		return
	}
	wire, err := encodeResponse(resp, req.pkt.Authenticator)
	if err != nil {
		s.dupForget(key)
		s.log.Error("radius: encoding a response", "agent", c.agent.Name, "err", err)
		return
	}
	s.dupStore(key, wire)
	if _, err := conn.WriteTo(wire, to); err != nil && !s.closing.Load() {
		s.log.Warn("radius: writing a response", "agent", c.agent.Name, "err", err)
	}
}

// decide relays the request to the Service and builds the answer.
func (s *Server) decide(c *client, req *request) (*radius.Packet, error) {
	reject := req.pkt.Response(radius.CodeAccessReject)
	session := ""
	if req.state != "" {
		// A State tokend did not issue names no session: the Service
		// refuses it (and audits and counts the failure) like an expired one.
		session = strings.TrimPrefix(req.state, statePrefix)
		if session == "" {
			session = "-"
		}
	}
	if req.userName == "" || !req.hasPW || len(req.passcode) > maxPasscode || len(req.userName) > 256 {
		// CHAP and other methods cannot carry a passcode tokend can check.
		s.rec.AgentAuthentication(appliance.AgentRADIUS, appliance.AuthReject)
		return reject, nil
	}
	res, err := s.cfg.Service.AgentAuthenticate(context.Background(), c.agent,
		appliance.AuthRequest{UserName: req.userName, Passcode: req.passcode, Session: session})
	if err != nil {
		return nil, err
	}
	s.rec.AgentAuthentication(appliance.AgentRADIUS, res.Result)
	var resp *radius.Packet
	switch res.Result {
	case appliance.AuthAccept:
		return req.pkt.Response(radius.CodeAccessAccept), nil
	case appliance.AuthNextTokencode:
		resp = req.pkt.Response(radius.CodeAccessChallenge)
		msg := "Enter the next tokencode:"
		if res.Reason == appliance.ReasonPINChanged {
			msg = "PIN accepted. Wait for the tokencode to change, then enter a new passcode:"
		}
		_ = rfc2865.ReplyMessage_SetString(resp, msg)
	case appliance.AuthNewPIN:
		resp = req.pkt.Response(radius.CodeAccessChallenge)
		msg := fmt.Sprintf("Enter a new PIN of %d to %d digits:", s.cfg.PINMinLength, s.cfg.PINMaxLength)
		switch {
		case res.PIN != "":
			// A system-generated PIN is told to the user once, as RSA
			// Authentication Manager does over RADIUS.
			msg = "Your new PIN is " + res.PIN.Reveal() + ". Wait for the tokencode to change, then enter a new passcode:"
		case res.Reason == appliance.ReasonPINPolicy:
			msg = fmt.Sprintf("PIN rejected. Enter a new PIN of %d to %d digits:", s.cfg.PINMinLength, s.cfg.PINMaxLength)
		}
		_ = rfc2865.ReplyMessage_SetString(resp, msg)
	default:
		return reject, nil
	}
	if res.Session == "" {
		return reject, nil
	}
	_ = rfc2865.State_SetString(resp, statePrefix+res.Session)
	return resp, nil
}

// dupCheck reports whether key was seen within the window, with its answer
// (nil while still being decided); an unseen key is recorded as pending.
func (s *Server) dupCheck(key dupKey) ([]byte, bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastDup) > time.Second {
		for k, e := range s.dups {
			if now.Sub(e.at) > s.cfg.DuplicateWindow {
				delete(s.dups, k)
			}
		}
		s.lastDup = now
	}
	if e, ok := s.dups[key]; ok && now.Sub(e.at) <= s.cfg.DuplicateWindow {
		return e.resp, true
	}
	s.dups[key] = &dupEntry{at: now}
	return nil, false
}

func (s *Server) dupStore(key dupKey, resp []byte) {
	s.mu.Lock()
	s.dups[key] = &dupEntry{at: s.cfg.Now(), resp: resp}
	s.mu.Unlock()
}

func (s *Server) dupForget(key dupKey) {
	s.mu.Lock()
	delete(s.dups, key)
	s.mu.Unlock()
}
