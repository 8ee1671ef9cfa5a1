package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditEvent is what happened, before it is sealed into the chain.
type AuditEvent struct {
	Action  string `json:"action"`
	UserID  string `json:"user_id,omitempty"`
	Serial  string `json:"serial,omitempty"`
	Target  string `json:"target,omitempty"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// AuditRecord is one link of a node's hash chain. Hash covers Prev and
// every other field (Node too), so altering or removing a record breaks
// the chain.
type AuditRecord struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Actor Actor     `json:"actor"`
	AuditEvent
	// Node is the chain that holds the record: the node id, or
	// <node>~<lane> (node.go); empty in the legacy chain of a schema 1
	// store (omitted, so those hashes still verify).
	Node string `json:"node,omitempty"`
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Key  string `json:"key"`
}

// Audit chains. Every node appends to its own chain (records under
// an/<node>/, head meta/audit-head/<node>), so no two nodes write the same
// key when they audit: on etcd one shared head would make every audited
// transaction of the cluster conflict with every other. A node with write
// lanes (node.go) has a chain per lane, <node>~<lane>, for the same reason
// among its own concurrent transactions; "node" below means a chain. A store of schema
// 1 keeps its single chain (a/<day>/<seq>, head meta/audit-head) as the
// legacy chain: frozen, still verified and listed. Each chain is in seq
// order under its prefix, with the day of a record's time in its key so
// retention can drop a day's bucket of each chain whole.

// legacyChain names the schema 1 chain in reports.
const legacyChain = ""

func auditKey(node string, t time.Time, seq uint64) []byte {
	return fmt.Appendf(nil, "%s%s/%s/%016x", pfxAuditNode, node, t.UTC().Format("20060102"), seq)
}

func legacyAuditKey(t time.Time, seq uint64) []byte {
	return fmt.Appendf(nil, "%s%s/%016x", pfxAudit, t.UTC().Format("20060102"), seq)
}

func auditHeadKey(node string) []byte { return []byte(pfxAuditHead + node) }

// chainPrefix is where a chain's records live.
func chainPrefix(node string) []byte {
	if node == legacyChain {
		return []byte(pfxAudit)
	}
	return []byte(pfxAuditNode + node + "/")
}

func chainHeadKey(node string) []byte {
	if node == legacyChain {
		return keyAuditHead
	}
	return auditHeadKey(node)
}

func chainName(node string) string {
	if node == legacyChain {
		return "legacy chain"
	}
	return "chain " + node
}

func recordHash(r AuditRecord) (string, error) {
	r.Hash = ""
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// appendAudit links a new record to the head of this node's chain inside
// tx.
func appendAudit(tx Tx, now time.Time, actor Actor, ev AuditEvent) error {
	node := nodeOf(tx)
	headKey := auditHeadKey(node)
	var head auditHead
	if err := getJSON(tx, headKey, &head); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	r := AuditRecord{Seq: head.Seq + 1, Time: now.UTC(), Actor: actor, AuditEvent: ev, Node: node, Prev: head.Hash}
	// Encode once: the hash covers the record without its hash field
	// (omitted when empty), and the stored form appends it.
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	b = append(append(b[:len(b)-1], `,"hash":"`...), h+`"}`...)
	key := auditKey(node, r.Time, r.Seq)
	if err := tx.Put(key, b); err != nil {
		return err
	}
	return putJSON(tx, headKey, auditHead{Seq: r.Seq, Hash: h, Key: string(key)})
}

// AuditWrites is the number of writes one appendAudit makes: the record and
// the chain head.
const AuditWrites = 2

// prepareIndexes builds what a store written by an older tokend lacks.
func prepareIndexes(tx Tx) error { return buildCounts(tx) }

// AuditPage is one page of audit records, oldest first.
type AuditPage struct {
	Items      []AuditRecord
	NextCursor string
}

// AuditQuery filters the audit trail. Empty fields match everything.
type AuditQuery struct {
	After  string
	Limit  int
	Actor  string
	UserID string
	Serial string
	Action string
}

// auditScanBudget bounds the records one filtered page reads, so a filter
// that matches little never walks the whole trail in one request: the page
// then holds what the budget found and a cursor to continue from. Keeping
// the hot paths free of per-record filter indexes is worth more than
// complete filtered pages (every authentication writes an audit record).
const auditScanBudget = 10_000

// ListAudit returns audit records after the cursor, oldest first: the
// chains of all nodes merged by record time. A filtered page reads at most
// auditScanBudget records; NextCursor is set whenever more records may
// follow, even if the page is short.
//
// The cursor holds the last key read in each chain, so it is stable: a
// record appended later to any chain comes after it, and no record is
// listed twice. A cursor of a schema 1 tokend (a key of the legacy chain)
// is read as a position in the legacy chain.
func (s *Service) ListAudit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	limit := clampLimit(q.Limit)
	pos, err := parseAuditCursor(q.After)
	if err != nil {
		return AuditPage{}, err
	}
	var page AuditPage
	err = s.store.View(ctx, func(tx Tx) error {
		page = AuditPage{}
		m, err := newAuditMerge(tx, pos, min(limit+1, 500))
		if err != nil {
			return err
		}
		scanned := 0
		for {
			kv, ok, err := m.next()
			if err != nil || !ok {
				return err
			}
			scanned++
			if mayMatch(kv.Value, q) {
				var r AuditRecord
				if err := decodeRecord(tx, kv.Value, &r); err != nil {
					return fmt.Errorf("decode audit %q: %w", kv.Key, err)
				}
				if auditMatches(r, q) {
					page.Items = append(page.Items, r)
				}
			}
			if len(page.Items) == limit || scanned == auditScanBudget {
				page.NextCursor = m.cursor()
				return nil
			}
		}
	})
	return page, err
}

// mayMatch rules a record out without decoding it when an exact-match
// filter value does not occur in its bytes at all.
func mayMatch(raw []byte, q AuditQuery) bool {
	for _, v := range []string{q.UserID, q.Serial, q.Action} {
		if v != "" && !bytes.Contains(raw, []byte(v)) {
			return false
		}
	}
	return true
}

func auditMatches(r AuditRecord, q AuditQuery) bool {
	return (q.Actor == "" || strings.EqualFold(r.Actor.Name, q.Actor) || r.Actor.ID == q.Actor) &&
		(q.UserID == "" || r.UserID == q.UserID) &&
		(q.Serial == "" || r.Serial == q.Serial) &&
		(q.Action == "" || r.Action == q.Action)
}

// parseAuditCursor reads a listing cursor: the last key read in each
// chain, without its prefix, comma-separated. A legacy key has one slash
// (<day>/<seq>), a node chain's two (<node>/<day>/<seq>).
func parseAuditCursor(c string) (map[string][]byte, error) {
	pos := map[string][]byte{}
	if c == "" {
		return pos, nil
	}
	// <yyyymmdd>/<seq %016x>
	daySeq := func(day, seq string) bool {
		_, err := hex.DecodeString(seq)
		return len(day) == 8 && strings.Trim(day, "0123456789") == "" && len(seq) == 16 && err == nil
	}
	for e := range strings.SplitSeq(c, ",") {
		parts := strings.Split(e, "/")
		switch {
		case len(parts) == 2 && daySeq(parts[0], parts[1]):
			pos[legacyChain] = []byte(pfxAudit + e)
		case len(parts) == 3 && validChain(parts[0]) && daySeq(parts[1], parts[2]):
			pos[parts[0]] = []byte(pfxAuditNode + e)
		default:
			return nil, &ValidationError{Problems: []FieldError{{Field: "after", Reason: "not a cursor this listing returned"}}}
		}
	}
	return pos, nil
}

// auditChains returns the nodes that have records (legacyChain first, if
// the legacy chain has any), without reading the records: one Scan per
// chain skips to the next node's prefix.
func auditChains(tx Tx) ([]string, error) {
	var nodes []string
	if kvs, err := tx.Scan([]byte(pfxAudit), nil, 1); err != nil {
		return nil, err
	} else if len(kvs) > 0 {
		nodes = append(nodes, legacyChain)
	}
	var after []byte
	for {
		kvs, err := tx.Scan([]byte(pfxAuditNode), after, 1)
		if err != nil || len(kvs) == 0 {
			return nodes, err
		}
		node, _, _ := strings.Cut(string(kvs[0].Key[len(pfxAuditNode):]), "/")
		nodes = append(nodes, node)
		// '0' follows '/': the first key past every key of this node.
		after = []byte(pfxAuditNode + node + "0")
	}
}

// chainReader reads one chain in key (= seq) order, a batch at a time.
type chainReader struct {
	node   string
	prefix []byte
	after  []byte // the last key handed out, or the cursor's
	buf    []KV
	done   bool
	at     time.Time // time of buf[0]
}

// auditMerge walks every chain at once, always handing out the chain head
// with the earliest time (ties: node name), so records of all nodes come
// in time order while each chain is still read in its own order.
type auditMerge struct {
	tx     Tx
	batch  int
	chains []*chainReader
}

func newAuditMerge(tx Tx, pos map[string][]byte, batch int) (*auditMerge, error) {
	nodes, err := auditChains(tx)
	if err != nil {
		return nil, err
	}
	// A cursor may name a chain whose records retention has dropped since:
	// it still belongs in the next cursor.
	for n := range pos {
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	m := &auditMerge{tx: tx, batch: batch}
	for _, n := range nodes {
		m.chains = append(m.chains, &chainReader{node: n, prefix: chainPrefix(n), after: pos[n]})
	}
	return m, nil
}

// fill reads the chain's next batch if its buffer is empty.
func (m *auditMerge) fill(c *chainReader) error {
	if len(c.buf) > 0 || c.done {
		return nil
	}
	kvs, err := m.tx.Scan(c.prefix, c.after, m.batch)
	if err != nil {
		return err
	}
	c.buf, c.done = kvs, len(kvs) < m.batch
	// Later batches are read for long walks (verify, filtered pages).
	m.batch = 500
	if len(kvs) > 0 {
		c.at = m.recordTime(kvs[0])
	}
	return nil
}

// next returns the next record in time order; ok is false at the end.
func (m *auditMerge) next() (KV, bool, error) {
	var best *chainReader
	for _, c := range m.chains {
		if err := m.fill(c); err != nil {
			return KV{}, false, err
		}
		if len(c.buf) == 0 {
			continue
		}
		// Chains are sorted by node, so the first of equal times wins.
		if best == nil || c.at.Before(best.at) {
			best = c
		}
	}
	if best == nil {
		return KV{}, false, nil
	}
	kv := best.buf[0]
	best.buf, best.after = best.buf[1:], kv.Key
	if len(best.buf) > 0 {
		best.at = m.recordTime(best.buf[0])
	}
	return kv, true, nil
}

// chain returns the node of the chain the last record came from.
func (m *auditMerge) chainOf(key []byte) string {
	if bytes.HasPrefix(key, []byte(pfxAuditNode)) {
		n, _, _ := strings.Cut(string(key[len(pfxAuditNode):]), "/")
		return n
	}
	return legacyChain
}

// cursor is where each chain stands.
func (m *auditMerge) cursor() string {
	var parts []string
	for _, c := range m.chains {
		if c.after != nil {
			k := c.after[len(pfxAudit):]
			if c.node != legacyChain {
				k = c.after[len(pfxAuditNode):]
			}
			parts = append(parts, string(k))
		}
	}
	return strings.Join(parts, ",")
}

// recordTime reads a stored record's time without decoding the rest of
// it; an undecodable record sorts first, so verify reports it at once.
func (m *auditMerge) recordTime(kv KV) time.Time {
	const field = `"time":"`
	if i := bytes.Index(kv.Value, []byte(field)); i >= 0 {
		v := kv.Value[i+len(field):]
		if j := bytes.IndexByte(v, '"'); j >= 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(v[:j])); err == nil {
				return t
			}
		}
	}
	var r AuditRecord
	if decodeRecord(m.tx, kv.Value, &r) == nil {
		return r.Time
	}
	return time.Time{}
}

// AuditReport is the result of verifying the chains.
type AuditReport struct {
	// Records counts the records of every chain.
	Records uint64 `json:"records"`
	// FirstSeq and LastSeq are those of the only chain, when there is one.
	FirstSeq uint64             `json:"first_seq"`
	LastSeq  uint64             `json:"last_seq"`
	Chains   []AuditChainReport `json:"chains"`
	Problems []string           `json:"problems"`
}

// AuditChainReport is what verify found in one chain.
type AuditChainReport struct {
	// Node names the chain: the node id that writes it, or <node>~<lane>;
	// empty for the legacy chain of a schema 1 store.
	Node     string    `json:"node"`
	Records  uint64    `json:"records"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// ErrAuditBroken is returned when an audit chain does not verify.
var ErrAuditBroken = errors.New("audit chain broken")

// VerifyAudit walks every chain (all of them at once, merged by time, as
// ListAudit lists them) and reports every altered, removed or reordered
// record and every head that does not match its chain's last record. It
// returns ErrAuditBroken (wrapped) if any is found.
func (s *Service) VerifyAudit(ctx context.Context) (AuditReport, error) {
	var rep AuditReport
	err := s.store.View(ctx, func(tx Tx) error {
		rep = AuditReport{}
		type chainState struct {
			AuditChainReport
			prevHash string
		}
		state := map[string]*chainState{}
		m, err := newAuditMerge(tx, nil, 1000)
		if err != nil {
			return err
		}
		for _, c := range m.chains {
			state[c.node] = &chainState{AuditChainReport: AuditChainReport{Node: c.node}}
		}
		// A chain whose every record was removed still has its head.
		heads, err := tx.Scan([]byte(pfxAuditHead), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range heads {
			if n := string(kv.Key[len(pfxAuditHead):]); state[n] == nil {
				state[n] = &chainState{AuditChainReport: AuditChainReport{Node: n}}
			}
		}
		if ok, err := exists(tx, keyAuditHead); err != nil {
			return err
		} else if ok && state[legacyChain] == nil {
			state[legacyChain] = &chainState{AuditChainReport: AuditChainReport{Node: legacyChain}}
		}
		for {
			kv, ok, err := m.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			node := m.chainOf(kv.Key)
			c, name := state[node], chainName(node)
			var r AuditRecord
			if err := decodeRecord(tx, kv.Value, &r); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record %s: undecodable", name, kv.Key))
				continue
			}
			want := auditKey(node, r.Time, r.Seq)
			if node == legacyChain {
				want = legacyAuditKey(r.Time, r.Seq)
			}
			if !bytes.Equal(kv.Key, want) || r.Node != node {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record %d: stored under the wrong key", name, r.Seq))
			}
			if h, _ := recordHash(r); h != r.Hash {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record %d: altered (hash mismatch)", name, r.Seq))
			}
			if c.Records == 0 {
				c.FirstSeq, c.First = r.Seq, r.Time
				if r.Seq != 1 {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: records 1..%d missing", name, r.Seq-1))
				}
			} else {
				if r.Seq != c.LastSeq+1 {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: records %d..%d missing", name, c.LastSeq+1, r.Seq-1))
				}
				if r.Prev != c.prevHash {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record %d: does not link to record %d", name, r.Seq, c.LastSeq))
				}
			}
			c.Records++
			rep.Records++
			c.LastSeq, c.Last, c.prevHash = r.Seq, r.Time, r.Hash
		}
		for _, n := range slices.Sorted(func(yield func(string) bool) {
			for n := range state {
				if !yield(n) {
					return
				}
			}
		}) {
			c := state[n]
			var head auditHead
			if err := getJSON(tx, chainHeadKey(n), &head); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if head.Seq != c.LastSeq || head.Hash != c.prevHash {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: head says record %d, last record found is %d", chainName(n), head.Seq, c.LastSeq))
			}
			rep.Chains = append(rep.Chains, c.AuditChainReport)
		}
		if len(rep.Chains) == 1 {
			rep.FirstSeq, rep.LastSeq = rep.Chains[0].FirstSeq, rep.Chains[0].LastSeq
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("%w: %d problem(s)", ErrAuditBroken, len(rep.Problems))
	}
	return rep, nil
}

// Audit records an outcome decided outside a Service transaction (for
// example a refused CT-KIP request or a failed API authentication).
func (s *Service) Audit(ctx context.Context, ev AuditEvent) error {
	now := s.now().UTC()
	return s.store.Update(ctx, func(tx Tx) error { return appendAudit(tx, now, ActorFrom(ctx), ev) })
}
