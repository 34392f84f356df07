package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/store"
	"github.com/soulfra/calnet/rules"
)

// BenchmarkEvalCycle is one whole evaluation cycle of the control plane
// (evalRules after a collection) over 1,000 running Cals with two
// running children each and five rules each: reading every Cal and child
// from the registry (bbolt), the latest samples and gauges, the idle test
// of each child over the idle window, stepping the rules and comparing
// their state. The rules hold now and then but do not fire, so the cycle
// is measured without the spawns a firing would start.
func BenchmarkEvalCycle(b *testing.B) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "calnet.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { must(b, st.Close()) }()
	s := &Server{store: st, cfg: Config{IdleWindow: time.Minute}, rules: ruleBook{byCal: map[string]*calRules{}}}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var compiled []*rules.Compiled
	for i, when := range []string{
		`cpu_percent > 80.0`, `memory_bytes > memory_limit_bytes * 0.9`, `has(gauges.queue_depth) && gauges.queue_depth > 100.0`,
		`idle_children > 1 && children > 1`, `host_free_cpu_percent < 5.0 && children < 2`,
	} {
		kind, tmpl := rules.Spawn, "default"
		if i == 3 {
			kind, tmpl = rules.Retire, ""
		}
		c, err := rules.Compile(rules.Rule{Name: fmt.Sprintf("r%d", i), When: when, For: rules.Duration(time.Hour), Cooldown: rules.Duration(time.Minute),
			Action: rules.Action{Kind: kind, Count: 1, Template: tmpl}})
		if err != nil {
			b.Fatal(err)
		}
		compiled = append(compiled, c)
	}
	const cals = 1000
	var ids []string
	for i := range cals {
		id := fmt.Sprintf("cal%04d", i)
		rec := &CalRecord{ID: id, State: StateRunning, Depth: 2, Healthy: true, Quota: api.Quota{MemoryBytes: 64 << 20}}
		for k := range 2 {
			kid := fmt.Sprintf("%s-%d", id, k)
			rec.Children = append(rec.Children, kid)
			if err := s.putCal(ctx, &CalRecord{ID: kid, Parent: id, State: StateRunning, Depth: 3}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.putCal(ctx, rec); err != nil {
			b.Fatal(err)
		}
		s.setRules(id, compiled)
		ids = append(ids, id)
	}
	sample := func(t time.Time, i int) {
		for j, id := range ids {
			s.metrics.Add(id, "cpu_percent", t, float64((i+j)%90))
			s.metrics.Add(id, "memory_bytes", t, 20<<20)
			s.metrics.Add(id, "gauge:queue_depth", t, float64((i*7+j)%150))
			for k := range 2 {
				s.metrics.Add(fmt.Sprintf("%s-%d", id, k), "cpu_percent", t, 0.2)
			}
		}
		s.metrics.Add(hostSubject, "free_cpu_percent", t, 50)
		s.metrics.Add(hostSubject, "free_memory_bytes", t, 8<<30)
	}
	for i := range 13 { // a minute of samples: the idle test has a window to judge
		sample(now, i)
		now = now.Add(CollectEvery)
	}
	i := 13
	for b.Loop() {
		b.StopTimer()
		sample(now, i)
		i++
		b.StartTimer()
		s.evalRules(ctx, now)
		now = now.Add(CollectEvery)
	}
	per := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(per*1000, "ms/cycle")
	b.ReportMetric(per*100, "%core-at-one-cycle-per-second")
}
