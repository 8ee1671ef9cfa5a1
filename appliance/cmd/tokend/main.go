package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run())
}

// run executes the command line of the process and returns its exit code:
// 0 on success, 1 on any error (printed as one line "tokend: <message>").
func run() int {
	return newApp(os.Stdin, os.Stdout, os.Stderr, os.LookupEnv).execute(context.Background(), os.Args[1:])
}

// app is the process's outside world, injected so every subcommand is
// testable without touching the real one: standard streams, environment,
// host name, clock and randomness. Subcommands are methods of app that
// return a *cobra.Command; adding one is one such method and one line in
// newRootCmd.
type app struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv lookupEnvFunc
	hostname  func() (string, error)
	now       func() time.Time
	rand      io.Reader

	// serve runs the daemon once prepared: runServe (serve.go) in
	// production, a stand-in in tests.
	serve func(ctx context.Context, env *serveEnv) error

	// flags are the configuration flags, persistent on the root command;
	// set by newRootCmd. loadConfig(a.flags, a.lookupEnv) reads them.
	flags *configFlags
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, lookupEnv lookupEnvFunc) *app {
	return &app{
		stdin:     stdin,
		stdout:    stdout,
		stderr:    stderr,
		lookupEnv: lookupEnv,
		hostname:  os.Hostname,
		now:       time.Now,
		rand:      rand.Reader,
		serve:     runServe,
	}
}

// execute runs args (without the program name) and returns the exit code.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.newRootCmd()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(a.stderr, "tokend: %s\n", oneLine(err.Error()))
		var ec *exitCodeError
		if errors.As(err, &ec) {
			return ec.code
		}
		return 1
	}
	return 0
}

// exitCodeError gives a command's failure an exit status other than 1
// (tokend check: 1 inconsistent, 2 could not check).
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// oneLine folds a multi-line message (cobra's "Did you mean this?") into one.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// newRootCmd builds the command tree.
func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tokend",
		Short: "tokend: a SecurID-style token appliance",
		Long: "tokend runs the token appliance (tokend serve) and its offline tools.\n\n" +
			"Configuration: defaults, then the YAML file given by --config (or TOKEND_CONFIG),\n" +
			"then TOKEND_* environment variables, then flags.",
		SilenceUsage:      true, // runtime errors are not usage errors
		SilenceErrors:     true, // execute prints the one line itself
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Version:           releaseVersion(),
	}
	root.SetVersionTemplate(versionString() + "\n")
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	a.flags = addConfigFlags(root.PersistentFlags())

	root.AddCommand(
		a.newServeCmd(),
		a.newVersionCmd(),
		a.newProvisionCmd(),
		a.newTokencodeCmd(),
		a.newAuditCmd(),
		a.newBackupCmd(),
		a.newRestoreCmd(),
		a.newAdminCmd(),
		a.newRekeyCmd(),
		a.newMigrateCmd(),
		a.newCheckCmd(),
	)
	return root
}

// newVersionCmd prints the version set at link time and the Go version.
func (a *app) newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}

// newServeCmd runs the daemon: load and validate the configuration, build
// the logger, prepare the data directory, master key and TLS pair
// (prepareServe), then hand over to a.serve (runServe) with a context that
// SIGTERM or SIGINT cancels. A second signal kills the process at once.
func (a *app) newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the appliance daemon",
		Long: "Run the appliance: the admin API and console, and the CT-KIP provisioning\n" +
			"service. Stops gracefully on SIGTERM or SIGINT; notifies systemd (Type=notify).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(a.flags, a.lookupEnv)
			if err != nil {
				return err
			}
			env, err := a.prepareServe(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			context.AfterFunc(ctx, stop) // after the first signal, the default action again
			env.Logger.Info("starting", "version", releaseVersion(),
				"data_dir", env.Paths.DataDir,
				"admin_listen", cfg.AdminListen,
				"ctkip_listen", cfg.CTKIPListen,
				"ctkip_public_url", env.CTKIPPublicURL,
				"master_key", env.MasterKeyPath,
				"master_key_source", string(env.MasterKeySource),
				"tls_cert", env.TLS.CertFile,
				"tls_not_after", env.TLS.Leaf.NotAfter)
			if err := a.serve(ctx, env); err != nil {
				return err
			}
			env.Logger.Info("stopped")
			return nil
		},
	}
}
