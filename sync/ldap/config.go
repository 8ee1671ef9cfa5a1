package ldap

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"tokend/appliance"
	"tokend/sync/mirror"
)

// Presets name attribute mappings for common directories.
const (
	PresetOpenLDAP = "openldap"
	PresetAD       = "ad"
)

// ID formats: how the id attribute's value becomes mirror.Entry.ExternalID.
const (
	IDText = "text" // the value as a string (entryUUID, or any string id)
	IDGUID = "guid" // 16 raw bytes (AD objectGUID) → canonical lower-case GUID string
)

// Defaults applied by WithDefaults.
const (
	DefaultPageSize            = 500
	DefaultFullInterval        = 24 * time.Hour
	DefaultIncrementalInterval = 5 * time.Minute
	DefaultTimeout             = 60 * time.Second
)

// Secret is a password that redacts itself in fmt, slog, JSON and YAML
// output, so a config dump or an error can never leak it.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) Reveal() string               { return string(s) }

// Mapping says which directory attributes feed which user fields.
type Mapping struct {
	ID          string   `yaml:"id" json:"id"`                     // immutable id: entryUUID, objectGUID
	IDFormat    string   `yaml:"id_format" json:"id_format"`       // "text" or "guid"
	UserName    string   `yaml:"user_name" json:"user_name"`       // login: uid, sAMAccountName
	DisplayName []string `yaml:"display_name" json:"display_name"` // first non-empty wins
	Email       []string `yaml:"email" json:"email"`               // first non-empty wins
	// Disabled names an attribute that marks the account disabled. With a
	// DisabledMask the value is an integer and the account is disabled when
	// value&mask != 0 (AD: userAccountControl, 0x2); without one, any value
	// present means disabled (e.g. pwdAccountLockedTime).
	Disabled     string `yaml:"disabled" json:"disabled"`
	DisabledMask uint32 `yaml:"disabled_mask" json:"disabled_mask"`
}

func presetMapping(preset string) (Mapping, string) {
	switch preset {
	case PresetAD:
		return Mapping{ID: "objectGUID", IDFormat: IDGUID, UserName: "sAMAccountName",
			DisplayName: []string{"displayName", "cn"}, Email: []string{"mail", "userPrincipalName"},
			Disabled: "userAccountControl", DisabledMask: 0x2,
		}, "(&(objectCategory=person)(objectClass=user))"
	default:
		return Mapping{ID: "entryUUID", IDFormat: IDText, UserName: "uid",
			DisplayName: []string{"displayName", "cn"}, Email: []string{"mail"},
		}, "(objectClass=inetOrgPerson)"
	}
}

// Config is one LDAP identity source.
type Config struct {
	URL              string `yaml:"url" json:"url"` // ldap://host[:port] or ldaps://host[:port]
	StartTLS         bool   `yaml:"start_tls" json:"start_tls"`
	CAFile           string `yaml:"ca_file" json:"ca_file"` // PEM file inside CredentialsDir
	CAPEM            string `yaml:"ca_pem" json:"ca_pem"`   // PEM text; with CAFile empty too = system roots
	BindDN           string `yaml:"bind_dn" json:"bind_dn"` // empty = anonymous
	BindPassword     Secret `yaml:"bind_password" json:"bind_password"`
	BindPasswordFile string `yaml:"bind_password_file" json:"bind_password_file"` // inside CredentialsDir, read at each connect (rotation)
	// CredentialsDir is the only directory CAFile and BindPasswordFile may
	// name (checked at every read; symlinks may not leave it). Empty: no
	// file is read at all.
	CredentialsDir string `yaml:"credentials_dir" json:"credentials_dir"`
	BaseDN         string `yaml:"base_dn" json:"base_dn"`
	UserFilter     string `yaml:"user_filter" json:"user_filter"` // default per preset
	// Preset fills the Attributes left empty: "openldap" (default) or "ad".
	Preset     string  `yaml:"preset" json:"preset"`
	Attributes Mapping `yaml:"attributes" json:"attributes"`
	PageSize   int     `yaml:"page_size" json:"page_size"`

	FullInterval        time.Duration `yaml:"full_interval" json:"full_interval"`
	IncrementalInterval time.Duration `yaml:"incremental_interval" json:"incremental_interval"`
	// Timeout bounds the dial and each LDAP request (each page of a search).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`

	// Safety rules (see package mirror); zero = mirror's defaults.
	GracePeriod    time.Duration `yaml:"grace_period" json:"grace_period"`
	BrakeThreshold float64       `yaml:"brake_threshold" json:"brake_threshold"`
}

// WithDefaults returns the config with the preset's mapping and filter and
// the default sizes and intervals filled in where left empty.
func (c Config) WithDefaults() Config {
	if c.Preset == "" {
		c.Preset = PresetOpenLDAP
	}
	m, filter := presetMapping(c.Preset)
	a := &c.Attributes
	if a.ID == "" {
		a.ID, a.IDFormat = m.ID, m.IDFormat
	}
	if a.IDFormat == "" {
		a.IDFormat = IDText
		if strings.EqualFold(a.ID, "objectGUID") {
			a.IDFormat = IDGUID
		}
	}
	if a.UserName == "" {
		a.UserName = m.UserName
	}
	if len(a.DisplayName) == 0 {
		a.DisplayName = m.DisplayName
	}
	if len(a.Email) == 0 {
		a.Email = m.Email
	}
	if a.Disabled == "" && a.DisabledMask == 0 {
		a.Disabled, a.DisabledMask = m.Disabled, m.DisabledMask
	}
	if c.UserFilter == "" {
		c.UserFilter = filter
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.FullInterval == 0 {
		c.FullInterval = DefaultFullInterval
	}
	if c.IncrementalInterval == 0 {
		c.IncrementalInterval = DefaultIncrementalInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = mirror.DefaultGracePeriod
	}
	if c.BrakeThreshold == 0 {
		c.BrakeThreshold = mirror.DefaultBrakeThreshold
	}
	return c
}

// ConfigError lists every problem of a config at once.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "ldap: invalid config: " + strings.Join(e.Problems, "; ")
}

// Validate reports every problem of the config (after WithDefaults) in one
// *ConfigError. It never mentions the password.
func (c Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		add("url is required")
	case err != nil:
		add("url %q does not parse", c.URL)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		add("url %q: scheme must be ldap or ldaps", c.URL)
	case u.Hostname() == "":
		add("url %q has no host", c.URL)
	case u.Scheme == "ldaps" && c.StartTLS:
		add("start_tls cannot be used with an ldaps:// url")
	}
	// The files are not looked at here: whether they are usable is told
	// once, at the read, in words that never say whether a path exists.
	if c.CAFile != "" && c.CAPEM != "" {
		add("set ca_file or ca_pem, not both")
	}
	if c.CAPEM != "" {
		if _, err := appliance.ParseCAPEM([]byte(c.CAPEM)); err != nil {
			add("ca_pem %v", err)
		}
	}
	switch {
	case c.BindPassword != "" && c.BindPasswordFile != "":
		add("set bind_password or bind_password_file, not both")
	case c.BindDN != "" && c.BindPassword == "" && c.BindPasswordFile == "":
		add("bind_dn %q needs bind_password or bind_password_file", c.BindDN)
	case c.BindDN == "" && (c.BindPassword != "" || c.BindPasswordFile != ""):
		add("a bind password is set but bind_dn is empty")
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			add("bind_dn %q: %v", c.BindDN, err)
		}
	}
	if c.BaseDN == "" {
		add("base_dn is required")
	} else if _, err := goldap.ParseDN(c.BaseDN); err != nil {
		add("base_dn %q: %v", c.BaseDN, err)
	}
	if _, err := goldap.CompileFilter(c.UserFilter); err != nil {
		add("user_filter %q: %v", c.UserFilter, err)
	}
	if c.Preset != PresetOpenLDAP && c.Preset != PresetAD {
		add("preset %q: want %q or %q", c.Preset, PresetOpenLDAP, PresetAD)
	}
	a := c.Attributes
	if a.ID == "" {
		add("attributes.id is required")
	}
	if a.IDFormat != IDText && a.IDFormat != IDGUID {
		add("attributes.id_format %q: want %q or %q", a.IDFormat, IDText, IDGUID)
	}
	if a.UserName == "" {
		add("attributes.user_name is required")
	}
	if a.DisabledMask != 0 && a.Disabled == "" {
		add("attributes.disabled_mask needs attributes.disabled")
	}
	if c.PageSize < 1 || c.PageSize > 100000 {
		add("page_size %d: want 1..100000 (Active Directory caps pages at 1000)", c.PageSize)
	}
	if c.FullInterval < 0 {
		add("full_interval %v is negative", c.FullInterval)
	}
	if c.IncrementalInterval < 0 {
		add("incremental_interval %v is negative", c.IncrementalInterval)
	}
	if c.Timeout <= 0 {
		add("timeout %v must be positive", c.Timeout)
	}
	if c.GracePeriod < 0 {
		add("grace_period %v is negative", c.GracePeriod)
	}
	if math.IsNaN(c.BrakeThreshold) || c.BrakeThreshold <= 0 || c.BrakeThreshold > 1 {
		add("brake_threshold %v: want a share in (0, 1]", c.BrakeThreshold)
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// password returns the bind password, reading the file each time so a
// rotated password is picked up without a restart. The file must be inside
// CredentialsDir; the error is the same whatever is wrong with it.
func (c Config) password() (string, error) {
	if c.BindPasswordFile == "" {
		return c.BindPassword.Reveal(), nil
	}
	pw, err := appliance.LoadPasswordFile(c.CredentialsDir, c.BindPasswordFile)
	if err != nil {
		return "", fmt.Errorf("ldap: bind_password_file: %w", err)
	}
	return pw.Reveal(), nil
}

// incremental reports whether syncrepl can serve incremental runs: it
// reports deletes by entryUUID only, so the id attribute must be entryUUID.
func (c Config) incremental() bool {
	return strings.EqualFold(c.Attributes.ID, "entryUUID") && c.Attributes.IDFormat == IDText
}
