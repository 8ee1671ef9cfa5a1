package appliance

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"
)

// Identity source types.
const (
	SourceTypeLDAP = "ldap"
	SourceTypeSCIM = "scim"
)

// LDAP presets select default attribute maps and filters.
const (
	LDAPPresetOpenLDAP = "openldap"
	LDAPPresetAD       = "ad"
)

// Defaults of identity sources.
const (
	DefaultGracePeriod         = 30 * 24 * time.Hour
	DefaultDeactivateThreshold = 0.10
	DefaultLDAPPageSize        = 500
	DefaultLDAPInterval        = 15 * time.Minute
	DefaultLDAPFullInterval    = 24 * time.Hour
)

// keepSyncRuns is how many run records are kept per source; older ones are
// dropped when a new one is recorded.
const keepSyncRuns = 100

const scimTokenHashDomain = "scim-token"

// scimTokenPrefix marks SCIM bearer tokens so secret scanners can find leaks.
const scimTokenPrefix = "tkds_"

// IdentitySource is where users come from: an LDAP directory tokend pulls
// from, or an identity provider that pushes over SCIM 2.0. Users carry the
// source id in User.Source.
type IdentitySource struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"` // ldap | scim
	// LDAP is the directory connection; nil for SCIM sources.
	LDAP *LDAPSourceConfig `json:"ldap,omitempty"`
	// HasSCIMToken reports that a SCIM bearer token is set (its hash is
	// stored, never the token).
	HasSCIMToken bool `json:"has_scim_token,omitempty"`
	// GracePeriod is how long a user removed from the source keeps its
	// tokens before it is purged.
	GracePeriod time.Duration `json:"grace_period"`
	// DeactivateThreshold is the share of active users one sync run may
	// deactivate before the mass-deletion brake refuses the run.
	DeactivateThreshold float64   `json:"deactivate_threshold"`
	CreatedAt           time.Time `json:"created_at"`
	UpdatedAt           time.Time `json:"updated_at"`
	LastRun             *SyncRun  `json:"last_run,omitempty"`
}

// LDAPSourceConfig is how tokend reaches and reads an LDAP directory.
// BindPassword is write-only: it is sealed before it reaches the store and
// is empty in every value the Service returns (HasBindPassword says whether
// one is stored); LDAPBindPassword opens it for the syncer. CAPEM is the
// CA bundle itself (public, returned as stored). CAFile and
// BindPasswordFile are accepted only inside the Service's CredentialsDir.
type LDAPSourceConfig struct {
	URL              string            `json:"url"`
	StartTLS         bool              `json:"start_tls"`
	CAFile           string            `json:"ca_file,omitempty"`
	CAPEM            string            `json:"ca_pem,omitempty"`
	BindDN           string            `json:"bind_dn,omitempty"`
	BindPassword     Secret            `json:"-"`
	HasBindPassword  bool              `json:"has_bind_password"`
	BindPasswordFile string            `json:"bind_password_file,omitempty"`
	BaseDN           string            `json:"base_dn"`
	UserFilter       string            `json:"user_filter,omitempty"`
	Preset           string            `json:"preset,omitempty"`     // openldap | ad
	Attributes       map[string]string `json:"attributes,omitempty"` // our field → directory attribute
	PageSize         int               `json:"page_size"`
	Interval         time.Duration     `json:"interval"`
	FullInterval     time.Duration     `json:"full_interval"`
}

// SyncRun is the record of one sync of a source (an LDAP pull, or a purge
// pass over a SCIM source).
type SyncRun struct {
	ID          string    `json:"id"`
	SourceID    string    `json:"source_id"`
	Mode        string    `json:"mode,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Added       int       `json:"added"`
	Updated     int       `json:"updated"`
	Deactivated int       `json:"deactivated"`
	Reactivated int       `json:"reactivated"`
	Unchanged   int       `json:"unchanged"`
	Purged      int       `json:"purged"`
	DurationMS  int64     `json:"duration_ms"`
	Error       string    `json:"error,omitempty"`
}

// sourceRecord is the stored form: the public record without the write-only
// password, plus what is kept secret.
type sourceRecord struct {
	IdentitySource
	SealedBindPassword Sealed `json:"sealed_bind_password,omitempty"`
	SCIMTokenHash      []byte `json:"scim_token_hash,omitempty"`
}

// Key layout of identity sources (see records.go for the rest):
//
//	src/<id>                              sourceRecord
//	srci/n/<folded name>                  id     (names are unique)
//	srci/t/<hex keyed hash of scim token> id
//	sr/<source id>/<inverted start %016x>/<run id>   SyncRun (newest first)
const (
	pfxSource      = "src/"
	pfxSourceName  = "srci/n/"
	pfxSourceToken = "srci/t/"
	pfxSyncRun     = "sr/"
)

func sourceKey(id string) []byte         { return []byte(pfxSource + id) }
func sourceNameKey(name string) []byte   { return []byte(pfxSourceName + fold(name)) }
func sourceTokenKey(h []byte) []byte     { return []byte(pfxSourceToken + hex.EncodeToString(h)) }
func syncRunPrefix(source string) []byte { return []byte(pfxSyncRun + source + "/") }
func syncRunKey(r *SyncRun) []byte {
	inv := uint64(math.MaxUint64) - uint64(r.StartedAt.UnixNano())
	return fmt.Appendf(nil, "%s%s/%016x/%s", pfxSyncRun, r.SourceID, inv, r.ID)
}

func bindPasswordAAD(sourceID string) string { return "identity-source/" + sourceID + "/bind-password" }

func getSource(tx Tx, id string) (*sourceRecord, error) {
	var r sourceRecord
	if err := getJSON(tx, sourceKey(id), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("identity source %q: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return &r, nil
}

// public returns the record as callers see it: no password, no hash.
func (r *sourceRecord) public() IdentitySource {
	out := r.IdentitySource
	out.HasSCIMToken = len(r.SCIMTokenHash) > 0
	if r.LDAP != nil {
		l := *r.LDAP
		l.BindPassword = ""
		l.HasBindPassword = len(r.SealedBindPassword) > 0
		l.Attributes = copyStringMap(l.Attributes)
		out.LDAP = &l
	}
	if r.LastRun != nil {
		lr := *r.LastRun
		out.LastRun = &lr
	}
	return out
}

func copyStringMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// normalizeSource applies defaults and validates everything at once,
// including that the files an LDAP source names are usable credential
// files (see checkCredentialFiles).
func (s *Service) normalizeSource(in *IdentitySource) error {
	v := &ValidationError{}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 128 || strings.ContainsAny(in.Name, "\x00\r\n") {
		v.Add("name", "required, at most 128 characters on one line")
	}
	if in.GracePeriod == 0 {
		in.GracePeriod = DefaultGracePeriod
	}
	if in.GracePeriod < 0 {
		v.Add("grace_period", "must not be negative")
	}
	if in.DeactivateThreshold == 0 {
		in.DeactivateThreshold = DefaultDeactivateThreshold
	}
	if math.IsNaN(in.DeactivateThreshold) || in.DeactivateThreshold < 0 || in.DeactivateThreshold > 1 {
		v.Add("deactivate_threshold", "must be a share in (0, 1]")
	}
	switch in.Type {
	case SourceTypeSCIM:
		if in.LDAP != nil {
			v.Add("ldap", "only for sources of type ldap")
		}
	case SourceTypeLDAP:
		if in.LDAP == nil {
			v.Add("ldap", "required for sources of type ldap")
			break
		}
		validateLDAP(in.LDAP, v)
		s.checkCredentialFiles(in.LDAP, v)
	default:
		v.Add("type", "must be ldap or scim")
	}
	return v.Err()
}

func validateLDAP(l *LDAPSourceConfig, v *ValidationError) {
	u, err := url.Parse(l.URL)
	switch {
	case l.URL == "":
		v.Add("ldap.url", "required")
	case err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "":
		v.Add("ldap.url", "must be ldap://host[:port] or ldaps://host[:port]")
	case u.Scheme == "ldaps" && l.StartTLS:
		v.Add("ldap.start_tls", "not with ldaps://")
	}
	if strings.TrimSpace(l.BaseDN) == "" {
		v.Add("ldap.base_dn", "required")
	}
	if l.BindPassword != "" && l.BindPasswordFile != "" {
		v.Add("ldap.bind_password", "give either a password or a password file, not both")
	}
	switch {
	case l.CAPEM != "" && l.CAFile != "":
		v.Add("ldap.ca_pem", "give either ca_pem or ca_file, not both")
	case len(l.CAPEM) > MaxCAPEM:
		v.Add("ldap.ca_pem", fmt.Sprintf("at most %d bytes", MaxCAPEM))
	case l.CAPEM != "":
		if _, err := ParseCAPEM([]byte(l.CAPEM)); err != nil {
			v.Add("ldap.ca_pem", "must be PEM certificates: "+err.Error())
		}
	}
	if l.UserFilter != "" && (!strings.HasPrefix(l.UserFilter, "(") || !strings.HasSuffix(l.UserFilter, ")")) {
		v.Add("ldap.user_filter", "must be an LDAP filter in parentheses")
	}
	switch l.Preset {
	case "", LDAPPresetOpenLDAP, LDAPPresetAD:
	default:
		v.Add("ldap.preset", "must be openldap or ad")
	}
	if l.Preset == "" {
		l.Preset = LDAPPresetOpenLDAP
	}
	if l.PageSize == 0 {
		l.PageSize = DefaultLDAPPageSize
	}
	if l.PageSize < 1 || l.PageSize > 1000 {
		v.Add("ldap.page_size", "must be between 1 and 1000 (AD caps pages at 1000)")
	}
	if l.Interval == 0 {
		l.Interval = DefaultLDAPInterval
	}
	if l.FullInterval == 0 {
		l.FullInterval = DefaultLDAPFullInterval
	}
	if l.Interval < time.Minute {
		v.Add("ldap.interval", "must be at least one minute")
	}
	if l.FullInterval < l.Interval {
		v.Add("ldap.full_interval", "must not be shorter than the interval")
	}
}

// CredentialsDir is the directory an LDAP source's files must be in ("":
// none may be read); the syncer checks against it at every read.
func (s *Service) CredentialsDir() string { return s.credDir }

// checkCredentialFiles refuses file paths unless the operator configured a
// credentials directory, and then any path that is not a usable file in it.
// The reasons are fixed texts: they never say whether a path exists, and
// never carry a byte of the file. The sync checks again at every read.
func (s *Service) checkCredentialFiles(l *LDAPSourceConfig, v *ValidationError) {
	if s.credDir == "" {
		if l.CAFile != "" {
			v.Add("ldap.ca_file", "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the CA certificates as ca_pem")
		}
		if l.BindPasswordFile != "" {
			v.Add("ldap.bind_password_file", "file paths are only accepted when the configuration file sets identity_sources.credentials_dir; send the password as bind_password")
		}
		return
	}
	if l.CAFile != "" {
		if _, err := LoadCAFile(s.credDir, l.CAFile); err != nil {
			v.Add("ldap.ca_file", ErrCAFile.Error())
		}
	}
	if l.BindPasswordFile != "" {
		if _, err := LoadPasswordFile(s.credDir, l.BindPasswordFile); err != nil {
			v.Add("ldap.bind_password_file", ErrPasswordFile.Error())
		}
	}
}

// newSCIMToken returns a fresh bearer token and its keyed hash.
func (s *Service) newSCIMToken() (Secret, []byte, error) {
	var raw [32]byte
	if _, err := io.ReadFull(s.rand, raw[:]); err != nil {
		return "", nil, fmt.Errorf("scim token: %w", err)
	}
	tok := scimTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return Secret(tok), s.sealer.Hash(scimTokenHashDomain, []byte(tok)), nil
}

// CreateIdentitySource adds a source. For a SCIM source the bearer token the
// identity provider must send is returned once; only its keyed hash is kept.
// An LDAP bind password is sealed, bound to the source id.
func (s *Service) CreateIdentitySource(ctx context.Context, in IdentitySource) (IdentitySource, Secret, error) {
	if err := s.normalizeSource(&in); err != nil {
		return IdentitySource{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return IdentitySource{}, "", err
	}
	rec := sourceRecord{IdentitySource: in}
	rec.ID, rec.LastRun, rec.HasSCIMToken = id, nil, false
	var token Secret
	if in.Type == SourceTypeSCIM {
		if token, rec.SCIMTokenHash, err = s.newSCIMToken(); err != nil {
			return IdentitySource{}, "", err
		}
	}
	if in.LDAP != nil {
		l := *in.LDAP
		l.Attributes = copyStringMap(l.Attributes)
		if l.BindPassword != "" {
			if rec.SealedBindPassword, err = s.sealer.Seal([]byte(l.BindPassword), bindPasswordAAD(id)); err != nil {
				return IdentitySource{}, "", err
			}
		}
		l.BindPassword, l.HasBindPassword = "", false
		rec.LDAP = &l
	}
	var out IdentitySource
	err = s.change(ctx, AuditEvent{Action: "identity_source.create", Target: id, Detail: in.Type + " " + in.Name},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			if ok, err := exists(tx, sourceNameKey(rec.Name)); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("identity source name %q: %w", rec.Name, ErrExists)
			}
			r := rec
			r.CreatedAt, r.UpdatedAt = now, now
			if err := putJSON(tx, sourceKey(id), &r); err != nil {
				return err
			}
			if err := tx.Put(sourceNameKey(r.Name), []byte(id)); err != nil {
				return err
			}
			if len(r.SCIMTokenHash) > 0 {
				if err := tx.Put(sourceTokenKey(r.SCIMTokenHash), []byte(id)); err != nil {
					return err
				}
			}
			out = r.public()
			return nil
		})
	if err != nil {
		return IdentitySource{}, "", err
	}
	return out, token, nil
}

// GetIdentitySource returns one source (never its password or token).
func (s *Service) GetIdentitySource(ctx context.Context, id string) (IdentitySource, error) {
	var out IdentitySource
	err := s.store.View(ctx, func(tx Tx) error {
		r, err := getSource(tx, id)
		if err != nil {
			return err
		}
		out = r.public()
		return nil
	})
	return out, err
}

// ListIdentitySources returns every source, ordered by id.
func (s *Service) ListIdentitySources(ctx context.Context) ([]IdentitySource, error) {
	recs, err := listJSON[sourceRecord](ctx, s.store, pfxSource)
	if err != nil {
		return nil, err
	}
	out := make([]IdentitySource, len(recs))
	for i := range recs {
		out[i] = recs[i].public()
	}
	return out, nil
}

// UpdateIdentitySource replaces a source's settings. The type cannot change.
// An empty LDAP BindPassword keeps the stored one (the API never returns it,
// so a client echoing a source back must not erase it); setting
// BindPasswordFile drops a stored password.
func (s *Service) UpdateIdentitySource(ctx context.Context, id string, in IdentitySource) (IdentitySource, error) {
	if err := s.normalizeSource(&in); err != nil {
		return IdentitySource{}, err
	}
	var sealed Sealed
	if in.LDAP != nil && in.LDAP.BindPassword != "" {
		var err error
		if sealed, err = s.sealer.Seal([]byte(in.LDAP.BindPassword), bindPasswordAAD(id)); err != nil {
			return IdentitySource{}, err
		}
	}
	var out IdentitySource
	err := s.change(ctx, AuditEvent{Action: "identity_source.update", Target: id, Detail: in.Name},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			old, err := getSource(tx, id)
			if err != nil {
				return err
			}
			if old.Type != in.Type {
				v := &ValidationError{}
				v.Add("type", "cannot be changed")
				return v
			}
			r := *old
			r.Name, r.GracePeriod, r.DeactivateThreshold, r.UpdatedAt = in.Name, in.GracePeriod, in.DeactivateThreshold, now
			if in.LDAP != nil {
				l := *in.LDAP
				l.Attributes = copyStringMap(l.Attributes)
				l.BindPassword, l.HasBindPassword = "", false
				r.LDAP = &l
				switch {
				case sealed != nil:
					r.SealedBindPassword = sealed
				case l.BindPasswordFile != "":
					r.SealedBindPassword = nil
				}
			}
			if fold(old.Name) != fold(r.Name) {
				if ok, err := exists(tx, sourceNameKey(r.Name)); err != nil {
					return err
				} else if ok {
					return fmt.Errorf("identity source name %q: %w", r.Name, ErrExists)
				}
				if err := tx.Delete(sourceNameKey(old.Name)); err != nil {
					return err
				}
			}
			if err := tx.Put(sourceNameKey(r.Name), []byte(id)); err != nil {
				return err
			}
			if err := putJSON(tx, sourceKey(id), &r); err != nil {
				return err
			}
			out = r.public()
			return nil
		})
	return out, err
}

// RotateSCIMToken replaces a SCIM source's bearer token; the old one stops
// working at once. The new token is returned once.
func (s *Service) RotateSCIMToken(ctx context.Context, id string) (Secret, error) {
	defer s.scimTokens.invalidate()
	token, hash, err := s.newSCIMToken()
	if err != nil {
		return "", err
	}
	err = s.change(ctx, AuditEvent{Action: "identity_source.scim_token.rotate", Target: id},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			r, err := getSource(tx, id)
			if err != nil {
				return err
			}
			if r.Type != SourceTypeSCIM {
				return fmt.Errorf("identity source %q is not a SCIM source: %w", id, ErrInvalidState)
			}
			if len(r.SCIMTokenHash) > 0 {
				if err := tx.Delete(sourceTokenKey(r.SCIMTokenHash)); err != nil {
					return err
				}
			}
			r.SCIMTokenHash, r.UpdatedAt = hash, now
			if err := tx.Put(sourceTokenKey(hash), []byte(id)); err != nil {
				return err
			}
			return putJSON(tx, sourceKey(id), r)
		})
	if err != nil {
		return "", err
	}
	return token, nil
}

// DeleteIdentitySource removes a source. It is refused with ErrConflict
// while any active user belongs to it: deleting a source must never take
// tokens away from people who still use them. Users of the source that are
// already inactive are purged first (tokens unassigned, records deleted, in
// chunks), then the source record, its token and its run history go. If a
// user is reactivated meanwhile, the final step finds it and refuses.
func (s *Service) DeleteIdentitySource(ctx context.Context, id string) error {
	defer s.scimTokens.invalidate()
	if _, err := s.GetIdentitySource(ctx, id); err != nil {
		return err
	}
	ids, active, err := s.sourceUserIDs(ctx, id)
	if err != nil {
		return err
	}
	if active > 0 {
		err := fmt.Errorf("identity source %q still has %d active users: %w", id, active, ErrConflict)
		s.auditRefusal(ctx, AuditEvent{Action: "identity_source.delete", Target: id}, err)
		return err
	}
	if _, err := s.purgeUsers(ctx, id, ids, func(u *User, _ *sourceUserRecord) bool { return !u.Active }, time.Time{}); err != nil {
		return err
	}
	// Groups and run history: chunked, they may be long.
	for _, pfx := range [][]byte{groupPrefix(id), syncRunPrefix(id)} {
		if err := s.deletePrefix(ctx, pfx); err != nil {
			return err
		}
	}
	return s.change(ctx, AuditEvent{Action: "identity_source.delete", Target: id}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		r, err := getSource(tx, id)
		if err != nil {
			return err
		}
		if has, err := sourceHasUsers(tx, id); err != nil {
			return err
		} else if has {
			return fmt.Errorf("identity source %q still has users: %w", id, ErrConflict)
		}
		if err := tx.Delete(sourceKey(id)); err != nil {
			return err
		}
		if err := tx.Delete(sourceNameKey(r.Name)); err != nil {
			return err
		}
		if len(r.SCIMTokenHash) > 0 {
			if err := tx.Delete(sourceTokenKey(r.SCIMTokenHash)); err != nil {
				return err
			}
		}
		return nil
	})
}

// deletePrefix deletes every key under pfx, in chunks.
func (s *Service) deletePrefix(ctx context.Context, pfx []byte) error {
	for {
		var done bool
		err := s.store.Update(ctx, func(tx Tx) error {
			kvs, err := tx.Scan(pfx, nil, MaxTxWrites-10)
			if err != nil {
				return err
			}
			done = len(kvs) == 0
			for _, kv := range kvs {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

// sourceHasUsers reports whether any user belongs to the source (reads the
// login index, whose values carry the source).
func sourceHasUsers(tx Tx, sourceID string) (bool, error) {
	var after []byte
	for {
		kvs, err := tx.Scan([]byte(pfxUserLogin), after, 1000)
		if err != nil {
			return false, err
		}
		for _, kv := range kvs {
			if parseLoginIndex(kv.Value).Source == sourceID {
				return true, nil
			}
		}
		if len(kvs) < 1000 {
			return false, nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// auditRefusal records a refused action that never reached a transaction.
func (s *Service) auditRefusal(ctx context.Context, ev AuditEvent, cause error) {
	ev.Reason = ReasonOf(cause)
	if err := s.recordRefusal(ctx, s.now().UTC(), ev.Action, ev); err != nil {
		s.log.Error("audit write failed", "action", ev.Action, "err", err)
	}
}

// ErrUnauthenticatedSCIM is returned for an unknown SCIM bearer token. It
// wraps ErrUnauthenticated.
var ErrUnauthenticatedSCIM = fmt.Errorf("scim token: %w", ErrUnauthenticated)

// AuthenticateSCIMToken maps a SCIM bearer token to its source id. The token
// is looked up by its keyed hash, so no byte of the stored secret is ever
// compared with the candidate (no timing signal about the token).
func (s *Service) AuthenticateSCIMToken(ctx context.Context, token string) (string, error) {
	if !strings.HasPrefix(token, scimTokenPrefix) || len(token) > 128 {
		return "", ErrUnauthenticatedSCIM
	}
	hash := s.sealer.Hash(scimTokenHashDomain, []byte(token))
	now := s.now()
	// Rotation and deletion empty the cache when they commit; another
	// node's are seen within the cache's TTL, as for API tokens.
	out, gen, ok := s.scimTokens.get(hash, now)
	if ok {
		return out, nil
	}
	err := s.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(sourceTokenKey(hash))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticatedSCIM
		}
		if err != nil {
			return err
		}
		r, err := getSource(tx, string(id))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticatedSCIM
		}
		if err != nil {
			return err
		}
		if r.Type != SourceTypeSCIM {
			return ErrUnauthenticatedSCIM
		}
		out = r.ID
		return nil
	})
	if err != nil {
		return "", err
	}
	s.scimTokens.put(hash, out, gen, now)
	return out, nil
}

// LDAPBindPassword opens the sealed bind password of an LDAP source for the
// syncer ("" when none is stored, e.g. a password file is used).
func (s *Service) LDAPBindPassword(ctx context.Context, id string) (Secret, error) {
	var sealed Sealed
	err := s.store.View(ctx, func(tx Tx) error {
		r, err := getSource(tx, id)
		if err != nil {
			return err
		}
		sealed = r.SealedBindPassword
		return nil
	})
	if err != nil || len(sealed) == 0 {
		return "", err
	}
	pw, err := s.sealer.Open(sealed, bindPasswordAAD(id))
	if err != nil {
		return "", fmt.Errorf("identity source %q bind password: %w", id, err)
	}
	return Secret(pw), nil
}

// RecordSyncRun stores the outcome of one run and makes it the source's
// LastRun. The oldest runs beyond the most recent 100 are dropped.
func (s *Service) RecordSyncRun(ctx context.Context, run SyncRun) (SyncRun, error) {
	id, err := s.newID()
	if err != nil {
		return SyncRun{}, err
	}
	run.ID = id
	if run.StartedAt.IsZero() {
		run.StartedAt = s.now().UTC()
	}
	if run.FinishedAt.IsZero() {
		run.FinishedAt = s.now().UTC()
	}
	if run.DurationMS == 0 {
		run.DurationMS = run.FinishedAt.Sub(run.StartedAt).Milliseconds()
	}
	run.Error = truncate(run.Error, 1024)
	detail := fmt.Sprintf("added=%d updated=%d deactivated=%d reactivated=%d purged=%d", run.Added, run.Updated, run.Deactivated, run.Reactivated, run.Purged)
	if run.Error != "" {
		detail += " error"
	}
	err = s.change(ctx, AuditEvent{Action: "identity_source.sync_run", Target: run.SourceID, Detail: detail},
		func(tx Tx, _ time.Time, _ *AuditEvent) error {
			r, err := getSource(tx, run.SourceID)
			if err != nil {
				return err
			}
			if err := putJSON(tx, syncRunKey(&run), run); err != nil {
				return err
			}
			lr := run
			r.LastRun = &lr
			if err := putJSON(tx, sourceKey(r.ID), r); err != nil {
				return err
			}
			kvs, err := tx.Scan(syncRunPrefix(run.SourceID), nil, 0)
			if err != nil {
				return err
			}
			for i := keepSyncRuns; i < len(kvs) && i < keepSyncRuns+20; i++ {
				if err := tx.Delete(kvs[i].Key); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return SyncRun{}, err
	}
	return run, nil
}

// ListSyncRuns returns a source's most recent runs, newest first.
func (s *Service) ListSyncRuns(ctx context.Context, sourceID string, limit int) ([]SyncRun, error) {
	limit = clampLimit(limit)
	var out []SyncRun
	err := s.store.View(ctx, func(tx Tx) error {
		if _, err := getSource(tx, sourceID); err != nil {
			return err
		}
		kvs, err := tx.Scan(syncRunPrefix(sourceID), nil, limit)
		if err != nil {
			return err
		}
		out = make([]SyncRun, 0, len(kvs))
		for _, kv := range kvs {
			var r SyncRun
			if err := decodeRecord(tx, kv.Value, &r); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
