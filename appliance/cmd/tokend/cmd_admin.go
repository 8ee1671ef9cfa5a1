package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	gojson "github.com/goccy/go-json"
	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/seal"
)

// newAdminCmd manages the console's admin accounts in the store of a
// stopped tokend (the running daemon holds the store's lock).
func (a *app) newAdminCmd() *cobra.Command {
	admin := &cobra.Command{Use: "admin", Short: "Manage Security Console admin accounts"}
	var role, secondFactor string
	var fromStdin bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a console admin account",
		Long: "Create an admin account for the Security Console. Without --password-stdin a\n" +
			"password is generated and printed once; with it, the first line of standard\n" +
			"input is the password (at least 12 characters). --second-factor binds a token\n" +
			"(assigned to a user) whose tokencode the admin must type after the password.\n" +
			"Run it while tokend is stopped.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var password appliance.Secret
			if fromStdin {
				p, err := readPasswordLine(a.stdin)
				if err != nil {
					return err
				}
				password = p
			}
			return a.withOfflineService(cmd.Context(), func(ctx context.Context, svc *appliance.Service) error {
				acc, generated, err := svc.CreateAdmin(ctx, appliance.NewAdmin{Name: args[0], Role: role,
					Password: password, SecondFactorSerial: secondFactor})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "admin %s created with role %s\n", acc.Name, acc.Role)
				if acc.SecondFactorSerial != "" {
					fmt.Fprintf(out, "second factor: token %s\n", acc.SecondFactorSerial)
				}
				if generated != "" {
					fmt.Fprintf(out, "one-time password (shown once, not stored): %s\n", generated.Reveal())
				}
				return nil
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "superadmin, helpdesk or auditor (required)")
	create.Flags().StringVar(&secondFactor, "second-factor", "", "serial of an assigned token used as second factor")
	create.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	_ = create.MarkFlagRequired("role")
	admin.AddCommand(create)
	admin.AddCommand(a.newAdminUnlockCmd())
	admin.AddCommand(a.newRotateBootstrapTokenCmd())
	return admin
}

func readPasswordLine(r io.Reader) (appliance.Secret, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("--password-stdin: standard input holds no password")
	}
	return appliance.Secret(line), nil
}

// withOfflineService opens the store and master key of a stopped tokend and
// runs fn with a Service acting as the command line.
func (a *app) withOfflineService(ctx context.Context, fn func(context.Context, *appliance.Service) error) error {
	return a.offlineService(ctx, false, fn)
}

// withReadOnlyService is withOfflineService for commands that only look:
// the store is opened read-only and nothing is initialised or migrated.
func (a *app) withReadOnlyService(ctx context.Context, fn func(context.Context, *appliance.Service) error) error {
	return a.offlineService(ctx, true, fn)
}

func (a *app) offlineService(ctx context.Context, readOnly bool, fn func(context.Context, *appliance.Service) error) error {
	cfg, err := loadConfig(a.flags, a.lookupEnv)
	if err != nil {
		return err
	}
	st, paths, err := openOfflineConfigured(ctx, cfg, readOnly)
	if err != nil {
		return err
	}
	defer st.Close()
	keyPath, src := resolveMasterKeyPath(cfg.MasterKeyFile, paths, a.lookupEnv)
	key, err := readMasterKey(keyPath, src == masterKeyFromFile)
	if err != nil {
		return err
	}
	sealer, err := seal.New(key, a.rand)
	if err != nil {
		return err
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer, Now: a.now, Rand: a.rand, DecodeRecord: gojson.Unmarshal})
	if err != nil {
		return err
	}
	ctx = appliance.WithActor(ctx, appliance.Actor{ID: "cli", Name: "tokend admin", Role: appliance.RoleSuperAdmin})
	check := svc.Init
	if readOnly {
		check = svc.CheckStore
	}
	if err := check(ctx); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	return fn(ctx, svc)
}
