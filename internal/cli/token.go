package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Developer API tokens scoped to a Cal's subtree and a permission subset"}
	var name, parent string
	var perms []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token (shown once; stored hashed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			secret, t, err := c.CreateToken(cmd.Context(), name, parent, perms)
			if err != nil {
				return err
			}
			return a.print(map[string]any{"token": secret, "record": t}, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n(token %s for the subtree of %s with %s; it is shown only now)\n", secret, t.ID, short(t.Parent), strings.Join(t.Permissions, ","))
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "a label")
	create.Flags().StringVar(&parent, "parent", "", "the Cal whose subtree the token may act on (default the Master Cal)")
	create.Flags().StringSliceVar(&perms, "perm", []string{"read"}, "permissions the token may grant and use")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(ts, func(w io.Writer) {
				for _, t := range ts {
					fmt.Fprintf(w, "%s  %-12s  parent %s  %s\n", t.ID, t.Name, short(t.Parent), strings.Join(t.Permissions, ","))
				}
			})
		},
	}
	rm := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if err := c.DeleteToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"deleted": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "token %s revoked\n", args[0]) })
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}
