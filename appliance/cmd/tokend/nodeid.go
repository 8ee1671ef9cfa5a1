package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tokend/appliance"
)

// nodeIDFile is where a generated node id is kept, in the data dir.
const nodeIDFile = "node-id"

// resolveNodeID returns the node id: node_id if configured, else the one in
// DATA_DIR/node-id, else a new one (the host name and 6 random hex digits)
// written there once. The random part keeps two machines of one host name
// (clones, containers) apart; the file keeps the id across restarts, so a
// node goes on appending to its own audit chain.
func resolveNodeID(configured, dataDir, hostname string, rnd io.Reader) (string, error) {
	if configured != "" {
		return configured, appliance.ValidNodeID(configured)
	}
	path := filepath.Join(dataDir, nodeIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if err := appliance.ValidNodeID(id); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var r [3]byte
	if _, err := io.ReadFull(rnd, r[:]); err != nil {
		return "", err
	}
	id := nodeIDBase(hostname) + "-" + hex.EncodeToString(r[:])
	if err := writeFileAtomic(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// nodeIDBase is the host name's first label reduced to the characters a
// node id allows, or "node".
func nodeIDBase(hostname string) string {
	label, _, _ := strings.Cut(hostname, ".")
	var b strings.Builder
	for _, r := range label {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	s := strings.TrimLeft(b.String(), "-_")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		return "node"
	}
	return s
}

// etcdWriteLanes is how many Updates of one node may run at once on etcd
// without conflicting with each other (appliance.Config.WriteLanes): each
// appends to an audit chain and counts in a counter share of its own. 16
// covers the doors' usual concurrency; more Updates wait for a lane. bbolt
// commits one transaction at a time and needs none.
const etcdWriteLanes = 16

func writeLanes(cfg *Config) int {
	if cfg.Store.Backend == backendEtcd {
		return etcdWriteLanes
	}
	return 0
}
