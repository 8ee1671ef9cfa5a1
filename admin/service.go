package admin

import (
	"context"
	"time"

	"tokend/appliance"
)

// Service is the part of *appliance.Service the admin API calls. It is
// declared here, by the consumer, so tests and other doors can see at a
// glance what the admin API can do.
type Service interface {
	AuthenticateAPIToken(ctx context.Context, secret string) (appliance.Actor, error)

	CreateUser(ctx context.Context, in appliance.NewUser) (appliance.UserView, error)
	GetUser(ctx context.Context, id string) (appliance.UserView, error)
	ListUsers(ctx context.Context, q appliance.UserQuery) (appliance.UserPage, error)

	GetToken(ctx context.Context, serial string) (appliance.Token, error)
	ListTokens(ctx context.Context, q appliance.TokenQuery) (appliance.TokenPage, error)
	SetTokenEnabled(ctx context.Context, serial string, enabled bool) (appliance.Token, error)
	AssignTokens(ctx context.Context, userID string, serials []string) (appliance.UserView, error)
	UnassignToken(ctx context.Context, userID, serial string) error

	ImportTokens(ctx context.Context, req appliance.ImportRequest) (appliance.ImportJob, error)
	GetImportJob(ctx context.Context, id string) (appliance.ImportJob, error)
	ListImportJobs(ctx context.Context, limit int) ([]appliance.ImportJob, error)

	CreateProfile(ctx context.Context, p appliance.Profile) (appliance.Profile, error)
	UpdateProfile(ctx context.Context, name string, p appliance.Profile) (appliance.Profile, error)
	DeleteProfile(ctx context.Context, name string) error
	GetProfile(ctx context.Context, name string) (appliance.Profile, error)
	ListProfiles(ctx context.Context) ([]appliance.Profile, error)

	Distribute(ctx context.Context, serial, profile string) (appliance.Distribution, error)
	VoidDistribution(ctx context.Context, serial string) error
	// DeliverSeed and TakeTokenFile: a new seed by token file or CTF
	// string (profiles with delivery_method file or ctf).
	DeliverSeed(ctx context.Context, serial string, req appliance.SeedDeliveryRequest) (appliance.SeedDelivery, error)
	TakeTokenFile(ctx context.Context, serial string) ([]byte, error)
	// GuardAdminFactor refuses anyone but a super admin the QR code of a
	// token that is an admin's console second factor.
	GuardAdminFactor(ctx context.Context, serial, action string) error

	ListAudit(ctx context.Context, q appliance.AuditQuery) (appliance.AuditPage, error)
	// Audit records an action the admin API performs itself (a backup).
	Audit(ctx context.Context, ev appliance.AuditEvent) error
	// AuditRefusal records a refused request the Service did not decide
	// (at most once a minute per actor and action; refusals.go).
	AuditRefusal(ctx context.Context, ev appliance.AuditEvent) error

	// Authenticate decides an agent's authentication attempt; the Service
	// audits it and counts it in its own metrics.
	Authenticate(ctx context.Context, req appliance.AuthRequest) (appliance.AuthResult, error)
	ChangePIN(ctx context.Context, serial string, ch appliance.PINChange) (appliance.Token, error)
	Resync(ctx context.Context, serial, first, second string) (appliance.Token, error)
	// Token lifecycle (lifecycle.go) and reports (reports.go).
	ReplaceToken(ctx context.Context, oldSerial string, req appliance.ReplaceRequest) (appliance.Replacement, error)
	CompleteReplacement(ctx context.Context, oldSerial string) error
	CancelReplacement(ctx context.Context, oldSerial string) error
	MarkLost(ctx context.Context, serial string, em *appliance.EmergencyRequest) (appliance.LostResult, error)
	MarkFound(ctx context.Context, serial string) (appliance.Token, error)
	ExtendToken(ctx context.Context, serial string, expiresAt time.Time) (appliance.Token, error)
	DeleteToken(ctx context.Context, serial string) error
	Report(ctx context.Context, q appliance.ReportQuery) (appliance.ReportPage, error)
	UnlockUser(ctx context.Context, userID string) (appliance.User, error)
	// UnlockAdmin clears a console admin account's sign-in lockout.
	UnlockAdmin(ctx context.Context, name string) (appliance.AdminAccount, error)
	// Console admin accounts (admins.go).
	CreateAdmin(ctx context.Context, in appliance.NewAdmin) (appliance.AdminAccount, appliance.Secret, error)
	GetAdmin(ctx context.Context, name string) (appliance.AdminAccount, error)
	ListAdmins(ctx context.Context) ([]appliance.AdminAccount, error)
	ResetAdminPassword(ctx context.Context, name string, password appliance.Secret) (appliance.AdminAccount, appliance.Secret, error)
	SetAdminDisabled(ctx context.Context, name string, disabled bool) (appliance.AdminAccount, error)
	SetAdminSecondFactor(ctx context.Context, name, serial string) error
	DeleteAdmin(ctx context.Context, name string) error
	IssueEmergencyAccess(ctx context.Context, userID, kind string, count int, lifetime time.Duration) (appliance.EmergencyAccess, error)
	RevokeEmergencyAccess(ctx context.Context, userID string) error

	CreateIdentitySource(ctx context.Context, in appliance.IdentitySource) (appliance.IdentitySource, appliance.Secret, error)
	GetIdentitySource(ctx context.Context, id string) (appliance.IdentitySource, error)
	ListIdentitySources(ctx context.Context) ([]appliance.IdentitySource, error)
	UpdateIdentitySource(ctx context.Context, id string, in appliance.IdentitySource) (appliance.IdentitySource, error)
	DeleteIdentitySource(ctx context.Context, id string) error
	RotateSCIMToken(ctx context.Context, id string) (appliance.Secret, error)
	ListSyncRuns(ctx context.Context, sourceID string, limit int) ([]appliance.SyncRun, error)

	CreateAgent(ctx context.Context, in appliance.AgentInput) (appliance.Agent, appliance.Secret, error)
	GetAgent(ctx context.Context, id string) (appliance.Agent, error)
	ListAgents(ctx context.Context) ([]appliance.Agent, error)
	UpdateAgent(ctx context.Context, id string, in appliance.AgentInput) (appliance.Agent, error)
	DeleteAgent(ctx context.Context, id string) error

	CreateAPIToken(ctx context.Context, name, role string) (appliance.APIToken, appliance.Secret, error)
	ListAPITokens(ctx context.Context) ([]appliance.APIToken, error)
	RevokeAPIToken(ctx context.Context, id string) error
	// IssueAPIToken is CreateAPIToken with an optional expiry.
	IssueAPIToken(ctx context.Context, in appliance.NewAPIToken) (appliance.APIToken, appliance.Secret, error)
	RotateAPIToken(ctx context.Context, id string) (appliance.APIToken, appliance.Secret, error)

	// RolloutService: rollouts to a group (rollouts.go).
	RolloutService
}
