package sim

import (
	"fmt"
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

// Quality is decision quality against the oracle.
type Quality struct {
	Decisions int64 `json:"decisions"`
	// OptimalPercent is the share of decisions that left the pool within
	// the oracle's band; Short and Over count the others.
	OptimalPercent float64 `json:"optimal_percent"`
	Short          int64   `json:"short"`
	Over           int64   `json:"over"`
	// CalHours are the running children's hours; OracleCalHours the
	// oracle's; OverOraclePercent how many more the rules used.
	CalHours          float64 `json:"cal_hours"`
	OracleCalHours    float64 `json:"oracle_cal_hours"`
	OverOraclePercent float64 `json:"over_oracle_percent"`
	// UnderCapacityPercent is the share of pool-time in which the running
	// children could not serve the load.
	UnderCapacityPercent float64 `json:"under_capacity_percent"`
	Oscillations         int     `json:"oscillations"`
	LimitHits            int     `json:"limit_hits"`
	Spawns               int     `json:"spawns"`
	Retires              int     `json:"retires"`
	DeployFailures       int     `json:"deploy_failures"`
	Lost                 int     `json:"lost"` // children lost to breakage and the host outage
}

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

// RuleStats are one rule's evaluations over the run.
type RuleStats struct {
	Rule        string `json:"rule"`
	Evaluations int64  `json:"evaluations"`
	Fired       int64  `json:"fired"`
	Suppressed  int64  `json:"suppressed"`
	Disabled    int64  `json:"disabled,omitempty"` // evaluations while disabled
	Error       string `json:"error,omitempty"`    // the first pool's reason
}

// Report is a simulation's outcome.
type Report struct {
	Pools          int                `json:"pools"`
	Duration       string             `json:"duration"`
	Tick           string             `json:"tick"`
	Seed           uint64             `json:"seed"`
	Hosts          int                `json:"hosts"`
	Zones          int                `json:"zones"`
	Ticks          int                `json:"ticks"`
	CalsSimulated  int                `json:"cals_simulated"` // every Cal that existed: parents and children
	PeakCals       int                `json:"peak_cals"`      // most alive at once
	RuleEvals      int64              `json:"rule_evaluations"`
	WallSeconds    float64            `json:"wall_seconds"`
	Total          Quality            `json:"total"`
	Workloads      map[string]Quality `json:"workloads"`
	Rules          []RuleStats        `json:"rules"`
	LimitHits      map[string]int     `json:"limit_hits"`
	ChildrenByZone map[string]int     `json:"children_by_zone"` // at the end
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
func (r *Report) Print(w io.Writer) {
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
