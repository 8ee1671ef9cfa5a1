package appliance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Key layout. Every record and its index entries are written in the same
// transaction; index values carry just enough to filter and count without
// decoding the records they point at.
//
//	meta/schema                      schema version
//	meta/keycheck                    master key check value
//	meta/hash-key                    the keyed-hash key, sealed (written by the first rekey: rekey.go)
//	meta/rekey                       journal of a master key rotation in progress (rekey.go)
//	meta/audit-head/<node>           {seq, hash, key} of the newest record of a node's chain
//	meta/audit-head                  head of the legacy chain (schema 1; frozen since)
//	meta/counters/<node>/tokens, meta/counters/<node>/users  a node's share of the
//	                                 inventory counters, summed when read (counters.go)
//	meta/count/tokens, meta/count/users  schema 1 counters, moved to the migrating node's share
//	u/<id>                           User
//	ui/n/<login>                     id \0 source \0 active (unique, case-folded)
//	ui/e/<email> \0 <id>             id \0 source \0 login (case-folded)
//	ui/d/<display> \0 <id>           id \0 source \0 login \0 e-mail (case-folded; older
//	                                 entries lack the e-mail)
//	ui/x/<source> \0 <external id> \0 <id>  id             (unique per source except SCIM
//	                                 ones; older entries lack \0 <id>: extindex.go)
//	t/<serial>                       Token
//	ti/s/<serial>                    kind \0 state \0 user id \0 manager \0 provisioned
//	ti/u/<user id>/<serial>          ""                    (tokens by user)
//	p/<name>                         Profile
//	ac/<hex keyed hash>              ActivationCode
//	k/<id>                           APIToken
//	ki/<hex hash>                    id
//	j/<id>                           ImportJob
//	ji/<file sha256 hex>             id of the interrupted import of that file (imports.go)
//	an/<node>/<yyyymmdd>/<seq %016x>  AuditRecord of a node's chain (audit.go)
//	a/<yyyymmdd>/<seq %016x>         AuditRecord of the legacy chain (schema 1)
//
// Schema 2 (per-node audit chains and counter shards) replaced schema 1's
// single chain head and counter records, which every audited transaction
// wrote: on etcd, keys every node writes make the nodes' transactions
// conflict. Init migrates a schema 1 store (migrateSchema); the version
// keeps a schema 1 tokend from appending to the frozen legacy chain.
const schemaVersion = "2"

// schemaV1 is the version Init migrates from and CheckStore still reads.
const schemaV1 = "1"

var (
	keySchema    = []byte("meta/schema")
	keyKeyCheck  = []byte("meta/keycheck")
	keyAuditHead = []byte("meta/audit-head")
)

const (
	pfxUser        = "u/"
	pfxUserLogin   = "ui/n/"
	pfxUserEmail   = "ui/e/"
	pfxUserDisplay = "ui/d/"
	pfxUserExt     = "ui/x/"
	pfxToken       = "t/"
	pfxTokenState  = "ti/s/"
	pfxTokenUser   = "ti/u/"
	pfxProfile     = "p/"
	pfxCode        = "ac/"
	pfxAPIToken    = "k/"
	pfxAPITokenIdx = "ki/"
	pfxJob         = "j/"
	pfxAudit       = "a/"
	pfxAuditNode   = "an/"
	pfxAuditHead   = "meta/audit-head/"
)

// fold is the key form of names, e-mails and searches: case-insensitive
// and NFC, so composed and decomposed input find the same record.
func fold(s string) string { return norm.NFC.String(strings.ToLower(strings.TrimSpace(s))) }

func userKey(id string) []byte     { return []byte(pfxUser + id) }
func loginKey(login string) []byte { return []byte(pfxUserLogin + fold(login)) }
func emailKey(u *User) []byte      { return []byte(pfxUserEmail + fold(u.Email) + "\x00" + u.ID) }
func displayKey(u *User) []byte    { return []byte(pfxUserDisplay + fold(u.DisplayName) + "\x00" + u.ID) }
func extKey(source, ext string) []byte {
	return []byte(pfxUserExt + source + "\x00" + ext)
}
func tokenKey(serial string) []byte      { return []byte(pfxToken + serial) }
func tokenStateKey(serial string) []byte { return []byte(pfxTokenState + serial) }
func tokenUserKey(userID, serial string) []byte {
	return []byte(pfxTokenUser + userID + "/" + serial)
}
func profileKey(name string) []byte { return []byte(pfxProfile + name) }
func codeKey(hash []byte) []byte    { return []byte(pfxCode + hex.EncodeToString(hash)) }
func apiTokenKey(id string) []byte  { return []byte(pfxAPIToken + id) }
func apiTokenIdxKey(hash []byte) []byte {
	return []byte(pfxAPITokenIdx + hex.EncodeToString(hash))
}
func jobKey(id string) []byte { return []byte(pfxJob + id) }

// resumeKey finds the interrupted import of a file by its SHA-256; "ji/"
// does not start with pfxJob, so listing jobs never meets it.
func resumeKey(sum string) []byte { return []byte("ji/" + sum) }

// RecordDecoder decodes one stored record into v with the semantics of
// encoding/json's Unmarshal. Records are JSON that tokend itself wrote with
// encoding/json; main may pass a faster decoder (Config.DecodeRecord), since
// decoding records is a large share of the CPU of a CT-KIP exchange or a
// verification.
type RecordDecoder func(data []byte, v any) error

// decodingStore hands every transaction function a decodingTx.
type decodingStore struct {
	Store
	decode RecordDecoder // nil: encoding/json
	node   string
	lanes  *writeLanes // nil: every Update writes the node's own chain (node.go)
}

func (d decodingStore) View(ctx context.Context, fn func(Tx) error) error {
	return d.Store.View(ctx, func(tx Tx) error { return fn(decodingTx{tx, d.decode, d.node}) })
}

func (d decodingStore) Update(ctx context.Context, fn func(Tx) error) error {
	chain := d.node
	if d.lanes != nil {
		i, err := d.lanes.take(ctx)
		if err != nil {
			return err
		}
		defer d.lanes.give(i)
		chain = laneChain(d.node, i)
	}
	return d.Store.Update(ctx, func(tx Tx) error { return fn(decodingTx{tx, d.decode, chain}) })
}

// decodingTx carries the Service's record decoder and node id to the
// record helpers.
type decodingTx struct {
	Tx
	decode RecordDecoder
	node   string
}

// decodeRecord decodes a stored record with the decoder that tx carries
// (under any counterTx), or with encoding/json.
func decodeRecord(tx Tx, b []byte, v any) error {
	for {
		switch t := tx.(type) {
		case decodingTx:
			if t.decode == nil {
				return json.Unmarshal(b, v)
			}
			return t.decode(b, v)
		case *counterTx:
			tx = t.Tx
		default:
			return json.Unmarshal(b, v)
		}
	}
}

// nodeOf returns the chain (and counter share) tx writes: the Service's
// node id (Config.NodeID), or one of its lanes (node.go), or DefaultNodeID
// for a bare Tx.
func nodeOf(tx Tx) string {
	for {
		switch t := tx.(type) {
		case decodingTx:
			return t.node
		case *counterTx:
			tx = t.Tx
		default:
			return DefaultNodeID
		}
	}
}

func getJSON(tx Tx, key []byte, v any) error {
	b, err := tx.Get(key)
	if err != nil {
		return err
	}
	if err := decodeRecord(tx, b, v); err != nil {
		return fmt.Errorf("decode %q: %w", key, err)
	}
	return nil
}

func putJSON(tx Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return tx.Put(key, b)
}

// listJSON decodes every record under prefix, in key order, in one
// snapshot (for the small collections: profiles, API tokens, admins,
// identity sources).
func listJSON[T any](ctx context.Context, st Store, prefix string) ([]T, error) {
	var out []T
	err := st.View(ctx, func(tx Tx) error {
		kvs, err := tx.Scan([]byte(prefix), nil, 0)
		if err != nil {
			return err
		}
		out = make([]T, len(kvs))
		for i, kv := range kvs {
			if err := decodeRecord(tx, kv.Value, &out[i]); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
		}
		return nil
	})
	return out, err
}

// scanAll calls fn for every pair under prefix, a page at a time, so a large
// store is not held in memory at once.
func scanAll(tx Tx, prefix string, fn func(KV) error) error {
	var after []byte
	for {
		kvs, err := tx.Scan([]byte(prefix), after, 5000)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := fn(kv); err != nil {
				return err
			}
			after = kv.Key
		}
		if len(kvs) < 5000 {
			return nil
		}
	}
}

// exists reports whether key is present.
func exists(tx Tx, key []byte) (bool, error) {
	_, err := tx.Get(key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// User records and their indexes.

// loginIndexValue lets lists and statistics filter by source and active
// flag without decoding user records.
func loginIndexValue(u *User) []byte {
	active := "0"
	if u.Active {
		active = "1"
	}
	return []byte(u.ID + "\x00" + u.Source + "\x00" + active)
}

type loginIndex struct {
	ID, Source string
	Active     bool
}

func parseLoginIndex(v []byte) loginIndex {
	parts := strings.SplitN(string(v), "\x00", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return loginIndex{ID: parts[0], Source: parts[1], Active: parts[2] == "1"}
}

func userIndexValue(u *User) []byte {
	return []byte(u.ID + "\x00" + u.Source + "\x00" + fold(u.UserName))
}

// putUser writes u and maintains its indexes. old is the previous version or
// nil for a new user. Login uniqueness is checked here, case-insensitively.
func putUser(tx Tx, u *User, old *User) error {
	if old == nil || fold(old.UserName) != fold(u.UserName) {
		if ok, err := exists(tx, loginKey(u.UserName)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("user name %q: %w", u.UserName, ErrExists)
		}
	}
	if u.ExternalID != "" && (old == nil || old.ExternalID != u.ExternalID || old.Source != u.Source) {
		if err := checkExtID(tx, u); err != nil {
			return err
		}
	}
	from := ""
	if old != nil {
		if err := removeUserIndexes(tx, old); err != nil {
			return err
		}
		from = userCountField(old.Source, old.Active)
	}
	if err := count(tx, keyUserCounts, from, userCountField(u.Source, u.Active)); err != nil {
		return err
	}
	if err := putJSON(tx, userKey(u.ID), u); err != nil {
		return err
	}
	if err := tx.Put(loginKey(u.UserName), loginIndexValue(u)); err != nil {
		return err
	}
	iv := userIndexValue(u)
	if u.Email != "" {
		if err := tx.Put(emailKey(u), iv); err != nil {
			return err
		}
	}
	if u.DisplayName != "" {
		// The display index also carries the e-mail, so a search counts a
		// user matched by several fields once without reading the record.
		if err := tx.Put(displayKey(u), append(iv, "\x00"+fold(u.Email)...)); err != nil {
			return err
		}
	}
	if u.ExternalID != "" {
		if err := tx.Put(extEntryKey(u.Source, u.ExternalID, u.ID), []byte(u.ID)); err != nil {
			return err
		}
	}
	return nil
}

// deleteUserIndexes removes a deleted user's index entries and takes the
// user out of the counts.
func deleteUserIndexes(tx Tx, u *User) error {
	if err := removeUserIndexes(tx, u); err != nil {
		return err
	}
	return count(tx, keyUserCounts, userCountField(u.Source, u.Active), "")
}

func removeUserIndexes(tx Tx, u *User) error {
	keys := [][]byte{loginKey(u.UserName)}
	if u.Email != "" {
		keys = append(keys, emailKey(u))
	}
	if u.DisplayName != "" {
		keys = append(keys, displayKey(u))
	}
	for _, k := range keys {
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	if u.ExternalID != "" {
		return deleteExtEntry(tx, u)
	}
	return nil
}

func getUser(tx Tx, id string) (*User, error) {
	var u User
	if err := getJSON(tx, userKey(id), &u); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("user %q: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return &u, nil
}

// Token records and their indexes.

func tokenStateValue(t *Token) []byte {
	prov := "0"
	if t.Provisioned {
		prov = "1"
	}
	return []byte(t.Kind + "\x00" + t.State + "\x00" + t.UserID + "\x00" + t.ManagedBy + "\x00" + prov)
}

type tokenIndex struct {
	Serial, Kind, State, UserID, ManagedBy string
	Provisioned                            bool
}

func parseTokenState(kv KV) tokenIndex {
	parts := strings.SplitN(string(kv.Value), "\x00", 5)
	for len(parts) < 5 {
		parts = append(parts, "")
	}
	return tokenIndex{Serial: string(kv.Key[len(pfxTokenState):]), Kind: parts[0], State: parts[1], UserID: parts[2],
		ManagedBy: parts[3], Provisioned: parts[4] == "1"}
}

// putToken writes t and its indexes; old is the stored version or nil.
func putToken(tx Tx, t *Token, old *Token) error {
	from := ""
	if old != nil {
		from = tokenCountOf(old)
	}
	if err := count(tx, keyTokenCounts, from, tokenCountOf(t)); err != nil {
		return err
	}
	if err := putJSON(tx, tokenKey(t.Serial), t); err != nil {
		return err
	}
	if old == nil || old.Kind != t.Kind || old.State != t.State || old.UserID != t.UserID || old.ManagedBy != t.ManagedBy ||
		old.Provisioned != t.Provisioned {
		if err := tx.Put(tokenStateKey(t.Serial), tokenStateValue(t)); err != nil {
			return err
		}
	}
	if old != nil && old.UserID != "" && old.UserID != t.UserID {
		if err := tx.Delete(tokenUserKey(old.UserID, t.Serial)); err != nil {
			return err
		}
	}
	if t.UserID != "" && (old == nil || old.UserID != t.UserID) {
		if err := tx.Put(tokenUserKey(t.UserID, t.Serial), nil); err != nil {
			return err
		}
	}
	return nil
}

func getToken(tx Tx, serial string) (*Token, error) {
	var t Token
	if err := getJSON(tx, tokenKey(serial), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("token %q: %w", serial, ErrNotFound)
		}
		return nil, err
	}
	return &t, nil
}

// userTokens returns the tokens assigned to a user, in serial order.
func userTokens(tx Tx, userID string) ([]Token, error) {
	prefix := []byte(pfxTokenUser + userID + "/")
	kvs, err := tx.Scan(prefix, nil, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(kvs))
	for _, kv := range kvs {
		t, err := getToken(tx, string(kv.Key[len(prefix):]))
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, nil
}

// countsTowardLimit reports whether a token counts against MaxTokensPerUser.
func countsTowardLimit(t *Token) bool {
	return (t.Kind == KindSoftware || t.Kind == KindHardware) && t.ManagedBy != ManagedCloud
}

func getProfile(tx Tx, name string) (*Profile, error) {
	var p Profile
	if err := getJSON(tx, profileKey(name), &p); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("profile %q: %w", name, ErrNotFound)
		}
		return nil, err
	}
	return &p, nil
}
