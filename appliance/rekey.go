package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tokend/appliance/seal"
)

// Master key rotation (tokend rekey) re-seals every sealed value of a store
// under a new master key, offline, in chunks of at most MaxTxWrites writes.
//
// The journal meta/rekey is written first and names both keys by their
// check values. The sealed values are visited in one fixed order (the
// sealedFields below, each in key order); the journal's cursor says how far
// the rotation got, and it moves in the same transaction as the values it
// covers, so after a crash at any point every value is sealed under exactly
// one key and the journal says which: values up to the cursor under the new
// key, the rest under the old. meta/keycheck switches to the new key in the
// last transaction, which also deletes the journal.
//
// A rollback walks the same order with a second cursor from the start to the
// forward cursor, sealing values back under the old key: values up to the
// back cursor are under the old key, those between the two cursors under
// the new one, the rest under the old one.
//
// Keyed hashes (activation codes, API tokens, agent access keys, SCIM
// tokens, emergency codes) cannot be recomputed, since their secrets are not
// stored. The hash key is therefore kept in the store, sealed
// (meta/hash-key), and re-sealed like any other value: codes and tokens
// issued before a rotation keep working after it.

// Errors of a master key rotation.
var (
	// ErrRekeyInProgress: the store is in the middle of a rotation; only
	// tokend rekey (to finish it or roll it back) may open it.
	ErrRekeyInProgress = errors.New("a master key rotation (tokend rekey) is in progress")
	// ErrRekeyMismatch: the keys given are not the two keys of the rotation
	// in progress.
	ErrRekeyMismatch = errors.New("the keys given are not the keys of the rotation in progress")
	// ErrSameKey: the new key is the key the store holds.
	ErrSameKey = errors.New("the new master key is the key the store holds already")
	// ErrAlreadyRekeyed: the store holds the new key and no rotation is in
	// progress (a finished rotation run again).
	ErrAlreadyRekeyed = errors.New("the store holds the new master key already")
	// ErrNoRekey: no rotation is in progress (rollback or resume asked).
	ErrNoRekey = errors.New("no master key rotation is in progress")
	// ErrRollingBack: a rollback is in progress; it can only be finished.
	ErrRollingBack = errors.New("a rollback of the master key rotation is in progress")
)

var (
	keyRekey   = []byte("meta/rekey")
	keyHashKey = []byte(seal.HashKeyAAD)
)

// Rotation states in the journal.
const (
	RekeyForward  = "forward"
	RekeyRollback = "rollback"
)

// sealedField is one kind of sealed value: the records under prefix (or the
// one key exact) and the JSON field that holds the sealed bytes ("" when the
// value itself is sealed). aad rebuilds the associated data from the part of
// the key after prefix. Every place that seals must be listed here, or a
// rotation leaves it under the old key (TestRekeySealsEverySealCallSite).
type sealedField struct {
	name   string
	prefix string
	exact  bool
	field  string
	aad    func(id string) string
}

var sealedFields = []sealedField{
	{name: "CT-KIP server key", prefix: string(keyCTKIP), exact: true, aad: func(string) string { return ctkipKeyAAD }},
	{name: "hash key", prefix: string(keyHashKey), exact: true, aad: func(string) string { return seal.HashKeyAAD }},
	{name: "token seeds", prefix: pfxToken, field: "seed", aad: seedAAD},
	{name: "RADIUS secrets", prefix: pfxAgent, field: "secret", aad: agentSecretAAD},
	{name: "LDAP bind passwords", prefix: pfxSource, field: "sealed_bind_password", aad: bindPasswordAAD},
	// Rollout deliveries keep their activation code sealed until it is
	// handed out: roi/<rollout>/<seq %06d>, AAD codeAAD(rollout, seq)
	// (rollouts.go), which is the key's tail between fixed words.
	{name: "rollout activation codes", prefix: "roi/", field: "code", aad: func(id string) string { return "rollout/" + id + "/activation-code" }},
	// CTF links and token files of ctf and file rollouts: linkAAD, fileAAD.
	{name: "rollout CTF links", prefix: "roi/", field: "link", aad: func(id string) string { return "rollout/" + id + "/link" }},
	{name: "rollout token files", prefix: "roi/", field: "file", aad: func(id string) string { return "rollout/" + id + "/file" }},
	// CT-KIP sessions between their two POSTs (ctkipsessions.go).
	{name: "CT-KIP sessions", prefix: pfxCTKIPSession, field: "sealed", aad: ctkipSessionAAD},
}

// rekeyCursor is a position in the visiting order: every value of the
// fields before Phase, and of field Phase the keys up to After ("" none).
type rekeyCursor struct {
	Phase int    `json:"phase"`
	After string `json:"after,omitempty"`
}

func (c rekeyCursor) less(d rekeyCursor) bool {
	return c.Phase < d.Phase || c.Phase == d.Phase && c.After < d.After
}

func (c rekeyCursor) end() bool { return c.Phase >= len(sealedFields) }

type rekeyJournal struct {
	State     string      `json:"state"`
	OldCheck  []byte      `json:"old_check"`
	NewCheck  []byte      `json:"new_check"`
	Forward   rekeyCursor `json:"forward"`
	Back      rekeyCursor `json:"back"`
	Resealed  int         `json:"resealed"`
	Restored  int         `json:"restored"`
	StartedAt time.Time   `json:"started_at"`
}

// RekeyStatus is what a store says about its master key.
type RekeyStatus struct {
	// KeyCheck is the store's key check value: the key it holds outside a
	// rotation, and the old key during one (seal.Fingerprint names it).
	KeyCheck []byte
	// State is "" (no rotation), RekeyForward or RekeyRollback.
	State string
	// OldCheck and NewCheck name the two keys of a rotation in progress.
	OldCheck, NewCheck []byte
	// Field names the kind of sealed value the rotation (or its rollback)
	// is at; "" when it is past the last.
	Field string
	// Resealed counts values sealed under the new key so far, Restored
	// those a rollback sealed back under the old one.
	Resealed, Restored int
	StartedAt          time.Time
}

func (j *rekeyJournal) status(check []byte) RekeyStatus {
	st := RekeyStatus{KeyCheck: check}
	if j == nil {
		return st
	}
	st.State, st.OldCheck, st.NewCheck = j.State, j.OldCheck, j.NewCheck
	st.Resealed, st.Restored, st.StartedAt = j.Resealed, j.Restored, j.StartedAt
	c := j.Forward
	if j.State == RekeyRollback {
		c = j.Back
	}
	if !c.end() {
		st.Field = sealedFields[c.Phase].name
	}
	return st
}

// RekeyConfig is what a rotation or its rollback needs. Old and New are the
// sealers of the old and the new master key.
type RekeyConfig struct {
	Store    Store
	Old, New *seal.Sealer
	Now      func() time.Time
	// Actor is who the audit records name (the command line).
	Actor Actor
	// Chunk bounds the values re-sealed per transaction (at most, and by
	// default, MaxTxWrites-1: the journal is the last write).
	Chunk int
	// ResumeOnly refuses to start a rotation: one must be in progress.
	ResumeOnly bool
	// Progress, if set, is called after every committed transaction.
	Progress func(RekeyStatus)
	// Check, if set, is called once the journal is in place and before
	// every later transaction (each re-seal, and the one that finishes);
	// an error stops the rotation there, resumable, and is returned. The
	// command uses it to stop when a tokend node appears on a shared
	// store: a node that started before the journal was written is seen
	// before anything is re-sealed.
	Check func() error
}

func (c *RekeyConfig) defaults() error {
	if c.Store == nil || c.Old == nil || c.New == nil {
		return errors.New("appliance: rekey needs a Store and both sealers")
	}
	if c.Chunk <= 0 || c.Chunk > MaxTxWrites-1 {
		c.Chunk = MaxTxWrites - 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// rekeyBytes bounds the bytes re-written per transaction, well inside
// MaxTxBytes whatever the record sizes.
const rekeyBytes = MaxTxBytes / 2

// ReadRekeyStatus reports which key a store holds and any rotation in
// progress. It needs no key.
func ReadRekeyStatus(ctx context.Context, st Store) (RekeyStatus, error) {
	var out RekeyStatus
	err := st.View(ctx, func(tx Tx) error {
		check, j, err := readRekeyState(tx)
		if err != nil {
			return err
		}
		out = j.status(check)
		return nil
	})
	return out, err
}

func readRekeyState(tx Tx) ([]byte, *rekeyJournal, error) {
	check, err := tx.Get(keyKeyCheck)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, fmt.Errorf("the store was never initialised by tokend: %w", ErrInvalidState)
	}
	if err != nil {
		return nil, nil, err
	}
	var j rekeyJournal
	switch err := getJSON(tx, keyRekey, &j); {
	case errors.Is(err, ErrNotFound):
		return check, nil, nil
	case err != nil:
		return nil, nil, err
	}
	return check, &j, nil
}

// rekeyGuardTx refuses a store in the middle of a rotation (Init and
// CheckStore): its values are under two keys until tokend rekey finishes or
// rolls back.
func rekeyGuardTx(tx Tx) error {
	if ok, err := exists(tx, keyRekey); !ok {
		return err
	}
	return fmt.Errorf("%w on this store: run tokend rekey again with the same two keys to finish it, or tokend rekey --rollback to return to the old key", ErrRekeyInProgress)
}

// loadHashKey makes the Service hash with the store's carried hash key, if
// a rotation left one (meta/hash-key).
func (s *Service) loadHashKey(ctx context.Context) error {
	var sealed []byte
	err := s.store.View(ctx, func(tx Tx) error {
		v, err := tx.Get(keyHashKey)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		sealed = v
		return err
	})
	if err != nil || sealed == nil {
		return err
	}
	sl, err := s.sealer.WithSealedHashKey(sealed)
	if err != nil {
		return err
	}
	s.sealer = sl
	return nil
}

// checkJournal matches a rotation in progress against the keys given.
func checkJournal(j *rekeyJournal, old, next *seal.Sealer) error {
	if old.Verify(j.OldCheck) != nil || next.Verify(j.NewCheck) != nil {
		return fmt.Errorf("%w (it rotates key %s to key %s; the keys given are %s and %s)", ErrRekeyMismatch,
			seal.Fingerprint(j.OldCheck), seal.Fingerprint(j.NewCheck),
			seal.Fingerprint(old.CheckValue()), seal.Fingerprint(next.CheckValue()))
	}
	return nil
}

// Rekey re-seals every sealed value of the store under cfg.New, starting a
// rotation or resuming the one in progress, and switches the store's key
// check to the new key at the end. It is safe to interrupt at any point
// (the process may be killed): run it again with the same keys to finish,
// or RollbackRekey to undo. The store must not be in use by a Service.
func Rekey(ctx context.Context, cfg RekeyConfig) (RekeyStatus, error) {
	if err := cfg.defaults(); err != nil {
		return RekeyStatus{}, err
	}
	if bytes.Equal(cfg.Old.CheckValue(), cfg.New.CheckValue()) {
		return RekeyStatus{}, ErrSameKey
	}
	// Start: the journal, and the hash key sealed under the old key if the
	// store derives it from the master key so far.
	nonce, err := cfg.Old.Nonce()
	if err != nil {
		return RekeyStatus{}, err
	}
	now := cfg.Now().UTC()
	err = cfg.Store.Update(ctx, func(tx Tx) error {
		check, j, err := readRekeyState(tx)
		if err != nil {
			return err
		}
		if j != nil {
			if err := checkJournal(j, cfg.Old, cfg.New); err != nil {
				return err
			}
			if j.State == RekeyRollback {
				return fmt.Errorf("%w: finish it with tokend rekey --rollback", ErrRollingBack)
			}
			return nil
		}
		if cfg.New.Verify(check) == nil {
			return ErrAlreadyRekeyed
		}
		if cfg.ResumeOnly {
			return ErrNoRekey
		}
		if err := cfg.Old.Verify(check); err != nil {
			return fmt.Errorf("the old master key is not the store's (the store holds key %s): %w", seal.Fingerprint(check), err)
		}
		if v, err := tx.Get(keySchema); err != nil || string(v) != schemaVersion {
			return fmt.Errorf("store schema version %q, this tokend rotates %q: %w", v, schemaVersion, ErrInvalidState)
		}
		if ok, err := exists(tx, keyHashKey); err != nil {
			return err
		} else if !ok {
			if err := tx.Put(keyHashKey, cfg.Old.SealHashKey(nonce)); err != nil {
				return err
			}
		}
		j = &rekeyJournal{State: RekeyForward, OldCheck: cfg.Old.CheckValue(), NewCheck: cfg.New.CheckValue(), StartedAt: now}
		if err := putJSON(tx, keyRekey, j); err != nil {
			return err
		}
		return appendAudit(tx, now, cfg.Actor, AuditEvent{Action: "masterkey.rekey.start", Outcome: OutcomeSuccess,
			Detail: "from key " + seal.Fingerprint(j.OldCheck) + " to key " + seal.Fingerprint(j.NewCheck)})
	})
	if err != nil {
		return RekeyStatus{}, err
	}
	return runRekey(ctx, cfg, RekeyForward)
}

// RollbackRekey returns a store in the middle of a rotation to the old key:
// it seals the values the rotation re-sealed back under cfg.Old and deletes
// the journal. Like Rekey, it is safe to interrupt and run again.
func RollbackRekey(ctx context.Context, cfg RekeyConfig) (RekeyStatus, error) {
	if err := cfg.defaults(); err != nil {
		return RekeyStatus{}, err
	}
	err := cfg.Store.Update(ctx, func(tx Tx) error {
		check, j, err := readRekeyState(tx)
		if err != nil {
			return err
		}
		if j == nil {
			if cfg.New.Verify(check) == nil {
				return fmt.Errorf("%w: the rotation finished and the store holds the new key %s; to go back, rotate again from it to the old key",
					ErrNoRekey, seal.Fingerprint(check))
			}
			return fmt.Errorf("%w: the store holds key %s", ErrNoRekey, seal.Fingerprint(check))
		}
		if err := checkJournal(j, cfg.Old, cfg.New); err != nil {
			return err
		}
		if j.State == RekeyRollback {
			return nil
		}
		j.State, j.Back = RekeyRollback, rekeyCursor{}
		return putJSON(tx, keyRekey, j)
	})
	if err != nil {
		return RekeyStatus{}, err
	}
	return runRekey(ctx, cfg, RekeyRollback)
}

// runRekey moves the journal's cursor chunk by chunk to its end and then
// finishes the rotation or the rollback.
func runRekey(ctx context.Context, cfg RekeyConfig, state string) (RekeyStatus, error) {
	from, to := cfg.Old, cfg.New
	if state == RekeyRollback {
		from, to = cfg.New, cfg.Old
	}
	for {
		if cfg.Check != nil {
			if err := cfg.Check(); err != nil {
				return RekeyStatus{}, err
			}
		}
		// Nonces are drawn outside the transaction function, which may run
		// twice; a rerun seals the same values with the same nonces.
		nonces := make([][]byte, cfg.Chunk)
		for i := range nonces {
			n, err := to.Nonce()
			if err != nil {
				return RekeyStatus{}, err
			}
			nonces[i] = n
		}
		now := cfg.Now().UTC()
		var st RekeyStatus
		var finished bool
		err := cfg.Store.Update(ctx, func(tx Tx) error {
			check, j, err := readRekeyState(tx)
			if err != nil {
				return err
			}
			if j == nil || j.State != state {
				return fmt.Errorf("the rotation's journal changed under the rekey: %w", ErrConflict)
			}
			if err := checkJournal(j, cfg.Old, cfg.New); err != nil {
				return err
			}
			cur, stop := j.Forward, (*rekeyCursor)(nil)
			if state == RekeyRollback {
				cur, stop = j.Back, &j.Forward
			}
			if cur.end() || stop != nil && !cur.less(*stop) {
				finished = true
				st = j.status(check)
				st.State, st.Field = "", ""
				if state == RekeyForward {
					st.KeyCheck = j.NewCheck
				}
				return finishRekey(tx, j, now, cfg.Actor)
			}
			next, n, err := resealChunk(tx, cur, stop, from, to, nonces)
			if err != nil {
				return err
			}
			if state == RekeyRollback {
				j.Back, j.Restored = next, j.Restored+n
			} else {
				j.Forward, j.Resealed = next, j.Resealed+n
			}
			st = j.status(check)
			return putJSON(tx, keyRekey, j)
		})
		if err != nil {
			return RekeyStatus{}, err
		}
		if finished {
			return st, nil
		}
		if cfg.Progress != nil {
			cfg.Progress(st)
		}
	}
}

// finishRekey ends a rotation (the key check becomes the new key's) or a
// rollback (the key check never changed), in one transaction.
func finishRekey(tx Tx, j *rekeyJournal, now time.Time, actor Actor) error {
	ev := AuditEvent{Action: "masterkey.rekey", Outcome: OutcomeSuccess,
		Detail: fmt.Sprintf("from key %s to key %s; %d sealed values re-sealed", seal.Fingerprint(j.OldCheck), seal.Fingerprint(j.NewCheck), j.Resealed)}
	if j.State == RekeyRollback {
		ev.Action = "masterkey.rekey.rollback"
		ev.Detail = fmt.Sprintf("back to key %s from key %s; %d sealed values restored", seal.Fingerprint(j.OldCheck), seal.Fingerprint(j.NewCheck), j.Restored)
	} else if err := tx.Put(keyKeyCheck, j.NewCheck); err != nil {
		return err
	}
	if err := tx.Delete(keyRekey); err != nil {
		return err
	}
	return appendAudit(tx, now, actor, ev)
}

// resealChunk re-seals, from one key to the other, the sealed values after
// cur (and not after stop, if set): at most len(nonces) of them and
// rekeyBytes of records. It returns the new cursor and how many values it
// re-sealed.
func resealChunk(tx Tx, cur rekeyCursor, stop *rekeyCursor, from, to *seal.Sealer, nonces [][]byte) (rekeyCursor, int, error) {
	written, size := 0, 0
	// Records without a sealed value are passed over without a write; the
	// scan budget keeps a chunk of them bounded too.
	scanned, scanBudget := 0, 10*len(nonces)
	for written < len(nonces) && scanned < scanBudget {
		if cur.end() || stop != nil && !cur.less(*stop) {
			return cur, written, nil
		}
		f := sealedFields[cur.Phase]
		limit := len(nonces) - written
		var after []byte
		if cur.After != "" {
			after = []byte(cur.After)
		}
		kvs, err := tx.Scan([]byte(f.prefix), after, limit)
		if err != nil {
			return cur, written, err
		}
		scanned += len(kvs)
		for _, kv := range kvs {
			key := string(kv.Key)
			if stop != nil && stop.Phase == cur.Phase && key > stop.After {
				return *stop, written, nil
			}
			if size > 0 && size+len(kv.Key)+len(kv.Value) > rekeyBytes {
				return cur, written, nil
			}
			if f.exact && key != f.prefix {
				cur.After = key
				continue
			}
			val, changed, err := resealValue(f, key, kv.Value, from, to, nonces[written])
			if err != nil {
				return cur, written, err
			}
			if changed {
				if err := tx.Put(kv.Key, val); err != nil {
					return cur, written, err
				}
				written++
				size += len(kv.Key) + len(val)
			}
			cur.After = key
		}
		if len(kvs) < limit {
			cur = rekeyCursor{Phase: cur.Phase + 1}
		}
	}
	return cur, written, nil
}

// ErrRekeyOpen means a sealed value did not open under the key the journal
// says holds it: the store is damaged (or was changed outside tokend).
var ErrRekeyOpen = errors.New("a sealed value does not open under the key that should hold it")

// resealValue opens one stored value's sealed bytes with from and seals them
// with to under the same associated data. changed is false for a record
// that holds no sealed value.
func resealValue(f sealedField, key string, value []byte, from, to *seal.Sealer, nonce []byte) (out []byte, changed bool, err error) {
	aad := f.aad(key[len(f.prefix):])
	if f.field == "" {
		pt, err := from.Open(value, aad)
		if err != nil {
			return nil, false, fmt.Errorf("%s %s: %w", f.name, key, ErrRekeyOpen)
		}
		return to.SealNonce(nonce, pt, aad), true, nil
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, false, fmt.Errorf("decode %q: %w", key, err)
	}
	raw, ok := rec[f.field]
	if !ok || string(raw) == "null" {
		return nil, false, nil
	}
	var sealed []byte
	if err := json.Unmarshal(raw, &sealed); err != nil {
		return nil, false, fmt.Errorf("decode %q field %s: %w", key, f.field, err)
	}
	if len(sealed) == 0 {
		return nil, false, nil
	}
	pt, err := from.Open(sealed, aad)
	if err != nil {
		return nil, false, fmt.Errorf("%s %s: %w", f.name, key, ErrRekeyOpen)
	}
	if rec[f.field], err = json.Marshal(to.SealNonce(nonce, pt, aad)); err != nil {
		return nil, false, err
	}
	// Every other field is kept as stored, whatever this tokend knows of it.
	out, err = json.Marshal(rec)
	return out, err == nil, err
}
