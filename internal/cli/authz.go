package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
)

func (a *app) authzCmd() *cobra.Command {
	var surface string
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Print the authorization table: every route, who may call it, the permission it needs and how its target is scoped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			all, err := c.Authz(cmd.Context())
			if err != nil {
				return err
			}
			rows := []api.AuthzEntry{}
			for _, e := range all {
				if surface == "" || e.Surface == surface {
					rows = append(rows, e)
				}
			}
			return a.print(rows, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SURFACE\tROUTE\tWHO\tPERMISSION\tSCOPE")
				for _, e := range rows {
					perm := e.Permission
					if perm == "" {
						perm = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Surface, e.Route, strings.Join(e.Who, ","), perm, e.Scope)
				}
				_ = tw.Flush() // its error is w's: termtext.Writer keeps it, and print returns it
			})
		},
	}
	cmd.Flags().StringVar(&surface, "surface", "", "only this surface (operator, cal-api, local, cal-serve, gateway, router, console)")
	return cmd
}
