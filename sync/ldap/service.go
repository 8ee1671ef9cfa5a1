package ldap

import (
	"context"
	"strings"

	"tokend/appliance"
	"tokend/sync/mirror"
)

// Directory is the part of the appliance Service that LDAP sync reads and
// writes; *appliance.Service implements it.
type Directory interface {
	DirectoryUsers(ctx context.Context, source string) ([]appliance.DirectoryUser, error)
	ApplyDirectoryPlan(ctx context.Context, source string, plan appliance.DirectoryPlan) (appliance.DirectoryResult, error)
	SyncCookie(ctx context.Context, source string) ([]byte, error)
	SaveSyncCookie(ctx context.Context, source string, cookie []byte) error
}

// ServiceTarget is the Target that writes to the appliance.
type ServiceTarget struct{ Dir Directory }

// LocalUsers implements Target.
func (t ServiceTarget) LocalUsers(ctx context.Context, sourceID string) ([]mirror.Local, error) {
	us, err := t.Dir.DirectoryUsers(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	out := make([]mirror.Local, len(us))
	for i, u := range us {
		out[i] = mirror.Local{UserID: u.UserID, ExternalID: u.ExternalID, UserName: u.UserName, DisplayName: u.DisplayName,
			Email: u.Email, Active: u.Active, Disabled: u.Disabled, DeactivatedAt: u.DeactivatedAt}
	}
	return out, nil
}

// Apply implements Target.
func (t ServiceTarget) Apply(ctx context.Context, sourceID string, plan mirror.Plan) error {
	conv := func(ls []mirror.Local) []appliance.DirectoryUser {
		out := make([]appliance.DirectoryUser, len(ls))
		for i, l := range ls {
			out[i] = appliance.DirectoryUser{UserID: l.UserID, ExternalID: l.ExternalID, UserName: l.UserName,
				DisplayName: l.DisplayName, Email: l.Email, Active: l.Active, Disabled: l.Disabled, DeactivatedAt: l.DeactivatedAt}
		}
		return out
	}
	_, err := t.Dir.ApplyDirectoryPlan(ctx, sourceID, appliance.DirectoryPlan{Add: conv(plan.Add), Update: conv(plan.Update),
		Deactivate: conv(plan.Deactivate), Reactivate: conv(plan.Reactivate), Purge: conv(plan.Purge)})
	return err
}

// Cookie implements Target.
func (t ServiceTarget) Cookie(ctx context.Context, sourceID string) ([]byte, error) {
	return t.Dir.SyncCookie(ctx, sourceID)
}

// SaveCookie implements Target.
func (t ServiceTarget) SaveCookie(ctx context.Context, sourceID string, cookie []byte) error {
	return t.Dir.SaveSyncCookie(ctx, sourceID, cookie)
}

// ConfigFromSource builds the sync configuration of a stored identity
// source; password is the unsealed bind password (may be empty). The
// caller sets CredentialsDir; left empty, the source's files are refused.
func ConfigFromSource(src appliance.IdentitySource, password appliance.Secret) Config {
	l := src.LDAP
	if l == nil {
		return Config{}
	}
	cfg := Config{URL: l.URL, StartTLS: l.StartTLS, CAFile: l.CAFile, CAPEM: l.CAPEM, BindDN: l.BindDN, BindPassword: Secret(password.Reveal()),
		BindPasswordFile: l.BindPasswordFile, BaseDN: l.BaseDN, UserFilter: l.UserFilter, Preset: l.Preset, PageSize: l.PageSize,
		FullInterval: l.FullInterval, IncrementalInterval: l.Interval, GracePeriod: src.GracePeriod, BrakeThreshold: src.DeactivateThreshold}
	for k, v := range l.Attributes {
		switch strings.ToLower(k) {
		case "id":
			cfg.Attributes.ID = v
		case "user_name":
			cfg.Attributes.UserName = v
		case "display_name":
			cfg.Attributes.DisplayName = strings.Split(v, ",")
		case "email":
			cfg.Attributes.Email = strings.Split(v, ",")
		case "disabled":
			cfg.Attributes.Disabled = v
		}
	}
	return cfg
}
