package appliance

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"tokend/appliance/tokenfile"
)

// CTF bindings of a profile with delivery method ctf: what protects the
// seed inside the string. With none, the string (and its link and QR code)
// is the seed in clear.
const (
	CTFBindingNone     = "none"
	CTFBindingPassword = "password"
	CTFBindingDeviceID = "device_id"
)

// OATH delivery to authenticator apps: a TOTP token whose secret goes out
// as an otpauth:// URI (Google's Key Uri Format) and its QR code.
const (
	DeliveryOTPAuth = "otpauth"
	DeviceTOTPApp   = "totp-app"
	// OTPAuthIssuer names tokend in authenticator apps when the profile
	// has no display name.
	OTPAuthIssuer = "tokend"
)

// validateOTPAuth applies RFC 6238's defaults (SHA-1, 6 digits, 30 s, and
// no PIN) to otpauth profiles and keeps the TOTP settings out of the
// others. It runs before the general defaults (8 digits, 60 s, PINPad).
func validateOTPAuth(p *Profile, v *ValidationError) {
	otpauth, app := p.DeliveryMethod == DeliveryOTPAuth, p.DeviceType == DeviceTOTPApp
	switch {
	case otpauth != app:
		v.Add("device_type", "totp-app goes with delivery_method otpauth, and only with it")
	case !otpauth:
		if p.Hash != "" {
			v.Add("hash", "only for delivery_method otpauth")
		}
		return
	}
	if p.Digits == 0 {
		p.Digits = 6
	}
	if p.Interval == 0 {
		p.Interval = 30
	}
	if p.Hash == "" {
		p.Hash = "sha1"
	}
	if p.PINMode == "" {
		p.PINMode = PINModeNone
	}
	switch p.Hash {
	case "sha1", "sha256", "sha512":
	default:
		v.Add("hash", "must be sha1, sha256 or sha512")
	}
	if p.PINMode == PINModePINPad {
		v.Add("pin_mode", "an authenticator app has no PIN pad: none or fob")
	}
}

// otpauthSecretLen is the key length RFC 4226 recommends per hash: the
// hash's output size.
func otpauthSecretLen(hash string) int {
	switch hash {
	case "sha256":
		return 32
	case "sha512":
		return 64
	}
	return 20
}

// HandoutTTL bounds how long a generated token file waits for its one
// download (less if the profile's activation code lifetime is shorter).
const HandoutTTL = 15 * time.Minute

// maxHandouts bounds the token files held in memory at once.
const maxHandouts = 1024

// validateCTFBinding defaults and checks a profile's ctf_binding: password
// for ctf profiles unless set (an unbound string is the seed in clear, so
// that must be asked for), nothing for the other methods.
func validateCTFBinding(p *Profile, v *ValidationError) {
	if p.DeliveryMethod != DeliveryCTF {
		if p.CTFBinding != "" {
			v.Add("ctf_binding", "only for delivery_method ctf")
		}
		return
	}
	if p.CTFBinding == "" {
		p.CTFBinding = CTFBindingPassword
	}
	switch p.CTFBinding {
	case CTFBindingNone, CTFBindingPassword, CTFBindingDeviceID:
	default:
		v.Add("ctf_binding", "must be none, password or device_id")
	}
}

// SeedDeliveryRequest asks for a token's new seed by file or CTF.
type SeedDeliveryRequest struct {
	Profile string
	// Password protects the token file (generated when empty) or binds
	// the CTF string (ctf_binding password).
	Password Secret
	// DeviceID binds the CTF string (ctf_binding device_id): the id the
	// RSA app shows.
	DeviceID string
}

// SeedDelivery is a new seed on its way to a device. Every secret in it is
// shown once: tokend keeps only the sealed seed.
type SeedDelivery struct {
	Serial, Profile, Method string
	// ExpiresAt: the token file's download deadline (file).
	ExpiresAt time.Time
	// FilePassword is the generated file password (file, when the request
	// gave none).
	FilePassword Secret
	// CTF is the 81-digit string, DeviceURL the link for the profile's
	// device type (the string itself for device types without one).
	CTF, DeviceURL Secret
	// OTPAuthURL is the otpauth://totp/ URI (otpauth).
	OTPAuthURL Secret
}

// validateSeedProtection checks the password and device id a seed
// delivery may be protected with (DeliverSeed, and ReplaceToken before it
// changes anything).
func validateSeedProtection(password Secret, deviceID string, v *ValidationError) {
	if len(password) > 40 {
		v.Add("password", "at most 40 characters")
	}
	switch {
	case len(deviceID) > 64:
		v.Add("device_id", "at most 64 characters")
	case deviceID != "" && !validDeviceID(deviceID):
		// The key uses only the hex digits: any other character would
		// be dropped silently and bind the string to another device.
		v.Add("device_id", "hex digits (the device id the RSA app shows), grouped with '-' or spaces if at all")
	}
}

// DeliverSeed generates a new seed for an assigned, enabled software token
// and delivers it the way the profile says: as an .sdtid file (kept in
// memory for one download, TakeTokenFile) or as a CTF string. The previous
// seed stops working and any outstanding activation code is voided, in the
// same transaction, audited as token.distribute.
func (s *Service) DeliverSeed(ctx context.Context, serial string, req SeedDeliveryRequest) (SeedDelivery, error) {
	v := &ValidationError{}
	if !tokenfile.ValidSerial(serial) {
		v.Add("serial", "must be 12 digits")
	}
	if req.Profile == "" {
		v.Add("profile", "required")
	}
	validateSeedProtection(req.Password, req.DeviceID, v)
	if err := v.Err(); err != nil {
		return SeedDelivery{}, err
	}
	// Drawn before the transaction, which must be re-runnable; an OATH
	// profile uses a prefix of up to 64 bytes.
	seedBuf := make([]byte, 64)
	defer clear(seedBuf)
	if _, err := io.ReadFull(s.rand, seedBuf); err != nil {
		return SeedDelivery{}, fmt.Errorf("new seed: %w", err)
	}
	nonce, err := s.sealer.Nonce()
	if err != nil {
		return SeedDelivery{}, err
	}
	var o seedOutcome
	actor := ActorFrom(ctx)
	err = s.changeGuarded(ctx, AuditEvent{Action: "token.distribute", Serial: serial, Target: req.Profile}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		var err error
		o, err = s.deliverSeedInTx(tx, actor, ev, serial, req, seedBuf, nonce, now)
		return err
	})
	if err != nil {
		return SeedDelivery{}, err
	}
	var generated Secret
	if o.p.DeliveryMethod == DeliveryFile && req.Password == "" {
		if generated, err = s.filePassword(); err != nil {
			return SeedDelivery{}, err
		}
		req.Password = generated
	}
	out, doc, err := seedDeliveryOf(o, req, s.now(), s.rand)
	if err != nil {
		return SeedDelivery{}, err
	}
	out.FilePassword = generated
	if doc != nil {
		s.handouts.put(serial, doc, o.sealed, out.ExpiresAt, s.now())
	}
	return out, nil
}

// seedOutcome is what deliverSeedInTx changed, for seedDeliveryOf.
type seedOutcome struct {
	p        *Profile
	tok      Token
	sealed   Sealed
	seed     []byte // a slice of the caller's seed buffer
	userName string
	ctf      string
}

// deliverSeedInTx is DeliverSeed inside its transaction (a rollout runs it
// for many users in one): seedBuf (64 bytes) and nonce are drawn before it.
func (s *Service) deliverSeedInTx(tx Tx, actor Actor, ev *AuditEvent, serial string, req SeedDeliveryRequest, seedBuf, nonce []byte, now time.Time) (seedOutcome, error) {
	t, p, err := distributionTarget(tx, actor, ev, serial, req.Profile)
	if err != nil {
		return seedOutcome{}, err
	}
	switch {
	case p.DeliveryMethod != DeliveryFile && p.DeliveryMethod != DeliveryCTF && p.DeliveryMethod != DeliveryOTPAuth:
		return seedOutcome{}, fmt.Errorf("profile %s delivers by %s, not by file, ctf or otpauth: %w", req.Profile, p.DeliveryMethod, ErrInvalidState)
	case p.DeliveryMethod == DeliveryCTF && p.CTFBinding == CTFBindingPassword && req.Password == "":
		return seedOutcome{}, &ValidationError{Problems: []FieldError{{"password", "required: the profile binds the CTF string to a password"}}}
	case p.DeliveryMethod == DeliveryCTF && p.CTFBinding == CTFBindingDeviceID && req.DeviceID == "":
		return seedOutcome{}, &ValidationError{Problems: []FieldError{{"device_id", "required: the profile binds the CTF string to a device"}}}
	// A password or device id the profile does not use would protect
	// nothing: refused, so no one believes an unbound seed is bound.
	case req.Password != "" && p.DeliveryMethod != DeliveryFile && p.CTFBinding != CTFBindingPassword:
		return seedOutcome{}, &ValidationError{Problems: []FieldError{{"password", "not used by this profile: only a token file or a CTF string bound to a password takes one"}}}
	case req.DeviceID != "" && p.CTFBinding != CTFBindingDeviceID:
		return seedOutcome{}, &ValidationError{Problems: []FieldError{{"device_id", "not used by this profile: only a CTF string bound to a device takes one"}}}
	}
	o := seedOutcome{p: p}
	old := *t
	if err := voidCode(tx, t); err != nil {
		return seedOutcome{}, err
	}
	o.seed = seedBuf[:16]
	t.Algorithm, t.Hash = AlgSecurID, ""
	if p.DeliveryMethod == DeliveryOTPAuth {
		o.seed = seedBuf[:otpauthSecretLen(p.Hash)]
		t.Algorithm, t.Hash = AlgTOTP, p.Hash
		u, err := getUser(tx, t.UserID)
		if err != nil {
			return seedOutcome{}, err
		}
		o.userName = u.UserName
	}
	o.sealed = Sealed(s.sealer.SealNonce(nonce, o.seed, seedAAD(serial)))
	t.Seed, t.Provisioned, t.ProvisionedAt, t.UpdatedAt = o.sealed, true, now, now
	t.Digits, t.Interval, t.PINMode, t.Counter = p.Digits, p.Interval, p.PINMode, 0
	t.Profile = p.Name
	resetVerifierState(t)
	if p.DeliveryMethod == DeliveryCTF {
		// Encoded before the seed is replaced (pure computation, so
		// safe to re-run): a token the string cannot describe, such
		// as an expiry outside 2000-2044, is refused with its seed
		// intact rather than left with a seed nobody received.
		if o.ctf, err = encodeCTF(serial, o.seed, t, p, req); err != nil {
			return seedOutcome{}, fmt.Errorf("token %s cannot be delivered as a CTF string (%w): %w", serial, err, ErrInvalidState)
		}
	}
	if err := putToken(tx, t, &old); err != nil {
		return seedOutcome{}, err
	}
	// The audit says a new seed went out and how, never the seed.
	ev.Detail = "delivery=" + p.DeliveryMethod + " new seed; the previous seed no longer works"
	o.tok = *t
	return o, nil
}

// seedDeliveryOf builds what goes to the device from a delivered seed: for
// a file, the .sdtid document protected by req.Password (birth and rnd
// are the file's birth date and the randomness of its batch secret), for a
// CTF string its device link, for OATH the otpauth URI. Pure computation.
func seedDeliveryOf(o seedOutcome, req SeedDeliveryRequest, birth time.Time, rnd io.Reader) (SeedDelivery, []byte, error) {
	p, tok, serial := o.p, o.tok, o.tok.Serial
	out := SeedDelivery{Serial: serial, Profile: p.Name, Method: p.DeliveryMethod}
	switch p.DeliveryMethod {
	case DeliveryFile:
		var doc bytes.Buffer
		w, err := tokenfile.NewSDTIDWriter(&doc, tokenfile.SDTIDHeader{Password: req.Password.Reveal(), Digits: tok.Digits,
			Interval: tok.Interval, Expires: tok.ExpiresAt, PINMode: tok.PINMode, Birth: birth, Rand: rnd})
		if err == nil {
			err = w.Add(tokenfile.SDTIDToken{Serial: serial, Seed: o.seed})
		}
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			return SeedDelivery{}, nil, fmt.Errorf("token file: %w", err)
		}
		ttl := min(HandoutTTL, p.ActivationCodeTTL)
		out.ExpiresAt = birth.Add(ttl).UTC()
		return out, doc.Bytes(), nil
	case DeliveryCTF:
		out.CTF, out.DeviceURL = Secret(o.ctf), Secret(o.ctf)
		android, ios := tokenfile.CTFLinks(o.ctf)
		switch p.DeviceType {
		case DeviceAndroid:
			out.DeviceURL = Secret(android)
		case DeviceIOS:
			out.DeviceURL = Secret(ios)
		}
	case DeliveryOTPAuth:
		issuer := p.DisplayName
		if issuer == "" {
			issuer = OTPAuthIssuer
		}
		out.OTPAuthURL = Secret(otpauthURL(issuer, o.userName, o.seed, tok.Hash, tok.Digits, tok.Interval))
	}
	return out, nil, nil
}

// encodeCTF is the CTF string of t's new seed, bound as profile p says.
func encodeCTF(serial string, seed []byte, t *Token, p *Profile, req SeedDeliveryRequest) (string, error) {
	o := tokenfile.CTFOptions{Smartphone: p.DeviceType == DeviceAndroid || p.DeviceType == DeviceIOS}
	switch p.CTFBinding {
	case CTFBindingPassword:
		o.Password = req.Password.Reveal()
	case CTFBindingDeviceID:
		o.DeviceID = req.DeviceID
	}
	return tokenfile.EncodeCTF(tokenfile.CTFToken{Serial: serial, Seed: seed, Digits: t.Digits,
		Interval: t.Interval, PINMode: t.PINMode, ExpiresAt: t.ExpiresAt}, o)
}

// validDeviceID reports whether id is hex digits, possibly grouped with
// '-' or spaces, with at least one digit.
func validDeviceID(id string) bool {
	digits := 0
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			digits++
		case c == '-', c == ' ':
		default:
			return false
		}
	}
	return digits > 0
}

// otpauthURL builds a Key Uri Format URI: otpauth://totp/ISSUER:ACCOUNT
// with the base32 secret (unpadded), issuer, algorithm, digits and period.
func otpauthURL(issuer, account string, secret []byte, hash string, digits, period int) string {
	q := url.Values{}
	q.Set("secret", base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", strings.ToUpper(hash))
	q.Set("digits", strconv.Itoa(digits))
	q.Set("period", strconv.Itoa(period))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: q.Encode()}
	return u.String()
}

// filePassword draws a 16-character password from an alphabet without
// look-alikes (about 80 bits).
func (s *Service) filePassword() (Secret, error) {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"
	b := make([]byte, 16)
	r := make([]byte, 1)
	for i := 0; i < len(b); {
		if _, err := io.ReadFull(s.rand, r); err != nil {
			return "", fmt.Errorf("file password: %w", err)
		}
		if int(r[0]) >= 256/len(alphabet)*len(alphabet) {
			continue // reject the biased tail
		}
		b[i] = alphabet[int(r[0])%len(alphabet)]
		i++
	}
	return Secret(b), nil
}

// TakeTokenFile hands out the token file DeliverSeed generated, once: it is
// gone from memory afterwards. It is refused (ErrNotFound) when there is
// none, it expired or was taken, or the token changed since (re-issued,
// unassigned, disabled). The download is audited.
func (s *Service) TakeTokenFile(ctx context.Context, serial string) ([]byte, error) {
	h, ok := s.handouts.take(serial, s.now())
	var doc []byte
	err := s.changeGuarded(ctx, AuditEvent{Action: "token.distribution.download", Serial: serial}, func(tx Tx, _ time.Time, ev *AuditEvent) error {
		t, err := getToken(tx, serial)
		if err != nil {
			return err
		}
		ev.UserID = t.UserID
		if err := guardAdminFactor(tx, ActorFrom(ctx), ev, serial); err != nil {
			return err
		}
		if !ok || t.UserID == "" || t.State != StateEnabled || subtle.ConstantTimeCompare(t.Seed, h.sealed) != 1 {
			return fmt.Errorf("token %s has no token file waiting: it is handed out once, within %s of its distribution: %w",
				serial, HandoutTTL, ErrNotFound)
		}
		doc = h.doc
		return nil
	})
	if err != nil {
		clear(h.doc)
		return nil, err
	}
	return doc, nil
}

// handouts keeps generated token files in memory (never in the store)
// until their one download or expiry.
type handouts struct {
	mu sync.Mutex
	m  map[string]handout
}

type handout struct {
	doc     []byte
	sealed  Sealed // the seed the file carries, to notice a re-issue
	expires time.Time
}

func (h *handouts) put(serial string, doc []byte, sealed Sealed, expires, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]handout)
	}
	if old, ok := h.m[serial]; ok {
		clear(old.doc)
		delete(h.m, serial)
	}
	for k, e := range h.m {
		if !now.Before(e.expires) || len(h.m) >= maxHandouts {
			clear(e.doc)
			delete(h.m, k)
		}
	}
	h.m[serial] = handout{doc: doc, sealed: sealed, expires: expires}
}

func (h *handouts) take(serial string, now time.Time) (handout, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[serial]
	if !ok {
		return handout{}, false
	}
	delete(h.m, serial)
	if !now.Before(e.expires) {
		clear(e.doc)
		return handout{}, false
	}
	return e, true
}
