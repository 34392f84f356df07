// Package sim runs the spawn criteria engine, the admission policies and
// placement (the same code the control plane runs: rules.Compiled.Step,
// rules.CompiledPolicy, placement.Choose, placement.Outcomes) against
// synthetic workloads on a virtual clock, and reports decision quality
// against an oracle. It is `calnet sim`, and how an operator previews a
// rule set before enabling it.
//
// # Model
//
// A pool is a parent Cal with the rules; its children are workers of equal
// capacity. Work is packed onto the oldest children first (a queue that
// workers pull from), so the newest children are the ones left idle when
// demand falls. Every Tick the pool's workload reports the gauges load,
// capacity, utilization and queue_depth (see Gauges), the rules are
// stepped, and what fired goes through the limits of the spawn engine
// (max children, max Cals, network and parent token buckets, template
// back-off), the admission policies and placement over Hosts hosts in
// Zones zones. A child is running SpawnLatency after it was asked for, or
// its deploy fails after DeployTimeout. A child is idle once it has had no
// work for IdleWindow.
//
// # Oracle
//
// At each moment the oracle holds need = ceil(load / ChildCapacity)
// children: the fewest that meet the load. A decision (one pool, one
// evaluation) is optimal when the children it leaves the pool with
// (running or starting) are within [need, max(need+1, ceil(need *
// (1+Headroom)))]: enough for the load, and no more than the headroom an
// operator accepts. Cal-hours over the oracle compare the running
// children's hours with the oracle's; time under capacity is the share of
// pool-time in which the running children could not serve the load; an
// oscillation is a change of direction (spawn after retire or the reverse)
// within OscillationWindow.
package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/soulfra/calnet/internal/placement"
	"github.com/soulfra/calnet/rules"
)

// Gauges the simulated workload reports, in work units a second.
const (
	GaugeLoad        = "load"        // work arriving
	GaugeCapacity    = "capacity"    // what the running children can serve
	GaugeUtilization = "utilization" // load / capacity, percent (above 100 when short)
	GaugeQueue       = "queue_depth" // load the children cannot serve
)

// Config is one simulation.
type Config struct {
	Pools     int           // parent Cals with the rules, each with its own workload
	Duration  time.Duration // virtual time simulated
	Tick      time.Duration // evaluation interval (the control plane's: 5 s)
	Workloads []string      // shapes, given to the pools in turn
	// PeakChildren is a pool's mean peak demand in children; each pool's
	// peak is drawn from [PeakChildren/2, PeakChildren*3/2].
	PeakChildren  int
	ChildCapacity float64 // work units a second one child serves
	Headroom      float64 // the oracle's tolerance above need
	Rules         []rules.Rule
	Policies      []rules.Policy
	Template      string // the children's template (what rules spawn)

	Hosts, Zones                     int
	HostCPUMillis, HostMemoryBytes   int64
	ChildCPUMillis, ChildMemoryBytes int64
	// HostOutage takes the first host down (its Cals lost) for 30 minutes
	// at a third of the run.
	HostOutage bool

	SpawnLatency, DeployTimeout, IdleWindow, OscillationWindow time.Duration
	MaxCals, MaxChildren                                       int
	SpawnRate, ParentRate                                      float64
	SpawnBurst, ParentBurst                                    int

	Seed    uint64
	Workers int // goroutines stepping rules (0: one per CPU)
}

// DefaultConfig simulates 1,000 pools for a day: about 100,000 Cals at the
// peak, with the measured spawn latency and the control plane's default
// rates, on a 48-host cluster in three zones.
func DefaultConfig() Config {
	return Config{
		Pools: 1000, Duration: 24 * time.Hour, Tick: 5 * time.Second, Workloads: slices.Clone(Shapes),
		PeakChildren: 120, ChildCapacity: 100, Headroom: 0.25, Rules: DefaultRules(), Template: "worker",
		Hosts: 48, Zones: 3, HostCPUMillis: 128_000, HostMemoryBytes: 512 << 30,
		ChildCPUMillis: 25, ChildMemoryBytes: 24 << 20, HostOutage: true,
		SpawnLatency: 45 * time.Millisecond, DeployTimeout: 45 * time.Second, IdleWindow: time.Minute,
		OscillationWindow: 10 * time.Minute,
		MaxCals:           150_000, MaxChildren: 1000, SpawnRate: 200, SpawnBurst: 200, ParentRate: 100, ParentBurst: 100,
		Seed: 1,
	}
}

// DefaultRules scale a pool on its utilization gauge: one child at a time
// near the threshold, ten at a time when far short, and retire idle
// children once utilization is low, with hysteresis between the two.
func DefaultRules() []rules.Rule {
	s := func(d time.Duration) rules.Duration { return rules.Duration(d) }
	return []rules.Rule{
		{Name: "scale-up", When: `gauges.utilization > 93.0`, Clear: `gauges.utilization < 92.0`, For: s(5 * time.Second), Cooldown: s(10 * time.Second),
			Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "worker"}},
		{Name: "surge", When: `gauges.utilization > 110.0`, Cooldown: s(10 * time.Second),
			Action: rules.Action{Kind: rules.Spawn, Count: 10, Template: "worker"}},
		{Name: "scale-down", When: `idle_children > 0 && gauges.utilization < 82.0`, For: s(10 * time.Second), Cooldown: s(10 * time.Second),
			Action: rules.Action{Kind: rules.Retire, Count: 1}},
		{Name: "drain", When: `idle_children > 10 && gauges.utilization < 60.0`, Cooldown: s(10 * time.Second),
			Action: rules.Action{Kind: rules.Retire, Count: 10}},
	}
}

// Check names the first field of c that is out of range.
func (c *Config) Check() error {
	bad := func(field string, v any, want string) error { return fmt.Errorf("%s: %v: want %s", field, v, want) }
	switch {
	case c.Pools < 1 || c.Pools > 100_000:
		return bad("pools", c.Pools, "1 to 100000")
	case c.Tick < time.Second || c.Tick > time.Hour:
		return bad("tick", c.Tick, "1s to 1h")
	case c.Duration < c.Tick || c.Duration > 30*24*time.Hour:
		return bad("duration", c.Duration, "one tick to 720h")
	case c.Duration/c.Tick > 10_000_000:
		return bad("duration", c.Duration, "at most 10,000,000 ticks")
	case len(c.Workloads) == 0:
		return bad("workloads", c.Workloads, "at least one shape")
	case c.PeakChildren < 1 || c.PeakChildren > 10_000:
		return bad("peak", c.PeakChildren, "1 to 10000 children")
	case c.ChildCapacity <= 0:
		return bad("child capacity", c.ChildCapacity, "above 0")
	case c.Headroom < 0 || c.Headroom > 10:
		return bad("headroom", c.Headroom, "0 to 10")
	case len(c.Rules) == 0:
		return bad("rules", len(c.Rules), "at least one rule")
	case c.Hosts < 1 || c.Hosts > 10_000:
		return bad("hosts", c.Hosts, "1 to 10000")
	case c.Zones < 1 || c.Zones > c.Hosts:
		return bad("zones", c.Zones, "1 to the number of hosts")
	case c.MaxCals < 1 || c.MaxChildren < 1:
		return bad("limits", fmt.Sprintf("max_cals %d, max_children %d", c.MaxCals, c.MaxChildren), "at least 1 each")
	case c.SpawnRate <= 0 || c.ParentRate <= 0 || c.SpawnBurst < 1 || c.ParentBurst < 1:
		return bad("rates", fmt.Sprintf("%g/%d, %g/%d", c.SpawnRate, c.SpawnBurst, c.ParentRate, c.ParentBurst), "rates above 0 and bursts of at least 1")
	}
	return nil
}

// child is one simulated Cal under a pool.
type child struct {
	host  int32
	ready time.Duration // running from then (or its deploy fails then)
	fails bool
	up    bool          // running
	busy  time.Duration // last time it had work
}

// firing is a rule's action due in this tick.
type firing struct {
	rule   string
	action rules.Action
}

// pool is one parent Cal and its children.
type pool struct {
	idx      int
	shape    shape
	rng      *rand.Rand
	host     int32
	children []child // oldest first
	running  int
	starting int
	zones    map[string]int // children (running or starting) per zone
	states   []rules.State
	limiter  *rate.Limiter
	load     float64 // this tick's load, work units a second
	gauges   map[string]float64
	due      []firing
	outcomes map[string]*RuleStats
	dir      int // last direction: +1 spawned, -1 retired
	dirAt    time.Duration
	stats    *tally
}

// sim is one run.
type sim struct {
	cfg      Config
	compiled []*rules.Compiled
	policies []*rules.CompiledPolicy
	epoch    time.Time
	hosts    []placement.Candidate
	zoneOf   []string
	hostKeys []string // outcome keys
	outcomes *placement.Outcomes
	clock    time.Time
	global   *rate.Limiter
	pools    []*pool
	cals     int // live Cals: parents and children
	total    tally
	byShape  map[string]*tally
	limits   map[string]int
	simCals  int
	peak     int
	outage   bool
}

// Run simulates cfg. It is deterministic for a seed: the rules are stepped
// in parallel, but every action is applied in pool order.
func Run(ctx context.Context, cfg Config) (*Report, error) { return run(ctx, cfg, nil) }

// run is Run with a hook called after every tick (for tests).
func run(ctx context.Context, cfg Config, hook func(s *sim, now time.Duration)) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	s := &sim{cfg: cfg, epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), byShape: map[string]*tally{}, limits: map[string]int{}}
	names := map[string]bool{}
	for i, r := range cfg.Rules {
		c, err := rules.Compile(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("rules[%d].name: %q is used twice", i, r.Name)
		}
		names[r.Name] = true
		s.compiled = append(s.compiled, c)
	}
	var err error
	if s.policies, err = rules.CompilePolicies(cfg.Policies, rules.MaxApprovals); err != nil {
		return nil, err
	}
	s.clock = s.epoch
	s.outcomes = placement.NewOutcomes(func() time.Time { return s.clock })
	s.global = rate.NewLimiter(rate.Limit(cfg.SpawnRate), cfg.SpawnBurst)
	for h := range cfg.Hosts {
		z := fmt.Sprintf("zone-%c", 'a'+h%cfg.Zones)
		s.hosts = append(s.hosts, placement.Candidate{Name: fmt.Sprintf("host-%03d", h), Zone: z,
			CPUCapacity: cfg.HostCPUMillis, CPUFree: cfg.HostCPUMillis, MemCapacity: cfg.HostMemoryBytes, MemFree: cfg.HostMemoryBytes, Healthy: true})
		s.zoneOf = append(s.zoneOf, z)
		s.hostKeys = append(s.hostKeys, "host:"+s.hosts[h].Name)
	}
	for _, w := range cfg.Workloads {
		s.byShape[w] = &tally{}
	}
	for i := range cfg.Pools {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		kind := cfg.Workloads[i%len(cfg.Workloads)]
		peak := float64(cfg.PeakChildren) * (0.5 + rng.Float64())
		p := &pool{idx: i, shape: newShape(kind, peak, cfg.Duration, rng), rng: rng, zones: map[string]int{},
			states: make([]rules.State, len(s.compiled)), outcomes: map[string]*RuleStats{},
			limiter: rate.NewLimiter(rate.Limit(cfg.ParentRate), cfg.ParentBurst), stats: s.byShape[kind]}
		// The parent is a Cal too, placed like any other.
		h := placement.Choose(s.hosts, placement.Request{CPUMillis: cfg.ChildCPUMillis, MemoryBytes: cfg.ChildMemoryBytes}, placement.DefaultWeights)
		if h < 0 {
			return nil, fmt.Errorf("hosts: no room for pool %d's parent", i)
		}
		s.take(h, 1)
		p.host = int32(h)
		s.pools = append(s.pools, p)
		s.cals++
		s.simCals++
		// Each pool starts with what its workload needs at time zero.
		need := int(math.Ceil(p.shape.level(0, cfg.Duration) * peak))
		for range need {
			if h, ok := s.place(p); ok {
				p.children = append(p.children, child{host: int32(h), up: true})
				p.running++
			}
		}
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ticks := int(cfg.Duration / cfg.Tick)
	for k := range ticks {
		if k%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		now := time.Duration(k) * cfg.Tick
		s.clock = s.epoch.Add(now)
		s.hostEvents(now)
		for _, p := range s.pools {
			s.settle(p, now)
		}
		s.learn()
		s.parallel(workers, func(p *pool) { s.observe(p, now) })
		for _, p := range s.pools {
			s.act(p, now)
			s.account(p)
		}
		s.peak = max(s.peak, s.cals)
		if hook != nil {
			hook(s, now)
		}
	}
	return s.report(time.Since(start), ticks), nil
}

// parallel runs f on every pool over n goroutines.
func (s *sim) parallel(n int, f func(*pool)) {
	if n <= 1 {
		for _, p := range s.pools {
			f(p)
		}
		return
	}
	var wg sync.WaitGroup
	per := (len(s.pools) + n - 1) / n
	for lo := 0; lo < len(s.pools); lo += per {
		part := s.pools[lo:min(lo+per, len(s.pools))]
		wg.Go(func() {
			for _, p := range part {
				f(p)
			}
		})
	}
	wg.Wait()
}

// take reserves (n = 1) or releases (n = -1) one Cal's resources on host h.
func (s *sim) take(h int, n int64) {
	s.hosts[h].CPUFree -= n * s.cfg.ChildCPUMillis
	s.hosts[h].MemFree -= n * s.cfg.ChildMemoryBytes
}

// place chooses a host for a child of p and reserves it there.
func (s *sim) place(p *pool) (int, bool) {
	h := placement.Choose(s.hosts, placement.Request{CPUMillis: s.cfg.ChildCPUMillis, MemoryBytes: s.cfg.ChildMemoryBytes,
		ParentHost: s.hosts[p.host].Name, Siblings: p.zones}, placement.DefaultWeights)
	if h < 0 {
		return -1, false
	}
	s.take(h, 1)
	p.zones[s.zoneOf[h]]++
	s.cals++
	s.simCals++
	return h, true
}

// remove drops p's child i (retired, lost or failed) and frees its host.
func (s *sim) remove(p *pool, i int) {
	c := p.children[i]
	if s.hosts[c.host].Healthy {
		s.take(int(c.host), -1)
	}
	p.zones[s.zoneOf[c.host]]--
	if c.up {
		p.running--
	} else {
		p.starting--
	}
	p.children = slices.Delete(p.children, i, i+1)
	s.cals--
}

// learn gives placement each host's recent deploy failures.
func (s *sim) learn() {
	for i := range s.hosts {
		s.hosts[i].RecentFailures = s.outcomes.Failures(s.hostKeys[i])
	}
}

// hostEvents takes the first host down for 30 minutes at a third of the
// run: its Cals are lost and placement sees it unhealthy.
func (s *sim) hostEvents(now time.Duration) {
	if !s.cfg.HostOutage {
		return
	}
	down := s.cfg.Duration / 3
	switch {
	case !s.outage && now >= down && now < down+30*time.Minute:
		s.outage = true
		for _, p := range s.pools {
			for i := len(p.children) - 1; i >= 0; i-- {
				if p.children[i].host == 0 {
					s.remove(p, i)
					s.total.lost++
					p.stats.lost++
				}
			}
		}
		s.hosts[0].Healthy = false
		s.hosts[0].CPUFree, s.hosts[0].MemFree = 0, 0
	case s.outage && now >= down+30*time.Minute:
		s.outage = false
		h := &s.hosts[0]
		h.Healthy = true
		h.CPUFree, h.MemFree = h.CPUCapacity, h.MemCapacity
		for _, p := range s.pools { // parents that lived there were restarted in place
			if p.host == 0 {
				s.take(0, 1)
			}
		}
	}
}

// settle brings p's children up to now: deploys that finished, and for
// the failures workload children that broke.
func (s *sim) settle(p *pool, now time.Duration) {
	if p.starting > 0 {
		for i := len(p.children) - 1; i >= 0; i-- {
			c := &p.children[i]
			if c.up || c.ready > now {
				continue
			}
			if c.fails {
				s.outcomes.Record("template:"+s.cfg.Template, false)
				s.outcomes.Record(s.hostKeys[c.host], false)
				s.remove(p, i)
				s.total.deployFailures++
				p.stats.deployFailures++
				continue
			}
			s.outcomes.Record("template:"+s.cfg.Template, true)
			s.outcomes.Record(s.hostKeys[c.host], true)
			c.up = true
			p.starting--
			p.running++
		}
	}
	if p.shape.kind == Failures && p.running > 0 {
		// Each running child breaks for good (its supervisor gives up
		// after the restart intensity) with a 2-hour mean time between
		// failures.
		mean := float64(p.running) * float64(s.cfg.Tick) / float64(6*time.Hour)
		for range poisson(p.rng, mean) {
			var live []int
			for i, c := range p.children {
				if c.up {
					live = append(live, i)
				}
			}
			if len(live) == 0 {
				break
			}
			s.remove(p, live[p.rng.IntN(len(live))])
			s.total.lost++
			p.stats.lost++
		}
	}
}

func poisson(rng *rand.Rand, mean float64) int {
	l, k, q := math.Exp(-mean), 0, 1.0
	for {
		q *= rng.Float64()
		if q < l {
			return k
		}
		k++
	}
}

// observe computes p's load and metrics and steps its rules. It touches
// only p, so pools are observed in parallel.
func (s *sim) observe(p *pool, now time.Duration) {
	noise := 1 + 0.03*p.rng.NormFloat64()
	p.load = max(0, p.shape.level(now, s.cfg.Duration)*p.shape.peak*noise*s.cfg.ChildCapacity)
	capacity := float64(p.running) * s.cfg.ChildCapacity
	idle := s.idle(p, now, true, nil)
	util := 0.0
	if capacity > 0 {
		util = p.load / capacity * 100
	} else if p.load > 0 {
		util = 1000
	}
	h := &s.hosts[p.host]
	if p.gauges == nil {
		p.gauges = map[string]float64{}
	}
	p.gauges[GaugeLoad], p.gauges[GaugeCapacity], p.gauges[GaugeUtilization], p.gauges[GaugeQueue] = p.load, capacity, util, max(0, p.load-capacity)
	m := rules.Metrics{
		CPUPercent: math.Min(util, 100), Children: p.running, IdleChildren: idle, Depth: 2, Healthy: true, Gauges: p.gauges,
		HostFreeCPUPercent: frac(h.CPUFree, h.CPUCapacity) * 100, HostFreeMemoryBytes: float64(h.MemFree),
	}
	p.due = p.due[:0]
	at := s.clock
	for i, c := range s.compiled {
		d := c.Step(&p.states[i], at, &m)
		st := p.outcomes[c.Name]
		if st == nil {
			st = &RuleStats{Rule: c.Name}
			p.outcomes[c.Name] = st
		}
		st.Evaluations++
		switch d.Outcome {
		case rules.Fired:
			st.Fired++
			p.due = append(p.due, firing{rule: c.Name, action: *d.Action})
		case rules.Suppressed:
			st.Suppressed++
		case rules.Disabled:
			if st.Disabled == 0 {
				st.Error = d.Reason
			}
			st.Disabled++
		}
	}
}

func frac(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// act carries out p's due firings through the limits, the policies and
// placement, as the control plane does.
func (s *sim) act(p *pool, now time.Duration) {
	spawned, retired := 0, 0
	for _, f := range p.due {
		switch f.action.Kind {
		case rules.Spawn:
			for range f.action.Count {
				if why := s.admit(p, f); why != "" {
					s.limits[why]++
					p.stats.limitHits++
					s.total.limitHits++
					break
				}
				h, ok := s.place(p)
				if !ok {
					s.limits["placement: no feasible host"]++
					p.stats.limitHits++
					s.total.limitHits++
					break
				}
				c := child{host: int32(h), ready: now + s.cfg.SpawnLatency, busy: now}
				if p.shape.kind == Failures && p.rng.Float64() < 0.05 {
					c.fails, c.ready = true, now+s.cfg.DeployTimeout
				}
				p.children = append(p.children, c)
				p.starting++
				spawned++
			}
		case rules.Retire:
			// The newest idle children go first.
			n := f.action.Count
			var idle []int
			s.idle(p, now, false, &idle)
			for j := len(idle) - 1; j >= 0 && n > 0; j-- {
				s.remove(p, idle[j])
				n--
				retired++
			}
		}
	}
	s.total.spawns += spawned
	s.total.retires += retired
	p.stats.spawns += spawned
	p.stats.retires += retired
	dir := 0
	switch {
	case spawned > 0 && retired == 0:
		dir = 1
	case retired > 0 && spawned == 0:
		dir = -1
	}
	if dir != 0 {
		if p.dir != 0 && dir != p.dir && now-p.dirAt < s.cfg.OscillationWindow {
			s.total.oscillations++
			p.stats.oscillations++
		}
		p.dir, p.dirAt = dir, now
	}
}

// admit applies the spawn engine's limits and the admission policies to
// one child of p; it returns why the child is refused, or "".
func (s *sim) admit(p *pool, f firing) string {
	switch {
	case len(p.children) >= s.cfg.MaxChildren:
		return "limit max_children"
	case s.cals >= s.cfg.MaxCals:
		return "limit max_cals"
	}
	if _, _, backing := s.outcomes.BackOff("template:" + s.cfg.Template); backing {
		return "template back-off"
	}
	if len(s.policies) > 0 {
		r := rules.Request{Name: "", Template: f.action.Template, Actor: "rule:" + f.rule, Permissions: []string{"read"},
			CPUMillis: s.cfg.ChildCPUMillis, MemoryBytes: s.cfg.ChildMemoryBytes, Depth: 3,
			ParentName: fmt.Sprintf("pool-%d", p.idx), ParentPermissions: []string{"spawn", "read"}, ParentChildren: p.running,
			NetworkCals: s.cals}
		switch v := rules.Evaluate(s.policies, rules.OpSpawn, &r); {
		case v.Denied != nil:
			return "policy " + v.Denied.Name
		case v.Approval != nil:
			// A human would have to approve it: the rule cannot count on it.
			return "approval required by policy " + v.Approval.Name
		}
	}
	g := s.global.ReserveN(s.clock, 1)
	if g.DelayFrom(s.clock) > 0 {
		g.CancelAt(s.clock)
		return "network spawn rate"
	}
	r := p.limiter.ReserveN(s.clock, 1)
	if r.DelayFrom(s.clock) > 0 {
		r.CancelAt(s.clock)
		g.CancelAt(s.clock)
		return "parent spawn rate"
	}
	return ""
}

// idle counts p's idle children (running, without work for the idle
// window) and, with into, lists them oldest first. Work is packed onto the
// oldest running children; with mark, those get this tick's work.
func (s *sim) idle(p *pool, now time.Duration, mark bool, into *[]int) int {
	busy := int(math.Ceil(p.load / s.cfg.ChildCapacity))
	n, seen := 0, 0
	for i := range p.children {
		c := &p.children[i]
		if !c.up {
			continue
		}
		switch {
		case seen < busy:
			if mark {
				c.busy = now
			}
		case now-c.busy >= s.cfg.IdleWindow && now-c.ready >= s.cfg.IdleWindow:
			n++
			if into != nil {
				*into = append(*into, i)
			}
		}
		seen++
	}
	return n
}

// account scores p's state after this tick's decision against the oracle.
func (s *sim) account(p *pool) {
	need := int(math.Ceil(p.load / s.cfg.ChildCapacity))
	have := len(p.children)
	upper := max(need+1, int(math.Ceil(float64(need)*(1+s.cfg.Headroom))))
	for _, t := range []*tally{&s.total, p.stats} {
		t.decisions++
		switch {
		case have < need:
			t.short++
		case have > upper:
			t.over++
		default:
			t.optimal++
		}
		if float64(p.running)*s.cfg.ChildCapacity < p.load {
			t.underTicks++
		}
		t.calTicks += int64(p.running)
		t.oracleTicks += int64(need)
	}
}
