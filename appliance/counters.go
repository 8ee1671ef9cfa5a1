package appliance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Inventory counters. Lists report exact totals and Stats reads figures
// without walking 100,000 index entries, so the counts are kept in the same
// transaction as the records they count. Each node keeps its own share of
// them and readers sum the shares:
//
//	meta/counters/<node>/tokens   {"<kind>\x00<state>\x00<assigned 0|1>\x00<provisioned 0|1>": n, …}
//	meta/counters/<node>/users    {"<source>\x00<active 0|1>": n, …}
//
// A share is a delta, not a total: a token created on one node and deleted
// on another leaves +1 in one share and -1 in the other. Shares keep the
// writes of different nodes on different keys (on etcd a key every node
// writes makes their transactions conflict); one small record per family
// and node keeps a chunked bulk write at one extra write. Init builds the
// counters from the indexes when none exist (stores written before the
// counters existed); schema 1's single records (meta/count/…) are moved
// into the migrating node's share (migrateSchema) and summed while they
// remain (a schema 1 store read by CheckStore).
var (
	keyTokenCounts = []byte("tokens")
	keyUserCounts  = []byte("users")
)

const (
	pfxCounters     = "meta/counters/"
	pfxLegacyCounts = "meta/count/"
)

// counterKey is node's share of a family of counters.
func counterKey(node string, family []byte) []byte {
	return []byte(pfxCounters + node + "/" + string(family))
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func tokenCountField(kind, state string, assigned, provisioned bool) string {
	return kind + "\x00" + state + "\x00" + flag(assigned) + "\x00" + flag(provisioned)
}

func tokenCountOf(t *Token) string {
	return tokenCountField(t.Kind, t.State, t.UserID != "", t.Provisioned)
}

func userCountField(source string, active bool) string { return source + "\x00" + flag(active) }

// tokenCount is one parsed entry of meta/count/tokens.
type tokenCount struct {
	Kind, State           string
	Assigned, Provisioned bool
	N                     int
}

func parseTokenCount(field string, n int64) tokenCount {
	p := strings.SplitN(field, "\x00", 4)
	for len(p) < 4 {
		p = append(p, "")
	}
	return tokenCount{Kind: p[0], State: p[1], Assigned: p[2] == "1", Provisioned: p[3] == "1", N: int(n)}
}

// counterTx buffers counter deltas so a transaction that writes many records
// (an import chunk, a directory chunk, a purge) writes each counter record
// once, at the end, instead of once per record.
type counterTx struct {
	Tx
	deltas map[string]map[string]int64 // counter key → field → delta
}

// withCounts runs fn with counter updates buffered and writes them after fn
// succeeds. Transactions touching one record need not use it: without it
// each change is applied at once (one write).
func withCounts(tx Tx, fn func(Tx) error) error {
	if _, ok := tx.(*counterTx); ok {
		return fn(tx)
	}
	ct := &counterTx{Tx: tx}
	if err := fn(ct); err != nil {
		return err
	}
	for _, key := range [][]byte{keyTokenCounts, keyUserCounts} {
		if d := ct.deltas[string(key)]; len(d) > 0 {
			if err := bumpCounts(tx, key, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// count applies or buffers a change of counts: -1 for from, +1 for to
// (either may be "" for none). Equal fields are no change.
func count(tx Tx, key []byte, from, to string) error {
	if from == to {
		return nil
	}
	d := map[string]int64{}
	if from != "" {
		d[from]--
	}
	if to != "" {
		d[to]++
	}
	if ct, ok := tx.(*counterTx); ok {
		if ct.deltas == nil {
			ct.deltas = map[string]map[string]int64{}
		}
		m := ct.deltas[string(key)]
		if m == nil {
			m = map[string]int64{}
			ct.deltas[string(key)] = m
		}
		for f, n := range d {
			m[f] += n
		}
		return nil
	}
	return bumpCounts(tx, key, d)
}

// readCounts sums every node's share of a family of counters (and schema
// 1's record while it remains). Transactions that write must not call it:
// on etcd it would make them conflict with every node's counting.
func readCounts(tx Tx, family []byte) (map[string]int64, error) {
	m, err := readShare(tx, []byte(pfxLegacyCounts+string(family)))
	if err != nil {
		return nil, err
	}
	kvs, err := tx.Scan([]byte(pfxCounters), nil, 0)
	if err != nil {
		return nil, err
	}
	suffix := "/" + string(family)
	for _, kv := range kvs {
		if !strings.HasSuffix(string(kv.Key), suffix) {
			continue
		}
		var share map[string]int64
		if err := decodeRecord(tx, kv.Value, &share); err != nil {
			return nil, fmt.Errorf("decode %q: %w", kv.Key, err)
		}
		for f, n := range share {
			if m[f] += n; m[f] == 0 {
				delete(m, f)
			}
		}
	}
	return m, nil
}

// readShare reads one counter record.
func readShare(tx Tx, key []byte) (map[string]int64, error) {
	m := map[string]int64{}
	b, err := tx.Get(key)
	if errors.Is(err, ErrNotFound) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := decodeRecord(tx, b, &m); err != nil {
		return nil, fmt.Errorf("decode %q: %w", key, err)
	}
	return m, nil
}

// bumpCounts applies deltas to this node's share only, so it reads and
// writes no key another node writes.
func bumpCounts(tx Tx, family []byte, deltas map[string]int64) error {
	return bumpShare(tx, counterKey(nodeOf(tx), family), deltas)
}

func bumpShare(tx Tx, key []byte, deltas map[string]int64) error {
	m, err := readShare(tx, key)
	if err != nil {
		return err
	}
	changed := false
	for f, d := range deltas {
		if d == 0 {
			continue
		}
		changed = true
		if m[f] += d; m[f] == 0 {
			delete(m, f)
		}
	}
	if !changed {
		return nil
	}
	return putJSON(tx, key, m)
}

// buildCounts writes the counters from the indexes, into this node's
// share, if no counter record of the family exists at all. It reads every
// token and user index entry once, in one transaction: only stores created
// before the counters pay it, once.
func buildCounts(tx Tx) error {
	shares, err := tx.Scan([]byte(pfxCounters), nil, 0)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		family []byte
		pfx    string
		each   func(KV) string
	}{
		{keyTokenCounts, pfxTokenState, func(kv KV) string {
			ix := parseTokenState(kv)
			return tokenCountField(ix.Kind, ix.State, ix.UserID != "", ix.Provisioned)
		}},
		{keyUserCounts, pfxUserLogin, func(kv KV) string {
			ix := parseLoginIndex(kv.Value)
			return userCountField(ix.Source, ix.Active)
		}},
	} {
		if slices.ContainsFunc(shares, func(kv KV) bool { return strings.HasSuffix(string(kv.Key), "/"+string(c.family)) }) {
			continue
		}
		if ok, err := exists(tx, []byte(pfxLegacyCounts+string(c.family))); err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		m := map[string]int64{}
		if err := scanAll(tx, c.pfx, func(kv KV) error { m[c.each(kv)]++; return nil }); err != nil {
			return err
		}
		if err := putJSON(tx, counterKey(nodeOf(tx), c.family), m); err != nil {
			return err
		}
	}
	return nil
}

// migrateCounts moves schema 1's counter records into this node's share.
func migrateCounts(tx Tx) error {
	for _, family := range [][]byte{keyTokenCounts, keyUserCounts} {
		old := []byte(pfxLegacyCounts + string(family))
		m, err := readShare(tx, old)
		if err != nil {
			return err
		}
		if ok, err := exists(tx, old); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := bumpShare(tx, counterKey(nodeOf(tx), family), m); err != nil {
			return err
		}
		if err := tx.Delete(old); err != nil {
			return err
		}
	}
	return nil
}

// tokenCounts returns the parsed token counters.
func tokenCounts(tx Tx) ([]tokenCount, error) {
	m, err := readCounts(tx, keyTokenCounts)
	if err != nil {
		return nil, err
	}
	out := make([]tokenCount, 0, len(m))
	for f, n := range m {
		out = append(out, parseTokenCount(f, n))
	}
	return out, nil
}
