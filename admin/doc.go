// Package admin is the administrators' door to the appliance: the JSON admin
// API under /api/v1 (Gin), its bearer-token authentication and per-route role
// table, the health endpoints /healthz and /readyz, and the OpenAPI 3.1
// document of those routes, including the agents' authentication API (POST
// /api/v1/authenticate), the hot backup (GET /api/v1/backup) and the
// identity sources (LDAP directories pulled by a sync function main passes
// in as Options.Sync, SCIM identity providers that push). The web
// console and the SCIM and CT-KIP routes are mounted on the same engine by
// their own packages (see Server.Engine, Server.API, Server.Authenticate and
// RequireRole).
//
// The package owns translation, not rules: handlers bind the request, check
// its shape, make one call to the Service and render a DTO. Every invariant
// lives in package appliance. DTOs are declared here and never expose sealed
// seeds, code hashes or API token hashes.
//
// # Errors
//
// Every error response is RFC 9457 problem JSON (application/problem+json)
// with the members type, title, status, detail and code. code is the stable,
// machine-readable name that clients match on (for example token_limit); type
// is https://tokend.invalid/problems/<code>, a URI that only names the problem
// (it is not meant to be dereferenced). Validation problems carry
// errors: [{field, reason}]. Errors are translated in exactly one place,
// WriteError; a 500 never shows the underlying error, which is logged with
// the request's route instead.
//
// # Roles
//
// superadmin may do everything (including authenticating a user and taking
// a backup); helpdesk manages users and tokens (import, assign, distribute,
// enable/disable, PINs, resynchronisation, unlock, emergency access) and
// reads profiles, but has no access to identity sources; auditor reads
// everything except API tokens and QR codes (which carry activation codes)
// and changes nothing; agent may only call
// POST /api/v1/authenticate. The table is routes() in routes.go.
//
// # Secrets
//
// Passcodes, PINs and emergency codes never reach a log line or an error
// document: requests hold them as appliance.Secret (which redacts itself),
// problems name fields and limits but never quote values, and the access
// log records neither bodies, query strings nor headers. Emergency codes,
// like activation codes, new API tokens and SCIM bearer tokens, are shown
// once, in a response marked Cache-Control: no-store. An LDAP bind password
// is write-only: it is sealed by the Service and never rendered
// (has_bind_password says whether one is stored).
package admin
