package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"tokend/appliance"
)

// newAdminUnlockCmd clears an admin account's console lockout, for when no
// other superadmin can (the only superadmin locked itself out, or the
// lockout lasts until unlocked).
func (a *app) newAdminUnlockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock NAME",
		Short: "Unlock a console admin account locked by failed sign-ins",
		Long: "Clear the failed sign-in counter and the lockout of a Security Console admin\n" +
			"account. The unlock is audited. Works whether or not tokend runs on the data dir.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var row adminRow
			err := a.offlineOrRunning(cmd.Context(), false, func(ctx context.Context, svc *appliance.Service) error {
				acc, err := svc.UnlockAdmin(ctx, args[0])
				row = rowOf(acc)
				return err
			}, func(ctx context.Context, api *runningAdminAPI) error {
				return api.callJSON(ctx, http.MethodPost, adminPath(args[0], "/unlock"), nil, &row)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin %s unlocked\n", row.Name)
			return nil
		},
	}
}
