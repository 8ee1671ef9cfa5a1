package appliance

import (
	"context"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"tokend/appliance/tokenfile"
)

// Admin accounts sign in to the web console with a name and a password
// (argon2id), optionally followed by a tokencode of a tokend token: the
// appliance verifies its own admins' second factor with the same
// Authenticate the agents use.
//
// Key layout (beside records.go):
//
//	adm/<folded name>   AdminAccount (names are unique case-insensitively)
const pfxAdmin = "adm/"

func adminKey(name string) []byte { return []byte(pfxAdmin + fold(name)) }

// Argon2id parameters for admin passwords: RFC 9106's second recommended
// option (t=3, 64 MiB). The encoded hash carries them, so raising them
// later keeps old hashes valid.
const (
	adminArgonTime    = 3
	adminArgonMemory  = 64 * 1024
	adminArgonThreads = 2
	adminArgonKeyLen  = 32
)

// MinAdminPasswordLength is the shortest password an admin may choose.
const MinAdminPasswordLength = 12

// AdminAccount is a person who administers the appliance in the console.
// PasswordHash is an encoded argon2id hash; no method renders it.
type AdminAccount struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Role         string `json:"role"`
	PasswordHash string `json:"password_hash"`
	// SecondFactorSerial, when set, names a token (assigned to a user and
	// provisioned) whose tokencode the admin types after the password.
	SecondFactorSerial string    `json:"second_factor_serial,omitempty"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
	LastLoginAt        time.Time `json:"last_login_at,omitzero"`
	// Failures counts consecutive refused sign-ins; at the policy's maximum
	// the account is locked until LockedUntil (stored, so a restart does
	// not unlock it). FailureAuditedAt bounds the audit of refusals to one
	// record per account per minute.
	Failures         int       `json:"failures,omitempty"`
	LockedUntil      time.Time `json:"locked_until,omitzero"`
	FailureAuditedAt time.Time `json:"failure_audited_at,omitzero"`
	// Disabled accounts cannot sign in; their sessions end at their next
	// request.
	Disabled bool `json:"disabled,omitempty"`
	// MustChangePassword is set by a generated (one-time) password: the
	// console lets the admin do nothing but choose a new one.
	MustChangePassword bool `json:"must_change_password,omitempty"`
}

// Locked reports whether the account is locked out of the console at now.
func (a AdminAccount) Locked(now time.Time) bool { return now.Before(a.LockedUntil) }

// Actor is who the admin is when acting through the console.
func (a AdminAccount) Actor() Actor {
	return Actor{ID: "admin:" + a.ID, Name: a.Name, Role: a.Role}
}

// NewAdmin is the input of CreateAdmin. An empty Password makes the
// Service generate one and return it once.
type NewAdmin struct {
	Name               string
	Role               string
	Password           Secret
	SecondFactorSerial string
}

// validAdminRole: agents are machines and never sign in to the console.
func validAdminRole(r string) bool {
	return r == RoleSuperAdmin || r == RoleHelpdesk || r == RoleAuditor
}

func validateAdminName(name string, v *ValidationError) {
	switch {
	case strings.TrimSpace(name) == "":
		v.Add("name", "required")
	case !validAdminNameChars(name):
		v.Add("name", AdminNameRule)
	}
}

func validateAdminPassword(p string, v *ValidationError) {
	switch {
	case utf8.RuneCountInString(p) < MinAdminPasswordLength:
		v.Add("password", fmt.Sprintf("must be at least %d characters", MinAdminPasswordLength))
	case len(p) > 1024 || !utf8.ValidString(p):
		v.Add("password", "must be at most 1024 bytes of UTF-8")
	}
}

// generatePassword draws 100 bits as 20 base32 characters in groups of
// five, easy to read out and type.
func (s *Service) generatePassword() (Secret, error) {
	var b [15]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("admin password: %w", err)
	}
	enc := strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
	return Secret(enc[0:5] + "-" + enc[5:10] + "-" + enc[10:15] + "-" + enc[15:20]), nil
}

func (s *Service) hashAdminPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key, err := s.argon.idKey(ctx, []byte(password), salt, adminArgonTime, adminArgonMemory, adminArgonThreads, adminArgonKeyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, adminArgonMemory, adminArgonTime, adminArgonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CreateAdmin adds an admin account. When in.Password is empty a password
// is generated and returned (once); otherwise the returned Secret is empty.
// Hashing happens before the transaction, which must stay pure.
func (s *Service) CreateAdmin(ctx context.Context, in NewAdmin) (AdminAccount, Secret, error) {
	in.Name = NormalizeName(in.Name)
	v := &ValidationError{}
	validateAdminName(in.Name, v)
	if !validAdminRole(in.Role) {
		v.Add("role", "must be superadmin, helpdesk or auditor")
	}
	generated := Secret("")
	if in.Password == "" {
		p, err := s.generatePassword()
		if err != nil {
			return AdminAccount{}, "", err
		}
		in.Password, generated = p, p
	} else {
		validateAdminPassword(in.Password.Reveal(), v)
	}
	if in.SecondFactorSerial != "" && !tokenfile.ValidSerial(in.SecondFactorSerial) {
		v.Add("second_factor_serial", "must be 12 digits")
	}
	if err := v.Err(); err != nil {
		return AdminAccount{}, "", err
	}
	hash, err := s.hashAdminPassword(ctx, in.Password.Reveal())
	if err != nil {
		return AdminAccount{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return AdminAccount{}, "", err
	}
	var out AdminAccount
	err = s.change(ctx, AuditEvent{Action: "admin.create", Target: in.Name, Detail: in.Role}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		if ok, err := exists(tx, adminKey(in.Name)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("admin %q: %w", in.Name, ErrExists)
		}
		if in.SecondFactorSerial != "" {
			if err := checkSecondFactorToken(tx, in.SecondFactorSerial, in.Name); err != nil {
				return err
			}
		}
		out = AdminAccount{ID: id, Name: in.Name, Role: in.Role, PasswordHash: hash,
			SecondFactorSerial: in.SecondFactorSerial, CreatedAt: now, UpdatedAt: now, MustChangePassword: generated != ""}
		return putJSON(tx, adminKey(in.Name), out)
	})
	if err != nil {
		return AdminAccount{}, "", err
	}
	return out, generated, nil
}

// SecondFactorError refuses a token as an admin's second factor: Reason
// says why and what to do, for people (it names no secret).
type SecondFactorError struct {
	Serial, Reason string
}

func (e *SecondFactorError) Error() string {
	return fmt.Sprintf("token %s cannot be a console second factor: %s", e.Serial, e.Reason)
}

// Is makes it an ErrInvalidState: the token's state does not fit (yet).
func (e *SecondFactorError) Is(target error) bool { return target == ErrInvalidState }

// checkSecondFactorToken requires a token that can produce tokencodes (it
// holds a seed) and is the admin's own: assigned to the user whose user
// name is the admin's name. The tokencode is verified through that user, so
// a token of somebody else would let them sign in (or need them to), and an
// unassigned or seedless token would lock the admin out (the README example
// this replaces did both).
func checkSecondFactorToken(tx Tx, serial, adminName string) error {
	t, err := getToken(tx, serial)
	if err != nil {
		return err
	}
	refuse := func(reason string) error { return &SecondFactorError{Serial: serial, Reason: reason} }
	if t.UserID == "" {
		return refuse(fmt.Sprintf("it is not assigned to a user; assign it to the user %q (the admin's own user) first", adminName))
	}
	u, err := getUser(tx, t.UserID)
	if err != nil {
		return err
	}
	if fold(u.UserName) != fold(adminName) {
		return refuse(fmt.Sprintf("it is assigned to another user; an admin's second factor must be assigned to the user named like the admin (%q)", adminName))
	}
	// Whoever holds an outstanding code (say, the help desk that issued it)
	// could provision the token after it became the factor.
	if len(t.CodeHash) > 0 {
		return refuse("it has an outstanding activation code: provision the token or void the code first")
	}
	if len(t.Seed) == 0 {
		return refuse("it has no seed (never provisioned and none imported): provision it first")
	}
	return nil
}

func getAdmin(tx Tx, name string) (*AdminAccount, error) {
	var a AdminAccount
	if err := getJSON(tx, adminKey(name), &a); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("admin %q: %w", name, ErrNotFound)
		}
		return nil, err
	}
	return &a, nil
}

// GetAdmin returns one admin account.
func (s *Service) GetAdmin(ctx context.Context, name string) (AdminAccount, error) {
	var out AdminAccount
	err := s.store.View(ctx, func(tx Tx) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		out = *a
		return nil
	})
	return out, err
}

// ListAdmins returns every admin account in name order.
func (s *Service) ListAdmins(ctx context.Context) ([]AdminAccount, error) {
	return listJSON[AdminAccount](ctx, s.store, pfxAdmin)
}

// SetAdminPassword replaces an admin's password with one chosen by whoever
// sets it: it is not one-time (ResetAdminPassword generates one that is).
func (s *Service) SetAdminPassword(ctx context.Context, name string, password Secret) error {
	v := &ValidationError{}
	validateAdminPassword(password.Reveal(), v)
	if err := v.Err(); err != nil {
		return err
	}
	hash, err := s.hashAdminPassword(ctx, password.Reveal())
	if err != nil {
		return err
	}
	return s.change(ctx, AuditEvent{Action: "admin.password", Target: name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		a.PasswordHash, a.UpdatedAt, a.MustChangePassword = hash, now, false
		return putJSON(tx, adminKey(name), a)
	})
}

// SetAdminSecondFactor binds (serial != "") or removes (serial == "") the
// admin's second-factor token.
func (s *Service) SetAdminSecondFactor(ctx context.Context, name, serial string) error {
	if serial != "" && !tokenfile.ValidSerial(serial) {
		return &ValidationError{Problems: []FieldError{{"second_factor_serial", "must be 12 digits"}}}
	}
	return s.change(ctx, AuditEvent{Action: "admin.second_factor", Target: name, Serial: serial}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		if serial != "" {
			if err := checkSecondFactorToken(tx, serial, a.Name); err != nil {
				return err
			}
		}
		a.SecondFactorSerial, a.UpdatedAt = serial, now
		return putJSON(tx, adminKey(name), a)
	})
}

// Reasons of refused admin sign-ins, for the audit trail and metrics only:
// the caller is told ErrUnauthenticated whatever went wrong.
const (
	adminReasonUnknown      = "unknown_admin"
	adminReasonBadPassword  = "bad_password"
	adminReasonBadPasscode  = "bad_passcode"
	adminReasonNeedPasscode = "passcode_required"
	adminReasonLocked       = ReasonLocked
	adminReasonDisabled     = "disabled"
	adminReasonBusy         = "busy"
)

// AuthenticateAdmin checks an admin's password and, when the account has a
// second factor, the tokencode (passcode) of that token; it returns the
// admin as an Actor. Every refusal is ErrUnauthenticated, so a caller
// cannot tell a wrong name from a wrong password or tokencode, or a locked
// account from an open one, and an unknown name or a locked account costs
// the same argon2id work as a real check. The tokencode is checked only
// after the password matched on an unlocked account, so a password guesser
// cannot burn the token's codes or lock its user out.
//
// The argon2id work runs in the Service's bounded pool: when it cannot
// start within a short wait the answer is ErrBusy (try again shortly).
// Refusals of an existing account count toward its lockout; they are
// audited at most once per account per minute, plus the lockout itself.
// Refusals of unknown names are only counted (metric, rate-limited log):
// anyone can make them, and people type passwords into name fields.
func (s *Service) AuthenticateAdmin(ctx context.Context, name, password, passcode string) (Actor, error) {
	var acc *AdminAccount
	if len(name) <= 256 && len(password) <= 1024 {
		err := s.store.View(ctx, func(tx Tx) error {
			acc = nil
			a, err := getAdmin(tx, name)
			if err != nil {
				return err
			}
			acc = a
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Actor{}, err
		}
	}
	ok, err := s.checkAdminPassword(ctx, acc, password)
	if err != nil {
		s.signIn.refused(s.log, s.now(), adminReasonBusy, false)
		return Actor{}, err
	}
	now := s.now().UTC()
	if acc == nil {
		s.signIn.refused(s.log, now, adminReasonUnknown, false)
		return Actor{}, ErrUnauthenticated
	}
	reason := ""
	switch {
	case acc.Locked(now):
		reason = adminReasonLocked
	case acc.Disabled:
		reason = adminReasonDisabled
	case !ok:
		reason = adminReasonBadPassword
	case acc.SecondFactorSerial != "" && strings.TrimSpace(passcode) == "":
		reason = adminReasonNeedPasscode
	case acc.SecondFactorSerial != "" && !s.verifySecondFactor(ctx, acc, passcode):
		reason = adminReasonBadPasscode
	}
	if reason != "" {
		return Actor{}, s.refuseAdmin(ctx, acc, reason, now)
	}
	login := AuditEvent{Action: "admin.login", Target: acc.Name, Serial: acc.SecondFactorSerial}
	actor := acc.Actor()
	err = s.store.Update(ctx, func(tx Tx) error {
		a, err := getAdmin(tx, acc.Name)
		if err != nil {
			return err
		}
		if a.ID != acc.ID || a.Locked(now) || a.Disabled {
			return errAdminChanged // replaced, locked or disabled since the check
		}
		a.LastLoginAt, a.Failures, a.LockedUntil = now, 0, time.Time{}
		if err := putJSON(tx, adminKey(a.Name), a); err != nil {
			return err
		}
		login.Outcome = OutcomeSuccess
		return appendAudit(tx, now, actor, login)
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, errAdminChanged) {
		s.signIn.refused(s.log, now, adminReasonLocked, false)
		return Actor{}, ErrUnauthenticated // deleted or locked meanwhile
	}
	if err != nil {
		return Actor{}, err
	}
	s.signIn.succeeded()
	return actor, nil
}

var errAdminChanged = errors.New("admin account changed during sign-in")

// checkAdminPassword runs the argon2id check of password against acc, or
// the same work against nothing when acc is nil.
func (s *Service) checkAdminPassword(ctx context.Context, acc *AdminAccount, password string) (bool, error) {
	if acc != nil {
		return s.argon.matches(ctx, acc.PasswordHash, password)
	}
	var salt [16]byte
	_, err := s.argon.idKey(ctx, []byte(password), salt[:], adminArgonTime, adminArgonMemory, adminArgonThreads, adminArgonKeyLen)
	return false, err
}

// verifySecondFactor runs the appliance's own authentication for the user
// holding the admin's token and accepts only a decision made with that very
// token: the code is then spent (replay-proof) and failures count toward the
// user's lockout like any other. A challenge (next tokencode, new PIN) is a
// refusal here: the admin resolves it through the help desk.
func (s *Service) verifySecondFactor(ctx context.Context, acc *AdminAccount, passcode string) bool {
	var userName string
	err := s.store.View(ctx, func(tx Tx) error {
		t, err := getToken(tx, acc.SecondFactorSerial)
		if err != nil {
			return err
		}
		if t.UserID == "" {
			return ErrNotFound
		}
		u, err := getUser(tx, t.UserID)
		if err != nil {
			return err
		}
		userName = u.UserName
		return nil
	})
	if err != nil {
		return false
	}
	res, err := s.Authenticate(WithActor(ctx, acc.Actor()), AuthRequest{UserName: userName, Passcode: passcode})
	if err != nil {
		s.log.Error("second factor check failed", "admin", acc.Name, "err", err)
		return false
	}
	return res.Result == AuthAccept && subtle.ConstantTimeCompare([]byte(res.Serial), []byte(acc.SecondFactorSerial)) == 1
}
