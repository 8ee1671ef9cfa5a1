package appliance

import "context"

// Write limits of one Update. etcd refuses transactions of more than 128
// operations by default; keeping every backend to the same, smaller bound
// means code that passes on bbolt also passes on etcd. Bulk work is chunked.
const (
	MaxTxWrites = 100     // Put + Delete calls per Update
	MaxTxBytes  = 1 << 20 // key + value bytes written per Update
)

// Store is an ordered key-value store with serialisable transactions.
//
// The function given to Update may run more than once (a backend retries it
// on a write conflict), so it must do no I/O, logging, metrics or channel
// sends: only reads and writes through the Tx and pure computation. It must
// not start another transaction. Update returns only after the writes are
// durable (fsync'd). A function that returns an error leaves nothing written.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx reads and writes one transaction. Keys are compared as bytes.
// Returned slices are the caller's to keep and modify.
type Tx interface {
	// Get returns a copy of the value, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Put stores a copy of key and value. It fails with ErrTxTooLarge once
	// the transaction exceeds MaxTxWrites or MaxTxBytes, and with
	// ErrReadOnly in View.
	Put(key, value []byte) error
	// Delete removes key (absent keys are not an error). It counts as a write.
	Delete(key []byte) error
	// Scan returns, in ascending key order, up to limit pairs whose key has
	// the prefix and sorts strictly after `after` (nil: from the start of
	// the prefix). limit <= 0 means no limit.
	Scan(prefix, after []byte, limit int) ([]KV, error)
}

// KV is one key-value pair returned by Scan.
type KV struct {
	Key   []byte
	Value []byte
}
