package ctkip

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors a Backend returns for activation codes that cannot be used. The
// handler answers all of them with the same fault ("Invalid authorization
// code.") so that a client cannot tell which check failed; the distinction only
// reaches the Recorder. Backends may wrap them.
var (
	ErrInvalidCode = errors.New("ctkip: invalid activation code")
	ErrCodeExpired = fmt.Errorf("%w: expired", ErrInvalidCode)
	ErrCodeUsed    = fmt.Errorf("%w: already used", ErrInvalidCode)
)

// Token holds the provisioning parameters of the token an activation code
// stands for.
type Token struct {
	Serial    string    // exactly 12 decimal digits
	UserID    string    // user login sent in ServerFinished; may be empty
	Digits    int       // tokencode length, 1–8 (6 or 8 in practice)
	Interval  int       // seconds per tokencode, 30 or 60
	ExpiresAt time.Time // key expiry; sent as the UTC date at midnight
}

func (t Token) validate() error {
	switch {
	case !validSerial(t.Serial):
		return errors.New("ctkip: backend token serial is not 12 digits")
	case t.Digits < 1 || t.Digits > 8:
		return errors.New("ctkip: backend token digits out of range")
	case t.Interval != 30 && t.Interval != 60:
		return errors.New("ctkip: backend token interval is not 30 or 60")
	case t.ExpiresAt.IsZero():
		return errors.New("ctkip: backend token has no expiry")
	}
	return nil
}

// CodeError is what a Backend returns for an activation code that was issued
// for a real token but cannot be used now (expired, used, voided): Serial
// names the token so that the refusal can be audited. It never holds the
// code. Err wraps ErrInvalidCode or one of its refinements.
type CodeError struct {
	Serial string
	Err    error
}

func (e *CodeError) Error() string { return e.Err.Error() + " (token " + e.Serial + ")" }
func (e *CodeError) Unwrap() error { return e.Err }

// Backend is the token store as CT-KIP needs it. The appliance adapts its
// Service to it. Errors must not contain the code or the seed.
type Backend interface {
	// Begin validates an activation code on POST #1, before any RSA work, and
	// returns the token it stands for. It must not consume the code. Unknown,
	// expired, voided or used codes return an error wrapping ErrInvalidCode;
	// a *CodeError when the code names a real token.
	Begin(ctx context.Context, code string) (Token, error)
	// Complete atomically consumes the code and durably commits the seed
	// derived on POST #2, returning the token as committed. Only when it
	// returns nil does the client get ServerFinished: with no confirmation
	// message in the protocol, the seed must be stored before it is usable.
	// A code that can no longer be used returns an error wrapping ErrInvalidCode.
	Complete(ctx context.Context, code string, seed Seed) (Token, error)
}

// Limiter throttles activation-code guessing per client and in total. The
// code is always checked first when the client's own bucket allows it, and
// only failed checks are charged, so a valid code is never refused because
// others guess: the total budget decides only how a failure is answered,
// recorded and audited. remote is the client's address as ClientPrefix
// gives it (an IPv4 address or an IPv6 /64).
type Limiter interface {
	// Allow reports whether remote's own bucket of failures still allows a
	// code check. It must not consult the total budget.
	Allow(remote string) bool
	// Fail charges a failed code check to remote and to the total budget,
	// and reports whether the total budget still had room for it.
	Fail(remote string) bool
}

// Auditor keeps the durable record of refusals that concern a real token: a
// code Backend identified (*CodeError) and a failed ClientNonce in a live
// session. Anonymous noise (unknown codes, malformed requests, other
// methods, rate-limited requests) never reaches it; it is counted by the
// Recorder and summarised in a throttled log line. Code refusals reach it
// only while the Limiter's total budget has room, so its writes are bounded
// by the Limiter. Calls are synchronous; serial and reason are never secret.
type Auditor interface {
	Refused(ctx context.Context, serial string, step Step, reason string) error
}

// SessionStore keeps sessions between the two POSTs where every node of a
// cluster can reach them, so a device whose second POST goes to another
// node finishes there. Without one, sessions live in this Server's memory
// only. The per-client and per-code caps are counted by each Server on its
// own either way.
type SessionStore interface {
	// Save stores a session under id.
	Save(ctx context.Context, id string, s StoredSession) error
	// Take removes and returns the session id names; it reports
	// ErrNoSession when there is none (unknown, taken or expired).
	Take(ctx context.Context, id string) (StoredSession, error)
	// Drop forgets a session a newer ClientHello of its code replaced.
	Drop(ctx context.Context, id string) error
}

// StoredSession is what a SessionStore keeps. Code and Nonce are secrets.
type StoredSession struct {
	Code      string
	Serial    string
	Nonce     [16]byte // R_S
	Created   time.Time
	ExpiresAt time.Time
}

// ErrNoSession is a SessionStore's answer for a session it does not hold.
var ErrNoSession = errors.New("ctkip: no such session")

// Outcome classifies a handled request for metrics. The set is closed, so it is
// safe as a metric label.
type Outcome string

// Outcomes reported to the Recorder.
const (
	OutcomeSuccess     Outcome = "success"
	OutcomeBadCode     Outcome = "bad_code"
	OutcomeExpired     Outcome = "expired"
	OutcomeUsed        Outcome = "used"
	OutcomeMalformed   Outcome = "malformed"
	OutcomeRateLimited Outcome = "rate_limited"
	OutcomeInternal    Outcome = "internal"
)

// Step says which request of the exchange an outcome belongs to.
type Step string

// Steps reported to the Recorder.
const (
	StepUnknown  Step = "unknown"  // failed before the inner message was known
	StepHello    Step = "hello"    // POST #1, ClientHello
	StepFinished Step = "finished" // POST #2, ClientNonce
)

// Recorder receives metrics. Implementations must be safe for concurrent use.
type Recorder interface {
	// Outcome counts one handled request.
	Outcome(step Step, outcome Outcome)
	// Exchange observes the duration of a successful exchange, from the
	// ClientHello's arrival to ServerFinished.
	Exchange(d time.Duration)
}

// Config configures a Server. Key and Backend are required.
type Config struct {
	Key         *rsa.PrivateKey  // CT-KIP transport key; 1024 bits is what RSA clients were proven with
	Backend     Backend          // activation codes and seed storage
	Limiter     Limiter          // optional; nil allows everything
	Recorder    Recorder         // optional
	Auditor     Auditor          // optional; refusals about real tokens
	Logger      *slog.Logger     // optional; nil discards
	Now         func() time.Time // optional; time.Now
	Rand        io.Reader        // optional; crypto/rand.Reader
	SessionTTL  time.Duration    // time allowed between the two POSTs; default 5 minutes
	Sessions    SessionStore     // optional; nil keeps sessions in memory only
	MaxSessions int              // bound on pending sessions; default 10000
	ServiceID   string           // ServerFinished ServiceID; default "RSA CT-KIP"
	// MaxPendingPerClient bounds the pending sessions of one client
	// (ClientPrefix), so one address cannot fill the table; default 8.
	MaxPendingPerClient int
	// MaxHellosPerCode bounds the ClientHellos one valid code may start per
	// minute; a code holds at most one pending session whatever this is (a
	// new hello replaces the old session). Default 10.
	MaxHellosPerCode int
	// LogInterval is the least time between two log lines about refused
	// requests; each line counts the refusals since the last. Default 10s.
	LogInterval time.Duration
}

const (
	// MaxBodySize bounds request bodies; real requests are about 1.5 KiB.
	MaxBodySize = 64 << 10

	contentTypeCTKIP = "application/vnd.otps.ct-kip"
	contentTypeXML   = "text/xml; charset=utf-8"
)

// Fault texts: fixed strings, never request data (§7.3).
const (
	excPrivilege = "com.rsa.command.exception.InsufficientPrivilegeException"
	excInvalid   = "com.rsa.command.exception.InvalidRequestException"
	excInternal  = "com.rsa.command.exception.InternalServerException"

	msgInvalidCode = "Invalid authorization code."
	msgRateLimited = "Too many failed attempts. Try again later."
	msgInternal    = "The request could not be processed."
)

// Server is the CT-KIP http.Handler. Serve it at /ctkip/services/CtkipService
// (and / if convenient); both POSTs go to the same URL.
type Server struct {
	key       *rsa.PrivateKey
	modulus   []byte
	exponent  []byte
	backend   Backend
	limiter   Limiter
	recorder  Recorder
	log       *slog.Logger
	now       func() time.Time
	rand      io.Reader
	auditor   Auditor
	ttl       time.Duration
	store     SessionStore
	max       int
	perClient int
	perCode   int
	serviceID string

	refusalLog logThrottle // warn lines about refused requests
	errorLog   logThrottle // error lines about internal failures

	mu        sync.Mutex
	sessions  map[string]*session   // by SessionID
	codes     map[string]*codeState // by activation code; only codes Begin accepted
	clients   map[string]int        // pending sessions and reservations by ClientPrefix
	reserved  int                   // hellos between reserve and commit
	lastSweep time.Time

	bufs sync.Pool // *[]byte for bodies and responses
	docs sync.Pool // *xdoc
}

type session struct {
	code    string
	serial  string // for auditing a failed ClientNonce
	client  string // ClientPrefix, for the per-client count
	rs      [16]byte
	created time.Time
}

// codeState is what the server remembers of a valid code: its one pending
// session and its hellos in the current minute.
type codeState struct {
	sid    string // pending session, "" if none
	window time.Time
	hellos int
}

// helloWindow is the period MaxHellosPerCode counts over.
const helloWindow = time.Minute

// NewServer checks cfg and fills in defaults.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Key == nil {
		return nil, errors.New("ctkip: Config.Key is required")
	}
	if cfg.Backend == nil {
		return nil, errors.New("ctkip: Config.Backend is required")
	}
	if err := cfg.Key.Validate(); err != nil {
		return nil, fmt.Errorf("ctkip: invalid RSA key: %w", err)
	}
	if cfg.Key.N.BitLen() < 1024 {
		return nil, errors.New("ctkip: RSA key must have at least 1024 bits")
	}
	cfg.Key.Precompute()
	s := &Server{
		key:       cfg.Key,
		modulus:   cfg.Key.N.Bytes(), // minimal unsigned bytes, also a K_TOKEN input (§6.1)
		exponent:  big32(cfg.Key.E),
		backend:   cfg.Backend,
		limiter:   cfg.Limiter,
		recorder:  cfg.Recorder,
		auditor:   cfg.Auditor,
		log:       cfg.Logger,
		now:       cfg.Now,
		rand:      cfg.Rand,
		ttl:       cfg.SessionTTL,
		store:     cfg.Sessions,
		max:       cfg.MaxSessions,
		perClient: cfg.MaxPendingPerClient,
		perCode:   cfg.MaxHellosPerCode,
		serviceID: cfg.ServiceID,
		sessions:  make(map[string]*session),
		codes:     make(map[string]*codeState),
		clients:   make(map[string]int),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.ttl <= 0 {
		s.ttl = 5 * time.Minute
	}
	if s.max <= 0 {
		s.max = 10000
	}
	if s.perClient <= 0 {
		s.perClient = 8
	}
	if s.perCode <= 0 {
		s.perCode = 10
	}
	every := cfg.LogInterval
	if every <= 0 {
		every = 10 * time.Second
	}
	s.refusalLog.every, s.errorLog.every = every, every
	if s.serviceID == "" {
		s.serviceID = DefaultServiceID
	}
	return s, nil
}

// big32 returns the minimal big-endian bytes of a positive exponent.
func big32(e int) []byte {
	var b []byte
	for v := uint64(e); v > 0; v >>= 8 {
		b = append([]byte{byte(v)}, b...)
	}
	return b
}

// failure is a handled error: what the client sees and what is recorded.
type failure struct {
	outcome   Outcome
	exception string
	message   string // fixed text, safe for clients and logs
	err       error  // internal detail for the log; never contains secrets
	codeCheck bool   // a failed code check: charged to the Limiter
	serial    string // the real token concerned, if any: audited
	reason    string // audit reason; the outcome when empty
}

func invalidRequest(msg string) *failure {
	return &failure{outcome: OutcomeMalformed, exception: excInvalid, message: msg}
}

func codeFailure(err error) *failure {
	o := OutcomeBadCode
	switch {
	case errors.Is(err, ErrCodeExpired):
		o = OutcomeExpired
	case errors.Is(err, ErrCodeUsed):
		o = OutcomeUsed
	}
	f := &failure{outcome: o, exception: excPrivilege, message: msgInvalidCode, codeCheck: true}
	if ce, ok := errors.AsType[*CodeError](err); ok && validSerial(ce.Serial) {
		f.serial = ce.Serial
	}
	return f
}

func rateLimited() *failure {
	return &failure{outcome: OutcomeRateLimited, exception: excPrivilege, message: msgRateLimited}
}

func internalFailure(err error) *failure {
	return &failure{outcome: OutcomeInternal, exception: excInternal, message: msgInternal, err: err}
}

func isCTKIPMediaType(v string) bool {
	mt, _, _ := strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(mt), contentTypeCTKIP)
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// ClientPrefix names the client a request comes from for limits: the IPv4
// address, or the IPv6 /64 (one subscriber's network: a client owns all of
// it, so counting single IPv6 addresses would count nothing). remoteAddr is
// an http.Request.RemoteAddr ("host:port") or a bare address.
func ClientPrefix(remoteAddr string) string {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

func (s *Server) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (s *Server) putBuf(b *[]byte) {
	if cap(*b) <= 2*MaxBodySize {
		*b = (*b)[:0]
		s.bufs.Put(b)
	}
}

func (s *Server) getDoc() *xdoc {
	if d, ok := s.docs.Get().(*xdoc); ok {
		return d
	}
	return new(xdoc)
}

func (s *Server) putDoc(d *xdoc) {
	d.reset()
	s.docs.Put(d)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	remote := remoteHost(r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		s.finish(r.Context(), StepUnknown, remote, invalidRequest("method not allowed"))
		return
	}
	out := s.getBuf()
	defer s.putBuf(out)
	step, resp, f := s.handle(r, ClientPrefix(r.RemoteAddr), (*out)[:0])
	if f != nil {
		resp = appendFault(resp[:0], f.exception, f.message)
	}
	*out = resp
	h := w.Header()
	h.Set("Content-Type", contentTypeXML)
	h.Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(http.StatusOK) // faults too: what proven clients were tested with (§7.3)
	_, _ = w.Write(resp)
	s.finish(r.Context(), step, remote, f)
}

// finish records and logs one request. Nothing secret is in f. Successes
// log at debug level: the HTTP access log and the audit trail already
// record them. Refusals are counted by the Recorder one by one but logged
// at most once per LogInterval (internal errors separately), each line
// describing the request at hand and counting the refusals since the last
// line: anyone can send junk, and a flood must not become a log flood.
func (s *Server) finish(ctx context.Context, step Step, remote string, f *failure) {
	outcome := OutcomeSuccess
	if f != nil {
		outcome = f.outcome
	}
	if s.recorder != nil {
		s.recorder.Outcome(step, outcome)
	}
	if f == nil {
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "ctkip request", slog.String("step", string(step)),
				slog.String("remote", remote), slog.String("outcome", string(outcome)))
		}
		return
	}
	th, level := &s.refusalLog, slog.LevelWarn
	if f.err != nil {
		th, level = &s.errorLog, slog.LevelError
	}
	counts, ok := th.admit(s.now(), string(step)+"/"+string(outcome))
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("step", string(step)), slog.String("remote", remote), slog.String("reason", f.message)}
	if f.err != nil {
		attrs = append(attrs, slog.String("error", f.err.Error()))
	}
	attrs = append(attrs, slog.String("outcome", string(outcome)), slog.Any("refused_since_last_line", counts))
	s.log.LogAttrs(ctx, level, "ctkip request refused", attrs...)
}

// logThrottle admits one log line per interval and counts what it held back.
type logThrottle struct {
	every time.Duration

	mu     sync.Mutex
	next   time.Time
	counts map[string]int
}

// admit counts one event under key and reports whether a line may be
// written now; if so it returns the counts since the last line (this event
// included) and starts a new interval.
func (t *logThrottle) admit(now time.Time, key string) (map[string]int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[string]int)
	}
	t.counts[key]++
	if now.Before(t.next) {
		return nil, false
	}
	counts := t.counts
	t.counts, t.next = nil, now.Add(t.every)
	return counts, true
}

// handle runs one POST and returns the response body appended to out.
func (s *Server) handle(r *http.Request, remote string, out []byte) (Step, []byte, *failure) {
	if !isCTKIPMediaType(r.Header.Get("Content-Type")) {
		return StepUnknown, out, invalidRequest("Unsupported content type.")
	}
	bodyBuf := s.getBuf()
	defer s.putBuf(bodyBuf)
	body, err := readBody(r.Body, (*bodyBuf)[:0])
	*bodyBuf = body
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return StepUnknown, out, invalidRequest("Request too large.")
		}
		return StepUnknown, out, invalidRequest("Request body could not be read.")
	}
	doc := s.getDoc()
	defer s.putDoc(doc)
	req, err := parseClientRequest(doc, body)
	if err != nil {
		return StepUnknown, out, invalidRequest("Malformed request.")
	}
	msg, err := parseClientMessage(doc, req.Message)
	if err != nil {
		return StepUnknown, out, invalidRequest("Malformed CT-KIP message.")
	}
	step := StepHello
	if msg.Kind == kindClientNonce {
		step = StepFinished
	}
	header := strings.TrimSpace(r.Header.Get("Authorization"))
	code := req.AuthData
	if code == "" || header == "" {
		return step, out, codeFailure(ErrInvalidCode)
	}
	if subtle.ConstantTimeCompare([]byte(header), []byte(code)) != 1 {
		return step, out, invalidRequest("Authorization does not match AuthData.")
	}
	// Only the client's own failures can stop its code being checked; the
	// total budget is consulted after the check, and only for failures.
	if s.limiter != nil && !s.limiter.Allow(remote) {
		return step, out, rateLimited()
	}
	var f *failure
	if msg.Kind == kindClientHello {
		out, f = s.hello(r.Context(), remote, code, req.ProvisioningData, out)
	} else {
		out, f = s.finished(r.Context(), code, &msg, out)
	}
	if f == nil {
		return step, out, nil
	}
	audit := f.serial != ""
	if f.codeCheck && s.limiter != nil && !s.limiter.Fail(remote) {
		// Over the total budget the refusal is answered and counted as
		// rate-limited and not audited, so a distributed guesser cannot
		// grow the audit trail faster than the budget.
		f, audit = rateLimited(), false
	}
	if audit && s.auditor != nil {
		reason := f.reason
		if reason == "" {
			reason = string(f.outcome)
		}
		if err := s.auditor.Refused(r.Context(), f.serial, step, reason); err != nil {
			f.err = fmt.Errorf("audit of a refusal for token %s: %w", f.serial, err)
		}
	}
	return step, out, f
}

var errTooLarge = errors.New("ctkip: request body too large")

// readBody reads at most MaxBodySize bytes into buf.
func readBody(r io.Reader, buf []byte) ([]byte, error) {
	lr := io.LimitReader(r, MaxBodySize+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > MaxBodySize {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// hello handles ClientHello: reserve a session slot for the client, check
// the code, open a session, send ServerHello.
func (s *Server) hello(ctx context.Context, client, code string, pd, out []byte) ([]byte, *failure) {
	// The slot is reserved before the code is checked, so a client at its
	// cap is refused whatever code it sends: the refusal says nothing
	// about the code.
	if f := s.reserve(client); f != nil {
		return out, f
	}
	tok, err := s.backend.Begin(ctx, code)
	if err == nil {
		err = tok.validate()
		if err != nil {
			err = fmt.Errorf("backend token: %w", err)
		}
	}
	if err != nil {
		s.release(client)
		if errors.Is(err, ErrInvalidCode) {
			return out, codeFailure(err)
		}
		return out, internalFailure(fmt.Errorf("backend begin: %w", err))
	}
	// 17 bytes for the hex part of the SessionID, 56 for its base64 part, 16 for R_S.
	var rnd [17 + 56 + 16]byte
	if _, err := io.ReadFull(s.rand, rnd[:]); err != nil {
		s.release(client)
		return out, internalFailure(fmt.Errorf("random: %w", err))
	}
	sid := sessionID(rnd[:17], rnd[17:73])
	sess := &session{code: code, serial: tok.Serial, client: client, created: s.now()}
	copy(sess.rs[:], rnd[73:])
	ok, replaced := s.commit(sid, sess)
	if !ok {
		// The code's own limit, and nothing else, refuses a valid code.
		return out, rateLimited()
	}
	if s.store != nil {
		if replaced != "" {
			// Best effort: a replaced session left behind expires.
			_ = s.store.Drop(ctx, replaced)
		}
		st := StoredSession{Code: code, Serial: tok.Serial, Nonce: sess.rs, Created: sess.created, ExpiresAt: sess.created.Add(s.ttl)}
		if err := s.store.Save(ctx, sid, st); err != nil {
			s.mu.Lock()
			if cur, ok := s.sessions[sid]; ok {
				s.removeLocked(sid, cur)
			}
			s.mu.Unlock()
			return out, internalFailure(fmt.Errorf("save session: %w", err))
		}
	}
	// Render into a scratch area at the end of out, then wrap.
	h := serverHello{SessionID: sid, Modulus: s.modulus, Exponent: s.exponent, Nonce: sess.rs}
	inner := appendServerHello(make([]byte, 0, 2560), &h)
	if len(pd) == 0 {
		pd = []byte(clientPD)
	}
	// The client's ProvisioningData goes back byte for byte (§4.3).
	return appendResponse(out, code, pd, inner), nil
}

// sessionID renders RSA's shape: 34 lowercase hex, '-', base64(56 random bytes + 0x00).
func sessionID(hexPart, b64Part []byte) string {
	var raw [57]byte
	copy(raw[:], b64Part)
	b := make([]byte, 0, 34+1+76)
	b = hex.AppendEncode(b, hexPart)
	b = append(b, '-')
	b = base64.StdEncoding.AppendEncode(b, raw[:])
	return string(b)
}

// finished handles ClientNonce: the session is consumed whatever happens next,
// so each session allows exactly one decryption attempt.
func (s *Server) finished(ctx context.Context, code string, msg *clientMessage, out []byte) ([]byte, *failure) {
	sess := s.takeSession(msg.SessionID)
	if s.store != nil {
		// The store is the one truth across nodes: the local entry (if
		// this node said hello) only frees its counts.
		st, err := s.store.Take(ctx, msg.SessionID)
		switch {
		case errors.Is(err, ErrNoSession):
			sess = nil
		case err != nil:
			return out, internalFailure(fmt.Errorf("take session: %w", err))
		case s.now().Sub(st.Created) >= s.ttl:
			sess = nil
		default:
			sess = &session{code: st.Code, serial: st.Serial, rs: st.Nonce, created: st.Created}
		}
	}
	if sess == nil {
		return out, invalidRequest("Unknown or expired session.")
	}
	// From here on the session is real: its failures are about its token.
	if subtle.ConstantTimeCompare([]byte(code), []byte(sess.code)) != 1 {
		f := codeFailure(ErrInvalidCode)
		f.serial, f.reason = sess.serial, "code_mismatch"
		return out, f
	}
	if subtle.ConstantTimeCompare(msg.NonceEcho, sess.rs[:]) != 1 {
		f := invalidRequest("Server nonce mismatch.")
		f.serial, f.reason = sess.serial, "nonce_mismatch"
		return out, f
	}
	rc, err := DecryptNonce(s.key, msg.EncryptedNonce)
	if err != nil {
		f := invalidRequest("Client nonce could not be decrypted.")
		f.serial, f.reason = sess.serial, "nonce_undecryptable"
		return out, f
	}
	defer clear(rc[:])
	seed, err := DeriveSeed(rc[:], s.modulus, sess.rs[:])
	if err != nil {
		return out, internalFailure(err)
	}
	mac, err := ComputeMAC(seed, rc[:])
	if err != nil {
		return out, internalFailure(err)
	}
	tok, err := s.backend.Complete(ctx, code, seed)
	clear(seed[:])
	if errors.Is(err, ErrInvalidCode) {
		f := codeFailure(err)
		if f.serial == "" {
			f.serial = sess.serial
		}
		return out, f
	}
	if err != nil {
		return out, internalFailure(fmt.Errorf("backend complete: %w", err))
	}
	if err := tok.validate(); err != nil {
		// The seed is committed but we cannot describe the token; the
		// administrator must re-issue a code.
		return out, internalFailure(err)
	}
	fin := serverFinished{
		SessionID: msg.SessionID,
		Serial:    tok.Serial,
		ExpiresAt: tok.ExpiresAt,
		ServiceID: s.serviceID,
		UserID:    tok.UserID,
		Digits:    tok.Digits,
		Interval:  tok.Interval,
		MAC:       mac,
	}
	inner := appendServerFinished(make([]byte, 0, 2048), &fin)
	if s.recorder != nil {
		s.recorder.Exchange(s.now().Sub(sess.created))
	}
	return appendResponse(out, code, []byte(serverFinishedPD), inner), nil
}

// reserve takes a pending-session slot for client before its code is
// checked. It refuses (rate-limited) a client at MaxPendingPerClient and
// fails (internal) when the table is full; expired sessions are swept
// first, at most once a second when full and otherwise once per TTL/4.
func (s *Server) reserve(client string) *failure {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	full := len(s.sessions)+s.reserved >= s.max || s.clients[client] >= s.perClient
	if since := now.Sub(s.lastSweep); since >= s.ttl/4 || since < 0 || (full && since >= time.Second) {
		s.sweep(now)
	}
	if s.clients[client] >= s.perClient {
		return rateLimited()
	}
	if len(s.sessions)+s.reserved >= s.max {
		return internalFailure(errors.New("too many pending sessions"))
	}
	s.clients[client]++
	s.reserved++
	return nil
}

// release gives back a slot reserve took, for a hello that failed.
func (s *Server) release(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved--
	s.dropClient(client)
}

func (s *Server) dropClient(client string) {
	if s.clients[client] <= 1 {
		delete(s.clients, client)
		return
	}
	s.clients[client]--
}

// commit turns a reservation into a session for a code Begin accepted. It
// replaces the code's previous pending session, so a code holds one entry
// whatever it sends, and reports false (releasing the slot) once the code
// has started MaxHellosPerCode hellos in the current minute. It returns the
// id of the session it replaced, if any.
func (s *Server) commit(id string, sess *session) (ok bool, replaced string) {
	now := sess.created
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved--
	cs := s.codes[sess.code]
	if cs == nil {
		cs = &codeState{window: now}
		s.codes[sess.code] = cs
	}
	if d := now.Sub(cs.window); d >= helloWindow || d < 0 {
		cs.window, cs.hellos = now, 0
	}
	if cs.hellos >= s.perCode {
		s.dropClient(sess.client)
		return false, ""
	}
	cs.hellos++
	if old, ok := s.sessions[cs.sid]; ok && cs.sid != "" {
		replaced = cs.sid
		s.removeLocked(cs.sid, old)
	}
	cs.sid = id
	s.sessions[id] = sess
	return true, replaced
}

// removeLocked forgets a session and its counts.
func (s *Server) removeLocked(id string, sess *session) {
	delete(s.sessions, id)
	s.dropClient(sess.client)
	if cs := s.codes[sess.code]; cs != nil && cs.sid == id {
		cs.sid = ""
	}
}

// sweep drops expired sessions and the state of codes with neither a
// pending session nor a current hello window.
func (s *Server) sweep(now time.Time) {
	for id, sess := range s.sessions {
		if now.Sub(sess.created) >= s.ttl {
			s.removeLocked(id, sess)
		}
	}
	for code, cs := range s.codes {
		if cs.sid == "" && now.Sub(cs.window) >= helloWindow {
			delete(s.codes, code)
		}
	}
	s.lastSweep = now
}

// takeSession removes and returns a live session, or nil.
func (s *Server) takeSession(id string) *session {
	now := s.now()
	s.mu.Lock()
	sess, ok := s.sessions[id]
	if ok {
		s.removeLocked(id, sess)
	}
	s.mu.Unlock()
	if !ok || now.Sub(sess.created) >= s.ttl {
		return nil
	}
	return sess
}

// pendingSessions reports the number of stored sessions (for tests).
func (s *Server) pendingSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// pendingFor reports the sessions stored for a code and for a client (for
// tests).
func (s *Server) pendingFor(code, client string) (byCode, byClient int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.code == code {
			byCode++
		}
	}
	return byCode, s.clients[client]
}
