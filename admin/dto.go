package admin

import (
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"tokend/appliance"
)

// The JSON documents of the API. They are separate from the domain types so
// that a field added to a domain type (a sealed seed, a hash) never reaches a
// client by accident, and so the wire names stay stable when the domain
// changes. Zero times render as null.

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Page is one page of a listing.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
	Total      int    `json:"total"`
}

// List is a listing that is not paged.
type List[T any] struct {
	Items []T `json:"items"`
}

// mapDTO converts domain values to DTOs; never nil, so JSON shows [].
func mapDTO[T, D any](in []T, f func(T) D) []D {
	out := make([]D, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// --- users

type createUserRequest struct {
	UserName    string `json:"user_name"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email"`
}

// UserDTO is a user.
type UserDTO struct {
	ID            string     `json:"id"`
	UserName      string     `json:"user_name"`
	DisplayName   string     `json:"display_name"`
	Email         string     `json:"email"`
	Source        string     `json:"source"`
	ExternalID    *string    `json:"external_id"`
	Active        bool       `json:"active"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	DeactivatedAt *time.Time `json:"deactivated_at"`
	// Failures counts consecutive failed authentications; Locked tells
	// that they locked the user out until LockedUntil (null when not
	// locked, including after the lockout ran out).
	Failures    int        `json:"failures"`
	Locked      bool       `json:"locked"`
	LockedUntil *time.Time `json:"locked_until"`
}

// UserViewDTO is a user with the tokens assigned to them.
type UserViewDTO struct {
	UserDTO
	Tokens []TokenDTO `json:"tokens"`
}

// userDTO renders a user as of now (the server's clock), which decides
// whether a lockout is still in force.
func userDTO(u appliance.User, now time.Time) UserDTO {
	out := UserDTO{ID: u.ID, UserName: u.UserName, DisplayName: u.DisplayName, Email: u.Email, Source: u.Source,
		ExternalID: optString(u.ExternalID), Active: u.Active, CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC(),
		DeactivatedAt: optTime(u.DeactivatedAt), Failures: u.Failures}
	if now.Before(u.LockedUntil) {
		out.Locked, out.LockedUntil = true, optTime(u.LockedUntil)
	}
	return out
}

func userViewDTO(v appliance.UserView, now time.Time) UserViewDTO {
	return UserViewDTO{UserDTO: userDTO(v.User, now), Tokens: mapDTO(v.Tokens, tokenDTO)}
}

// --- tokens

// TokenDTO is a token without its secrets: no seed, no code hash, no PIN
// hash (only whether a PIN is set).
type TokenDTO struct {
	Serial      string     `json:"serial"`
	Kind        string     `json:"kind"`
	Algorithm   string     `json:"algorithm"`
	Digits      int        `json:"digits"`
	Interval    int        `json:"interval"`
	ExpiresAt   *time.Time `json:"expires_at"`
	State       string     `json:"state"`
	Provisioned bool       `json:"provisioned"`
	// ActivationPending tells that an activation code is outstanding.
	ActivationPending bool       `json:"activation_pending"`
	UserID            *string    `json:"user_id"`
	ManagedBy         string     `json:"managed_by"`
	Profile           *string    `json:"profile"`
	PINMode           *string    `json:"pin_mode"`
	CreatedAt         *time.Time `json:"created_at"`
	UpdatedAt         *time.Time `json:"updated_at"`
	AssignedAt        *time.Time `json:"assigned_at"`
	ProvisionedAt     *time.Time `json:"provisioned_at"`
	LastUsedAt        *time.Time `json:"last_used_at"`
	// PINSet tells that the token has a PIN; NewPINRequired that the user
	// must choose one at the next authentication (new PIN mode).
	PINSet         bool `json:"pin_set"`
	NewPINRequired bool `json:"new_pin_required"`
	// Drift is the token's clock offset in time steps (or 0).
	Drift int64 `json:"drift"`
	// AdminSecondFactor (only when true) tells that the token is an
	// admin's console second factor, which only a super admin may change.
	AdminSecondFactor bool `json:"admin_second_factor,omitempty"`
	// Lifecycle: a pending replacement names the other token on each
	// side, and the old token's grace end; a lost token has state "lost".
	ReplacedBy        *string    `json:"replaced_by"`
	Replaces          *string    `json:"replaces"`
	ReplacementEndsAt *time.Time `json:"replacement_ends_at,omitempty"`
	LostAt            *time.Time `json:"lost_at,omitempty"`
}

func tokenDTO(t appliance.Token) TokenDTO {
	out := TokenDTO{Serial: t.Serial, Kind: t.Kind, Algorithm: t.Algorithm, Digits: t.Digits, Interval: t.Interval,
		ExpiresAt: optTime(t.ExpiresAt), State: t.State, Provisioned: t.Provisioned, ActivationPending: len(t.CodeHash) > 0,
		UserID: optString(t.UserID), ManagedBy: t.ManagedBy, Profile: optString(t.Profile), PINMode: optString(t.PINMode),
		CreatedAt: optTime(t.CreatedAt), UpdatedAt: optTime(t.UpdatedAt), AssignedAt: optTime(t.AssignedAt),
		ProvisionedAt: optTime(t.ProvisionedAt), LastUsedAt: optTime(t.LastUsedAt),
		PINSet: t.PINHash != "", NewPINRequired: t.NewPINRequired, Drift: t.Drift, AdminSecondFactor: t.AdminSecondFactor,
		ReplacedBy: optString(t.ReplacedBy), Replaces: optString(t.Replaces), ReplacementEndsAt: optTime(t.ReplaceUntil),
		LostAt: optTime(t.LostAt)}
	if t.Lost {
		out.State = "lost"
	}
	return out
}

type assignRequest struct {
	Serials []string `json:"serials"`
}

// --- imports

// RowDTO is one line of an import report.
type RowDTO struct {
	Row    int    `json:"row"`
	Serial string `json:"serial,omitempty"`
	Reason string `json:"reason"`
}

// ImportJobDTO is an import report.
type ImportJobDTO struct {
	JobID         string     `json:"job_id"`
	Format        string     `json:"format"`
	DryRun        bool       `json:"dry_run"`
	OnDuplicate   string     `json:"on_duplicate"`
	Status        string     `json:"status"`
	Imported      int        `json:"imported"`
	Overwritten   int        `json:"overwritten"`
	Skipped       int        `json:"skipped"`
	Rejected      []RowDTO   `json:"rejected,omitempty"`
	RejectedTotal int        `json:"rejected_total"`
	SkippedRows   []RowDTO   `json:"skipped_rows,omitempty"`
	Error         string     `json:"error,omitempty"`
	Actor         string     `json:"actor"`
	StartedAt     *time.Time `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	// The file and the job's progress (see appliance.ImportJob).
	SHA256      string `json:"sha256,omitempty"`
	Size        int64  `json:"size,omitempty"`
	Rows        int    `json:"rows,omitempty"`
	Chunks      int    `json:"chunks,omitempty"`
	ResumedFrom string `json:"resumed_from,omitempty"`
	Resumed     int    `json:"resumed,omitempty"`
	ResumedBy   string `json:"resumed_by,omitempty"`
	Message     string `json:"message,omitempty"`
}

func rowDTOs(rows []appliance.RowReport) []RowDTO {
	return mapDTO(rows, func(r appliance.RowReport) RowDTO { return RowDTO(r) })
}

// importJobDTO renders a report; withRows adds its per-row lines (always
// present, possibly empty, on a single report; absent in listings).
func importJobDTO(j appliance.ImportJob, withRows bool) ImportJobDTO {
	out := ImportJobDTO{JobID: j.ID, Format: j.Format, DryRun: j.DryRun, OnDuplicate: j.OnDuplicate, Status: j.Status,
		Imported: j.Imported, Overwritten: j.Overwritten, Skipped: j.Skipped, RejectedTotal: j.RejectedTotal,
		Error: j.Error, Actor: j.Actor, StartedAt: optTime(j.StartedAt), FinishedAt: optTime(j.FinishedAt),
		SHA256: j.SHA256, Size: j.Size, Rows: j.Rows, Chunks: j.Chunks, ResumedFrom: j.ResumedFrom, Resumed: j.Resumed,
		ResumedBy: j.ResumedBy, Message: j.Message}
	if withRows {
		out.Rejected, out.SkippedRows = rowDTOs(j.Rejected), rowDTOs(j.SkippedRows)
	}
	return out
}

// --- profiles

// ProfileDTO is a software token profile. ActivationCodeTTL is a Go
// duration string ("168h0m0s") both ways.
type ProfileDTO struct {
	Name              string     `json:"name"`
	DeviceType        string     `json:"device_type"`
	DeliveryMethod    string     `json:"delivery_method"`
	Digits            int        `json:"digits"`
	Interval          int        `json:"interval"`
	PINMode           string     `json:"pin_mode"`
	CTFBinding        string     `json:"ctf_binding,omitempty"`
	Hash              string     `json:"hash,omitempty"`
	ActivationCodeTTL string     `json:"activation_code_ttl"`
	MaxLifetime       string     `json:"max_lifetime,omitempty"`
	DisplayName       string     `json:"display_name"`
	HelpText          string     `json:"help_text"`
	CreatedAt         *time.Time `json:"created_at,omitempty"`
	UpdatedAt         *time.Time `json:"updated_at,omitempty"`
}

type profileRequest struct {
	Name              string `json:"name"`
	DeviceType        string `json:"device_type"`
	DeliveryMethod    string `json:"delivery_method"`
	Digits            int    `json:"digits"`
	Interval          int    `json:"interval"`
	PINMode           string `json:"pin_mode"`
	CTFBinding        string `json:"ctf_binding"`
	Hash              string `json:"hash"`
	ActivationCodeTTL string `json:"activation_code_ttl"`
	MaxLifetime       string `json:"max_lifetime"`
	DisplayName       string `json:"display_name"`
	HelpText          string `json:"help_text"`
}

func (r profileRequest) profile() (appliance.Profile, error) {
	p := appliance.Profile{Name: r.Name, DeviceType: r.DeviceType, DeliveryMethod: r.DeliveryMethod, Digits: r.Digits,
		Interval: r.Interval, PINMode: r.PINMode, CTFBinding: r.CTFBinding, Hash: r.Hash, DisplayName: r.DisplayName, HelpText: r.HelpText}
	if r.ActivationCodeTTL != "" {
		d, err := time.ParseDuration(r.ActivationCodeTTL)
		if err != nil {
			return p, invalid("activation_code_ttl", `must be a duration such as "168h" or "30m"`)
		}
		p.ActivationCodeTTL = d
	}
	if r.MaxLifetime != "" {
		d, err := time.ParseDuration(r.MaxLifetime)
		if err != nil {
			return p, invalid("max_lifetime", `must be a duration such as "8760h"`)
		}
		p.MaxLifetime = d
	}
	return p, nil
}

func profileDTO(p appliance.Profile) ProfileDTO {
	return ProfileDTO{Name: p.Name, DeviceType: p.DeviceType, DeliveryMethod: p.DeliveryMethod, Digits: p.Digits,
		Interval: p.Interval, PINMode: p.PINMode, CTFBinding: p.CTFBinding, Hash: p.Hash, ActivationCodeTTL: p.ActivationCodeTTL.String(),
		DisplayName: p.DisplayName, HelpText: p.HelpText, CreatedAt: optTime(p.CreatedAt), UpdatedAt: optTime(p.UpdatedAt),
		MaxLifetime: durationOrEmpty(p.MaxLifetime)}
}

// durationOrEmpty renders an optional duration ("" for none).
func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// --- distribution

type distributeRequest struct {
	Profile string `json:"profile"`
	// Password and DeviceID: for file and ctf profiles (seeddelivery.go).
	Password appliance.Secret `json:"password"`
	DeviceID string           `json:"device_id"`
}

// DistributionDTO is shown once: it carries the activation code.
type DistributionDTO struct {
	Serial         string    `json:"serial"`
	Profile        string    `json:"profile"`
	CTKIPURL       string    `json:"ctkip_url"`
	ActivationCode string    `json:"activation_code"`
	ExpiresAt      time.Time `json:"expires_at"`
	DeviceURL      string    `json:"device_url"`
	QRCodeURL      string    `json:"qr_code_url"`
}

// --- audit

// ActorDTO is who did something.
type ActorDTO struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

// AuditRecordDTO is one audit record.
type AuditRecordDTO struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   ActorDTO  `json:"actor"`
	Action  string    `json:"action"`
	UserID  string    `json:"user_id"`
	Serial  string    `json:"serial"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail"`
	Hash    string    `json:"hash"`
	Prev    string    `json:"prev"`
}

// AuditPageDTO is one page of the audit trail, oldest first.
type AuditPageDTO struct {
	Items      []AuditRecordDTO `json:"items"`
	NextCursor string           `json:"next_cursor"`
}

func auditDTO(r appliance.AuditRecord) AuditRecordDTO {
	return AuditRecordDTO{Seq: r.Seq, Time: r.Time.UTC(), Actor: ActorDTO(r.Actor), Action: r.Action, UserID: r.UserID,
		Serial: r.Serial, Target: r.Target, Outcome: r.Outcome, Reason: r.Reason, Detail: r.Detail, Hash: r.Hash, Prev: r.Prev}
}

// --- authentication

// maxPasscode bounds a passcode: a PIN (at most 8 characters by policy)
// with a tokencode, or a 10-digit emergency code, fits many times over.
const maxPasscode = 64

// maxSession bounds a challenge session id (the Service issues 24
// characters and ignores ids longer than 64).
const maxSession = 64

// maxUserName is the user name limit of the Service.
const maxUserName = 256

// authenticateRequest is an agent's authentication attempt. Passcode is a
// Secret so that it redacts itself if the request is ever printed or logged.
type authenticateRequest struct {
	UserName string           `json:"user_name"`
	Passcode appliance.Secret `json:"passcode"`
	Session  string           `json:"session"`
}

// validate checks the request's shape and reports every problem at once.
// The reasons name limits, never the values sent.
func (r authenticateRequest) validate() error {
	var fp []FieldProblem
	switch {
	case r.UserName == "":
		fp = append(fp, FieldProblem{"user_name", "required"})
	case len(r.UserName) > maxUserName:
		fp = append(fp, FieldProblem{"user_name", fmt.Sprintf("must be at most %d characters", maxUserName)})
	}
	switch {
	case r.Passcode == "":
		fp = append(fp, FieldProblem{"passcode", "required"})
	case len(r.Passcode) > maxPasscode:
		fp = append(fp, FieldProblem{"passcode", fmt.Sprintf("must be at most %d characters", maxPasscode)})
	}
	if len(r.Session) > maxSession {
		fp = append(fp, FieldProblem{"session", fmt.Sprintf("must be at most %d characters", maxSession)})
	}
	return invalidFields(fp...)
}

// AuthResultDTO is an authentication decision. Reason is the public reason
// (ok, denied, next_tokencode_required, new_pin_required, pin_changed,
// pin_policy): a rejection never tells whether the user, the PIN or the
// code was wrong. Session is present only while a challenge continues
// (next_tokencode, new_pin); send it back with the follow-up.
type AuthResultDTO struct {
	Result  string `json:"result"`
	Reason  string `json:"reason"`
	Session string `json:"session,omitempty"`
	// PIN is a system-generated PIN, present once with a new_pin result.
	PIN string `json:"pin,omitempty"`
}

func authResultDTO(r appliance.AuthResult) AuthResultDTO {
	return AuthResultDTO{Result: r.Result, Reason: r.Reason, Session: r.Session, PIN: r.PIN.Reveal()}
}

// --- token administration

// pinRequest sets a PIN, clears it, or requires a new one: exactly one of
// the three (the Service checks). PIN redacts itself.
type pinRequest struct {
	PIN        appliance.Secret `json:"pin"`
	Clear      bool             `json:"clear"`
	RequireNew bool             `json:"require_new"`
}

// resyncRequest carries two consecutive tokencodes, without PIN.
type resyncRequest struct {
	First  string `json:"first"`
	Second string `json:"second"`
}

// maxTokencode is the longest tokencode of any supported token.
const maxTokencode = 10

func (r resyncRequest) validate() error {
	var fp []FieldProblem
	for _, f := range []struct{ name, code string }{{"first", r.First}, {"second", r.Second}} {
		switch {
		case f.code == "":
			fp = append(fp, FieldProblem{f.name, "required"})
		case len(f.code) > maxTokencode || strings.Trim(f.code, "0123456789") != "":
			fp = append(fp, FieldProblem{f.name, fmt.Sprintf("must be a tokencode of at most %d digits, without PIN", maxTokencode)})
		}
	}
	return invalidFields(fp...)
}

// --- emergency access

type emergencyAccessRequest struct {
	Kind     string `json:"kind"`
	Count    int    `json:"count"`
	Lifetime string `json:"lifetime"`
}

// lifetime parses the Go duration; an empty one is left to the Service,
// which reports it with the other problems.
func (r emergencyAccessRequest) lifetime() (time.Duration, error) {
	if r.Lifetime == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Lifetime)
	if err != nil {
		return 0, invalid("lifetime", `must be a duration such as "8h" or "90m"`)
	}
	return d, nil
}

// EmergencyAccessDTO is shown once: it carries the codes.
type EmergencyAccessDTO struct {
	Kind      string    `json:"kind"`
	Codes     []string  `json:"codes"`
	ExpiresAt time.Time `json:"expires_at"`
}

func emergencyAccessDTO(ea appliance.EmergencyAccess) EmergencyAccessDTO {
	out := EmergencyAccessDTO{Kind: ea.Kind, Codes: make([]string, 0, len(ea.Codes)), ExpiresAt: ea.ExpiresAt.UTC()}
	for _, c := range ea.Codes {
		out.Codes = append(out.Codes, c.Reveal())
	}
	return out
}

// --- identity sources

// SCIMBasePath is where identity providers push users over SCIM 2.0, on the
// admin listener (main mounts sync/scim there).
const SCIMBasePath = "/scim/v2"

// identitySourceRequest creates or replaces an identity source. Durations
// are Go duration strings; an absent one takes the Service's default.
type identitySourceRequest struct {
	Name                string       `json:"name"`
	Type                string       `json:"type"`
	LDAP                *ldapRequest `json:"ldap"`
	GracePeriod         string       `json:"grace_period"`
	DeactivateThreshold *float64     `json:"deactivate_threshold"`
}

// ldapRequest is the directory connection of an LDAP source. BindPassword
// is write-only and a Secret, so it redacts itself if the request is ever
// printed or logged; an empty one on update keeps the stored password.
// CAPEM is the CA bundle as text. CAFile and BindPasswordFile are refused
// by the Service unless the configuration file sets a credentials
// directory, and then must name files inside it.
type ldapRequest struct {
	URL              string            `json:"url"`
	StartTLS         bool              `json:"start_tls"`
	CAFile           string            `json:"ca_file"`
	CAPEM            string            `json:"ca_pem"`
	BindDN           string            `json:"bind_dn"`
	BindPassword     appliance.Secret  `json:"bind_password"`
	BindPasswordFile string            `json:"bind_password_file"`
	BaseDN           string            `json:"base_dn"`
	UserFilter       string            `json:"user_filter"`
	Preset           string            `json:"preset"`
	Attributes       map[string]string `json:"attributes"`
	PageSize         int               `json:"page_size"`
	Interval         string            `json:"interval"`
	FullInterval     string            `json:"full_interval"`
}

// source converts the request and checks what the door parses (durations,
// the threshold, whose explicit 0 the Service would silently replace by the
// default) and the shape every source needs (name, type, the ldap block
// and its url and base_dn), reporting every problem at once. The Service
// checks the rest (URL scheme, filter, preset, page size, intervals);
// its reasons are the same for the fields both check.
func (r identitySourceRequest) source() (appliance.IdentitySource, error) {
	var fp []FieldProblem
	out := appliance.IdentitySource{Name: r.Name, Type: r.Type}
	if strings.TrimSpace(r.Name) == "" {
		fp = append(fp, FieldProblem{"name", "required, at most 128 characters on one line"})
	}
	switch r.Type {
	case appliance.SourceTypeLDAP:
		if r.LDAP == nil {
			fp = append(fp, FieldProblem{"ldap", "required for sources of type ldap"})
		}
	case appliance.SourceTypeSCIM:
		if r.LDAP != nil {
			fp = append(fp, FieldProblem{"ldap", "only for sources of type ldap"})
		}
	default:
		fp = append(fp, FieldProblem{"type", "must be ldap or scim"})
	}
	out.GracePeriod = parseDuration(&fp, "grace_period", r.GracePeriod, "720h")
	if t := r.DeactivateThreshold; t != nil {
		if math.IsNaN(*t) || *t <= 0 || *t > 1 {
			fp = append(fp, FieldProblem{"deactivate_threshold", "must be a share in (0, 1]"})
		}
		out.DeactivateThreshold = *t
	}
	if r.LDAP != nil && r.Type == appliance.SourceTypeLDAP {
		l := r.LDAP
		if l.URL == "" {
			fp = append(fp, FieldProblem{"ldap.url", "required"})
		}
		if strings.TrimSpace(l.BaseDN) == "" {
			fp = append(fp, FieldProblem{"ldap.base_dn", "required"})
		}
		out.LDAP = &appliance.LDAPSourceConfig{URL: l.URL, StartTLS: l.StartTLS, CAFile: l.CAFile, CAPEM: l.CAPEM, BindDN: l.BindDN,
			BindPassword: l.BindPassword, BindPasswordFile: l.BindPasswordFile, BaseDN: l.BaseDN, UserFilter: l.UserFilter,
			Preset: l.Preset, Attributes: l.Attributes, PageSize: l.PageSize,
			Interval:     parseDuration(&fp, "ldap.interval", l.Interval, "15m"),
			FullInterval: parseDuration(&fp, "ldap.full_interval", l.FullInterval, "24h")}
	}
	return out, invalidFields(fp...)
}

// parseDuration parses an optional positive Go duration; "" is 0 (the
// Service's default). A problem is added to fp, naming the field only.
func parseDuration(fp *[]FieldProblem, field, v, example string) time.Duration {
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		*fp = append(*fp, FieldProblem{field, `must be a positive duration such as "` + example + `"`})
		return 0
	}
	return d
}

// IdentitySourceDTO is an identity source. It never carries the bind
// password or the SCIM token: HasBindPassword and HasSCIMToken say whether
// one is stored. LDAP is null for SCIM sources; SCIMURL is set only for
// them.
type IdentitySourceDTO struct {
	ID                  string         `json:"id"`
	Name                string         `json:"name"`
	Type                string         `json:"type"`
	LDAP                *LDAPSourceDTO `json:"ldap"`
	HasSCIMToken        bool           `json:"has_scim_token"`
	SCIMURL             string         `json:"scim_url,omitempty"`
	GracePeriod         string         `json:"grace_period"`
	DeactivateThreshold float64        `json:"deactivate_threshold"`
	CreatedAt           *time.Time     `json:"created_at"`
	UpdatedAt           *time.Time     `json:"updated_at"`
	LastRun             *SyncRunDTO    `json:"last_run"`
}

// NewIdentitySourceDTO is the answer to a creation: for a SCIM source the
// one and only time its bearer token is shown.
type NewIdentitySourceDTO struct {
	IdentitySourceDTO
	SCIMToken string `json:"scim_token,omitempty"`
}

// LDAPSourceDTO is an LDAP source's directory connection, without the
// password. CAPEM is shown as stored: certificates are public.
type LDAPSourceDTO struct {
	URL              string            `json:"url"`
	StartTLS         bool              `json:"start_tls"`
	CAFile           string            `json:"ca_file"`
	CAPEM            string            `json:"ca_pem"`
	BindDN           string            `json:"bind_dn"`
	HasBindPassword  bool              `json:"has_bind_password"`
	BindPasswordFile string            `json:"bind_password_file"`
	BaseDN           string            `json:"base_dn"`
	UserFilter       string            `json:"user_filter"`
	Preset           string            `json:"preset"`
	Attributes       map[string]string `json:"attributes"`
	PageSize         int               `json:"page_size"`
	Interval         string            `json:"interval"`
	FullInterval     string            `json:"full_interval"`
}

// SyncRunDTO is one sync run: the summary of POST …/sync and an item of
// …/runs. Error is present only for a failed or refused run.
type SyncRunDTO struct {
	ID          string     `json:"id"`
	SourceID    string     `json:"source_id"`
	Mode        string     `json:"mode"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Added       int        `json:"added"`
	Updated     int        `json:"updated"`
	Deactivated int        `json:"deactivated"`
	Reactivated int        `json:"reactivated"`
	Unchanged   int        `json:"unchanged"`
	Purged      int        `json:"purged"`
	DurationMS  int64      `json:"duration_ms"`
	Error       string     `json:"error,omitempty"`
}

// SCIMTokenDTO is shown once: a SCIM source's new bearer token.
type SCIMTokenDTO struct {
	SCIMToken string `json:"scim_token"`
	SCIMURL   string `json:"scim_url"`
}

func identitySourceDTO(src appliance.IdentitySource) IdentitySourceDTO {
	out := IdentitySourceDTO{ID: src.ID, Name: src.Name, Type: src.Type, HasSCIMToken: src.HasSCIMToken,
		GracePeriod: src.GracePeriod.String(), DeactivateThreshold: src.DeactivateThreshold,
		CreatedAt: optTime(src.CreatedAt), UpdatedAt: optTime(src.UpdatedAt)}
	if src.Type == appliance.SourceTypeSCIM {
		out.SCIMURL = SCIMBasePath
	}
	if l := src.LDAP; l != nil {
		attrs := make(map[string]string, len(l.Attributes))
		maps.Copy(attrs, l.Attributes)
		out.LDAP = &LDAPSourceDTO{URL: l.URL, StartTLS: l.StartTLS, CAFile: l.CAFile, CAPEM: l.CAPEM, BindDN: l.BindDN,
			HasBindPassword: l.HasBindPassword, BindPasswordFile: l.BindPasswordFile, BaseDN: l.BaseDN,
			UserFilter: l.UserFilter, Preset: l.Preset, Attributes: attrs, PageSize: l.PageSize,
			Interval: l.Interval.String(), FullInterval: l.FullInterval.String()}
	}
	if src.LastRun != nil {
		r := syncRunDTO(*src.LastRun)
		out.LastRun = &r
	}
	return out
}

func syncRunDTO(r appliance.SyncRun) SyncRunDTO {
	return SyncRunDTO{ID: r.ID, SourceID: r.SourceID, Mode: r.Mode, StartedAt: optTime(r.StartedAt),
		FinishedAt: optTime(r.FinishedAt), Added: r.Added, Updated: r.Updated, Deactivated: r.Deactivated,
		Reactivated: r.Reactivated, Unchanged: r.Unchanged, Purged: r.Purged, DurationMS: r.DurationMS, Error: r.Error}
}
