// Package etcdstore is the etcd implementation of appliance.Store, for
// several tokend nodes sharing one etcd cluster (high availability). Only
// the main package (the composition root) imports it.
//
// Key space. Every key lives under Options.Prefix (default /tokend/): a
// tokend key K is stored at PREFIX+"k/"+K, and the store's own bookkeeping
// under PREFIX+"m/". Values carry a one-byte tag: 0x00 followed by the
// value, or 0x01 alone for a deleted key (a tombstone, below).
//
// Transactions are optimistic. A View reads at one etcd revision: the first
// read takes the current revision and every later Get and Scan reads at it
// (WithRev), so the function sees a snapshot. An Update does the same, buffers
// its writes, and records what it read as key intervals: a Get records its
// key, a Scan the interval from its start to the last key it fetched (or the
// end of the prefix when it ran out). It commits with one etcd Txn whose
// compares say "no key in each interval has ModRevision > the read revision"
// (a Compare on ModRevision WithRange covers every key of the interval in
// one compare) and whose Then holds the writes. If a compare fails someone
// changed what the function read: the function runs again on fresh data,
// with jittered backoff, up to Options.MaxAttempts times, then ErrConflict.
//
// Reads. A View's first read is linearizable (a quorum read), so it sees
// every Update that returned before it began. An Update's first read is
// serializable (the member's own state, no round to the leader): it may be
// stale, but the commit compares everything read against that revision, so
// staleness costs a retry and never a wrong commit. An Update that read but
// wrote nothing, or whose function returned an error (a refusal such as
// "not found" may rest on a stale read), confirms its snapshot with a Txn of
// the same compares and a linearizable read: etcd answers a Txn with
// neither writes nor linearizable reads from the member's own state, stale
// as well. This saves one quorum round per Update (measured in
// bench_test.go).
//
// Why tombstones. A range compare sees keys that were created or changed in
// the interval, but a key deleted since the read is simply gone: nothing in
// etcd's Compare can see it, and counting the range needs a second round
// trip that races. So Delete writes a tombstone instead: the key stays, with
// a new ModRevision, and the interval's compare catches it. Reads skip
// tombstones. Tombstones are physically removed later by PurgeTombstones,
// which first writes the horizon key PREFIX+"m/horizon" and then removes
// only tombstones older than that write; every Update that read something
// also compares the horizon's ModRevision with its read revision, so a
// transaction that may have seen a purged key alive before it was deleted
// fails and runs again. A tombstone's removal changes nothing a reader can
// see, so later transactions need no compare for it.
//
// Operation budget. etcd refuses a Txn with more than 128 compares or 128
// operations (--max-txn-ops, counted separately). The contract's 100 writes
// are 100 puts (a delete is a put of a tombstone). Compares are one per read
// interval plus the horizon; when a function read more than 127 separate
// intervals, the nearest neighbours (longest common key prefix) are merged
// into covering intervals. A covering interval can only add false conflicts
// (a retry), never miss a real one.
//
// Local contention. Optimistic transactions on one hot key starve under
// load (measured: 16 clients on one key commit 8 % of their attempts). An
// Update whose first attempt conflicted runs its next attempts holding this
// store's gate exclusively, so no other Update of this process runs in
// between; it can then only lose to another node. First attempts share the
// gate, so uncontended work stays concurrent.
//
// Durability: etcd acknowledges a Txn once a quorum has it in its WAL
// (fsync'd), so every Update is durable when it returns. An error from the
// commit itself (a timeout, a lost connection) leaves the outcome unknown, as
// a failed fsync does in bbolt: it wraps appliance.ErrStoreUnavailable and is
// not retried, since the function may have taken effect.
package etcdstore
