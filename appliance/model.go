package appliance

import (
	"log/slog"
	"time"
)

// Roles of API tokens and admin accounts.
const (
	RoleSuperAdmin = "superadmin"
	RoleHelpdesk   = "helpdesk"
	RoleAuditor    = "auditor"
	RoleAgent      = "agent"
)

// ValidRole reports whether r is one of the four roles.
func ValidRole(r string) bool {
	switch r {
	case RoleSuperAdmin, RoleHelpdesk, RoleAuditor, RoleAgent:
		return true
	}
	return false
}

// Token kinds, algorithms, states and managers.
const (
	KindSoftware = "software"
	KindHardware = "hardware"

	AlgSecurID = "securid-aes"
	AlgTOTP    = "totp"
	AlgHOTP    = "hotp"

	StateEnabled  = "enabled"
	StateDisabled = "disabled"

	ManagedLocal = "local"
	ManagedCloud = "cloud"
)

// MaxTokensPerUser is RSA's limit on hardware and software tokens assigned to
// one user; cloud-managed tokens do not count.
const MaxTokensPerUser = 3

// SourceInternal is the identity source of users created by an admin.
const SourceInternal = "internal"

// User is a person who can hold tokens.
type User struct {
	ID            string    `json:"id"`
	UserName      string    `json:"user_name"`
	DisplayName   string    `json:"display_name"`
	Email         string    `json:"email"`
	Source        string    `json:"source"`
	ExternalID    string    `json:"external_id,omitempty"`
	Active        bool      `json:"active"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	DeactivatedAt time.Time `json:"deactivated_at,omitzero"`
	// DirectoryDisabled: the identity source reports the account disabled
	// (as opposed to missing from it).
	DirectoryDisabled bool `json:"directory_disabled,omitempty"`
	// Consecutive authentication failures and the lockout they caused.
	Failures    int       `json:"failures,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// UserView is a user with the tokens assigned to them.
type UserView struct {
	User
	Tokens []Token
}

// Token is one token record. Seed holds the sealed seed (never plaintext).
type Token struct {
	Serial        string    `json:"serial"`
	Kind          string    `json:"kind"`
	Algorithm     string    `json:"algorithm"`
	Hash          string    `json:"hash,omitempty"`
	Digits        int       `json:"digits"`
	Interval      int       `json:"interval"`
	Counter       uint64    `json:"counter,omitempty"`
	ExpiresAt     time.Time `json:"expires_at"`
	State         string    `json:"state"`
	Provisioned   bool      `json:"provisioned"`
	UserID        string    `json:"user_id,omitempty"`
	ManagedBy     string    `json:"managed_by"`
	Profile       string    `json:"profile,omitempty"`
	PINMode       string    `json:"pin_mode,omitempty"`
	Seed          Sealed    `json:"seed,omitempty"`
	CodeHash      []byte    `json:"code_hash,omitempty"`
	ImportJob     string    `json:"import_job,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	AssignedAt    time.Time `json:"assigned_at,omitzero"`
	ProvisionedAt time.Time `json:"provisioned_at,omitzero"`
	LastUsedAt    time.Time `json:"last_used_at,omitzero"`
	// Verifier state: PIN (argon2id hash and length), whether a new PIN is
	// required, the last accepted time step (or HOTP counter) and the
	// token's clock offset in steps.
	PINHash        string `json:"pin_hash,omitempty"`
	PINLength      int    `json:"pin_length,omitempty"`
	NewPINRequired bool   `json:"new_pin_required,omitempty"`
	LastStep       int64  `json:"last_step,omitempty"`
	Drift          int64  `json:"drift,omitempty"`
	// AdminSecondFactor is not stored: reads set it when the token is an
	// admin's console second factor (managed by super admins only).
	AdminSecondFactor bool `json:"-"`
	// Lifecycle (lifecycle.go). A pending replacement links the old token
	// (ReplacedBy, and ReplaceUntil: the end of its grace period) and the
	// new one (Replaces). A lost token is disabled; LostFrom is the state
	// "found" gives back.
	ReplacedBy   string    `json:"replaced_by,omitempty"`
	Replaces     string    `json:"replaces,omitempty"`
	ReplaceUntil time.Time `json:"replace_until,omitzero"`
	Lost         bool      `json:"lost,omitempty"`
	LostAt       time.Time `json:"lost_at,omitzero"`
	LostFrom     string    `json:"lost_from,omitempty"`
}

// Sealed is an AEAD-sealed secret. It never prints its bytes.
type Sealed []byte

func (Sealed) String() string       { return "[sealed]" }
func (Sealed) LogValue() slog.Value { return slog.StringValue("[sealed]") }

// Delivery methods and PIN modes of software token profiles.
const (
	DeliveryCTKIP = "ctkip"
	DeliveryFile  = "file"
	DeliveryCTF   = "ctf"

	PINModeNone   = "none"
	PINModePINPad = "pinpad"
	PINModeFob    = "fob"
)

// Device types of software token profiles; each has its own device link.
const (
	DeviceAndroid = "android"
	DeviceIOS     = "ios"
	DeviceWindows = "windows"
	DeviceMacOS   = "macos"
	DeviceGeneric = "generic"
)

// Profile is a software token profile.
type Profile struct {
	Name              string        `json:"name"`
	DeviceType        string        `json:"device_type"`
	DeliveryMethod    string        `json:"delivery_method"`
	Digits            int           `json:"digits"`
	Interval          int           `json:"interval"`
	PINMode           string        `json:"pin_mode"`
	CTFBinding        string        `json:"ctf_binding,omitempty"` // delivery ctf only: none | password | device_id
	Hash              string        `json:"hash,omitempty"`        // delivery otpauth only: sha1 | sha256 | sha512
	ActivationCodeTTL time.Duration `json:"activation_code_ttl"`
	// MaxLifetime bounds how far an admin may extend a token of this
	// profile: its expiry at most this long after it was provisioned
	// (zero: DefaultMaxTokenLifetime).
	MaxLifetime time.Duration `json:"max_lifetime,omitempty"`
	DisplayName string        `json:"display_name"`
	HelpText    string        `json:"help_text"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
}

// Activation code states.
const (
	CodeIssued   = "issued"
	CodeInUse    = "in_use"
	CodeConsumed = "consumed"
	CodeVoided   = "voided"
)

// ActivationCode is the stored record of an issued code, keyed by its keyed
// hash; the code itself is never stored.
type ActivationCode struct {
	Serial    string    `json:"serial"`
	Profile   string    `json:"profile"`
	UserID    string    `json:"user_id"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	State     string    `json:"state"`
	Failures  int       `json:"failures,omitempty"`
}

// Secret is a secret shown to an admin exactly once (an activation code, a
// new API token). It redacts itself in logs and fmt output; Reveal returns it.
type Secret string

func (Secret) String() string       { return "[redacted]" }
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Reveal returns the secret's value, for the one response that shows it.
func (s Secret) Reveal() string { return string(s) }

// Distribution is what an admin hands to a user for dynamic seed provisioning.
type Distribution struct {
	Serial         string
	Profile        string
	CTKIPURL       string
	ActivationCode Secret
	ExpiresAt      time.Time
	DeviceURL      Secret // carries the activation code for mobile device types
}

// Actor is who performs an action, for authorisation and audit.
type Actor struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

// APIToken is a bearer token for the admin and authentication APIs. Only a
// hash of the token is stored.
type APIToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// ExpiresAt, when set, is when the token stops working (refused like a
	// revoked one).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastUsedAt is when the token last authenticated a request, stored at
	// most once a minute per token (apiTokenUse).
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// Expired reports whether the token no longer works at now.
func (t APIToken) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Page cursors are opaque strings; an empty NextCursor means the end.

// UserQuery selects users.
type UserQuery struct {
	Search string // case-insensitive prefix of login, display name or e-mail
	Source string
	Limit  int
	Cursor string
}

// UserPage is one page of users.
type UserPage struct {
	Items      []User
	NextCursor string
	Total      int
}

// TokenQuery selects tokens.
type TokenQuery struct {
	Search   string // serial prefix
	Assigned *bool
	Kind     string
	Limit    int
	Cursor   string
}

// TokenPage is one page of tokens.
type TokenPage struct {
	Items      []Token
	NextCursor string
	Total      int
}
