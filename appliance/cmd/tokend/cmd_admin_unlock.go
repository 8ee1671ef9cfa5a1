package main

import (
	"context"
	"fmt"

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
			"account. The unlock is audited. Run it while tokend is stopped.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withOfflineService(cmd.Context(), func(ctx context.Context, svc *appliance.Service) error {
				acc, err := svc.UnlockAdmin(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "admin %s unlocked\n", acc.Name)
				return nil
			})
		},
	}
}
