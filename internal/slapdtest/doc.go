// Package slapdtest starts a throwaway OpenLDAP server (Debian's slapd) for
// tests, the same way ../shared/tools/slapd-fixture.sh does by hand: its own
// slapd.conf in t.TempDir() (schemas core/cosine/nis/inetorgperson, back_mdb
// with syncprov and a session log), bulk data loaded offline with
// `slapadd -q -w`, a free port on 127.0.0.1, and a stop in t.Cleanup.
//
// Tests use a real slapd rather than an in-process fake because the sync code
// depends on real paging, syncrepl (RFC 4533), size limits and TLS, none of
// which the Go-embeddable servers implement faithfully.
//
// Unlike the script, slapd runs in the foreground (-d 0) as a child of the
// test process, so the helper can kill it (simulating an outage) and wait for
// it without leaving zombies or stray daemons behind.
package slapdtest
