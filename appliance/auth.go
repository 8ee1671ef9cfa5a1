package appliance

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"tokend/appliance/otp"
)

// Authentication results.
const (
	AuthAccept        = "accept"
	AuthReject        = "reject"
	AuthNextTokencode = "next_tokencode"
	AuthNewPIN        = "new_pin"
)

// Reasons recorded in audit records and metrics. A rejected caller is told
// only ReasonDenied, so a failure never reveals whether the user, the PIN or
// the code was wrong.
const (
	ReasonOK           = "ok"
	ReasonDenied       = "denied"
	ReasonUnknownUser  = "unknown_user"
	ReasonInactive     = "inactive"
	ReasonLocked       = "locked"
	ReasonBadPasscode  = "bad_passcode"
	ReasonReplay       = "replay"
	ReasonBadSession   = "bad_session"
	ReasonPINPolicy    = "pin_policy"
	ReasonNextCode     = "next_tokencode_required"
	ReasonNewPIN       = "new_pin_required"
	ReasonPINChanged   = "pin_changed"
	ReasonEmergency    = "emergency_access"
	ReasonNoUsableCode = "no_usable_token"
	// ReasonAgentScope: the user is not of an identity source the agent
	// serves. The caller sees the same rejection as for a wrong code.
	ReasonAgentScope = "agent_scope"
)

// AuthPolicy holds the authentication rules. Zero fields take defaults.
type AuthPolicy struct {
	MaxFailures     int           // consecutive failures before lockout (5)
	LockoutDuration time.Duration // lockout length (30m); negative: until an admin unlocks
	SmallWindow     int           // steps either side accepted at once (1)
	LargeWindow     int           // steps either side that ask for the next tokencode (10)
	SessionTTL      time.Duration // life of a challenge session (3m)
	PIN             PINPolicy
	MaxEmergency    time.Duration // hard maximum lifetime of emergency access (72h)
}

func (p AuthPolicy) withDefaults() AuthPolicy {
	if p.MaxFailures <= 0 {
		p.MaxFailures = 5
	}
	if p.LockoutDuration == 0 {
		p.LockoutDuration = 30 * time.Minute
	}
	if p.SmallWindow <= 0 {
		p.SmallWindow = 1
	}
	if p.LargeWindow < p.SmallWindow {
		p.LargeWindow = 10
	}
	if p.LargeWindow > otp.MaxWindow {
		p.LargeWindow = otp.MaxWindow
	}
	if p.SessionTTL <= 0 {
		p.SessionTTL = 3 * time.Minute
	}
	if p.MaxEmergency <= 0 {
		p.MaxEmergency = 72 * time.Hour
	}
	p.PIN = p.PIN.withDefaults()
	return p
}

// AuthRecorder counts authentication decisions (result and reason are
// small fixed vocabularies).
type AuthRecorder interface {
	AuthDecision(result, reason string)
}

// AuthRequest is one authentication attempt from an agent.
type AuthRequest struct {
	UserName string
	Passcode string
	Session  string // ties a follow-up to its challenge

	// Set by AgentAuthenticate only: the agent that asks (its challenge
	// sessions are its own) and the identity sources it serves.
	agentID string
	sources []string
}

// AuthResult is the decision. Reason is what the agent may show; Detail is
// the precise reason, for audit and metrics only.
type AuthResult struct {
	Result  string
	Reason  string
	Session string
	Detail  string
	UserID  string
	Serial  string
	// PIN is a system-generated PIN, shown once with a new_pin result when
	// the policy makes tokend choose PINs.
	PIN Secret
}

// Challenge session kinds.
const (
	sessionNextCode = "next_tokencode"
	sessionNewPIN   = "new_pin"
	sessionPasscode = "passcode"
)

type authSession struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Serial    string    `json:"serial"`
	Kind      string    `json:"kind"`
	Agent     string    `json:"agent,omitempty"`
	Step      int64     `json:"step"`
	ExpiresAt time.Time `json:"expires_at"`
}

const (
	pfxAuthSession = "as/"
	pfxEmergency   = "ea/"
)

func authSessionKey(id string) []byte   { return []byte(pfxAuthSession + id) }
func emergencyKey(userID string) []byte { return []byte(pfxEmergency + userID) }

// authToken is a token with its unsealed seed, for one decision.
type authToken struct {
	tok  Token
	seed []byte
}

type authState struct {
	user      *User
	tokens    []authToken
	session   *authSession
	emergency *emergencyAccess
}

// decision is what phase two decided and phase three commits.
type decision struct {
	result, detail string
	serial         string
	step           int64 // accepted or challenged step (HOTP: counter)
	setDrift       bool
	drift          int64
	consume        bool // record step as used
	newSession     *authSession
	pinHash        string
	pinLength      int
	newPIN         Secret // a system-generated PIN to show once
	emergencyIdx   int    // index of a one-time emergency code to mark used; -1 none
}

// Authenticate decides one authentication attempt. The decision and its
// effects (the replay mark, failure counter, lockout, challenge session and
// audit record) are committed in one transaction, so a code is accepted at
// most once per token whatever the concurrency.
func (s *Service) Authenticate(ctx context.Context, req AuthRequest) (AuthResult, error) {
	now := s.now().UTC()
	st, err := s.loadAuthState(ctx, req, now)
	if err != nil {
		return AuthResult{}, err
	}
	d, err := s.decide(st, req, now)
	if err != nil {
		return AuthResult{}, err
	}
	res, err := s.commitDecision(ctx, st, req, d, now)
	if err != nil {
		return AuthResult{}, err
	}
	if s.authRec != nil {
		s.authRec.AuthDecision(res.Result, res.Detail)
	}
	return res, nil
}

func (s *Service) loadAuthState(ctx context.Context, req AuthRequest, now time.Time) (authState, error) {
	var st authState
	err := s.store.View(ctx, func(tx Tx) error {
		st = authState{}
		v, err := tx.Get(loginKey(req.UserName))
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		id := parseLoginIndex(v).ID
		if st.user, err = getUser(tx, id); err != nil {
			return err
		}
		toks, err := userTokens(tx, id)
		if err != nil {
			return err
		}
		for _, t := range toks {
			st.tokens = append(st.tokens, authToken{tok: t})
		}
		if req.Session != "" && len(req.Session) <= 64 {
			var sess authSession
			if err := getJSON(tx, authSessionKey(req.Session), &sess); err == nil {
				st.session = &sess
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		var ea emergencyAccess
		if err := getJSON(tx, emergencyKey(id), &ea); err == nil {
			st.emergency = &ea
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for i := range st.tokens {
		t := &st.tokens[i].tok
		if usable(t, now) {
			seed, err := s.sealer.Open(t.Seed, seedAAD(t.Serial))
			if err != nil {
				return st, fmt.Errorf("token %s: %w", t.Serial, err)
			}
			st.tokens[i].seed = seed
		}
	}
	return st, nil
}

// usable reports whether a token may authenticate at all.
func usable(t *Token, now time.Time) bool {
	return t.State == StateEnabled && t.Provisioned && len(t.Seed) > 0 &&
		(t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt)) && !graceEnded(t, now)
}

func generator(t *Token, seed []byte) (otp.Generator, error) {
	switch t.Algorithm {
	case AlgSecurID, "":
		return otp.NewSecurID(seed, t.Serial, t.Digits, t.Interval)
	case AlgTOTP:
		alg, err := otp.ParseAlgorithm(t.Hash)
		if err != nil {
			return nil, err
		}
		return otp.TOTP{Key: seed, Algorithm: alg, Digits: t.Digits, Period: t.Interval}, nil
	case AlgHOTP:
		alg, err := otp.ParseAlgorithm(t.Hash)
		if err != nil {
			return nil, err
		}
		return otp.HOTP{Key: seed, Algorithm: alg, Digits: t.Digits}, nil
	}
	return nil, fmt.Errorf("token %s: unknown algorithm %q", t.Serial, t.Algorithm)
}

// centre returns the step a token should show now, with its clock offset.
func centre(t *Token, now time.Time) int64 {
	if t.Algorithm == AlgHOTP {
		return int64(t.Counter)
	}
	interval := int64(t.Interval)
	if interval <= 0 {
		interval = 60
	}
	return now.Unix()/interval + t.Drift
}

func (s *Service) newSessionID() (string, error) {
	var b [18]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (s *Service) decide(st authState, req AuthRequest, now time.Time) (decision, error) {
	d := decision{result: AuthReject, detail: ReasonBadPasscode, emergencyIdx: -1}
	u := st.user
	switch {
	case u == nil:
		d.detail = ReasonUnknownUser
		return d, nil
	case !u.Active:
		d.detail = ReasonInactive
		return d, nil
	case now.Before(u.LockedUntil):
		d.detail = ReasonLocked
		return d, nil
	case len(req.sources) > 0 && !slices.Contains(req.sources, u.Source):
		d.detail = ReasonAgentScope
		return d, nil
	}
	if req.Session != "" {
		return s.decideSession(st, req, now)
	}
	if ea := st.emergency; ea != nil && now.Before(ea.ExpiresAt) {
		h := s.sealer.Hash(emergencyHashDomain, []byte(req.Passcode))
		for i, c := range ea.Codes {
			if subtle.ConstantTimeCompare(h, c.Hash) == 1 && !c.Used {
				d.result, d.detail = AuthAccept, ReasonEmergency
				if ea.Kind == EmergencyOneTime {
					d.emergencyIdx = i
				}
				return d, nil
			}
		}
	}
	best := matchNone
	for _, at := range st.tokens {
		if at.seed == nil {
			continue
		}
		m, step, err := s.match(&at, req.Passcode, now, s.policy.LargeWindow)
		if err != nil {
			return d, err
		}
		if m > best {
			best, d.serial, d.step = m, at.tok.Serial, step
		}
	}
	switch best {
	case matchAccept:
		d.result, d.detail, d.consume = AuthAccept, ReasonOK, true
	case matchNewPIN:
		d.result, d.detail, d.consume = AuthNewPIN, ReasonNewPIN, true
		if s.policy.PIN.SystemGenerated {
			// tokend picks the PIN now; the user's next passcode uses it.
			pin, err := randomDigits(s.rand, s.policy.PIN.MinLength)
			if err != nil {
				return d, err
			}
			if d.pinHash, err = hashPIN(s.argon, pin, s.rand); err != nil {
				return d, err
			}
			d.pinLength, d.newPIN = len(pin), Secret(pin)
			return d, s.challenge(&d, req, u.ID, sessionPasscode, now)
		}
		if err := s.challenge(&d, req, u.ID, sessionNewPIN, now); err != nil {
			return d, err
		}
	case matchNext:
		d.result, d.detail = AuthNextTokencode, ReasonNextCode
		if err := s.challenge(&d, req, u.ID, sessionNextCode, now); err != nil {
			return d, err
		}
	case matchNone:
		d.serial = ""
		if len(st.tokens) == 0 {
			d.detail = ReasonNoUsableCode
		}
	}
	return d, nil
}

func (s *Service) challenge(d *decision, req AuthRequest, userID, kind string, now time.Time) error {
	id, err := s.newSessionID()
	if err != nil {
		return err
	}
	d.newSession = &authSession{ID: id, UserID: userID, Serial: d.serial, Kind: kind, Agent: req.agentID, Step: d.step,
		ExpiresAt: now.Add(s.policy.SessionTTL)}
	return nil
}

func (s *Service) decideSession(st authState, req AuthRequest, now time.Time) (decision, error) {
	d := decision{result: AuthReject, detail: ReasonBadSession, emergencyIdx: -1}
	sess := st.session
	if sess == nil || sess.UserID != st.user.ID || sess.Agent != req.agentID || !now.Before(sess.ExpiresAt) {
		return d, nil
	}
	var at *authToken
	for i := range st.tokens {
		if st.tokens[i].tok.Serial == sess.Serial && st.tokens[i].seed != nil {
			at = &st.tokens[i]
		}
	}
	if at == nil {
		return d, nil
	}
	d.serial, d.detail = at.tok.Serial, ReasonBadPasscode
	switch sess.Kind {
	case sessionNextCode:
		// The follow-up must be the code of the very next step.
		m, step, err := s.matchAt(at, req.Passcode, sess.Step+1)
		if err != nil {
			return d, err
		}
		if m == matchAccept {
			d.result, d.detail, d.step, d.consume = AuthAccept, ReasonOK, step, true
			if at.tok.Algorithm != AlgHOTP {
				d.setDrift, d.drift = true, step-(now.Unix()/int64(at.tok.Interval))
			}
		}
	case sessionNewPIN:
		if err := s.policy.PIN.check(req.Passcode, at.tok.PINMode, at.tok.Digits); err != nil {
			// Ask again within the same session.
			d.result, d.detail = AuthNewPIN, ReasonPINPolicy
			d.newSession = sess
			return d, nil
		}
		hash, err := hashPIN(s.argon, req.Passcode, s.rand)
		if err != nil {
			return d, err
		}
		d.pinHash, d.pinLength = hash, len(req.Passcode)
		d.result, d.detail = AuthNextTokencode, ReasonPINChanged
		if err := s.challenge(&d, req, st.user.ID, sessionPasscode, now); err != nil {
			return d, err
		}
	case sessionPasscode:
		m, step, err := s.match(at, req.Passcode, now, s.policy.SmallWindow)
		if err != nil {
			return d, err
		}
		if m == matchAccept {
			d.result, d.detail, d.step, d.consume = AuthAccept, ReasonOK, step, true
		}
	}
	return d, nil
}

type matchKind int

const (
	matchNone matchKind = iota
	matchNext
	matchNewPIN
	matchAccept
)

// match checks a passcode against one token within ±window steps of where
// its clock should be, honouring the token's PIN mode.
func (s *Service) match(at *authToken, passcode string, now time.Time, window int) (matchKind, int64, error) {
	t := &at.tok
	gen, err := generator(t, at.seed)
	if err != nil {
		return matchNone, 0, err
	}
	c := centre(t, now)
	first, n := c-int64(window), 2*window+1
	if t.Algorithm == AlgHOTP {
		first, n = c, window+1 // HOTP only moves forward
	}
	codes, err := gen.Codes(first, n)
	if err != nil {
		return matchNone, 0, err
	}
	classify := func(step int64) matchKind {
		if t.Algorithm != AlgHOTP && step <= t.LastStep {
			return matchNone // replay of a used or older code
		}
		dist := step - c
		if dist < 0 {
			dist = -dist
		}
		if t.Algorithm == AlgHOTP && dist <= 2 || t.Algorithm != AlgHOTP && dist <= int64(s.policy.SmallWindow) {
			return matchAccept
		}
		return matchNext
	}
	step, ok, pinOK, err := findCode(t, codes, first, c, passcode, s.pinMatches)
	if err != nil {
		return matchNone, 0, err
	}
	if !ok {
		return matchNone, 0, nil
	}
	if t.PINHash == "" && t.NewPINRequired {
		if classify(step) == matchAccept {
			return matchNewPIN, step, nil
		}
		return matchNone, 0, nil
	}
	if !pinOK {
		return matchNone, 0, nil
	}
	return classify(step), step, nil
}

// matchAt checks a passcode against exactly one step.
func (s *Service) matchAt(at *authToken, passcode string, step int64) (matchKind, int64, error) {
	gen, err := generator(&at.tok, at.seed)
	if err != nil {
		return matchNone, 0, err
	}
	codes, err := gen.Codes(step, 1)
	if err != nil {
		return matchNone, 0, err
	}
	_, ok, pinOK, err := findCode(&at.tok, codes, step, step, passcode, s.pinMatches)
	if err != nil {
		return matchNone, 0, err
	}
	if ok && pinOK {
		return matchAccept, step, nil
	}
	return matchNone, 0, nil
}

// maxPINChecks bounds the argon2id evaluations one PINPad passcode can cost.
const maxPINChecks = 4

// findCode looks for the passcode among candidate codes (steps first…),
// nearest to the centre first, and checks the PIN the passcode carries
// with pinMatches (an error is ErrBusy: the PIN could not be checked).
func findCode(t *Token, codes []string, first, c int64, passcode string,
	pinMatches func(encoded, pin string) (bool, error)) (step int64, ok, pinOK bool, err error) {
	d := t.Digits
	order := make([]int, 0, len(codes))
	ci := int(c - first)
	for k := 0; len(order) < len(codes); k++ {
		if i := ci - k; i >= 0 && i < len(codes) {
			order = append(order, i)
		}
		if i := ci + k; k > 0 && i >= 0 && i < len(codes) {
			order = append(order, i)
		}
		if ci-k < 0 && ci+k >= len(codes) {
			break
		}
	}
	mode := t.PINMode
	if t.PINHash == "" {
		mode = PINModeNone // no PIN to check (none, or new PIN mode)
	}
	switch mode {
	case PINModeFob:
		if len(passcode) <= d {
			return 0, false, false, nil
		}
		pin, code := passcode[:len(passcode)-d], passcode[len(passcode)-d:]
		found := -1
		for _, i := range order {
			if otp.Equal(codes[i], code) && found < 0 {
				found = i
			}
		}
		pinOK, err = pinMatches(t.PINHash, pin) // always evaluated: no timing hint
		if err != nil || found < 0 {
			return 0, false, false, err
		}
		return first + int64(found), true, pinOK, nil
	case PINModePINPad:
		L := t.PINLength
		if len(passcode) != d || L <= 0 || L > d {
			return 0, false, false, nil
		}
		checks := 0
		for _, i := range order {
			cand := codes[i]
			if !otp.Equal(cand[:d-L], passcode[:d-L]) {
				continue
			}
			pin := impliedPIN(passcode[d-L:], cand[d-L:])
			if checks++; checks > maxPINChecks {
				break
			}
			match, err := pinMatches(t.PINHash, pin)
			if err != nil {
				return 0, false, false, err
			}
			if match {
				return first + int64(i), true, true, nil
			}
		}
		return 0, false, false, nil
	default:
		if len(passcode) != d {
			return 0, false, false, nil
		}
		found := -1
		for _, i := range order {
			if otp.Equal(codes[i], passcode) && found < 0 {
				found = i
			}
		}
		if found < 0 {
			return 0, false, false, nil
		}
		return first + int64(found), true, true, nil
	}
}

// impliedPIN is the PIN that turns code into passcode under digit-wise
// addition modulo 10 (both strings of equal length).
func impliedPIN(passcode, code string) string {
	b := make([]byte, len(code))
	for i := range b {
		b[i] = '0' + (passcode[i]-code[i]+10)%10
	}
	return string(b)
}

func (s *Service) commitDecision(ctx context.Context, st authState, req AuthRequest, d decision, now time.Time) (AuthResult, error) {
	var res AuthResult
	err := s.store.Update(ctx, func(tx Tx) error {
		dd := d
		res = AuthResult{}
		var u *User
		if st.user != nil {
			var err error
			if u, err = getUser(tx, st.user.ID); err != nil {
				if !errors.Is(err, ErrNotFound) {
					return err
				}
				u, dd = nil, decision{result: AuthReject, detail: ReasonUnknownUser, emergencyIdx: -1}
			}
		}
		if u != nil && dd.result != AuthReject && (!u.Active || now.Before(u.LockedUntil)) {
			dd = decision{result: AuthReject, detail: ReasonLocked, emergencyIdx: -1}
		}
		var tok *Token
		if u != nil && dd.serial != "" && dd.result != AuthReject {
			var err error
			tok, err = getToken(tx, dd.serial)
			if err != nil {
				return err
			}
			orig := findAuthToken(st, dd.serial)
			switch {
			case orig == nil || tok.UserID != u.ID || tok.State != StateEnabled || !bytes.Equal(tok.Seed, orig.Seed) ||
				graceEnded(tok, now):
				dd = decision{result: AuthReject, detail: ReasonBadPasscode, emergencyIdx: -1}
			case dd.consume && tok.Algorithm == AlgHOTP && uint64(dd.step) < tok.Counter,
				dd.consume && tok.Algorithm != AlgHOTP && dd.step <= tok.LastStep:
				dd = decision{result: AuthReject, detail: ReasonReplay, emergencyIdx: -1}
			}
		}
		if req.Session != "" && dd.result != AuthReject {
			// A challenge session is single use: a concurrent follow-up
			// that already consumed it wins, this one is refused.
			if ok, err := exists(tx, authSessionKey(req.Session)); err != nil {
				return err
			} else if !ok {
				dd = decision{result: AuthReject, detail: ReasonBadSession, emergencyIdx: -1}
			}
		}
		if req.Session != "" && (dd.newSession == nil || dd.newSession.ID != req.Session) {
			if err := tx.Delete(authSessionKey(req.Session)); err != nil {
				return err
			}
		}
		if dd.newSession != nil {
			if err := putJSON(tx, authSessionKey(dd.newSession.ID), dd.newSession); err != nil {
				return err
			}
			res.Session = dd.newSession.ID
		}
		if tok != nil && dd.result != AuthReject {
			old := *tok
			if dd.consume {
				if tok.Algorithm == AlgHOTP {
					tok.Counter = uint64(dd.step) + 1
				} else {
					tok.LastStep = dd.step
				}
				if dd.result == AuthAccept {
					tok.LastUsedAt = now
				}
			}
			if dd.setDrift {
				tok.Drift = dd.drift
			}
			if dd.pinHash != "" {
				tok.PINHash, tok.PINLength, tok.NewPINRequired = dd.pinHash, dd.pinLength, false
			}
			if dd.result == AuthAccept && tok.Replaces != "" {
				// The new token of a replacement works: retire the old
				// one in this same transaction (lifecycle.go).
				retired, err := retireReplacedInTx(tx, tok, now)
				if err != nil {
					return err
				}
				if retired != "" {
					if err := appendAudit(tx, now, ActorFrom(ctx), AuditEvent{Action: "token.replace.complete",
						Serial: retired, UserID: u.ID, Target: tok.Serial, Outcome: OutcomeSuccess, Detail: "new_token_used"}); err != nil {
						return err
					}
				}
			}
			if err := putToken(tx, tok, &old); err != nil {
				return err
			}
		}
		if u != nil {
			changed := false
			switch dd.result {
			case AuthAccept:
				if u.Failures != 0 || !u.LockedUntil.IsZero() {
					u.Failures, u.LockedUntil, changed = 0, time.Time{}, true
				}
			case AuthReject:
				if dd.detail != ReasonLocked && dd.detail != ReasonInactive && dd.detail != ReasonAgentScope {
					u.Failures++
					changed = true
					if u.Failures >= s.policy.MaxFailures {
						u.LockedUntil = lockEnd(now, s.policy.LockoutDuration)
					}
				}
			}
			if changed {
				old := *u
				u.UpdatedAt = now
				if err := putUser(tx, u, &old); err != nil {
					return err
				}
			}
			if dd.emergencyIdx >= 0 && dd.result == AuthAccept {
				var ea emergencyAccess
				if err := getJSON(tx, emergencyKey(u.ID), &ea); err != nil {
					return err
				}
				if dd.emergencyIdx >= len(ea.Codes) || ea.Codes[dd.emergencyIdx].Used {
					return errEmergencyRace
				}
				ea.Codes[dd.emergencyIdx].Used = true
				if err := putJSON(tx, emergencyKey(u.ID), ea); err != nil {
					return err
				}
			}
		}
		res.Result, res.Detail, res.Serial = dd.result, dd.detail, dd.serial
		if dd.result == AuthNewPIN {
			res.PIN = dd.newPIN
		}
		res.Reason = publicReason(dd)
		ev := AuditEvent{Action: "auth", Serial: dd.serial, Outcome: OutcomeSuccess, Reason: dd.detail, Detail: dd.result}
		if u != nil {
			ev.UserID, res.UserID = u.ID, u.ID
		} else {
			ev.Target = truncate(req.UserName, 64)
		}
		if dd.result == AuthReject {
			ev.Outcome = OutcomeFailure
		}
		return appendAudit(tx, now, ActorFrom(ctx), ev)
	})
	if errors.Is(err, errEmergencyRace) {
		// Another request used the same one-time code first.
		return s.commitDecision(ctx, st, req, decision{result: AuthReject, detail: ReasonReplay, emergencyIdx: -1}, now)
	}
	return res, err
}

var errEmergencyRace = errors.New("one-time emergency code used concurrently")

func lockEnd(now time.Time, d time.Duration) time.Time {
	if d < 0 {
		return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return now.Add(d)
}

func publicReason(d decision) string {
	switch d.result {
	case AuthReject:
		return ReasonDenied
	case AuthAccept:
		return ReasonOK
	}
	return d.detail
}

func findAuthToken(st authState, serial string) *Token {
	for i := range st.tokens {
		if st.tokens[i].tok.Serial == serial {
			return &st.tokens[i].tok
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
