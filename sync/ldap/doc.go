// Package ldap pulls users from an LDAP directory (OpenLDAP, Active
// Directory) into the appliance through a small Target interface that the
// appliance Service implements.
//
// A run reads the directory completely before anything is planned or
// applied: a cut connection, a killed server, a timeout or a failed bind
// ends the run with an error and nothing changed. Only then does package
// mirror compute the plan and its safety rules (grace period, mass-deletion
// brake), and only then is the plan applied.
//
// Full passes stream a paged search (SearchAsync with a paging control and a
// manual cookie loop, never SearchWithPaging, which buffers every entry:
// ~800 MB for 100k users) into compact mirror.Entry values. Incremental
// passes use RFC 4533 syncrepl in refreshOnly mode with a cookie the Target
// stores; the new cookie is saved only after the changes are applied, and a
// server falling back to a present phase (or refusing the cookie) turns the
// run into a full pass. Users are keyed by entryUUID/objectGUID, so a rename
// (modrdn) keeps the user and its tokens.
package ldap
