// Package mirror decides what an identity sync changes: given the users a
// source already has in the appliance and what the directory says now, it
// computes a Plan of adds, updates, deactivations, reactivations and purges.
//
// It is pure (standard library only, no I/O, time passed in) so every safety
// rule can be table-tested without a directory or a store:
//
//   - Users are keyed by the directory's immutable id (entryUUID, objectGUID,
//     SCIM id), never by DN or login, so renames keep the user and its tokens.
//   - A user missing from the directory is deactivated, not deleted, and keeps
//     its tokens; only when the grace period (default 30 days) has passed since
//     it went missing is it purged. A reappearing user is reactivated intact.
//   - A user the directory reports disabled (AD userAccountControl bit 0x2) is
//     inactive too, but is never purged while it is still in the directory.
//   - The mass-deletion brake: a run that would deactivate more than a share
//     (default 10%) of the source's active users is refused with *BrakeError
//     unless forced. A directory hiccup (an empty result, a wrong base DN, a
//     broken filter) must not unassign thousands of tokens.
//
// The plan holds the complete desired record of every changed user, so
// applying it is idempotent and can be chunked: if applying fails half way,
// the next run computes the remainder from the new local state.
package mirror
