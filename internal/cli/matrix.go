package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/client"
)

func (a *app) matrixCmd() *cobra.Command {
	var grants, lift []string
	cmd := &cobra.Command{
		Use:   "matrix CAL",
		Short: "The permission matrix of a subtree: what each Cal holds, used, and may grant to new children (--grant CAL=PERM,... / --lift CAL to edit, admin)",
		Example: `  calnet matrix team
  calnet matrix team --grant worker=read --grant team=spawn,read
  calnet matrix team --grant worker=       # worker may grant nothing
  calnet matrix team --lift worker         # worker may grant whatever it holds again`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var m *api.PermissionMatrix
			if len(grants)+len(lift) > 0 {
				var rows []client.MatrixChange
				for _, g := range grants {
					cal, perms, ok := strings.Cut(g, "=")
					if !ok || cal == "" {
						return fmt.Errorf("--grant %q: want CAL=PERM,PERM (or CAL= to grant nothing)", g)
					}
					id, err := c.Get(ctx, cal)
					if err != nil {
						return fmt.Errorf("--grant %s: %w", cal, err)
					}
					list := []string{}
					for _, p := range strings.Split(perms, ",") {
						if p = strings.TrimSpace(p); p != "" {
							list = append(list, p)
						}
					}
					rows = append(rows, client.MatrixChange{Cal: id.ID, Grantable: list})
				}
				for _, cal := range lift {
					id, err := c.Get(ctx, cal)
					if err != nil {
						return fmt.Errorf("--lift %s: %w", cal, err)
					}
					rows = append(rows, client.MatrixChange{Cal: id.ID})
				}
				if m, err = c.SetMatrix(ctx, args[0], rows); err != nil {
					return err
				}
			} else if m, err = c.Matrix(ctx, args[0]); err != nil {
				return err
			}
			return a.print(m, func(w io.Writer) { printMatrix(w, m) })
		},
	}
	cmd.Flags().StringArrayVar(&grants, "grant", nil, "CAL=PERM,...: what CAL may grant to new children (repeatable)")
	cmd.Flags().StringArrayVar(&lift, "lift", nil, "CAL: lift CAL's limit (it may grant what it holds)")
	return cmd
}

// printMatrix shows a row per Cal and a column per permission: "-" not
// held; "held" and the uses seen; "+" may be granted to new children.
func printMatrix(w io.Writer, m *api.PermissionMatrix) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprint(tw, "CAL\tDEPTH")
	for _, p := range m.Permissions {
		fmt.Fprint(tw, "\t"+strings.ToUpper(p))
	}
	fmt.Fprintln(tw)
	for _, r := range m.Rows {
		name := r.Name
		if name == "" {
			name = short(r.Cal)
		}
		fmt.Fprintf(tw, "%s\t%d", name, r.Depth)
		for _, p := range m.Permissions {
			cellText := "-"
			if slices.Contains(r.Held, p) {
				cellText = "held " + strconv.FormatInt(r.Used[p], 10)
				if r.Grantable == nil || slices.Contains(r.Grantable, p) {
					cellText += " +"
				}
			}
			fmt.Fprint(tw, "\t"+cellText)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush() // its error is w's: termtext.Writer keeps it, and print returns it
	fmt.Fprintln(w, "held N: held, used N times; +: may grant it to new children; -: not held")
}
