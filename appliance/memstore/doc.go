// Package memstore is an in-memory appliance.Store for tests.
//
// It owns nothing durable: the data lives in one immutable, sorted snapshot
// that each committed Update replaces. View reads the snapshot current when
// it starts (snapshot isolation without holding a lock during fn); Update
// calls are serialised, run fn against a private write buffer and publish a
// new snapshot only when fn succeeds. Keys and values are copied on the way in
// and out, and the write limits of the contract (appliance.MaxTxWrites,
// appliance.MaxTxBytes) are enforced exactly as a real backend must, so code
// that passes on memstore does not break on bbolt or etcd.
//
// WithRetries makes every Update run its function more than once, discarding
// the writes of all but the last attempt, as etcd does on a conflict; the
// conformance suite uses it to prove that callers' functions are retry safe.
package memstore
