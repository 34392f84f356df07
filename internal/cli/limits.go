package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
)

func (a *app) limitsCmd() *cobra.Command {
	var maxCals, spawnBurst, parentBurst int
	var spawnRate, parentRate float64
	cmd := &cobra.Command{
		Use:   "limits",
		Short: "Show the spawn limits, or change them while the network runs (flags)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			l, err := c.Limits(cmd.Context())
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.NFlag() > 0 {
				if f.Changed("max-cals") {
					l.MaxCals = maxCals
				}
				if f.Changed("spawn-rate") {
					l.SpawnRate = spawnRate
				}
				if f.Changed("spawn-burst") {
					l.SpawnBurst = spawnBurst
				}
				if f.Changed("parent-spawn-rate") {
					l.ParentRate = parentRate
				}
				if f.Changed("parent-spawn-burst") {
					l.ParentBurst = parentBurst
				}
				if l, err = c.SetLimits(cmd.Context(), *l); err != nil {
					return err
				}
			}
			return a.print(l, func(w io.Writer) {
				fmt.Fprintf(w, "max cals            %d\nspawn rate / burst  %g/s / %d\nper parent          %g/s / %d\n", l.MaxCals, l.SpawnRate, l.SpawnBurst, l.ParentRate, l.ParentBurst)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&maxCals, "max-cals", 0, "most Cals the network may hold")
	f.Float64Var(&spawnRate, "spawn-rate", 0, "network-wide spawns per second")
	f.IntVar(&spawnBurst, "spawn-burst", 0, "network-wide burst")
	f.Float64Var(&parentRate, "parent-spawn-rate", 0, "spawns per second per parent")
	f.IntVar(&parentBurst, "parent-spawn-burst", 0, "burst per parent")
	return cmd
}

func (a *app) recommendCmd() *cobra.Command {
	var tmpl string
	cmd := &cobra.Command{
		Use:   "recommend [CAL | --template NAME]",
		Short: "Recommend quotas and least-privilege permissions from observed use, for a Cal or for the Cals of a template",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			printRes := func(w io.Writer, rs []api.Recommendation, perms *api.PermissionRecommendation) {
				for _, x := range rs {
					flag := ""
					if x.Flag != "" {
						flag = " [" + x.Flag + "]"
					}
					fmt.Fprintf(w, "%-13s quota %d, recommended %d%s\n  %s\n", x.Resource, x.Quota, x.Recommended, flag, x.Reason)
				}
				if perms != nil {
					fmt.Fprintf(w, "%-13s held %s, recommended %s\n  %s\n", "permissions", strings.Join(perms.Held, ","), strings.Join(perms.Recommended, ","), perms.Reason)
				}
			}
			switch {
			case tmpl != "" && len(args) == 1:
				return fmt.Errorf("give a Cal or --template, not both")
			case tmpl != "":
				r, err := c.TemplateRecommendations(cmd.Context(), tmpl)
				if err != nil {
					return err
				}
				return a.print(r, func(w io.Writer) {
					fmt.Fprintf(w, "template %s: %d live Cals\n", r.Template, r.Cals)
					printRes(w, r.Resources, r.Permissions)
					o := r.Outcomes
					fmt.Fprintf(w, "%-13s %d spawns: %d running, %d failed, %d rejected; time to operational p50 %.1f ms, p95 %.1f ms; deploy timeout %s\n",
						"outcomes", o.Spawns, o.Running, o.Failed, o.Rejected, o.OperationalP50, o.OperationalP95, o.DeployTimeout)
					for _, f := range o.LastFailures {
						fmt.Fprintf(w, "  failed: %s\n", f)
					}
					if o.BackedOff != "" {
						fmt.Fprintf(w, "  backed off until %s\n", o.BackedOff)
					}
				})
			case len(args) == 1:
				r, err := c.Recommendations(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.print(r, func(w io.Writer) { printRes(w, r.Resources, r.Permissions) })
			}
			return fmt.Errorf("give a Cal, or --template NAME")
		},
	}
	cmd.Flags().StringVar(&tmpl, "template", "", "recommend for the Cals of this template")
	return cmd
}
