package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
)

// migratePage is how many pairs one read of a migration fetches.
const migratePage = 100

// migrateBatchBytes keeps a batch of writes well under the contract's 1 MiB.
const migrateBatchBytes = 512 << 10

// errMigrateDiffers refuses to overwrite a destination that holds other data.
var errMigrateDiffers = errors.New("the destination holds different data")

// storeSpec is one side of a migration: "bolt:PATH" or "etcd:URL,URL".
type storeSpec struct {
	Backend string
	Path    string // bolt
	Etcd    StoreConfig
}

func (s storeSpec) String() string {
	if s.Backend == backendBolt {
		return "bolt:" + s.Path
	}
	return "etcd:" + s.Etcd.EtcdEndpoints + " (prefix " + s.Etcd.EtcdPrefix + ")"
}

// parseStoreSpec reads "bolt:PATH" or "etcd:URL,URL…"; "etcd:" alone means
// the configured endpoints. TLS files and the prefix come from the
// configuration (--etcd-ca, --etcd-cert, --etcd-key, --etcd-username,
// --etcd-password-file, --etcd-prefix).
func parseStoreSpec(flag, v string, cfg StoreConfig) (storeSpec, error) {
	backend, rest, ok := strings.Cut(v, ":")
	switch {
	case !ok:
	case backend == backendBolt && rest != "":
		return storeSpec{Backend: backendBolt, Path: rest}, nil
	case backend == backendEtcd:
		e := cfg
		e.Backend = backendEtcd
		if rest != "" {
			e.EtcdEndpoints = rest
		}
		c := Config{Store: e}
		if p := c.storeProblems(); len(p) > 0 {
			return storeSpec{}, fmt.Errorf("--%s %s:%s: %s", flag, backend, redactEndpoints(rest), strings.Join(p, "; "))
		}
		return storeSpec{Backend: backendEtcd, Etcd: e}, nil
	}
	return storeSpec{}, fmt.Errorf("--%s %q: want bolt:PATH or etcd:URL[,URL…]", flag, redactEndpoints(v))
}

func (s storeSpec) open(ctx context.Context, readOnly bool) (appliance.Store, error) {
	if s.Backend == backendEtcd {
		return openEtcd(ctx, s.Etcd, storeOpenOptions{ReadOnly: readOnly, NoPurge: true})
	}
	st, err := boltstore.Open(s.Path, boltstore.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: readOnly})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("%s is in use by a running tokend; stop it first: %w", s.Path, err)
	}
	return st, err
}

func (a *app) newMigrateCmd() *cobra.Command {
	var from, to string
	var force bool
	cmd := &cobra.Command{
		Use:   "migrate --from bolt:PATH|etcd:URLS --to etcd:URLS|bolt:PATH",
		Short: "Copy a store between bbolt and etcd, then verify every key",
		Long: "Make the destination store hold exactly the source's keys and values (what it\n" +
			"holds besides is removed), then compare every key of both. Running it again\n" +
			"changes nothing. Sealed data is copied as it is: every node must use the master\n" +
			"key of the source. Stop every tokend using either store first. A destination\n" +
			"holding different data is replaced only with --force. For etcd, --etcd-ca,\n" +
			"--etcd-cert, --etcd-key, --etcd-username, --etcd-password-file and\n" +
			"--etcd-prefix apply; etcd: alone means the configured store.etcd_endpoints.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("--from and --to are required")
			}
			cfg, err := loadConfig(a.flags, a.lookupEnv)
			if err != nil {
				return err
			}
			src, err := parseStoreSpec("from", from, cfg.Store)
			if err != nil {
				return err
			}
			dst, err := parseStoreSpec("to", to, cfg.Store)
			if err != nil {
				return err
			}
			if src.Backend == dst.Backend && src.Backend == backendBolt && filepath.Clean(src.Path) == filepath.Clean(dst.Path) {
				return errors.New("--from and --to are the same file")
			}
			ctx := cmd.Context()
			s, err := src.open(ctx, true)
			if err != nil {
				return fmt.Errorf("source %s: %w", src, err)
			}
			defer s.Close()
			d, err := dst.open(ctx, false)
			if err != nil {
				return fmt.Errorf("destination %s: %w", dst, err)
			}
			defer d.Close()
			res, err := migrateStore(ctx, s, d, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "migrate: %s -> %s: %d keys; %d written, %d removed, %d already equal; verified: every key and value equal\n",
				src, dst, res.Keys, res.Written, res.Removed, res.Equal)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source store: bolt:PATH or etcd:URL[,URL…]")
	cmd.Flags().StringVar(&to, "to", "", "destination store: etcd:URL[,URL…] or bolt:PATH")
	cmd.Flags().BoolVar(&force, "force", false, "replace a destination that holds different data")
	return cmd
}

// migrateResult counts what a migration did.
type migrateResult struct {
	Keys, Written, Removed, Equal int
	Replaced                      int // written over a different value (part of Written)
}

// migrateStore makes dst equal to src and verifies it: a dry pass counts the
// differences (refusing a destination with other data unless force), a pass
// writes them, a last pass finds none. src must not change meanwhile.
func migrateStore(ctx context.Context, src, dst appliance.Store, force bool) (migrateResult, error) {
	dry, err := syncStores(ctx, src, dst, false)
	if err != nil {
		return dry, err
	}
	// A destination holding part of the source, unchanged, is a previous
	// run that was interrupted: carry on. Anything else there is other
	// data, replaced only on request.
	if !force && dry.Replaced+dry.Removed > 0 {
		return dry, fmt.Errorf("%w: %d keys would be replaced and %d removed; use --force", errMigrateDiffers, dry.Replaced, dry.Removed)
	}
	res, err := syncStores(ctx, src, dst, true)
	if err != nil {
		return res, err
	}
	check, err := syncStores(ctx, src, dst, false)
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	if check.Written+check.Removed > 0 {
		return res, fmt.Errorf("verify: %d keys still differ (did the source change? stop every tokend and run again)", check.Written+check.Removed)
	}
	res.Keys = check.Keys
	return res, nil
}

// pager reads a store in key order, a page per View.
type pager struct {
	st   appliance.Store
	page []appliance.KV
	next []byte // resume after this key; nil: from the start
	done bool
}

func (p *pager) peek(ctx context.Context) (*appliance.KV, error) {
	if len(p.page) == 0 && !p.done {
		err := p.st.View(ctx, func(tx appliance.Tx) error {
			var err error
			p.page, err = tx.Scan(nil, p.next, migratePage)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(p.page) < migratePage {
			p.done = true
		}
		if len(p.page) > 0 {
			p.next = p.page[len(p.page)-1].Key
		}
	}
	if len(p.page) == 0 {
		return nil, nil
	}
	return &p.page[0], nil
}

func (p *pager) pop() { p.page = p.page[1:] }

// syncStores walks both stores in key order. With apply it writes the
// source's pair where the destination lacks or differs from it and deletes
// what only the destination has, in Updates within the write limits;
// without, it only counts.
func syncStores(ctx context.Context, src, dst appliance.Store, apply bool) (migrateResult, error) {
	var res migrateResult
	s, d := &pager{st: src}, &pager{st: dst}
	var batch []appliance.KV // Value nil: delete
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := dst.Update(ctx, func(tx appliance.Tx) error {
			for _, kv := range batch {
				var err error
				if kv.Value == nil {
					err = tx.Delete(kv.Key)
				} else {
					err = tx.Put(kv.Key, kv.Value)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		batch, batchBytes = batch[:0], 0
		return err
	}
	add := func(kv appliance.KV) error {
		if !apply {
			return nil
		}
		n := len(kv.Key) + len(kv.Value)
		if len(batch) == appliance.MaxTxWrites || (len(batch) > 0 && batchBytes+n > migrateBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, kv)
		batchBytes += n
		return nil
	}
	for {
		skv, err := s.peek(ctx)
		if err != nil {
			return res, fmt.Errorf("read source: %w", err)
		}
		dkv, err := d.peek(ctx)
		if err != nil {
			return res, fmt.Errorf("read destination: %w", err)
		}
		if skv == nil && dkv == nil {
			break
		}
		c := 0
		switch {
		case skv == nil:
			c = 1
		case dkv == nil:
			c = -1
		default:
			c = bytes.Compare(skv.Key, dkv.Key)
		}
		switch {
		case c < 0: // only in the source
			res.Keys++
			res.Written++
			err = add(appliance.KV{Key: skv.Key, Value: nonNil(skv.Value)})
			s.pop()
		case c > 0: // only in the destination
			res.Removed++
			err = add(appliance.KV{Key: dkv.Key})
			d.pop()
		default:
			res.Keys++
			if bytes.Equal(skv.Value, dkv.Value) {
				res.Equal++
			} else {
				res.Written++
				res.Replaced++
				err = add(appliance.KV{Key: skv.Key, Value: nonNil(skv.Value)})
			}
			s.pop()
			d.pop()
		}
		if err != nil {
			return res, fmt.Errorf("write destination: %w", err)
		}
	}
	if err := flush(); err != nil {
		return res, fmt.Errorf("write destination: %w", err)
	}
	return res, nil
}

// nonNil keeps an empty value distinct from a delete in a batch.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
