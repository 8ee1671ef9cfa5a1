package appliance

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"tokend/appliance/tokenfile"
)

// codeHashDomain separates activation code hashes from other keyed hashes.
const codeHashDomain = "activation-code"

// CodeDigits is the length of an activation code.
const CodeDigits = 12

// newCode draws a uniformly distributed 12-digit code from the CSPRNG.
func (s *Service) newCode() (string, error) {
	const space = 1_000_000_000_000
	const limit = (1<<64 - 1) / space * space // reject the biased tail
	var b [8]byte
	for {
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			return "", fmt.Errorf("activation code: %w", err)
		}
		if n := binary.BigEndian.Uint64(b[:]); n < limit {
			return fmt.Sprintf("%012d", n%space), nil
		}
	}
}

func (s *Service) codeHash(code string) []byte { return s.sealer.Hash(codeHashDomain, []byte(code)) }

// issuedCode is the stored record of an activation code together with the
// token parameters it was issued for.
type issuedCode struct {
	ActivationCode
	Digits   int    `json:"digits"`
	Interval int    `json:"interval"`
	PINMode  string `json:"pin_mode"`
}

// Distribute issues an activation code for dynamic seed provisioning of an
// assigned software token with a CT-KIP profile. Any earlier code of the
// token is voided. The code is returned once and stored only as a keyed hash.
func (s *Service) Distribute(ctx context.Context, serial, profile string) (Distribution, error) {
	if !tokenfile.ValidSerial(serial) {
		return Distribution{}, &ValidationError{Problems: []FieldError{{"serial", "must be 12 digits"}}}
	}
	if profile == "" {
		return Distribution{}, &ValidationError{Problems: []FieldError{{"profile", "required"}}}
	}
	ctkipURL := s.CTKIPURL()
	code, err := s.newCode()
	if err != nil {
		return Distribution{}, err
	}
	hash := s.codeHash(code)
	var out Distribution
	actor := ActorFrom(ctx)
	err = s.changeGuarded(ctx, AuditEvent{Action: "token.distribute", Serial: serial, Target: profile}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		var err error
		out, err = distributeInTx(tx, actor, ev, serial, profile, code, hash, ctkipURL, now)
		return err
	})
	return out, err
}

// distributeInTx is Distribute inside its transaction (a rollout runs it
// for many users in one): code and hash are drawn before the transaction.
func distributeInTx(tx Tx, actor Actor, ev *AuditEvent, serial, profile, code string, hash []byte, ctkipURL string, now time.Time) (Distribution, error) {
	t, p, err := distributionTarget(tx, actor, ev, serial, profile)
	if err != nil {
		return Distribution{}, err
	}
	if p.DeliveryMethod != DeliveryCTKIP {
		return Distribution{}, fmt.Errorf("profile %s delivers by %s; only ctkip is supported: %w", profile, p.DeliveryMethod, ErrInvalidState)
	}
	old := *t
	if err := voidCode(tx, t); err != nil {
		return Distribution{}, err
	}
	rec := issuedCode{
		ActivationCode: ActivationCode{Serial: serial, Profile: profile, UserID: t.UserID, IssuedAt: now,
			ExpiresAt: now.Add(p.ActivationCodeTTL), State: CodeIssued},
		Digits: p.Digits, Interval: p.Interval, PINMode: p.PINMode,
	}
	if err := putJSON(tx, codeKey(hash), rec); err != nil {
		return Distribution{}, err
	}
	t.CodeHash, t.Profile, t.UpdatedAt = hash, profile, now
	if err := putToken(tx, t, &old); err != nil {
		return Distribution{}, err
	}
	return Distribution{Serial: serial, Profile: profile, CTKIPURL: ctkipURL, ActivationCode: Secret(code),
		ExpiresAt: rec.ExpiresAt, DeviceURL: Secret(deviceURL(p.DeviceType, ctkipURL, code))}, nil
}

// distributionTarget reads the token and the profile of a distribution, by
// whatever method, and checks what every method needs: the actor may
// change the token (guardAdminFactor), and it is an assigned, enabled
// software token. ev gets the token's user.
func distributionTarget(tx Tx, actor Actor, ev *AuditEvent, serial, profile string) (*Token, *Profile, error) {
	t, err := guardedToken(tx, actor, ev, serial)
	if err != nil {
		return nil, nil, err
	}
	p, err := getProfile(tx, profile)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case t.UserID == "":
		return nil, nil, fmt.Errorf("token %s is not assigned to a user: %w", serial, ErrInvalidState)
	case t.Kind != KindSoftware:
		return nil, nil, fmt.Errorf("token %s is a %s token; only software tokens are distributed: %w", serial, t.Kind, ErrInvalidState)
	case t.State != StateEnabled:
		return nil, nil, fmt.Errorf("token %s is disabled: %w", serial, ErrInvalidState)
	}
	return t, p, nil
}

// deviceURL builds the link a device type's app understands.
func deviceURL(deviceType, ctkipURL, code string) string {
	u, err := url.Parse(ctkipURL)
	if err != nil {
		return ctkipURL
	}
	hostPath := u.Host + u.EscapedPath()
	switch deviceType {
	case DeviceAndroid, DeviceIOS:
		return "com.rsa.securid://ctkip?scheme=" + u.Scheme + "&url=" + hostPath + "&activationCode=" + code
	case DeviceWindows:
		return "securidauthenticator://ctkip?scheme=" + u.Scheme + "&url=" + hostPath
	}
	return ctkipURL
}

// VoidDistribution voids the token's outstanding activation code.
func (s *Service) VoidDistribution(ctx context.Context, serial string) error {
	actor := ActorFrom(ctx)
	return s.changeGuarded(ctx, AuditEvent{Action: "token.distribution.void", Serial: serial}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		t, err := guardedToken(tx, actor, ev, serial)
		if err != nil {
			return err
		}
		if len(t.CodeHash) == 0 {
			return fmt.Errorf("token %s has no outstanding activation code: %w", serial, ErrNotFound)
		}
		old := *t
		if err := voidCode(tx, t); err != nil {
			return err
		}
		t.UpdatedAt = now
		return putToken(tx, t, &old)
	})
}

// Provisioning outcomes for metrics and audit.
const (
	ProvisionBadCode = "bad_code"
	ProvisionExpired = "expired"
	ProvisionUsed    = "used"
)

// ErrInvalidCode is the class of every refused activation code.
var ErrInvalidCode = errors.New("invalid activation code")

// CodeError tells why a code was refused (for metrics and audit only: the
// device is told the same thing whatever the reason). Serial names the token
// the code was issued for when the code is known (expired, used, voided,
// or its token can no longer be provisioned), so the refusal can be audited
// without the code; it is empty for a code that names nothing.
type CodeError struct {
	Reason string
	Serial string
}

func (e *CodeError) Error() string        { return "activation code refused: " + e.Reason }
func (e *CodeError) Is(target error) bool { return target == ErrInvalidCode }

// ProvisionTicket is what a valid activation code entitles a device to.
type ProvisionTicket struct {
	Serial    string
	UserName  string // the holder's login; set by CompleteProvisioning only
	Digits    int
	Interval  int
	PINMode   string
	ExpiresAt time.Time // token expiry
}

// checkCode validates a code inside tx and returns its record and token.
func checkCode(tx Tx, hash []byte, now time.Time) (*issuedCode, *Token, error) {
	var c issuedCode
	if err := getJSON(tx, codeKey(hash), &c); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, &CodeError{Reason: ProvisionBadCode}
		}
		return nil, nil, err
	}
	switch {
	case c.State == CodeConsumed:
		return nil, nil, &CodeError{ProvisionUsed, c.Serial}
	case c.State == CodeVoided:
		return nil, nil, &CodeError{ProvisionBadCode, c.Serial}
	case !now.Before(c.ExpiresAt):
		return nil, nil, &CodeError{ProvisionExpired, c.Serial}
	}
	t, err := getToken(tx, c.Serial)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, &CodeError{ProvisionBadCode, c.Serial}
		}
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare(t.CodeHash, hash) != 1 || t.UserID == "" || t.State != StateEnabled {
		return nil, nil, &CodeError{ProvisionBadCode, c.Serial}
	}
	return &c, t, nil
}

func ticket(c *issuedCode, t *Token) ProvisionTicket {
	return ProvisionTicket{Serial: t.Serial, Digits: c.Digits, Interval: c.Interval, PINMode: c.PINMode,
		ExpiresAt: t.ExpiresAt}
}

// BeginProvisioning checks an activation code (CT-KIP POST #1). It writes
// nothing: the code is consumed only when the seed is committed. The
// ticket's UserName is left empty: the first message does not carry it,
// and CompleteProvisioning reads it in its own transaction.
func (s *Service) BeginProvisioning(ctx context.Context, code string) (ProvisionTicket, error) {
	hash := s.codeHash(strings.TrimSpace(code))
	now := s.now()
	var out ProvisionTicket
	err := s.store.View(ctx, func(tx Tx) error {
		c, t, err := checkCode(tx, hash, now)
		if err != nil {
			return err
		}
		out = ticket(c, t)
		return nil
	})
	return out, err
}

// CompleteProvisioning consumes the code and commits the derived seed, the
// OTP parameters and the provisioned flag in one transaction, with its audit
// record. Exactly one caller can consume a code.
func (s *Service) CompleteProvisioning(ctx context.Context, code string, seed []byte) (ProvisionTicket, error) {
	if len(seed) != 16 {
		return ProvisionTicket{}, fmt.Errorf("seed must be 16 bytes: %w", ErrInvalidState)
	}
	hash := s.codeHash(strings.TrimSpace(code))
	// The nonce is drawn here; sealing, bound to the serial the code names,
	// happens inside the transaction that consumes the code.
	nonce, err := s.sealer.Nonce()
	if err != nil {
		return ProvisionTicket{}, err
	}
	now := s.now().UTC()
	var out ProvisionTicket
	err = s.store.Update(ctx, func(tx Tx) error {
		c, t, err := checkCode(tx, hash, now)
		if err != nil {
			return err
		}
		sealed := Sealed(s.sealer.SealNonce(nonce, seed, seedAAD(t.Serial)))
		old := *t
		c.State = CodeConsumed
		if err := putJSON(tx, codeKey(hash), c); err != nil {
			return err
		}
		t.Seed, t.Provisioned, t.ProvisionedAt, t.UpdatedAt = sealed, true, now, now
		t.Algorithm, t.Digits, t.Interval, t.PINMode = AlgSecurID, c.Digits, c.Interval, c.PINMode
		t.CodeHash = nil
		resetVerifierState(t)
		if err := putToken(tx, t, &old); err != nil {
			return err
		}
		u, err := getUser(tx, t.UserID)
		if err != nil {
			return err
		}
		out = ticket(c, t)
		out.UserName = u.UserName
		return appendAudit(tx, now, ActorFrom(ctx), AuditEvent{Action: "ctkip.provision", Serial: t.Serial,
			UserID: t.UserID, Outcome: OutcomeSuccess, Target: c.Profile})
	})
	return out, err
}

// AuditProvisioningRefusal records a refused CT-KIP request about a real
// token (a known but unusable code, a failed second message of a live
// exchange). The door passes the serial the refusal named, never the code;
// anonymous refusals are not audited at all (they are metrics), so the
// chain grows only with what identifies a token.
func (s *Service) AuditProvisioningRefusal(ctx context.Context, serial, step, reason string) error {
	if !tokenfile.ValidSerial(serial) {
		return &ValidationError{Problems: []FieldError{{"serial", "must be 12 digits"}}}
	}
	now := s.now().UTC()
	return s.store.Update(ctx, func(tx Tx) error {
		ev := AuditEvent{Action: "ctkip." + step, Serial: serial, Outcome: OutcomeFailure, Reason: reason}
		t, err := getToken(tx, serial)
		switch {
		case err == nil:
			ev.UserID = t.UserID
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return appendAudit(tx, now, ActorFrom(ctx), ev)
	})
}

func seedAAD(serial string) string { return "token/" + serial + "/seed" }

// resetVerifierState forgets what belonged to the previous seed: the replay
// mark and the clock offset. A PIN mode that needs a PIN the token lacks puts
// it in new PIN mode.
func resetVerifierState(t *Token) {
	t.LastUsedAt, t.LastStep, t.Drift = time.Time{}, 0, 0
	t.NewPINRequired = t.PINMode != "" && t.PINMode != PINModeNone && t.PINHash == ""
}

// TokenSeed unseals a token's seed. It exists for the appliance's own
// verification and for tests; no API returns it.
func (s *Service) TokenSeed(ctx context.Context, serial string) ([]byte, error) {
	t, err := s.GetToken(ctx, serial)
	if err != nil {
		return nil, err
	}
	if len(t.Seed) == 0 {
		return nil, fmt.Errorf("token %s has no seed: %w", serial, ErrInvalidState)
	}
	return s.sealer.Open(t.Seed, seedAAD(serial))
}
