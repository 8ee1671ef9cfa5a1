package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// AuditRecord is one link of the hash chain. Hash covers Prev and every
// other field, so altering or removing a record breaks the chain.
type AuditRecord struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Actor Actor     `json:"actor"`
	AuditEvent
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Key  string `json:"key"`
}

func auditKey(t time.Time, seq uint64) []byte {
	return fmt.Appendf(nil, "%s%s/%016x", pfxAudit, t.UTC().Format("20060102"), seq)
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

// appendAudit links a new record to the chain head inside tx.
func appendAudit(tx Tx, now time.Time, actor Actor, ev AuditEvent) error {
	var head auditHead
	if err := getJSON(tx, keyAuditHead, &head); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	r := AuditRecord{Seq: head.Seq + 1, Time: now.UTC(), Actor: actor, AuditEvent: ev, Prev: head.Hash}
	// Encode once: the hash covers the record without its hash field
	// (omitted when empty), and the stored form appends it.
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	b = append(append(b[:len(b)-1], `,"hash":"`...), h+`"}`...)
	key := auditKey(r.Time, r.Seq)
	if err := tx.Put(key, b); err != nil {
		return err
	}
	return putJSON(tx, keyAuditHead, auditHead{Seq: r.Seq, Hash: h, Key: string(key)})
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

// ListAudit returns audit records after the cursor, oldest first. A filtered
// page reads at most auditScanBudget records; NextCursor is set whenever
// more records may follow, even if the page is short.
func (s *Service) ListAudit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	limit := clampLimit(q.Limit)
	var page AuditPage
	err := s.store.View(ctx, func(tx Tx) error {
		page = AuditPage{}
		var after []byte
		if q.After != "" {
			after = []byte(pfxAudit + q.After)
		}
		scanned := 0
		for {
			kvs, err := tx.Scan([]byte(pfxAudit), after, 500)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				after = kv.Key
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
					page.NextCursor = string(kv.Key[len(pfxAudit):])
					return nil
				}
			}
			if len(kvs) < 500 {
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

// AuditReport is the result of verifying the chain.
type AuditReport struct {
	Records  uint64   `json:"records"`
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	Problems []string `json:"problems"`
}

// ErrAuditBroken is returned when the audit chain does not verify.
var ErrAuditBroken = errors.New("audit chain broken")

// VerifyAudit walks the whole chain and reports every altered, removed or
// reordered record. It returns ErrAuditBroken (wrapped) if any is found.
func (s *Service) VerifyAudit(ctx context.Context) (AuditReport, error) {
	var rep AuditReport
	err := s.store.View(ctx, func(tx Tx) error {
		rep = AuditReport{}
		var head auditHead
		if err := getJSON(tx, keyAuditHead, &head); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		var prevHash string
		var prevSeq uint64
		var after []byte
		for {
			kvs, err := tx.Scan([]byte(pfxAudit), after, 1000)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				after = kv.Key
				var r AuditRecord
				if err := decodeRecord(tx, kv.Value, &r); err != nil {
					rep.Problems = append(rep.Problems, fmt.Sprintf("record %s: undecodable", kv.Key))
					continue
				}
				if !bytes.Equal(kv.Key, auditKey(r.Time, r.Seq)) {
					rep.Problems = append(rep.Problems, fmt.Sprintf("record %d: stored under the wrong key", r.Seq))
				}
				if h, _ := recordHash(r); h != r.Hash {
					rep.Problems = append(rep.Problems, fmt.Sprintf("record %d: altered (hash mismatch)", r.Seq))
				}
				if rep.Records == 0 {
					rep.FirstSeq = r.Seq
					if r.Seq != 1 {
						rep.Problems = append(rep.Problems, fmt.Sprintf("records 1..%d missing", r.Seq-1))
					}
				} else {
					if r.Seq != prevSeq+1 {
						rep.Problems = append(rep.Problems, fmt.Sprintf("records %d..%d missing", prevSeq+1, r.Seq-1))
					}
					if r.Prev != prevHash {
						rep.Problems = append(rep.Problems, fmt.Sprintf("record %d: does not link to record %d", r.Seq, prevSeq))
					}
				}
				rep.Records++
				prevSeq, prevHash = r.Seq, r.Hash
				rep.LastSeq = r.Seq
			}
			if len(kvs) < 1000 {
				break
			}
		}
		if head.Seq != prevSeq || head.Hash != prevHash {
			rep.Problems = append(rep.Problems, fmt.Sprintf("chain head says record %d, last record found is %d", head.Seq, prevSeq))
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
