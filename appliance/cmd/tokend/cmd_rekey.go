package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
	"tokend/appliance/internal/etcdstore"
	"tokend/appliance/seal"
)

// newRekeyCmd rotates the master key of a stopped tokend's store
// (appliance.Rekey): every sealed secret is re-sealed under the new key,
// resumably; the key files themselves are the operator's to swap.
func (a *app) newRekeyCmd() *cobra.Command {
	var newKeyFile string
	var resume, rollback, status bool
	var chunk int
	cmd := &cobra.Command{
		Use:   "rekey --new-key-file FILE",
		Short: "Re-seal every secret of a stopped tokend's store under a new master key",
		Long: "Rotate the master key: re-seal every sealed secret of the store (token seeds, the\n" +
			"CT-KIP server key, RADIUS secrets, LDAP bind passwords, rollout codes) under the key\n" +
			"in --new-key-file (64 lowercase hex characters, mode 0600), reading them with the\n" +
			"current master key (--master-key-file, the systemd credential or DATA_DIR/master.key).\n" +
			"Activation codes, API tokens and agent keys issued before keep working.\n\n" +
			"Run it while tokend is stopped. It works in small transactions and can be\n" +
			"interrupted at any point: run the same command again (or with --resume) to finish,\n" +
			"or with --rollback to return to the old key. tokend refuses to start while a\n" +
			"rotation is unfinished. The key files are not touched: once it reports success,\n" +
			"install the new key where tokend reads its master key, then start tokend.\n" +
			"--status shows which key the store holds (and whether the key files match).\n\n" +
			"On etcd (--store etcd) it rotates the store under --etcd-prefix in place. Stop every\n" +
			"node on that prefix first: it refuses while any node holds its runner election key\n" +
			"(a node stopped by a kill holds it up to 10 s longer: wait and retry), and stops if\n" +
			"one appears during the rotation. --status works while nodes run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case resume && rollback:
				return errors.New("--resume and --rollback exclude each other")
			case status && (resume || rollback):
				return errors.New("--status only reports; drop --resume and --rollback")
			}
			out := cmd.OutOrStdout()
			if status {
				return a.rekeyStatus(cmd.Context(), out, newKeyFile)
			}
			if newKeyFile == "" {
				return errors.New("--new-key-file is required: a file with the new key, 64 lowercase hex characters, mode 0600 " +
					"(for example: (umask 077; openssl rand -hex 32 > master.key.new))")
			}
			return a.rekey(cmd.Context(), out, newKeyFile, resume, rollback, chunk)
		},
	}
	f := cmd.Flags()
	f.StringVar(&newKeyFile, "new-key-file", "", "file holding the new master key (64 lowercase hex characters, mode 0600)")
	f.BoolVar(&resume, "resume", false, "only finish the rotation in progress (running the same command again does too)")
	f.BoolVar(&rollback, "rollback", false, "undo the rotation in progress: return every secret to the old key")
	f.BoolVar(&status, "status", false, "report which key the store holds and any rotation in progress; change nothing")
	// Test knob: smaller transactions, so a test can interrupt many of them.
	f.IntVar(&chunk, "chunk", 0, "secrets re-sealed per transaction (default and maximum 99)")
	_ = f.MarkHidden("chunk")
	return cmd
}

// nodesRunningError: tokend nodes hold election keys on the etcd prefix a
// rotation is asked for. A running node seals with the old key behind the
// rotation's cursor, leaving values no key of the journal accounts for.
type nodesRunningError struct {
	Nodes  int64
	Prefix string
	// During: a node appeared after the rotation began (it was starting
	// when the rotation's first check ran); the rotation was stopped.
	During bool
}

func (e *nodesRunningError) Error() string {
	if e.During {
		return fmt.Sprintf("%d tokend node(s) started on etcd prefix %s during the rotation, which stopped: stop every node, "+
			"then run the same tokend rekey command again to finish; `tokend rekey --status` shows where it stands",
			e.Nodes, e.Prefix)
	}
	return fmt.Sprintf("%d tokend node(s) are running on etcd prefix %s: stop every node first; `tokend rekey --status` works meanwhile "+
		"(a node that died within the last %s may still be counted: wait and retry)", e.Nodes, e.Prefix, runnerTTL)
}

// runningNodes counts the tokend nodes on the store's prefix: the presence
// key each node puts before its key check (announceNode), or, for a node
// of an earlier version that puts none, its runner election key. Both live
// as long as the node's lease (runnerTTL after a node dies).
func runningNodes(ctx context.Context, st *etcdstore.Store, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var n int64
	for _, pfx := range []string{nodesPrefix(st.Prefix()), runnerElectionPrefix(st.Prefix())} {
		resp, err := st.Client().Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, fmt.Errorf("counting the tokend nodes on etcd prefix %s: %w", st.Prefix(), err)
		}
		n = max(n, resp.Count)
	}
	return n, nil
}

// rekeyWhere names the store in messages: the bbolt file, or the etcd
// endpoints (credentials redacted) and prefix.
func rekeyWhere(cfg *Config, paths dataPaths) string {
	if cfg.Store.Backend == backendEtcd {
		return "etcd store at " + redactEndpoints(strings.Join(cfg.Store.endpoints(), ",")) + " prefix " + cfg.Store.EtcdPrefix
	}
	return "store " + paths.DB
}

// rekeyKeys reads the current master key and the new one; errors name the
// files, never their content.
func (a *app) rekeyKeys(cfg *Config, paths dataPaths, newKeyFile string) (oldPath string, old, next []byte, err error) {
	oldPath, src := resolveMasterKeyPath(cfg.MasterKeyFile, paths, a.lookupEnv)
	next, err = readMasterKey(newKeyFile, true)
	if err != nil {
		return "", nil, nil, fmt.Errorf("new key: %w", err)
	}
	old, err = readMasterKey(oldPath, src == masterKeyFromFile)
	if err != nil {
		return "", nil, nil, fmt.Errorf("current key: %w", err)
	}
	if bytes.Equal(old, next) {
		return "", nil, nil, fmt.Errorf("%s holds the same key as the current master key %s: %w", newKeyFile, oldPath, appliance.ErrSameKey)
	}
	return oldPath, old, next, nil
}

func (a *app) rekey(ctx context.Context, out io.Writer, newKeyFile string, resume, rollback bool, chunk int) error {
	cfg, paths, err := a.configAndPaths()
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(newKeyFile); err == nil {
		newKeyFile = abs
	}
	oldPath, oldKey, newKey, err := a.rekeyKeys(cfg, paths, newKeyFile)
	if err != nil {
		return err
	}
	old, err := seal.New(oldKey, a.rand)
	if err != nil {
		return err
	}
	next, err := seal.New(newKey, a.rand)
	if err != nil {
		return err
	}
	st, _, err := openOfflineConfigured(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	where := rekeyWhere(cfg, paths)
	// On etcd nothing locks the store against running nodes: their
	// presence keys say whether any runs, before the rotation and before
	// each of its transactions once the journal is written. A node puts
	// its key before its own key check, so one that started before the
	// journal is seen before anything is re-sealed, and one that starts
	// after it finds the journal and refuses (announceNode).
	etcd, _ := st.(*etcdstore.Store)
	var nodesErr error
	if etcd != nil {
		n, err := runningNodes(ctx, etcd, cfg.Store.EtcdRequestTimeout)
		if err != nil {
			return err
		}
		if n > 0 {
			return &nodesRunningError{Nodes: n, Prefix: etcd.Prefix()}
		}
	}
	field := ""
	rc := appliance.RekeyConfig{Store: st, Old: old, New: next, Now: a.now, Chunk: chunk, ResumeOnly: resume,
		Actor: appliance.Actor{ID: "cli", Name: "tokend rekey", Role: appliance.RoleSuperAdmin},
		Progress: func(s appliance.RekeyStatus) {
			if s.Field != field {
				field = s.Field
				if s.State == appliance.RekeyRollback {
					fmt.Fprintf(out, "restoring %s under the old key (%d restored so far)\n", field, s.Restored)
				} else {
					fmt.Fprintf(out, "re-sealing %s (%d re-sealed so far)\n", field, s.Resealed)
				}
			}
		}}
	if etcd != nil {
		rc.Check = func() error {
			n, err := runningNodes(ctx, etcd, cfg.Store.EtcdRequestTimeout)
			switch {
			case err != nil:
				nodesErr = err
			case n > 0:
				nodesErr = &nodesRunningError{Nodes: n, Prefix: etcd.Prefix(), During: true}
			}
			return nodesErr
		}
	}
	oldFP, newFP := seal.Fingerprint(old.CheckValue()), seal.Fingerprint(next.CheckValue())
	if rollback {
		res, err := appliance.RollbackRekey(ctx, rc)
		if nodesErr != nil {
			return nodesErr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		fmt.Fprintf(out, "rotation rolled back: %d secrets restored; the %s holds key %s (%s) again; do not install %s\n",
			res.Restored, where, oldFP, oldPath, newKeyFile)
		return nil
	}
	res, err := appliance.Rekey(ctx, rc)
	switch {
	case nodesErr != nil:
		return nodesErr
	case errors.Is(err, appliance.ErrAlreadyRekeyed):
		fmt.Fprintf(out, "the %s already holds key %s (%s); nothing to do\n", where, newFP, newKeyFile)
		return nil
	case errors.Is(err, seal.ErrWrongKey):
		return fmt.Errorf("current key %s is not the key of the %s (%w); pass the store's key with --master-key-file", oldPath, where, err)
	case err != nil:
		return fmt.Errorf("%s: %w", where, err)
	}
	fmt.Fprintf(out, "master key rotated: %d secrets re-sealed; the %s now holds key %s (%s)\n", res.Resealed, where, newFP, newKeyFile)
	fmt.Fprintf(out, "next: install %s where tokend reads its master key (in place of %s), back it up, then start tokend; "+
		"backups of the store taken before %s still need the old key\n", newKeyFile, oldPath, a.now().UTC().Format(time.RFC3339))
	return nil
}

// rekeyStatus prints which key the store holds, any rotation in progress,
// and which of the key files (the current master key, and newKeyFile if
// given) match. It opens the store read-only.
func (a *app) rekeyStatus(ctx context.Context, out io.Writer, newKeyFile string) error {
	cfg, err := loadConfig(a.flags, a.lookupEnv)
	if err != nil {
		return err
	}
	st, paths, err := openOfflineConfigured(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer st.Close()
	where := rekeyWhere(cfg, paths)
	s, err := appliance.ReadRekeyStatus(ctx, st)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	fmt.Fprintf(out, "%s: key check of key %s\n", where, seal.Fingerprint(s.KeyCheck))
	switch s.State {
	case "":
		fmt.Fprintln(out, "rotation: none")
	case appliance.RekeyForward:
		fmt.Fprintf(out, "rotation: IN PROGRESS from key %s to key %s (started %s, %d secrets re-sealed, at %s); "+
			"run tokend rekey again with both keys to finish it, or with --rollback to undo it\n",
			seal.Fingerprint(s.OldCheck), seal.Fingerprint(s.NewCheck), s.StartedAt.Format(time.RFC3339), s.Resealed, orEnd(s.Field))
	case appliance.RekeyRollback:
		fmt.Fprintf(out, "rotation: ROLLBACK IN PROGRESS back to key %s from key %s (%d secrets restored, at %s); "+
			"run tokend rekey --rollback with both keys to finish it\n",
			seal.Fingerprint(s.OldCheck), seal.Fingerprint(s.NewCheck), s.Restored, orEnd(s.Field))
	}
	keyPath, src := resolveMasterKeyPath(cfg.MasterKeyFile, paths, a.lookupEnv)
	type keyFile struct {
		what, path string
		perm       bool // the file's mode is checked (not a systemd credential)
	}
	files := []keyFile{{"master key", keyPath, src == masterKeyFromFile}}
	if newKeyFile != "" {
		files = append(files, keyFile{"new key", newKeyFile, true})
	}
	for _, f := range files {
		k, err := readMasterKey(f.path, f.perm)
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", f.what, err)
			continue
		}
		sl, err := seal.New(k, a.rand)
		if err != nil {
			return err
		}
		fp := seal.Fingerprint(sl.CheckValue())
		verdict := "not this store's key"
		switch {
		case sl.Verify(s.KeyCheck) == nil && s.State == "":
			verdict = "the store's key"
		case s.State != "" && sl.Verify(s.OldCheck) == nil:
			verdict = "the old key of the rotation"
		case s.State != "" && sl.Verify(s.NewCheck) == nil:
			verdict = "the new key of the rotation"
		}
		fmt.Fprintf(out, "%s %s: key %s, %s\n", f.what, f.path, fp, verdict)
	}
	return nil
}

func orEnd(field string) string {
	if field == "" {
		return "the end"
	}
	return field
}
