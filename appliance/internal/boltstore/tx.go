package boltstore

import (
	"bytes"
	"errors"
	"fmt"

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
	from, exclusive := appliance.ScanStart(prefix, after)
	c := &cursor{c: t.b.Cursor()}
	c.k, c.v = c.c.Seek(from)
	if exclusive && c.k != nil && bytes.Equal(c.k, from) {
		c.Next()
	}
	return t.ws.Scan(c, prefix, after, limit), nil
}

// cursor is a bbolt cursor as an appliance.Cursor.
type cursor struct {
	c    *bolt.Cursor
	k, v []byte
}

func (c *cursor) Peek() (key, value []byte, ok bool) { return c.k, c.v, c.k != nil }
func (c *cursor) Next()                              { c.k, c.v = c.c.Next() }

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
