package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/atomicfile"
)

func (a *app) adminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Named administrators: each approves requests held by require_approval policies under its own name"}
	var out string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an administrator (root only); its credential is shown once, or written to --out (0600)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			secret, ad, err := c.AddAdmin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out != "" {
				if err := atomicfile.WriteNew(out, []byte(secret+"\n"), 0o600); err != nil {
					return fmt.Errorf("--out: %w (the administrator %s exists now; remove it with calnet admin rm and add it again)", err, ad.Name)
				}
				return a.print(ad, func(w io.Writer) {
					fmt.Fprintf(w, "administrator %s added; its credential is in %s (use it with --token-file)\n", ad.Name, out)
				})
			}
			return a.print(map[string]any{"token": secret, "admin": ad}, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n(administrator %s; the credential is shown only now)\n", secret, ad.Name)
			})
		},
	}
	add.Flags().StringVar(&out, "out", "", "write the credential to this new file (0600) instead of printing it")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List administrators",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			as, err := c.Admins(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(as, func(w io.Writer) {
				for _, ad := range as {
					note := ""
					if ad.Root {
						note = " (root: the admin credential of calnet up)"
					}
					fmt.Fprintf(w, "%s%s\n", ad.Name, note)
				}
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove an administrator (root only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if err := c.RemoveAdmin(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"removed": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "administrator %s removed\n", args[0]) })
		},
	}
	cmd.AddCommand(add, ls, rm)
	return cmd
}

func (a *app) approvalsCmd() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "approvals [ID]",
		Short: "List requests held for administrators' approval (pending first), or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				ap, err := c.GetApproval(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.print(ap, func(w io.Writer) { printApproval(w, ap) })
			}
			as, err := c.Approvals(cmd.Context(), state)
			if err != nil {
				return err
			}
			return a.print(as, func(w io.Writer) {
				if len(as) == 0 {
					fmt.Fprintln(w, "no approval requests")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tOPERATION\tCAL\tBY\tPOLICY\tAPPROVALS\tEXPIRES")
				for _, ap := range as {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\t%s\n", ap.ID, ap.State, ap.Operation, short(ap.Cal), ap.Actor, ap.Policy,
						len(ap.Approvals), ap.Required, ap.ExpiresAt.Local().Format(time.DateTime))
				}
				_ = tw.Flush() // its error is w's: termtext.Writer keeps it, and print returns it
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only requests in this state: pending, approved, rejected, expired")
	return cmd
}

func printApproval(w io.Writer, ap *client.Approval) {
	asked := ap.Actor
	if ap.Behind != "" {
		asked += " (for " + ap.Behind + ", who may not decide it)"
	}
	fmt.Fprintf(w, "%s: %s %s of %s, asked by %s\n  policy %s: %s\n  %d of %d approvals", ap.ID, ap.State, ap.Operation, ap.Cal, asked, ap.Policy, ap.Message, len(ap.Approvals), ap.Required)
	var names []string
	for _, v := range ap.Approvals {
		names = append(names, v.Admin)
	}
	if len(names) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(names, ", "))
	}
	fmt.Fprintln(w)
	if ap.Rejection != nil {
		fmt.Fprintf(w, "  rejected by %s %s\n", ap.Rejection.Admin, ap.Rejection.Comment)
	}
	if ap.Result != "" {
		fmt.Fprintf(w, "  result: %s\n", ap.Result)
	}
}

// voteCmd is calnet approve and calnet reject.
func (a *app) voteCmd(approve bool) *cobra.Command {
	var comment string
	use, short := "approve ID", "Approve a held request as this administrator; the approval that completes the count carries it out"
	if !approve {
		use, short = "reject ID", "Reject a held request (a held spawn is rejected with it)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			vote := c.Approve
			if !approve {
				vote = c.Reject
			}
			ap, err := vote(cmd.Context(), args[0], comment)
			if err != nil {
				return err
			}
			return a.print(ap, func(w io.Writer) { printApproval(w, ap) })
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "a note kept with the vote (at most 500 characters)")
	return cmd
}
