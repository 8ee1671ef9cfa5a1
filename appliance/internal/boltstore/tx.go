package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"tokend/appliance"
)

// errTxDone is returned by a Tx used after its function returned: the bbolt
// transaction under it may be gone, and its memory with it.
var errTxDone = errors.New("boltstore: transaction used after its function returned")

// write is one buffered Put (del false) or Delete (del true).
type write struct {
	value []byte
	del   bool
}

// tx implements appliance.Tx over a bbolt bucket. In View it reads the
// bucket of a read-only bbolt transaction. In Update it is the overlay of
// one caller's function: reads go to its own buffered writes first, then to
// the bucket of the group's shared write transaction; writes are buffered
// until apply.
type tx struct {
	b        *bolt.Bucket
	readOnly bool
	done     bool

	writes map[string]write
	keys   []string // sorted keys of writes
	nWrite int
	nBytes int
	failed error // first failed write; poisons the transaction
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if t.done {
		return nil, errTxDone
	}
	if w, ok := t.writes[string(key)]; ok {
		if w.del {
			return nil, appliance.ErrNotFound
		}
		return clone(w.value), nil
	}
	// A cursor, not Bucket.Get: Get returns nil for both a missing key and
	// (in some cases) an empty value.
	k, v := t.b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, appliance.ErrNotFound
	}
	return clone(v), nil
}

func (t *tx) Put(key, value []byte) error { return t.write(key, value, false) }

func (t *tx) Delete(key []byte) error { return t.write(key, nil, true) }

func (t *tx) write(key, value []byte, del bool) error {
	switch {
	case t.done:
		return errTxDone
	case t.readOnly:
		return appliance.ErrReadOnly
	case t.failed != nil:
		return t.failed
	}
	// Checked here, not left to bbolt, so that apply cannot fail on a bad
	// key half-way through a group.
	if len(key) == 0 || len(key) > bolt.MaxKeySize {
		t.failed = fmt.Errorf("boltstore: key of %d bytes: must be 1..%d bytes", len(key), bolt.MaxKeySize)
		return t.failed
	}
	n := len(key) + len(value)
	if t.nWrite+1 > appliance.MaxTxWrites || t.nBytes+n > appliance.MaxTxBytes {
		t.failed = fmt.Errorf("boltstore: write %d (%d bytes so far, +%d): %w",
			t.nWrite+1, t.nBytes, n, appliance.ErrTxTooLarge)
		return t.failed
	}
	t.nWrite++
	t.nBytes += n
	if t.writes == nil {
		t.writes = make(map[string]write)
	}
	k := string(key) // copies
	if _, seen := t.writes[k]; !seen {
		i, _ := slices.BinarySearch(t.keys, k)
		t.keys = slices.Insert(t.keys, i, k)
	}
	w := write{del: del}
	if !del {
		// Owned by us until the commit: bbolt keeps a reference to the
		// value it is given until the transaction ends.
		w.value = clone(value)
	}
	t.writes[k] = w
	return nil
}

func (t *tx) Scan(prefix, after []byte, limit int) ([]appliance.KV, error) {
	if t.done {
		return nil, errTxDone
	}
	from, exclusive := prefix, false
	if after != nil && bytes.Compare(after, prefix) >= 0 {
		from, exclusive = after, true
	}

	c := t.b.Cursor()
	bk, bv := c.Seek(from)
	if exclusive && bk != nil && bytes.Equal(bk, from) {
		bk, bv = c.Next()
	}
	j, found := slices.BinarySearch(t.keys, string(from))
	if found && exclusive {
		j++
	}

	var out []appliance.KV
	for limit <= 0 || len(out) < limit {
		fromBolt, fromOverlay := bk != nil, j < len(t.keys)
		if fromBolt && fromOverlay {
			switch c := bytes.Compare(bk, []byte(t.keys[j])); {
			case c < 0:
				fromOverlay = false
			case c > 0:
				fromBolt = false
			}
			// Equal: the buffered write shadows the stored pair.
		}
		var (
			key, value []byte
			del        bool
		)
		switch {
		case fromOverlay:
			key = []byte(t.keys[j])
			w := t.writes[t.keys[j]]
			value, del = w.value, w.del
			j++
			if fromBolt {
				bk, bv = c.Next()
			}
		case fromBolt:
			key, value = bk, bv
			bk, bv = c.Next()
		default:
			return out, nil
		}
		// Keys with the prefix are contiguous and the scan started at or
		// after the prefix, so the first key without it ends the scan.
		if !bytes.HasPrefix(key, prefix) {
			break
		}
		if del {
			continue
		}
		out = append(out, kvCopy(key, value))
	}
	return out, nil
}

// apply writes the buffered writes to the bucket of the shared write
// transaction.
func (t *tx) apply(b *bolt.Bucket) error {
	for _, k := range t.keys {
		w := t.writes[k]
		var err error
		if w.del {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), w.value)
		}
		if err != nil {
			return fmt.Errorf("boltstore: apply %q: %w", k, err)
		}
	}
	return nil
}

// clone returns a copy of b that is never nil, so an empty value reads back
// as an empty, non-nil slice.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// kvCopy copies a pair into one allocation; the capacities are clipped so
// that appending to the key cannot overwrite the value.
func kvCopy(k, v []byte) appliance.KV {
	buf := make([]byte, len(k)+len(v))
	copy(buf, k)
	copy(buf[len(k):], v)
	return appliance.KV{Key: buf[:len(k):len(k)], Value: buf[len(k):]}
}
