package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	gojson "github.com/goccy/go-json"
	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/seal"
)

// newAdminCmd manages the console's admin accounts, in the store of a
// stopped tokend or through the running one's admin API (offlineOrRunning).
func (a *app) newAdminCmd() *cobra.Command {
	admin := &cobra.Command{Use: "admin", Short: "Manage Security Console admin accounts"}
	var role, secondFactor string
	var fromStdin bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a console admin account",
		Long: "Create an admin account for the Security Console. Without --password-stdin a\n" +
			"password is generated and printed once; with it, the first line of standard\n" +
			"input is the password (at least 12 characters). A generated password is\n" +
			"one-time: the admin must change it at the first sign-in. --second-factor binds\n" +
			"the admin's own token (assigned to the user named like the admin, holding a\n" +
			"seed) whose tokencode the admin must type after the password. Works whether\n" +
			"or not tokend runs on the data dir.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := a.passwordFromStdin(fromStdin)
			if err != nil {
				return err
			}
			var row adminRow
			err = a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				acc, generated, err := svc.CreateAdmin(ctx, appliance.NewAdmin{Name: args[0], Role: role,
					Password: password, SecondFactorSerial: secondFactor})
				row = rowWithPassword(acc, generated)
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				return api.callJSON(ctx, http.MethodPost, "/api/v1/admins", map[string]string{"name": args[0], "role": role,
					"password": password.Reveal(), "second_factor_serial": secondFactor}, &row)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "admin %s created with role %s\n", row.Name, row.Role)
			if row.SecondFactorSerial != "" {
				fmt.Fprintf(out, "second factor: token %s\n", row.SecondFactorSerial)
			}
			if row.Password != "" {
				fmt.Fprintf(out, "one-time password (shown once, not stored; to be changed at the first sign-in): %s\n", row.Password)
			}
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "superadmin, helpdesk or auditor (required)")
	create.Flags().StringVar(&secondFactor, "second-factor", "", "serial of the admin's own provisioned token, used as second factor")
	create.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	_ = create.MarkFlagRequired("role")
	admin.AddCommand(create)
	admin.AddCommand(a.newAdminUnlockCmd())
	admin.AddCommand(a.newAdminListCmd(), a.newAdminPasswdCmd(), a.newAdminSecondFactorCmd(),
		a.newAdminDisableCmd(true), a.newAdminDisableCmd(false), a.newAdminDeleteCmd())
	admin.AddCommand(a.newRotateBootstrapTokenCmd())
	return admin
}

// passwordFromStdin is the password of --password-stdin (the first line of
// standard input), or none (the Service generates a one-time one).
func (a *app) passwordFromStdin(fromStdin bool) (appliance.Secret, error) {
	if !fromStdin {
		return "", nil
	}
	return readPasswordLine(a.stdin)
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
	// What an offline command audits goes to the data dir's node's chain
	// (nodeid.go); a read-only one writes nothing and needs no id.
	var nodeID string
	if !readOnly {
		host, _ := a.hostname()
		if nodeID, err = resolveNodeID(cfg.NodeID, paths.DataDir, host, a.rand); err != nil {
			return err
		}
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer, NodeID: nodeID, Now: a.now, Rand: a.rand, DecodeRecord: gojson.Unmarshal})
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
