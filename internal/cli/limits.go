package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
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
	return &cobra.Command{
		Use:   "recommend CAL",
		Short: "Recommend a Cal's CPU and memory quotas from its usage over the last hour, and flag over- or under-provisioning",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			r, err := c.Recommendations(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				for _, x := range r.Resources {
					flag := ""
					if x.Flag != "" {
						flag = " [" + x.Flag + "]"
					}
					fmt.Fprintf(w, "%-13s quota %d, recommended %d%s\n  %s\n", x.Resource, x.Quota, x.Recommended, flag, x.Reason)
				}
			})
		},
	}
}
