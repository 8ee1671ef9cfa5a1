// Package admin is the administrators' door to the appliance: the JSON admin
// API under /api/v1 (Gin), its bearer-token authentication and per-route role
// table, the health endpoints /healthz and /readyz, and the OpenAPI 3.1
// document of those routes. The web console and the authentication, SCIM and
// CT-KIP routes are mounted on the same engine by their own packages (see
// Server.Engine, Server.API, Server.Authenticate and RequireRole).
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
// superadmin may do everything; helpdesk manages users and tokens (import,
// assign, distribute, enable/disable) and reads profiles; auditor reads
// everything except API tokens and QR codes (which carry activation codes);
// agent has no access to the admin API (it will use POST /api/v1/authenticate).
// The table is routes() in routes.go.
package admin
