package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
)

// errBoltDamaged: bbolt's own check found damaged pages; the records are
// then not read (a damaged page can crash a reader) and the store counts as
// inconsistent.
var errBoltDamaged = fmt.Errorf("bbolt pages damaged: %w", appliance.ErrInconsistent)

// newCheckCmd checks a store's consistency without changing it: on bbolt,
// bbolt's page check and then the Service's CheckConsistency; on etcd,
// CheckConsistency only. It opens the store as `audit verify` does
// (read-only; a bbolt file held by a running tokend is refused).
func (a *app) newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the store's consistency (indexes, counters, the token limit) without changing it",
		Long: "Read the whole store in one snapshot and check every index against its records\n" +
			"and back, the inventory counters, at most 3 counted tokens per user, outstanding\n" +
			"activation codes against their tokens and tokens against their import jobs. On\n" +
			"bbolt, bbolt's own page check runs first; stop tokend first (the file is opened\n" +
			"read-only and stays byte for byte as it was). On etcd it runs beside running nodes.\n" +
			"Exit status: 0 consistent, 1 inconsistent, 2 the store could not be checked.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := a.check(cmd)
			if err != nil && !errors.Is(err, appliance.ErrInconsistent) {
				return &exitCodeError{code: 2, err: err}
			}
			return err
		},
	}
}

// check runs the checks of `tokend check`; an error that is not
// appliance.ErrInconsistent means the store could not be checked.
func (a *app) check(cmd *cobra.Command) error {
	cfg, err := loadConfig(a.flags, a.lookupEnv)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if cfg.Store.Backend == backendEtcd {
		fmt.Fprintf(out, "store: etcd %s prefix %s\n", redactEndpoints(cfg.Store.EtcdEndpoints), cfg.Store.EtcdPrefix)
		fmt.Fprintln(out, "bbolt: not applicable (etcd store: the consistency check only)")
	} else {
		// The shared lock of this open stays held until the end, so
		// no tokend can start writing between the two checks.
		st, paths, err := openStoreOffline(cfg.DataDir, true)
		if err != nil {
			if errors.Is(err, boltstore.ErrLocked) {
				return fmt.Errorf("check: %w; stop tokend first (a bbolt store cannot be checked while another process holds it)", err)
			}
			return fmt.Errorf("check: %w", err)
		}
		defer st.Close()
		fmt.Fprintf(out, "store: %s (bbolt)\n", paths.DB)
		if err := printBoltCheck(out, st.Check()); err != nil {
			return err
		}
	}
	return a.withReadOnlyService(cmd.Context(), func(ctx context.Context, svc *appliance.Service) error {
		rep, err := svc.CheckConsistency(ctx)
		if err != nil && !errors.Is(err, appliance.ErrInconsistent) {
			return fmt.Errorf("check: %w", err)
		}
		printConsistency(out, rep)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		return nil
	})
}

// boltHexKey is a key as bbolt's check prints it.
var boltHexKey = regexp.MustCompile(`\(hex\)[0-9a-fA-F]*`)

// printBoltCheck prints the result of boltstore's Check and returns
// errBoltDamaged if it found anything.
func printBoltCheck(out io.Writer, checkErr error) error {
	if checkErr == nil {
		fmt.Fprintln(out, "bbolt: every page reachable once, freelist and tree agree")
		return nil
	}
	if errors.Is(checkErr, appliance.ErrClosed) {
		return fmt.Errorf("check: %w", checkErr)
	}
	// Check joins its problems; each is a page number and what is wrong.
	// Key-order problems print keys in hex, and a key may hold an
	// activation code's or API token's hash: the keys are left out.
	n := 0
	for l := range strings.SplitSeq(checkErr.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			fmt.Fprintln(out, "problem: bbolt:", boltHexKey.ReplaceAllString(l, "(hex)…"))
			n++
		}
	}
	fmt.Fprintf(out, "bbolt: %d problems; the records are not read\n", n)
	return fmt.Errorf("check: %w", errBoltDamaged)
}

// hashKey is the store key of an activation code (ac/) or API token index
// entry (ki/): the rest of it is the keyed hash of the secret.
var hashKey = regexp.MustCompile(`\b(ac|ki)/[0-9a-fA-F]+`)

// printConsistency prints one line per check family with what it read,
// then "consistent" or the problems. The report's problems name serials,
// user ids, index keys and counter fields; a decoding error also names the
// record's key, which for a code or API token is a hash, so those are cut.
func printConsistency(out io.Writer, rep appliance.ConsistencyReport) {
	fmt.Fprintf(out, "users: %d records; login, e-mail, display-name and external-id indexes checked both ways\n", rep.Users)
	fmt.Fprintf(out, "tokens: %d records; state and tokens-by-user indexes, assigned users, at most %d counted per user\n",
		rep.Tokens, appliance.MaxTokensPerUser)
	fmt.Fprintf(out, "import jobs: %d records; checked against the tokens that name them\n", rep.Jobs)
	fmt.Fprintf(out, "activation codes: %d records; outstanding ones checked against their tokens\n", rep.Codes)
	fmt.Fprintln(out, "counters: token and user inventory counters checked against the records")
	fmt.Fprintln(out, "API tokens: hash index checked against the records")
	if rep.ProblemsTotal == 0 {
		fmt.Fprintln(out, "consistent")
		return
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(out, "problem:", hashKey.ReplaceAllString(p, "$1/…"))
	}
	if rep.ProblemsTotal > len(rep.Problems) {
		fmt.Fprintf(out, "… and %d more problems not listed\n", rep.ProblemsTotal-len(rep.Problems))
	}
	fmt.Fprintf(out, "inconsistent: %d problems\n", rep.ProblemsTotal)
}
