package sim

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soulfra/calnet/rules"
)

// small is a day of one pool per shape: quick, and still every shape.
func small() Config {
	c := DefaultConfig()
	c.Pools, c.PeakChildren, c.Hosts = 5, 60, 6
	return c
}

// baseline is small() with the default rules, run once for every test.
var baseline = sync.OnceValues(func() (*Report, error) { return Run(context.Background(), small()) })

func base(t *testing.T) *Report {
	t.Helper()
	r, err := baseline()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRun(t *testing.T, c Config) *Report {
	t.Helper()
	r, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDefaultRulesMeetTarget: the built-in rules make >= 95% optimal
// decisions on every shape, with little shortfall.
func TestDefaultRulesMeetTarget(t *testing.T) {
	r := base(t)
	for w, q := range r.Workloads {
		if q.OptimalPercent < 95 || q.UnderCapacityPercent > 2 {
			t.Errorf("%s: %.2f%% optimal, %.2f%% under capacity", w, q.OptimalPercent, q.UnderCapacityPercent)
		}
	}
	if r.Total.Decisions != int64(r.Pools*r.Ticks) || r.RuleEvals != int64(r.Pools*r.Ticks*len(DefaultRules())) {
		t.Fatalf("decisions %d, evaluations %d for %d pools x %d ticks", r.Total.Decisions, r.RuleEvals, r.Pools, r.Ticks)
	}
	if r.Total.Spawns == 0 || r.Total.Retires == 0 || r.Total.Lost == 0 || r.Total.DeployFailures == 0 {
		t.Fatalf("the run exercised too little: %+v", r.Total)
	}
}

// TestDeterministic: a seed gives the same report, however many workers
// step the rules; another seed gives another.
func TestDeterministic(t *testing.T) {
	c := small()
	c.Duration = 6 * time.Hour
	c.Workers = 1
	a := mustRun(t, c)
	c.Workers = 4
	b := mustRun(t, c)
	a.WallSeconds, b.WallSeconds = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("one worker:\n%+v\nfour workers:\n%+v", a, b)
	}
	c.Seed = 2
	d := mustRun(t, c)
	d.WallSeconds = 0
	if reflect.DeepEqual(a.Total, d.Total) {
		t.Fatal("seeds 1 and 2 gave the same totals")
	}
}

func without(names ...string) []rules.Rule {
	var out []rules.Rule
	for _, r := range DefaultRules() {
		keep := true
		for _, n := range names {
			keep = keep && r.Name != n
		}
		if keep {
			out = append(out, r)
		}
	}
	return out
}

// TestScoresTellRulesApart: the report's measures move the right way for
// worse rule sets, so an operator previewing a rule sees its faults.
func TestScoresTellRulesApart(t *testing.T) {
	b := base(t)
	base := b.Total

	c := small()
	c.Rules = without("scale-down", "drain")
	noDown := mustRun(t, c).Total
	if noDown.OverOraclePercent < 2*base.OverOraclePercent || noDown.OptimalPercent > base.OptimalPercent-10 || noDown.Retires != 0 {
		t.Errorf("without scale-down: %.1f%% over the oracle (base %.1f%%), %.1f%% optimal (base %.1f%%)",
			noDown.OverOraclePercent, base.OverOraclePercent, noDown.OptimalPercent, base.OptimalPercent)
	}

	c = small()
	c.Rules = without("surge")
	slow := mustRun(t, c)
	if slow.Workloads[Step].UnderCapacityPercent <= 2*b.Workloads[Step].UnderCapacityPercent {
		t.Errorf("without surge the step workload is not short for longer: %.2f%%", slow.Workloads[Step].UnderCapacityPercent)
	}

	// Overlapping thresholds: scale up above 80%, down below 85%.
	c = small()
	c.Rules = DefaultRules()
	c.Rules[0].When, c.Rules[0].Clear = `gauges.utilization > 80.0`, ""
	c.Rules[2].When = `idle_children > 0 && gauges.utilization < 85.0`
	c.Rules[2].For = 0
	flap := mustRun(t, c).Total
	if flap.Oscillations < 3*base.Oscillations {
		t.Errorf("overlapping thresholds: %d oscillations, base %d", flap.Oscillations, base.Oscillations)
	}
}

// TestLimitsAndPolicies: rules act only through the spawn engine's limits
// and the admission policies, and every refusal is counted by reason.
func TestLimitsAndPolicies(t *testing.T) {
	base := base(t).Total
	c := small()
	c.SpawnRate, c.SpawnBurst = 0.05, 1
	r := mustRun(t, c)
	if r.LimitHits["network spawn rate"] == 0 || r.Total.UnderCapacityPercent < 5*base.UnderCapacityPercent {
		t.Errorf("a network rate of one spawn per 20 s: hits %v, %.2f%% under capacity (base %.2f%%)", r.LimitHits, r.Total.UnderCapacityPercent, base.UnderCapacityPercent)
	}

	c = small()
	c.MaxChildren = 20
	r = mustRun(t, c)
	if r.LimitHits["limit max_children"] == 0 {
		t.Errorf("max_children 20 with peaks up to 90: hits %v", r.LimitHits)
	}

	c = small()
	c.Policies = []rules.Policy{{Name: "no-surge", Deny: `actor == "rule:surge"`, Message: "surge is off"}}
	r = mustRun(t, c)
	if r.LimitHits["policy no-surge"] == 0 || r.Rules[1].Fired == 0 {
		t.Errorf("policy: hits %v, surge fired %d", r.LimitHits, r.Rules[1].Fired)
	}
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Fatal("zero config accepted")
	}
	c.Policies = []rules.Policy{{Name: "all", Deny: `true`, Message: "no"}}
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "denies every request") {
		t.Fatalf("deny-everything policy: %v", err)
	}
}

// TestHostOutage: the outage loses the host's Cals, placement keeps new
// ones off it while it is down, and the rules restore capacity.
func TestHostOutage(t *testing.T) {
	c := small()
	down := c.Duration / 3
	onHost0 := 0
	r, err := run(context.Background(), c, func(s *sim, now time.Duration) {
		if now < down || now >= down+30*time.Minute {
			return
		}
		for _, p := range s.pools {
			for _, ch := range p.children {
				if ch.host == 0 {
					onHost0++
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if onHost0 != 0 {
		t.Fatalf("%d child-ticks on the host while it was down", onHost0)
	}
	c.HostOutage = false
	calm := mustRun(t, c)
	if r.Total.Lost <= calm.Total.Lost || !reflect.DeepEqual(r.Total, base(t).Total) {
		t.Fatalf("lost %d with the outage, %d without", r.Total.Lost, calm.Total.Lost)
	}
	if r.Total.OptimalPercent < 95 {
		t.Fatalf("%.2f%% optimal with the outage", r.Total.OptimalPercent)
	}
}

// TestBadRuleIsDisabled: a rule that fails at evaluation is disabled and
// reported; the others go on.
func TestBadRuleIsDisabled(t *testing.T) {
	c := small()
	c.Duration = time.Hour
	c.Rules = append(DefaultRules(), rules.Rule{Name: "broken", When: `gauges["nope"] > 1.0`, Cooldown: rules.Duration(time.Minute),
		Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "worker"}})
	r := mustRun(t, c)
	last := r.Rules[len(r.Rules)-1]
	if last.Disabled == 0 || !strings.Contains(last.Error, "nope") || r.Rules[0].Fired == 0 {
		t.Fatalf("rules: %+v", r.Rules)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct {
		mod   func(*Config)
		field string
	}{
		{func(c *Config) { c.Pools = 0 }, "pools"},
		{func(c *Config) { c.Tick = time.Millisecond }, "tick"},
		{func(c *Config) { c.Duration = 31 * 24 * time.Hour }, "duration"},
		{func(c *Config) { c.Workloads = nil }, "workloads"},
		{func(c *Config) { c.Zones = 100 }, "zones"},
		{func(c *Config) { c.Headroom = -1 }, "headroom"},
		{func(c *Config) { c.SpawnRate = 0 }, "rates"},
		{func(c *Config) {
			c.Rules = []rules.Rule{{Name: "x", When: "nope > 1", Cooldown: rules.Duration(time.Minute), Action: rules.Action{Kind: "spawn", Count: 1, Template: "w"}}}
		}, "rules[0]: when"},
	} {
		c := small()
		tt.mod(&c)
		if _, err := Run(context.Background(), c); err == nil || !strings.HasPrefix(err.Error(), tt.field) {
			t.Errorf("want an error on %s, got %v", tt.field, err)
		}
	}
}

// BenchmarkSim100k is the default run: 1,000 pools for a day, about
// 100,000 Cals alive at the peak (go test -bench Sim100k -benchtime 1x).
func BenchmarkSim100k(b *testing.B) {
	for b.Loop() {
		r, err := Run(context.Background(), DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.PeakCals), "peak-cals")
		b.ReportMetric(r.Total.OptimalPercent, "%optimal")
	}
}
