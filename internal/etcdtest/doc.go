// Package etcdtest starts throwaway etcd members (Debian's etcd-server) for
// tests: one member or a cluster of several, each on free ports of
// 127.0.0.1 with its data directory in t.TempDir(), healthy before Start
// returns and stopped in t.Cleanup.
//
// Tests use a real etcd, not an in-process fake, because the etcd Store's
// correctness rests on the server's Txn compares, revisions, compaction and
// operation limits, and on what a member's death does to a client.
//
// Members run in the foreground as children of the test process, so a test
// can kill one with SIGKILL (Member.Kill) and start it again on the same
// data and ports (Member.Restart).
package etcdtest
