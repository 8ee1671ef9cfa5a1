package appliance

import (
	"bytes"
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

// Cursor walks a backend's committed pairs in key order, for WriteSet.Scan.
type Cursor interface {
	// Peek returns the current pair; ok is false past the end. The slices
	// need only stay valid until the Scan returns.
	Peek() (key, value []byte, ok bool)
	// Next moves to the following pair.
	Next()
}

// ScanStart is where a Tx.Scan of prefix after `after` begins: from, and
// whether from itself is excluded.
func ScanStart(prefix, after []byte) (from []byte, exclusive bool) {
	if after != nil && string(after) >= string(prefix) {
		return after, true
	}
	return prefix, false
}

// Scan implements Tx.Scan for a backend: it merges the pending writes over
// base, which must be positioned at ScanStart(prefix, after) already, and
// returns up to limit live pairs with the prefix (limit <= 0: all), copied
// into one buffer the caller owns.
func (w *WriteSet) Scan(base Cursor, prefix, after []byte, limit int) []KV {
	from, exclusive := ScanStart(prefix, after)
	j, found := slices.BinarySearch(w.keys, string(from))
	if found && exclusive {
		j++
	}
	var hits []KV
	for limit <= 0 || len(hits) < limit {
		bk, bv, bok := base.Peek()
		fromWrites := j < len(w.keys)
		if bok && fromWrites {
			switch c := bytes.Compare(bk, []byte(w.keys[j])); {
			case c < 0:
				fromWrites = false
			case c == 0:
				base.Next() // the pending write shadows the stored pair
			}
		}
		var (
			key, value []byte
			del        bool
		)
		switch {
		case fromWrites:
			pw := w.writes[w.keys[j]]
			key, value, del = []byte(w.keys[j]), pw.Value, pw.Delete
			j++
		case bok:
			key, value = bk, bv
			base.Next()
		}
		// Keys with the prefix are contiguous and the scan started at or
		// after the prefix, so the first key without it ends the scan.
		if key == nil || !bytes.HasPrefix(key, prefix) {
			break
		}
		if del {
			continue
		}
		hits = append(hits, KV{Key: key, Value: value})
	}
	PackKVs(hits)
	return hits
}

// PackKVs copies the keys and values of kvs into one new buffer, in place:
// one allocation for all of them. Capacities are clipped, so appending to
// one slice never overwrites the next.
func PackKVs(kvs []KV) {
	size := 0
	for _, kv := range kvs {
		size += len(kv.Key) + len(kv.Value)
	}
	buf := make([]byte, 0, size)
	for i := range kvs {
		kvs[i].Key = carve(&buf, kvs[i].Key)
		kvs[i].Value = carve(&buf, kvs[i].Value)
	}
}

func carve(buf *[]byte, b []byte) []byte {
	i := len(*buf)
	*buf = append(*buf, b...)
	return (*buf)[i:len(*buf):len(*buf)]
}
