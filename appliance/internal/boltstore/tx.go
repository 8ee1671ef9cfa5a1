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
// tx implements appliance.Tx over a bbolt bucket. In View it reads the
// bucket of a read-only bbolt transaction. In Update it is the overlay of
// one caller's function: reads go to its own buffered writes first, then to
// the bucket of the group's shared write transaction; writes are buffered
// until apply.
type tx struct {
	b        *bolt.Bucket
	readOnly bool
	done     bool

	ws appliance.WriteSet // pending writes; the first refused one poisons the transaction
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if t.done {
		return nil, errTxDone
	}
	if w, ok := t.ws.Lookup(string(key)); ok {
		if w.Delete {
			return nil, appliance.ErrNotFound
		}
		return clone(w.Value), nil
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
	}
	return t.ws.Add(key, value, del)
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
	j, found := slices.BinarySearch(t.ws.Keys(), string(from))
	if found && exclusive {
		j++
	}

	var out []appliance.KV
	for limit <= 0 || len(out) < limit {
		fromBolt, fromOverlay := bk != nil, j < len(t.ws.Keys())
		if fromBolt && fromOverlay {
			switch c := bytes.Compare(bk, []byte(t.ws.Keys()[j])); {
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
			key = []byte(t.ws.Keys()[j])
			w, _ := t.ws.Lookup(t.ws.Keys()[j])
			value, del = w.Value, w.Delete
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
	for _, k := range t.ws.Keys() {
		w, _ := t.ws.Lookup(k)
		var err error
		if w.Delete {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), w.Value)
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
