package appliance

import (
	"fmt"
	"slices"
)

// WriteSet is one transaction's pending writes, for Store backends: it
// enforces the contract's write limits and key sizes, owns copies of what it
// is given, and keeps the keys sorted so a backend can merge them into its
// scans and apply them in order. The first refused write fails the whole
// transaction (Err stays set), so a function that ignores the error still
// commits nothing.
type WriteSet struct {
	// MaxKeySize is the backend's key size limit (0: none besides non-empty).
	MaxKeySize int

	writes map[string]Write
	keys   []string
	count  int
	size   int
	failed error
}

// Write is one pending Put (Value) or Delete.
type Write struct {
	Value  []byte
	Delete bool
}

// Add records a Put (del false) or a Delete of key.
func (w *WriteSet) Add(key, value []byte, del bool) error {
	if w.failed != nil {
		return w.failed
	}
	if len(key) == 0 || (w.MaxKeySize > 0 && len(key) > w.MaxKeySize) {
		w.failed = fmt.Errorf("store: key of %d bytes: must be 1..%d bytes", len(key), w.MaxKeySize)
		return w.failed
	}
	n := len(key) + len(value)
	if w.count+1 > MaxTxWrites || w.size+n > MaxTxBytes {
		w.failed = fmt.Errorf("store: write %d (%d bytes so far, +%d): %w", w.count+1, w.size, n, ErrTxTooLarge)
		return w.failed
	}
	w.count++
	w.size += n
	if w.writes == nil {
		w.writes = make(map[string]Write)
	}
	k := string(key) // copies
	if _, seen := w.writes[k]; !seen {
		i, _ := slices.BinarySearch(w.keys, k)
		w.keys = slices.Insert(w.keys, i, k)
	}
	pw := Write{Delete: del}
	if !del {
		pw.Value = append(make([]byte, 0, len(value)), value...)
	}
	w.writes[k] = pw
	return nil
}

// Lookup returns the pending write of key, if any.
func (w *WriteSet) Lookup(key string) (Write, bool) {
	pw, ok := w.writes[key]
	return pw, ok
}

// Keys returns the written keys in ascending order (not to be modified).
func (w *WriteSet) Keys() []string { return w.keys }

// Count and Size are the writes and key+value bytes recorded so far.
func (w *WriteSet) Count() int { return w.count }

// Size is the key and value bytes recorded so far.
func (w *WriteSet) Size() int { return w.size }

// Err is the error that failed the transaction, if a write was refused.
func (w *WriteSet) Err() error { return w.failed }
