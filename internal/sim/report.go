package sim

import (
	"fmt"
	"github.com/soulfra/calnet/api"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// tally counts decisions and their quality for the whole run or a shape.
type tally struct {
	decisions, optimal, short, over int64
	underTicks                      int64
	calTicks, oracleTicks           int64 // children running, and needed, summed over ticks
	spawns, retires                 int
	deployFailures, lost            int
	oscillations, limitHits         int
}

// Report, Quality and RuleStats are the API's wire types (POST /v1/sim).
type (
	Report    = api.SimReport
	Quality   = api.SimQuality
	RuleStats = api.SimRuleStats
)

func (t *tally) quality(tick time.Duration) Quality {
	pct := func(a, b int64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	h := tick.Hours()
	q := Quality{Decisions: t.decisions, OptimalPercent: pct(t.optimal, t.decisions), Short: t.short, Over: t.over,
		CalHours: float64(t.calTicks) * h, OracleCalHours: float64(t.oracleTicks) * h,
		UnderCapacityPercent: pct(t.underTicks, t.decisions), Oscillations: t.oscillations, LimitHits: t.limitHits,
		Spawns: t.spawns, Retires: t.retires, DeployFailures: t.deployFailures, Lost: t.lost}
	if t.oracleTicks > 0 {
		q.OverOraclePercent = pct(t.calTicks-t.oracleTicks, t.oracleTicks)
	}
	return q
}

func (s *sim) report(wall time.Duration, ticks int) *Report {
	r := &Report{Pools: s.cfg.Pools, Duration: s.cfg.Duration.String(), Tick: s.cfg.Tick.String(), Seed: s.cfg.Seed,
		Hosts: s.cfg.Hosts, Zones: s.cfg.Zones, Ticks: ticks, CalsSimulated: s.simCals, PeakCals: s.peak,
		WallSeconds: wall.Seconds(), Total: s.total.quality(s.cfg.Tick), Workloads: map[string]Quality{},
		LimitHits: s.limits, ChildrenByZone: map[string]int{}}
	for w, t := range s.byShape {
		r.Workloads[w] = t.quality(s.cfg.Tick)
	}
	for _, c := range s.compiled {
		st := RuleStats{Rule: c.Name}
		for _, p := range s.pools {
			if o := p.outcomes[c.Name]; o != nil {
				st.Evaluations += o.Evaluations
				st.Fired += o.Fired
				st.Suppressed += o.Suppressed
				st.Disabled += o.Disabled
				if st.Error == "" {
					st.Error = o.Error
				}
			}
		}
		r.RuleEvals += st.Evaluations
		r.Rules = append(r.Rules, st)
	}
	for _, p := range s.pools {
		for z, n := range p.zones {
			r.ChildrenByZone[z] += n
		}
	}
	return r
}

// Print writes the report for a terminal.
func Print(w io.Writer, r *Report) {
	fmt.Fprintf(w, "simulated %d pools for %s in %d ticks of %s (seed %d) on %d hosts in %d zones: %d Cals, at most %d at once; %d rule evaluations in %.1f s\n",
		r.Pools, r.Duration, r.Ticks, r.Tick, r.Seed, r.Hosts, r.Zones, r.CalsSimulated, r.PeakCals, r.RuleEvals, r.WallSeconds)
	fmt.Fprintf(w, "\n%-10s %9s %8s %8s %10s %8s %6s %7s %7s %7s %6s %6s\n", "workload", "decisions", "optimal", "short", "over", "cal-h+", "under", "spawns", "retires", "osc", "limit", "lost")
	row := func(name string, q Quality) {
		fmt.Fprintf(w, "%-10s %9d %7.2f%% %8d %10d %7.1f%% %5.2f%% %7d %7d %7d %6d %6d\n", name, q.Decisions, q.OptimalPercent, q.Short, q.Over,
			q.OverOraclePercent, q.UnderCapacityPercent, q.Spawns, q.Retires, q.Oscillations, q.LimitHits, q.Lost)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Workloads)) {
		row(k, r.Workloads[k])
	}
	row("all", r.Total)
	fmt.Fprintf(w, "\n%-16s %12s %10s %10s\n", "rule", "evaluations", "fired", "suppressed")
	for _, st := range r.Rules {
		fmt.Fprintf(w, "%-16s %12d %10d %10d", st.Rule, st.Evaluations, st.Fired, st.Suppressed)
		if st.Error != "" {
			fmt.Fprintf(w, "  DISABLED: %s", st.Error)
		}
		fmt.Fprintln(w)
	}
	if len(r.LimitHits) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.LimitHits)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.LimitHits[k]))
		}
		fmt.Fprintf(w, "\nrefused spawns: %s\n", strings.Join(parts, ", "))
	}
	var zones []string
	for _, z := range slices.Sorted(maps.Keys(r.ChildrenByZone)) {
		zones = append(zones, fmt.Sprintf("%s %d", z, r.ChildrenByZone[z]))
	}
	fmt.Fprintf(w, "children by zone at the end: %s\n", strings.Join(zones, ", "))
	fmt.Fprintf(w, "\noptimal: the pool ends the evaluation with at least the oracle's children (ceil(load/capacity)) and at most max(need+1, need x (1+headroom)); cal-h+: Cal-hours over the oracle's; under: pool-time short of capacity; osc: direction changes within the oscillation window\n")
}
