package appliance

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
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

// Write lanes. On a store with optimistic transactions (etcd), the
// transactions of one node that all append to the node's one chain head
// conflict with each other and run again. With lanes, each Update of the
// node takes a free lane and writes that lane's chain and counter share:
// concurrent Updates of one node then write different keys too. Lane 0 is
// the node's own chain (<node>); lane i > 0 is <node>~<i>. The lowest free
// lane is taken, so a lightly loaded node writes one chain. Lanes wait for
// each other only when all are busy.
type writeLanes struct {
	slots chan struct{} // one token per lane in use
	mu    sync.Mutex
	busy  []bool
}

func newWriteLanes(n int) *writeLanes {
	if n <= 1 {
		return nil
	}
	return &writeLanes{slots: make(chan struct{}, n), busy: make([]bool, n)}
}

// MaxWriteLanes bounds Config.WriteLanes.
const MaxWriteLanes = 256

func (l *writeLanes) take(ctx context.Context) (int, error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range l.busy {
		if !b {
			l.busy[i] = true
			return i, nil
		}
	}
	panic("appliance: a write lane slot without a free lane") // slots and busy agree
}

func (l *writeLanes) give(i int) {
	l.mu.Lock()
	l.busy[i] = false
	l.mu.Unlock()
	<-l.slots
}

// laneChain names lane i of node. '~' is not allowed in node ids.
func laneChain(node string, i int) string {
	if i == 0 {
		return node
	}
	return node + "~" + strconv.Itoa(i)
}

// validChain reports whether c names a chain: a node id, or a node id's
// lane.
func validChain(c string) bool {
	node, lane, found := strings.Cut(c, "~")
	if ValidNodeID(node) != nil {
		return false
	}
	if !found {
		return true
	}
	n, err := strconv.Atoi(lane)
	return err == nil && n > 0 && n < MaxWriteLanes && strconv.Itoa(n) == lane
}
