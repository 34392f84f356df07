package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/sim"
)

func (a *app) simCmd() *cobra.Command {
	cfg := sim.DefaultConfig()
	var workloads, rulesFile, policiesFile, fromCal string
	var target float64
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate the spawn rules, admission policies and placement on synthetic workloads, and score the decisions against an oracle",
		Long: `calnet sim runs the same rule engine, policies and placement as the control plane, on a
virtual clock, over pools of simulated Cals: each pool is a parent with the rules and children
that serve its workload (step, ramp, daily, spikes, failures). The workload reports the gauges
load, capacity, utilization (percent) and queue_depth; cpu_percent is the children's average
busy percentage. The oracle holds at each moment the fewest children that meet the load; a
decision is optimal when it leaves the pool with at least that many and at most the headroom
above it. With no --rules the built-in rule set runs (shown with -o json in the report).

Preview a rule set before enabling it:  calnet sim --rules rules.yaml --pools 50 --workload spikes`,
		Example: `  calnet sim                                   # 1,000 pools for a day, ~100,000 Cals
  calnet sim --rules rules.yaml --workload daily,spikes --pools 100
  calnet sim --policies policies.yaml --spawn-rate 20 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Workloads, err = sim.ParseShapes(workloads); err != nil {
				return fmt.Errorf("--workload: %w", err)
			}
			if rulesFile != "" && fromCal != "" {
				return fmt.Errorf("--rules and --cal: give one of them")
			}
			if fromCal != "" {
				c, err := a.apiClient()
				if err != nil {
					return err
				}
				v, err := c.Rules(cmd.Context(), fromCal)
				if err != nil {
					return fmt.Errorf("--cal: %w", err)
				}
				if len(v.Rules) == 0 {
					return fmt.Errorf("--cal %s: the Cal has no rules", fromCal)
				}
				cfg.Rules = v.Rules
			}
			if rulesFile != "" {
				var doc api.RulesDoc
				if err := readDoc(rulesFile, &doc); err != nil {
					return fmt.Errorf("--rules: %w", err)
				}
				cfg.Rules = doc.Rules
			}
			if policiesFile != "" {
				var doc api.PoliciesDoc
				if err := readDoc(policiesFile, &doc); err != nil {
					return fmt.Errorf("--policies: %w", err)
				}
				cfg.Policies = doc.Policies
			}
			if target < 0 || target > 100 {
				return fmt.Errorf("--target: %g: want 0 to 100 percent", target)
			}
			r, err := sim.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := struct {
				*sim.Report
				Rules         any     `json:"rule_set"`
				TargetPercent float64 `json:"target_percent"`
				Met           bool    `json:"target_met"`
			}{r, cfg.Rules, target, r.Total.OptimalPercent >= target}
			if err := a.print(out, func(w io.Writer) {
				sim.Print(w, r)
				verdict := "met"
				if !out.Met {
					verdict = "NOT met"
				}
				fmt.Fprintf(w, "target: %.1f%% of decisions optimal: %s (%.2f%%)\n", target, verdict, r.Total.OptimalPercent)
			}); err != nil {
				return err
			}
			if !out.Met {
				return &exitError{code: 3}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Pools, "pools", cfg.Pools, "pools (parent Cals with the rules), each with its own workload")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "virtual time to simulate")
	f.DurationVar(&cfg.Tick, "tick", cfg.Tick, "evaluation interval (the control plane's is 5s)")
	f.StringVar(&workloads, "workload", "all", "workload shapes, comma-separated: "+strings.Join(sim.Shapes, ", ")+", or all")
	f.IntVar(&cfg.PeakChildren, "peak", cfg.PeakChildren, "a pool's mean peak demand, in children")
	f.Float64Var(&cfg.Headroom, "headroom", cfg.Headroom, "the oracle's tolerance above the fewest children that meet the load (0.25: 25%)")
	f.StringVar(&rulesFile, "rules", "", "the rules to simulate (YAML or JSON, as for calnet rules --set); default: the built-in set")
	f.StringVar(&fromCal, "cal", "", "simulate the rules a Cal of the running network has now (needs the API)")
	f.StringVar(&policiesFile, "policies", "", "admission policies to apply (YAML or JSON, as for calnet policy --set)")
	f.IntVar(&cfg.Hosts, "hosts", cfg.Hosts, "simulated hosts")
	f.IntVar(&cfg.Zones, "zones", cfg.Zones, "failure domains the hosts are spread over")
	f.BoolVar(&cfg.HostOutage, "host-outage", cfg.HostOutage, "take the first host down for 30 minutes at a third of the run")
	f.Float64Var(&cfg.SpawnRate, "spawn-rate", cfg.SpawnRate, "network-wide spawns per second")
	f.Float64Var(&cfg.ParentRate, "parent-spawn-rate", cfg.ParentRate, "spawns per second per parent")
	f.IntVar(&cfg.MaxCals, "max-cals", cfg.MaxCals, "most Cals the network may hold")
	f.IntVar(&cfg.MaxChildren, "max-children", cfg.MaxChildren, "most children per parent")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (a seed gives the same report)")
	f.Float64Var(&target, "target", 95, "percent of optimal decisions below which the command exits 3")
	return cmd
}
