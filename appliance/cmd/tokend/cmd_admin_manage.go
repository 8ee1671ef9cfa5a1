package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
)

// The admin-account commands work whether or not tokend runs on the data
// dir, the way `tokend backup` and `tokend admin rotate-bootstrap-token`
// do: a stopped tokend's store is opened directly; when a running tokend
// holds it, the command asks that tokend's admin API with DATA_DIR/admin-token
// over DATA_DIR/tls.crt (or tls_cert). Both ways run the same Service rules
// and write the same audit records (the actor is "tokend admin" offline and
// the bootstrap API token online).

// offlineOrRunning runs offline on a stopped tokend's store, or online
// through the running tokend's admin API when the store is locked by it.
func (a *app) offlineOrRunning(ctx context.Context, readOnly bool,
	offline func(context.Context, *appliance.Service) error, online func(context.Context, *runningAdminAPI) error) error {
	err := a.offlineService(ctx, readOnly, offline)
	if !errors.Is(err, boltstore.ErrLocked) {
		return err
	}
	cfg, paths, err := a.configAndPaths()
	if err != nil {
		return err
	}
	api, err := newRunningAdminAPI(cfg, paths)
	if err != nil {
		return fmt.Errorf("tokend is running: %w", err)
	}
	return online(ctx, api)
}

// apiProblemError is a refusal by the running tokend, shown by its problem
// detail (which never holds a secret).
type apiProblemError struct {
	Status int
	Code   string
	Detail string
}

func (e *apiProblemError) Error() string {
	return fmt.Sprintf("the running tokend refused: %s (%s)", e.Detail, e.Code)
}

// callJSON sends one request with an optional JSON body to the running
// tokend and decodes a 2xx answer into out (if not nil).
func (r *runningAdminAPI) callJSON(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("tokend is running but its admin API cannot be reached: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		p := &apiProblemError{Status: resp.StatusCode}
		if json.Unmarshal(raw, p) != nil || p.Code == "" {
			p.Code, p.Detail = "http_"+fmt.Sprint(resp.StatusCode), resp.Status
		}
		return p
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// adminRow is what the commands show of an admin account, from either way.
type adminRow struct {
	Name               string     `json:"name"`
	Role               string     `json:"role"`
	SecondFactorSerial string     `json:"second_factor_serial"`
	Disabled           bool       `json:"disabled"`
	MustChangePassword bool       `json:"must_change_password"`
	LastSignInAt       *time.Time `json:"last_sign_in_at"`
	Password           string     `json:"password"` // a generated one, answered once
}

func rowOf(acc appliance.AdminAccount) adminRow {
	r := adminRow{Name: acc.Name, Role: acc.Role, SecondFactorSerial: acc.SecondFactorSerial, Disabled: acc.Disabled,
		MustChangePassword: acc.MustChangePassword}
	if !acc.LastLoginAt.IsZero() {
		t := acc.LastLoginAt
		r.LastSignInAt = &t
	}
	return r
}

// rowWithPassword is rowOf with the password the Service generated (if
// any), which the command prints once.
func rowWithPassword(acc appliance.AdminAccount, generated appliance.Secret) adminRow {
	r := rowOf(acc)
	r.Password = generated.Reveal()
	return r
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeAdminList prints one admin per line: name, role, second factor
// (yes/no), disabled (yes/no), last sign-in (RFC 3339 UTC, or "never"),
// in columns separated by spaces (names hold none). No header: scripts
// read it line by line.
func writeAdminList(w io.Writer, rows []adminRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		last := "never"
		if r.LastSignInAt != nil {
			last = r.LastSignInAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, yesNo(r.SecondFactorSerial != ""), yesNo(r.Disabled), last)
	}
	return tw.Flush()
}

func adminPath(name string, rest string) string {
	return "/api/v1/admins/" + url.PathEscape(name) + rest
}

func (a *app) newAdminListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List console admin accounts",
		Long: "Print one admin account per line: name, role, second factor (yes/no),\n" +
			"disabled (yes/no) and last sign-in (RFC 3339, or never). Works whether or not\n" +
			"tokend runs on the data dir.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rows []adminRow
			err := a.offlineOrRunning(cmd.Context(), true, func(ctx context.Context, svc *appliance.Service) error {
				list, err := svc.ListAdmins(ctx)
				for _, acc := range list {
					rows = append(rows, rowOf(acc))
				}
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				var list struct {
					Items []adminRow `json:"items"`
				}
				err := api.callJSON(ctx, http.MethodGet, "/api/v1/admins", nil, &list)
				rows = list.Items
				return err
			})
			if err != nil {
				return err
			}
			return writeAdminList(cmd.OutOrStdout(), rows)
		},
	}
}

func (a *app) newAdminPasswdCmd() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Reset a console admin account's password",
		Long: "Reset the password of a Security Console admin account. Without --password-stdin\n" +
			"a one-time password is generated and printed once: the admin must change it at\n" +
			"the next sign-in. With it, the first line of standard input is the new password\n" +
			"(at least 12 characters). A reset also clears a sign-in lockout. Works whether\n" +
			"or not tokend runs on the data dir.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := a.passwordFromStdin(fromStdin)
			if err != nil {
				return err
			}
			var row adminRow
			err = a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				acc, generated, err := svc.ResetAdminPassword(ctx, args[0], password)
				row = rowWithPassword(acc, generated)
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				var body any
				if password != "" {
					body = map[string]string{"password": password.Reveal()}
				}
				return api.callJSON(ctx, http.MethodPost, adminPath(args[0], "/password"), body, &row)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if row.Password == "" {
				fmt.Fprintf(out, "password of admin %s set\n", row.Name)
				return nil
			}
			fmt.Fprintf(out, "one-time password of admin %s (shown once, not stored; to be changed at the next sign-in): %s\n",
				row.Name, row.Password)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the new password from the first line of standard input")
	return cmd
}

func (a *app) newAdminSecondFactorCmd() *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "set-second-factor NAME [SERIAL]",
		Short: "Bind (or with --remove, remove) a console admin's second-factor token",
		Long: "Make the token SERIAL the admin's second factor: the tokencode typed after the\n" +
			"password at console sign-in. The token must be assigned to the user named like\n" +
			"the admin (the admin's own token), hold a seed (provisioned, or imported with\n" +
			"one) and have no outstanding activation code. --remove drops the second factor.\n" +
			"Works whether or not tokend runs on the data dir.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial := ""
			switch {
			case remove && len(args) == 2:
				return errors.New("give either SERIAL or --remove")
			case !remove && len(args) == 1:
				return errors.New("SERIAL is required (or --remove to drop the second factor)")
			case !remove:
				serial = args[1]
			}
			var row adminRow
			err := a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				if err := svc.SetAdminSecondFactor(ctx, args[0], serial); err != nil {
					return err
				}
				acc, err := svc.GetAdmin(ctx, args[0])
				row = rowOf(acc)
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				return api.callJSON(ctx, http.MethodPut, adminPath(args[0], "/second-factor"), map[string]string{"serial": serial}, &row)
			})
			if err != nil {
				return err
			}
			if serial == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "admin %s has no second factor now\n", row.Name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "admin %s: second factor token %s\n", row.Name, serial)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the admin's second factor")
	return cmd
}

func (a *app) newAdminDisableCmd(disabled bool) *cobra.Command {
	verb, short := "enable", "Enable a disabled console admin account"
	if disabled {
		verb, short = "disable", "Disable a console admin account (it cannot sign in)"
	}
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Long: short + ". The last enabled superadmin cannot be disabled.\n" +
			"Works whether or not tokend runs on the data dir.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var row adminRow
			err := a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				acc, err := svc.SetAdminDisabled(ctx, args[0], disabled)
				row = rowOf(acc)
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				return api.callJSON(ctx, http.MethodPost, adminPath(args[0], "/"+verb), nil, &row)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin %s %sd\n", row.Name, verb)
			return nil
		},
	}
}

func (a *app) newAdminDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a console admin account",
		Long: "Delete a Security Console admin account; its sessions end at their next request.\n" +
			"The last enabled superadmin cannot be deleted. Works whether or not tokend runs\n" +
			"on the data dir.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				return svc.DeleteAdmin(ctx, args[0])
			}, func(ctx context.Context, api *runningAdminAPI) error {
				return api.callJSON(ctx, http.MethodDelete, adminPath(args[0], ""), nil, nil)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin %s deleted\n", strings.TrimSpace(args[0]))
			return nil
		},
	}
}
