// Package scim is tokend's SCIM 2.0 service provider (RFC 7643/7644): the
// endpoint Entra ID and Okta push users and groups to. Each identity source
// of type scim has its own bearer token; the token picks the source, and
// every operation is scoped to it.
//
// github.com/elimity-com/scim (imported as escim) does the routing, the
// discovery endpoints and the validation of bodies, filters and PATCH
// operations. This package does what the library does not, or does wrongly
// (docs/sync.md §1.6): bearer authentication with a SCIM 401, panic
// recovery, case-insensitive endpoint names and trailing slashes, Entra's
// string manager, the filter evaluator, the PATCH applier, projection of
// attributes/excludedAttributes (with value filters), sorting, POST
// .search and root queries (search.go), ETag preconditions (etag.go), one
// primary per multi-valued attribute (multivalued.go), absolute locations
// derived from the request, and never echoing a password.
//
// Deleting a user over SCIM deactivates it and starts the source's grace
// period: its tokens stay assigned, and only appliance.PurgeExpiredUsers
// takes them away later. A single request can never unassign a token.
//
// Mount the Handler under /scim/v2 with the prefix stripped, e.g. in Gin:
//
//	engine.Any("/scim/v2/*path", gin.WrapH(http.StripPrefix("/scim/v2", h)))
//
// New calls schema.SetAllowStringValues(true) once: that setting is global
// to the process (a library variable), and it is the one piece of package
// state this package touches.
package scim
