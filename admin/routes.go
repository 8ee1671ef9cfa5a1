package admin

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// route is one row of the routing and authorisation table.
type route struct {
	method  string
	path    string // below APIPrefix, in gin syntax
	public  bool   // no authentication
	roles   []string
	handler gin.HandlerFunc
}

// routes is the admin API: one row per endpoint with the roles allowed.
// The agent role appears only on POST /authenticate, the authentication API,
// and nowhere else. The QR code is withheld from auditors because it carries
// the activation code.
func (s *Server) routes() []route {
	// readers may read users, tokens, profiles and import jobs; operators
	// manage users and tokens (the help desk's daily work, including PINs,
	// resynchronisation, unlocking and emergency access); profile writes,
	// API tokens, backups and identity source writes and syncs are the super
	// admin's; the help desk is given neither the audit trail nor identity
	// sources, which only the super admin and the auditor read. Agents authenticate users; the super admin may
	// too (to try a token from the console); the help desk may not, so a
	// help desk key cannot be used to guess passcodes.
	readers := []string{appliance.RoleSuperAdmin, appliance.RoleHelpdesk, appliance.RoleAuditor}
	operators := []string{appliance.RoleSuperAdmin, appliance.RoleHelpdesk}
	superOnly := []string{appliance.RoleSuperAdmin}
	auditReaders := []string{appliance.RoleSuperAdmin, appliance.RoleAuditor}
	authenticators := []string{appliance.RoleAgent, appliance.RoleSuperAdmin}
	return []route{
		{method: http.MethodGet, path: "/openapi.json", public: true, handler: s.openAPI},

		{http.MethodPost, "/authenticate", false, authenticators, s.authenticate},

		{http.MethodPost, "/users", false, operators, s.createUser},
		{http.MethodGet, "/users", false, readers, s.listUsers},
		{http.MethodGet, "/users/:id", false, readers, s.getUser},
		{http.MethodPost, "/users/:id/tokens", false, operators, s.assignTokens},
		{http.MethodDelete, "/users/:id/tokens/:serial", false, operators, s.unassignToken},
		{http.MethodPost, "/users/:id/unlock", false, operators, s.unlockUser},
		{http.MethodPost, "/users/:id/emergency-access", false, operators, s.issueEmergencyAccess},
		{http.MethodDelete, "/users/:id/emergency-access", false, operators, s.revokeEmergencyAccess},

		{http.MethodPost, "/tokens/import", false, operators, s.importTokens},
		{http.MethodGet, "/import-jobs", false, readers, s.listImportJobs},
		{http.MethodGet, "/import-jobs/:id", false, readers, s.getImportJob},

		{http.MethodGet, "/tokens", false, readers, s.listTokens},
		{http.MethodGet, "/tokens/:serial", false, readers, s.getToken},
		{http.MethodPost, "/tokens/:serial/enable", false, operators, s.setEnabled(true)},
		{http.MethodPost, "/tokens/:serial/disable", false, operators, s.setEnabled(false)},
		{http.MethodPost, "/tokens/:serial/distribution", false, operators, s.distribute},
		{http.MethodDelete, "/tokens/:serial/distribution", false, operators, s.voidDistribution},
		{http.MethodGet, "/tokens/:serial/distribution/qr.png", false, operators, s.qrCode},
		{http.MethodGet, "/tokens/:serial/distribution/token.sdtid", false, operators, s.downloadTokenFile},
		{http.MethodPost, "/tokens/:serial/pin", false, operators, s.changePIN},
		{http.MethodPost, "/tokens/:serial/resync", false, operators, s.resync},
		// Lifecycle (lifecycle.go): deleting from the inventory is the
		// super admin's.
		{http.MethodPost, "/tokens/:serial/replace", false, operators, s.replaceToken},
		{http.MethodPost, "/tokens/:serial/replace/complete", false, operators, s.endReplacement(true)},
		{http.MethodDelete, "/tokens/:serial/replace", false, operators, s.endReplacement(false)},
		{http.MethodPost, "/tokens/:serial/lost", false, operators, s.markLost},
		{http.MethodPost, "/tokens/:serial/found", false, operators, s.markFound},
		{http.MethodPost, "/tokens/:serial/extend", false, operators, s.extendToken},
		{http.MethodDelete, "/tokens/:serial", false, superOnly, s.deleteToken},

		{http.MethodPost, "/profiles", false, superOnly, s.createProfile},
		{http.MethodGet, "/profiles", false, readers, s.listProfiles},
		{http.MethodGet, "/profiles/:name", false, readers, s.getProfile},
		{http.MethodPut, "/profiles/:name", false, superOnly, s.updateProfile},
		{http.MethodDelete, "/profiles/:name", false, superOnly, s.deleteProfile},

		{http.MethodGet, "/audit", false, auditReaders, s.listAudit},
		{http.MethodGet, "/reports/:name", false, readers, s.report},

		// Identity sources: the help desk has none (their settings name
		// directory servers and bind accounts).
		{http.MethodPost, "/identity-sources", false, superOnly, s.createIdentitySource},
		{http.MethodGet, "/identity-sources", false, auditReaders, s.listIdentitySources},
		{http.MethodGet, "/identity-sources/:id", false, auditReaders, s.getIdentitySource},
		{http.MethodPut, "/identity-sources/:id", false, superOnly, s.updateIdentitySource},
		{http.MethodDelete, "/identity-sources/:id", false, superOnly, s.deleteIdentitySource},
		{http.MethodPost, "/identity-sources/:id/sync", false, superOnly, s.syncIdentitySource},
		{http.MethodGet, "/identity-sources/:id/runs", false, auditReaders, s.listSyncRuns},
		{http.MethodPost, "/identity-sources/:id/scim-token", false, superOnly, s.rotateSCIMToken},

		// Agents: the auditor reads them (never a secret: none is rendered
		// after creation).
		{http.MethodPost, "/agents", false, superOnly, s.createAgent},
		{http.MethodGet, "/agents", false, auditReaders, s.listAgents},
		{http.MethodGet, "/agents/:id", false, auditReaders, s.getAgent},
		{http.MethodPut, "/agents/:id", false, superOnly, s.updateAgent},
		{http.MethodDelete, "/agents/:id", false, superOnly, s.deleteAgent},

		{http.MethodPost, "/api-tokens", false, superOnly, s.createAPIToken},
		{http.MethodGet, "/api-tokens", false, superOnly, s.listAPITokens},
		{http.MethodDelete, "/api-tokens/:id", false, superOnly, s.revokeAPIToken},
		{http.MethodPost, "/api-tokens/:id/rotate", false, superOnly, s.rotateAPIToken},

		{http.MethodGet, "/backup", false, superOnly, s.backup},

		// Rollouts to a group (rollouts.go): a mass assignment, so the
		// super admin's; readers follow the progress. Deliveries and
		// exports carry activation codes.
		{http.MethodPost, "/rollouts", false, superOnly, s.createRollout},
		{http.MethodGet, "/rollouts", false, readers, s.listRollouts},
		{http.MethodGet, "/rollouts/:id", false, readers, s.getRollout},
		{http.MethodPost, "/rollouts/:id/apply", false, superOnly, s.applyRollout},
		{http.MethodPost, "/rollouts/:id/cancel", false, superOnly, s.cancelRollout},
		{http.MethodGet, "/rollouts/:id/items/:seq/delivery", false, superOnly, s.takeRolloutDelivery},
		{http.MethodGet, "/rollouts/:id/export", false, superOnly, s.exportRollout},

		// Console admin accounts: a lockout after failed sign-ins is lifted
		// by a super admin (or `tokend admin unlock`).
		{http.MethodPost, "/admins/:name/unlock", false, superOnly, s.unlockAdmin},
		{http.MethodGet, "/admins", false, superOnly, s.listAdmins},
		{http.MethodPost, "/admins", false, superOnly, s.createAdmin},
		{http.MethodGet, "/admins/:name", false, superOnly, s.getAdmin},
		{http.MethodDelete, "/admins/:name", false, superOnly, s.deleteAdmin},
		{http.MethodPost, "/admins/:name/password", false, superOnly, s.resetAdminPassword},
		{http.MethodPost, "/admins/:name/disable", false, superOnly, s.setAdminDisabled(true)},
		{http.MethodPost, "/admins/:name/enable", false, superOnly, s.setAdminDisabled(false)},
		{http.MethodPut, "/admins/:name/second-factor", false, superOnly, s.setAdminSecondFactor},
	}
}
