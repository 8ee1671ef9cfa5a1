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

// Backend is the token store as CT-KIP needs it. The appliance adapts its
// Service to it. Errors must not contain the code or the seed.
type Backend interface {
	// Begin validates an activation code on POST #1, before any RSA work, and
	// returns the token it stands for. It must not consume the code. Unknown,
	// expired, voided or used codes return an error wrapping ErrInvalidCode.
	Begin(ctx context.Context, code string) (Token, error)
	// Complete atomically consumes the code and durably commits the seed
	// derived on POST #2, returning the token as committed. Only when it
	// returns nil does the client get ServerFinished: with no confirmation
	// message in the protocol, the seed must be stored before it is usable.
	// A code that can no longer be used returns an error wrapping ErrInvalidCode.
	Complete(ctx context.Context, code string, seed Seed) (Token, error)
}

// Limiter throttles activation-code guessing per client address and in total.
type Limiter interface {
	// Allow reports whether a request from remote may have its code checked.
	Allow(remote string) bool
	// Fail records a failed code check from remote.
	Fail(remote string)
}

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
	Logger      *slog.Logger     // optional; nil discards
	Now         func() time.Time // optional; time.Now
	Rand        io.Reader        // optional; crypto/rand.Reader
	SessionTTL  time.Duration    // time allowed between the two POSTs; default 5 minutes
	MaxSessions int              // bound on pending sessions; default 10000
	ServiceID   string           // ServerFinished ServiceID; default "RSA CT-KIP"
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
	ttl       time.Duration
	max       int
	serviceID string

	mu        sync.Mutex
	sessions  map[string]*session
	lastSweep time.Time

	bufs sync.Pool // *[]byte for bodies and responses
	docs sync.Pool // *xdoc
}

type session struct {
	code    string
	rs      [16]byte
	created time.Time
}

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
		log:       cfg.Logger,
		now:       cfg.Now,
		rand:      cfg.Rand,
		ttl:       cfg.SessionTTL,
		max:       cfg.MaxSessions,
		serviceID: cfg.ServiceID,
		sessions:  make(map[string]*session),
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
	return &failure{outcome: o, exception: excPrivilege, message: msgInvalidCode}
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
	step, resp, f := s.handle(r, remote, (*out)[:0])
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
// record them, and refusals are what an operator watches for.
func (s *Server) finish(ctx context.Context, step Step, remote string, f *failure) {
	outcome, level := OutcomeSuccess, slog.LevelDebug
	attrs := []slog.Attr{slog.String("step", string(step)), slog.String("remote", remote)}
	if f != nil {
		outcome, level = f.outcome, slog.LevelWarn
		attrs = append(attrs, slog.String("reason", f.message))
		if f.err != nil {
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", f.err.Error()))
		}
	}
	attrs = append(attrs, slog.String("outcome", string(outcome)))
	if s.recorder != nil {
		s.recorder.Outcome(step, outcome)
	}
	s.log.LogAttrs(ctx, level, "ctkip request", attrs...)
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
	if s.limiter != nil && !s.limiter.Allow(remote) {
		return step, out, &failure{outcome: OutcomeRateLimited, exception: excPrivilege, message: msgRateLimited}
	}
	var f *failure
	if msg.Kind == kindClientHello {
		out, f = s.hello(r.Context(), code, req.ProvisioningData, out)
	} else {
		out, f = s.finished(r.Context(), code, &msg, out)
	}
	if f != nil && s.limiter != nil && f.exception == excPrivilege {
		s.limiter.Fail(remote)
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

// hello handles ClientHello: check the code, open a session, send ServerHello.
func (s *Server) hello(ctx context.Context, code string, pd, out []byte) ([]byte, *failure) {
	tok, err := s.backend.Begin(ctx, code)
	if errors.Is(err, ErrInvalidCode) {
		return out, codeFailure(err)
	}
	if err != nil {
		return out, internalFailure(fmt.Errorf("backend begin: %w", err))
	}
	if err := tok.validate(); err != nil {
		return out, internalFailure(err)
	}
	// 17 bytes for the hex part of the SessionID, 56 for its base64 part, 16 for R_S.
	var rnd [17 + 56 + 16]byte
	if _, err := io.ReadFull(s.rand, rnd[:]); err != nil {
		return out, internalFailure(fmt.Errorf("random: %w", err))
	}
	sid := sessionID(rnd[:17], rnd[17:73])
	sess := &session{code: code, created: s.now()}
	copy(sess.rs[:], rnd[73:])
	if !s.putSession(sid, sess) {
		return out, internalFailure(errors.New("too many pending sessions"))
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
	if sess == nil {
		return out, invalidRequest("Unknown or expired session.")
	}
	if subtle.ConstantTimeCompare([]byte(code), []byte(sess.code)) != 1 {
		return out, codeFailure(ErrInvalidCode)
	}
	if subtle.ConstantTimeCompare(msg.NonceEcho, sess.rs[:]) != 1 {
		return out, invalidRequest("Server nonce mismatch.")
	}
	rc, err := DecryptNonce(s.key, msg.EncryptedNonce)
	if err != nil {
		return out, invalidRequest("Client nonce could not be decrypted.")
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
		return out, codeFailure(err)
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

// putSession stores a session, sweeping expired ones at most once per TTL/4.
func (s *Server) putSession(id string, sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := sess.created
	if now.Sub(s.lastSweep) >= s.ttl/4 || len(s.sessions) >= s.max {
		for k, v := range s.sessions {
			if now.Sub(v.created) >= s.ttl {
				delete(s.sessions, k)
			}
		}
		s.lastSweep = now
	}
	if len(s.sessions) >= s.max {
		return false
	}
	s.sessions[id] = sess
	return true
}

// takeSession removes and returns a live session, or nil.
func (s *Server) takeSession(id string) *session {
	now := s.now()
	s.mu.Lock()
	sess, ok := s.sessions[id]
	if ok {
		delete(s.sessions, id)
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
