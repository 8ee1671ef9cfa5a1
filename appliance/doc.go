// Package appliance is the domain of tokend: users, the token inventory,
// software token profiles, assignment, activation codes and their
// consumption by CT-KIP, API tokens and the hash-chained audit trail.
//
// One concrete Service holds every use case. Each use case is one
// transaction over the Store contract (store.go), and every invariant is
// checked inside it: at most MaxTokensPerUser hardware/software tokens per
// user, a token belongs to at most one user, an activation code is consumed
// exactly once. Secrets reach the store only sealed (seeds) or as keyed
// hashes (activation codes, API tokens).
//
// Token life: imported (disabled, unassigned) → assigned (enabled) →
// distributed (an activation code is outstanding) → provisioned (the seed
// derived by CT-KIP is sealed in the record). Disabling, unassigning (which
// wipes a software token's seed) and re-issuing a code move it back.
//
// The package imports the standard library, its own subpackages and
// golang.org/x/text/unicode/norm (names are stored and compared in NFC).
package appliance
