package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/otp"
	"tokend/ctkip"
)

// tokenFile is what `tokend provision --save` keeps of a provisioned test
// token, so `tokend tokencode` can show its codes later. It holds the seed:
// it is written 0600 and is for testing, not for users' devices.
type tokenFile struct {
	Serial   string    `json:"serial"`
	Seed     string    `json:"seed"`
	Digits   int       `json:"digits"`
	Interval int       `json:"interval"`
	Expires  time.Time `json:"expires_at"`
}

func (a *app) newProvisionCmd() *cobra.Command {
	var insecure, showSeed bool
	var caFile, save string
	cmd := &cobra.Command{
		Use:   "provision URL CODE",
		Short: "Provision a software token by CT-KIP, acting as a device",
		Long: "Run CT-KIP against URL with an activation code, as an RSA SecurID app does, and\n" +
			"print the provisioned token's serial, digits, interval, expiry and current tokencode.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in for self-signed test appliances
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--ca %s: no PEM certificate", caFile)
				}
				tlsCfg.RootCAs = pool
			}
			client := &ctkip.Client{HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}, Rand: a.rand}
			res, err := client.Provision(cmd.Context(), args[0], args[1])
			if err != nil {
				return fmt.Errorf("provision: %w", err)
			}
			gen, err := otp.NewSecurID(res.Seed[:], res.Serial, res.Digits, res.Interval)
			if err != nil {
				return err
			}
			now := a.now()
			code, err := gen.Code(now)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "serial:     %s\ndigits:     %d\ninterval:   %ds\nexpires:    %s\nuser:       %s\ntokencode:  %s (valid until %s)\n",
				res.Serial, res.Digits, res.Interval, res.ExpiresAt.Format("2006-01-02"), res.UserID, code,
				gen.StepTime(gen.Step(now)+1).Format(time.RFC3339))
			if showSeed {
				fmt.Fprintf(out, "seed:       %x\n", res.Seed[:])
			}
			if save != "" {
				b, _ := json.MarshalIndent(tokenFile{Serial: res.Serial, Seed: hex.EncodeToString(res.Seed[:]), Digits: res.Digits,
					Interval: res.Interval, Expires: res.ExpiresAt}, "", "  ")
				if err := writeSecretFile(save, append(b, '\n')); err != nil {
					return err
				}
				fmt.Fprintf(out, "saved:      %s\n", save)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "do not verify the server certificate")
	cmd.Flags().StringVar(&caFile, "ca", "", "PEM file of the CA (or self-signed certificate) to trust")
	cmd.Flags().BoolVar(&showSeed, "show-seed", false, "also print the derived seed (testing only)")
	cmd.Flags().StringVar(&save, "save", "", "write the token (with its seed) to this file, mode 0600, for the tokencode command")
	return cmd
}

func (a *app) newTokencodeCmd() *cobra.Command {
	var pin string
	cmd := &cobra.Command{
		Use:   "tokencode TOKEN_FILE",
		Short: "Print the current tokencode of a token saved by `tokend provision --save`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var tf tokenFile
			if err := json.Unmarshal(b, &tf); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			seed, err := hex.DecodeString(tf.Seed)
			if err != nil {
				return fmt.Errorf("%s: seed: %w", args[0], err)
			}
			gen, err := otp.NewSecurID(seed, tf.Serial, tf.Digits, tf.Interval)
			if err != nil {
				return err
			}
			code, err := gen.Code(a.now())
			if err != nil {
				return err
			}
			if pin != "" {
				if code, err = otp.AddPIN(code, pin); err != nil {
					return err
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), code)
			return nil
		},
	}
	cmd.Flags().StringVar(&pin, "pin", "", "fold this PIN into the code, as a PINPad-style app does")
	return cmd
}

// openOffline opens the store of a stopped tokend for writing; a running one
// holds its lock, and the error says so.
func openOffline(dir string) (*boltstore.Store, dataPaths, error) {
	return openStoreOffline(dir, false)
}

// openStoreOffline opens the store of a stopped tokend. Inspection commands
// open it readOnly, so they never change the file.
func openStoreOffline(dir string, readOnly bool) (*boltstore.Store, dataPaths, error) {
	paths, err := newDataPaths(dir)
	if err != nil {
		return nil, paths, err
	}
	if _, err := os.Stat(paths.DB); err != nil {
		return nil, paths, fmt.Errorf("no store in %s: %w", paths.DataDir, err)
	}
	st, err := boltstore.Open(paths.DB, boltstore.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: readOnly})
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, paths, fmt.Errorf("data dir %s is in use by a running tokend: %w", paths.DataDir, err)
	}
	return st, paths, err
}

func (a *app) newAuditCmd() *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Audit trail tools"}
	audit.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chains (one per node) of a stopped tokend's store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withReadOnlyService(cmd.Context(), func(ctx context.Context, svc *appliance.Service) error {
				rep, err := svc.VerifyAudit(ctx)
				for _, p := range rep.Problems {
					fmt.Fprintln(cmd.OutOrStdout(), "problem:", p)
				}
				if err != nil {
					return err
				}
				// One chain per node (and a legacy chain from schema 1).
				fmt.Fprintf(cmd.OutOrStdout(), "audit chain intact: %d records in %d chain(s)\n", rep.Records, len(rep.Chains))
				for _, c := range rep.Chains {
					name := "node " + c.Node
					if c.Node == "" {
						name = "legacy chain (schema 1)"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: %d records (%d…%d), %s … %s\n", name, c.Records, c.FirstSeq, c.LastSeq,
						c.First.Format(time.RFC3339), c.Last.Format(time.RFC3339))
				}
				return nil
			})
		},
	})
	return audit
}
func (a *app) newBackupCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Take a consistent copy of the store, also while tokend runs",
		Long: "Write a consistent copy of the store to FILE. A running tokend is asked through\n" +
			"its admin API (GET /api/v1/backup, with DATA_DIR/admin-token and DATA_DIR/tls.crt);\n" +
			"a stopped one is read directly. The master key is NOT in the copy: back it up separately.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			cfg, err := loadConfig(a.flags, a.lookupEnv)
			if err != nil {
				return err
			}
			tmp := out + ".partial"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			n, err := a.backupTo(cmd.Context(), cfg, f)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup: %d bytes written to %s (the master key is not included)\n", n, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the copy to")
	return cmd
}

func (a *app) backupTo(ctx context.Context, cfg *Config, w io.Writer) (int64, error) {
	if cfg.Store.Backend == backendEtcd {
		return 0, errEtcdBackup
	}
	st, paths, err := openStoreOffline(cfg.DataDir, true)
	if err == nil {
		defer st.Close()
		return st.Backup(w)
	}
	if !errors.Is(err, boltstore.ErrLocked) {
		return 0, err
	}
	// A tokend is running: ask it over its admin API.
	api, err := newRunningAdminAPI(cfg, paths)
	if err != nil {
		return 0, fmt.Errorf("tokend is running: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.base+"/api/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	client := *api.client
	client.Timeout = 0 // a copy of a large store takes what it takes; ctx ends it
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("backup from the running tokend: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("backup from the running tokend: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return io.Copy(w, resp.Body)
}

func (a *app) newRestoreCmd() *cobra.Command {
	var in string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --in FILE",
		Short: "Put a backup back as the store of a stopped tokend",
		Long: "Install FILE (from `tokend backup`) as DATA_DIR/tokend.db. Refuses while a tokend\n" +
			"runs on the data dir, and refuses to replace an existing store without --force.\n" +
			"Restore the master key the backup was taken with as well.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return errors.New("--in is required")
			}
			cfg, err := loadConfig(a.flags, a.lookupEnv)
			if err != nil {
				return err
			}
			if cfg.Store.Backend == backendEtcd {
				return errEtcdBackup
			}
			paths, err := newDataPaths(cfg.DataDir)
			if err != nil {
				return err
			}
			if _, err := ensureDataDir(paths.DataDir); err != nil {
				return err
			}
			if _, err := os.Stat(paths.DB); err == nil {
				st, err := boltstore.Open(paths.DB, boltstore.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: true})
				if errors.Is(err, boltstore.ErrLocked) {
					return fmt.Errorf("data dir %s is in use by a running tokend; stop it first", paths.DataDir)
				}
				if err == nil {
					st.Close()
				}
				if !force {
					return fmt.Errorf("%s exists; use --force to replace it", paths.DB)
				}
			}
			// Check the backup is a store before it replaces anything.
			check, err := boltstore.Open(in, boltstore.Options{LockTimeout: 500 * time.Millisecond, ReadOnly: true})
			if err != nil {
				return fmt.Errorf("%s is not a tokend store: %w", in, err)
			}
			check.Close()
			src, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			tmp := filepath.Join(paths.DataDir, ".restore.partial")
			if err := writeSecretFile(tmp, src); err != nil {
				return err
			}
			if err := os.Rename(tmp, paths.DB); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restore: %s installed as %s\n", in, paths.DB)
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "backup file to restore")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing store")
	return cmd
}
