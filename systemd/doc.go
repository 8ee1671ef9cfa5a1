// Package systemd holds tokend.service, the hardened systemd unit that runs
// `tokend serve`, and README.md, which explains each of its directives.
//
// The package has no Go code of its own: its tests check the unit with
// systemd-analyze (verify, and an offline security score of at most 2.0) and
// check that the README documents every directive the unit uses.
package systemd
