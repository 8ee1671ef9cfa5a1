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
}

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
	case len(name) > 64 || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n\t/ "):
		v.Add("name", "must be at most 64 printable characters without spaces or '/'")
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

func (s *Service) hashAdminPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(s.rand, salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, adminArgonTime, adminArgonMemory, adminArgonThreads, adminArgonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, adminArgonMemory, adminArgonTime, adminArgonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CreateAdmin adds an admin account. When in.Password is empty a password
// is generated and returned (once); otherwise the returned Secret is empty.
// Hashing happens before the transaction, which must stay pure.
func (s *Service) CreateAdmin(ctx context.Context, in NewAdmin) (AdminAccount, Secret, error) {
	in.Name = strings.TrimSpace(in.Name)
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
	hash, err := s.hashAdminPassword(in.Password.Reveal())
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
			if err := checkSecondFactorToken(tx, in.SecondFactorSerial); err != nil {
				return err
			}
		}
		out = AdminAccount{ID: id, Name: in.Name, Role: in.Role, PasswordHash: hash,
			SecondFactorSerial: in.SecondFactorSerial, CreatedAt: now, UpdatedAt: now}
		return putJSON(tx, adminKey(in.Name), out)
	})
	if err != nil {
		return AdminAccount{}, "", err
	}
	return out, generated, nil
}

// checkSecondFactorToken requires the token to exist and be assigned: the
// tokencode is verified through its user.
func checkSecondFactorToken(tx Tx, serial string) error {
	t, err := getToken(tx, serial)
	if err != nil {
		return err
	}
	if t.UserID == "" {
		return fmt.Errorf("token %s is not assigned to a user, so it cannot be a second factor: %w", serial, ErrInvalidState)
	}
	// Whoever holds an outstanding code (say, the help desk that issued it)
	// could provision the token after it became the factor.
	if len(t.CodeHash) > 0 {
		return fmt.Errorf("token %s has an outstanding activation code: provision the token or void the code first: %w", serial, ErrInvalidState)
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

// SetAdminPassword replaces an admin's password.
func (s *Service) SetAdminPassword(ctx context.Context, name string, password Secret) error {
	v := &ValidationError{}
	validateAdminPassword(password.Reveal(), v)
	if err := v.Err(); err != nil {
		return err
	}
	hash, err := s.hashAdminPassword(password.Reveal())
	if err != nil {
		return err
	}
	return s.change(ctx, AuditEvent{Action: "admin.password", Target: name}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		a, err := getAdmin(tx, name)
		if err != nil {
			return err
		}
		a.PasswordHash, a.UpdatedAt = hash, now
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
			if err := checkSecondFactorToken(tx, serial); err != nil {
				return err
			}
		}
		a.SecondFactorSerial, a.UpdatedAt = serial, now
		return putJSON(tx, adminKey(name), a)
	})
}

// DeleteAdmin removes an admin account; their console sessions end at
// their next request (the console re-reads the account every time).
func (s *Service) DeleteAdmin(ctx context.Context, name string) error {
	return s.change(ctx, AuditEvent{Action: "admin.delete", Target: name}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		if _, err := getAdmin(tx, name); err != nil {
			return err
		}
		return tx.Delete(adminKey(name))
	})
}

// Reasons of refused admin sign-ins, for the audit trail only: the caller
// is told ErrUnauthenticated whatever went wrong.
const (
	adminReasonUnknown      = "unknown_admin"
	adminReasonBadPassword  = "bad_password"
	adminReasonBadPasscode  = "bad_passcode"
	adminReasonNeedPasscode = "passcode_required"
)

// AuthenticateAdmin checks an admin's password and, when the account has a
// second factor, the tokencode (passcode) of that token; it returns the
// admin as an Actor. Every refusal is ErrUnauthenticated, so a caller
// cannot tell a wrong name from a wrong password or tokencode, and an
// unknown name costs the same argon2id work as a known one. The tokencode
// is checked only after the password matched, so a password guesser cannot
// burn the token's codes or lock its user out. Outcomes are audited
// (never the password or the code; an unknown name is recorded as such,
// since people type passwords into name fields).
func (s *Service) AuthenticateAdmin(ctx context.Context, name, password, passcode string) (Actor, error) {
	var acc *AdminAccount
	err := s.store.View(ctx, func(tx Tx) error {
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
	if len(name) > 256 || len(password) > 1024 {
		acc = nil
	}
	ok := false
	if acc != nil {
		ok = pinMatches(acc.PasswordHash, password)
	} else {
		// Same work as a real check, against nothing.
		var salt [16]byte
		_ = argon2.IDKey([]byte(password), salt[:], adminArgonTime, adminArgonMemory, adminArgonThreads, adminArgonKeyLen)
	}
	login := AuditEvent{Action: "admin.login", Target: "unknown"}
	refuse := func(reason string) (Actor, error) {
		login.Outcome, login.Reason = OutcomeFailure, reason
		actor := Actor{ID: "console", Name: "console"}
		if acc != nil {
			actor = Actor{ID: "admin:" + acc.ID, Name: acc.Name, Role: acc.Role}
		}
		if err := s.Audit(WithActor(ctx, actor), login); err != nil {
			s.log.Error("audit of a refused admin sign-in failed", "err", err)
		}
		return Actor{}, ErrUnauthenticated
	}
	if acc == nil {
		return refuse(adminReasonUnknown)
	}
	login.Target = acc.Name
	if !ok {
		return refuse(adminReasonBadPassword)
	}
	if acc.SecondFactorSerial != "" {
		if strings.TrimSpace(passcode) == "" {
			return refuse(adminReasonNeedPasscode)
		}
		if !s.verifySecondFactor(ctx, acc, passcode) {
			return refuse(adminReasonBadPasscode)
		}
		login.Serial = acc.SecondFactorSerial
	}
	actor := acc.Actor()
	now := s.now().UTC()
	err = s.store.Update(ctx, func(tx Tx) error {
		a, err := getAdmin(tx, acc.Name)
		if err != nil {
			return err
		}
		a.LastLoginAt = now
		if err := putJSON(tx, adminKey(a.Name), a); err != nil {
			return err
		}
		login.Outcome = OutcomeSuccess
		return appendAudit(tx, now, actor, login)
	})
	if errors.Is(err, ErrNotFound) {
		return Actor{}, ErrUnauthenticated // deleted meanwhile
	}
	if err != nil {
		return Actor{}, err
	}
	return actor, nil
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
