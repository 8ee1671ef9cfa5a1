package appliance

import (
	"fmt"
	"strings"
)

// DefaultNodeID is the node id of a Service built without one (tests and
// single-node tools); tokend serve always passes its own (Config.NodeID).
const DefaultNodeID = "local"

// maxNodeIDLen keeps node ids short: they are part of every audit key.
const maxNodeIDLen = 64

// ValidNodeID reports whether id can name a node: 1–64 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit. A
// node id is part of keys and of audit cursors, which use '/' and ',' as
// separators.
func ValidNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("node id %.70q: must be 1 to %d characters", id, maxNodeIDLen)
	}
	alnum := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }
	if !alnum(rune(id[0])) || strings.IndexFunc(id, func(r rune) bool { return !alnum(r) && r != '.' && r != '_' && r != '-' }) >= 0 {
		return fmt.Errorf("node id %.70q: letters, digits, '.', '_' and '-' only, starting with a letter or digit", id)
	}
	return nil
}

// NodeID is the node whose audit chain and counter shares this Service
// writes.
func (s *Service) NodeID() string { return s.node }

// migrateSchema brings a schema 1 store to the current schema inside Init's
// transaction: the counters move into this node's share; the single audit
// chain stays where it is as the legacy chain (rewriting a long trail
// would take many transactions and change no hash), verified and listed
// with the nodes' chains. Nothing to do for a current store.
func migrateSchema(tx Tx) error {
	v, err := tx.Get(keySchema)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if string(v) != schemaV1 {
		return nil
	}
	if err := migrateCounts(tx); err != nil {
		return err
	}
	return tx.Put(keySchema, []byte(schemaVersion))
}
