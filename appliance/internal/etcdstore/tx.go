package etcdstore

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
)

// maxKeySize keeps a key with the prefix well inside etcd's request limits.
const maxKeySize = 4096

// scanPage is how many pairs one etcd range request fetches for a Scan
// without a limit.
const scanPage = 512

// span is an interval [start, end) of etcd keys an Update read.
type span struct{ start, end string }

// tx implements appliance.Tx. Reads go to the pending writes first, then to
// etcd at the transaction's revision (set by the first read).
type tx struct {
	s        *Store
	ctx      context.Context
	readOnly bool
	done     bool

	rev   int64  // read revision; 0 until the first read
	stale bool   // the first read was serializable (may be behind the quorum)
	reads []span // what an Update read, for its compares
	err   error  // the first failed read: it poisons the transaction

	ws appliance.WriteSet
}

func (t *tx) usable() error {
	if t.done {
		return errTxDone
	}
	return t.err
}

// get reads from etcd at the transaction's revision.
//
// Which reads need a quorum: a View's first read is linearizable (it must
// see every Update that returned before it started). An Update's first read
// may be stale (serializable: the member answers from its own state, no
// round to the leader): its commit compares everything it read with that
// revision, so a stale read costs a retry, never a wrong commit; an Update
// that writes nothing confirms its reads with a compare-only Txn instead.
// Later reads are at a known committed revision; a member that has not
// applied it yet answers ErrFutureRev, and the read goes to the quorum.
func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.s.opts.RequestTimeout)
	defer cancel()
	first := t.rev == 0
	if !first {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	serializable := !first || !t.readOnly
	resp, err := t.s.cli.Get(ctx, key, append(opts, withSerializable(serializable))...)
	if err != nil && serializable && !first && errors.Is(err, rpctypes.ErrFutureRev) {
		resp, err = t.s.cli.Get(ctx, key, opts...)
	}
	if err != nil {
		t.err = readErr(t.ctx, err)
		return nil, t.err
	}
	if first {
		t.rev = resp.Header.Revision
		t.stale = serializable
	}
	return resp, nil
}

// withSerializable is clientv3.WithSerializable when on.
func withSerializable(on bool) clientv3.OpOption {
	if on {
		return clientv3.WithSerializable()
	}
	return func(*clientv3.Op) {}
}

func (t *tx) record(start, end string) {
	if !t.readOnly {
		t.reads = append(t.reads, span{start, end})
	}
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if w, ok := t.ws.Lookup(string(key)); ok {
		if w.Delete {
			return nil, appliance.ErrNotFound
		}
		return clone(w.Value), nil
	}
	if len(key) == 0 {
		return nil, appliance.ErrNotFound // never stored: Put refuses it
	}
	k := t.s.data + string(key)
	resp, err := t.get(k)
	if err != nil {
		return nil, err
	}
	t.record(k, k+"\x00")
	if len(resp.Kvs) == 0 {
		return nil, appliance.ErrNotFound
	}
	v, live, err := decode(resp.Kvs[0].Value)
	if err != nil {
		t.err = err
		return nil, err
	}
	if !live {
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
	if t.ws.MaxKeySize == 0 {
		t.ws.MaxKeySize = maxKeySize
	}
	return t.ws.Add(key, value, del)
}

func (t *tx) Scan(prefix, after []byte, limit int) ([]appliance.KV, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	from, exclusive := appliance.ScanStart(prefix, after)
	start := t.s.data + string(from)
	if exclusive {
		start += "\x00"
	}
	c := &cursor{t: t, next: start, end: clientv3.GetPrefixRangeEnd(t.s.data + string(prefix)), more: true, readTo: start}
	if len(prefix) == 0 {
		c.end = t.s.dataEnd
	}
	c.page = scanPage
	if limit > 0 {
		// The pending writes may shadow some pairs, so a page of exactly
		// limit may need a second one; most Scans fit in one.
		c.page = int64(min(limit+1, scanPage))
	}
	kvs := t.ws.Scan(c, prefix, after, limit)
	if t.err != nil {
		return nil, t.err
	}
	if c.readTo > start {
		t.record(start, c.readTo)
	}
	return kvs, nil
}

// cursor walks etcd's pairs of [next, end) at the transaction's revision, a
// page at a time, skipping tombstones, as an appliance.Cursor.
type cursor struct {
	t      *tx
	next   string // start of the next page
	end    string
	page   int64
	more   bool   // etcd may hold pairs from next on
	readTo string // every key below this has been read

	buf []*mvccpb.KeyValue
	i   int
	val []byte // the current pair's value
}

// settle moves to the next live pair, fetching pages as needed.
func (c *cursor) settle() {
	for {
		for ; c.i < len(c.buf); c.i++ {
			v, live, err := decode(c.buf[c.i].Value)
			if err != nil {
				c.t.err = err
				c.buf, c.more = nil, false
				return
			}
			if live {
				c.val = v
				return
			}
		}
		if !c.more || c.t.err != nil {
			return
		}
		resp, err := c.t.get(c.next, clientv3.WithRange(c.end), clientv3.WithLimit(c.page))
		if err != nil {
			c.buf, c.more = nil, false
			return
		}
		c.buf, c.i, c.more = resp.Kvs, 0, resp.More
		if n := len(resp.Kvs); n > 0 {
			c.next = string(resp.Kvs[n-1].Key) + "\x00"
		}
		c.readTo = c.next
		if !c.more {
			c.readTo = c.end
		}
	}
}

func (c *cursor) Peek() (key, value []byte, ok bool) {
	c.settle()
	if c.i >= len(c.buf) {
		return nil, nil, false
	}
	return c.buf[c.i].Key[len(c.t.s.data):], c.val, true
}

func (c *cursor) Next() {
	c.settle()
	if c.i < len(c.buf) {
		c.i++
	}
}

// compares returns the Txn conditions of an Update: nothing it read has
// changed since its read revision, and no purge has run since.
func (t *tx) compares() []clientv3.Cmp {
	if t.rev == 0 {
		return nil // blind writes: nothing read, nothing to check
	}
	spans := coalesce(t.reads, maxTxnOps-1)
	out := make([]clientv3.Cmp, 0, len(spans)+1)
	for _, sp := range spans {
		c := clientv3.Compare(clientv3.ModRevision(sp.start), "<", t.rev+1)
		if sp.end != sp.start+"\x00" {
			c = c.WithRange(sp.end)
		}
		out = append(out, c)
	}
	return append(out, clientv3.Compare(clientv3.ModRevision(t.s.horizon), "<", t.rev+1))
}

// coalesce sorts and merges overlapping spans, then, while there are more
// than max, merges the neighbours whose gap is narrowest (the longest common
// prefix between one's end and the next one's start): a merged span covers
// keys that were not read, which can only cause a false conflict.
func coalesce(in []span, max int) []span {
	if len(in) == 0 {
		return nil
	}
	spans := slices.Clone(in)
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start <= last.end {
			last.end = maxStr(last.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	if len(out) <= max {
		return out
	}
	type gap struct{ i, lcp int }
	gaps := make([]gap, 0, len(out)-1)
	for i := range len(out) - 1 {
		gaps = append(gaps, gap{i, commonPrefix(out[i].end, out[i+1].start)})
	}
	slices.SortStableFunc(gaps, func(a, b gap) int { return cmp.Compare(b.lcp, a.lcp) })
	join := make([]bool, len(out)) // join[i]: merge out[i] with out[i+1]
	for _, g := range gaps[:len(out)-max] {
		join[g.i] = true
	}
	merged := make([]span, 0, max)
	cur := out[0]
	for i := 1; i < len(out); i++ {
		if join[i-1] {
			cur.end = maxStr(cur.end, out[i].end)
			continue
		}
		merged = append(merged, cur)
		cur = out[i]
	}
	return append(merged, cur)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func maxStr(a, b string) string {
	if a > b {
		return a
	}
	return b
}

// clone returns a copy of b that is never nil, so an empty value reads back
// as an empty, non-nil slice.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
