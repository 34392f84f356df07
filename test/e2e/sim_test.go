package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/rules"
)

// TestSimPreviewsRules: calnet sim previews a rule file the way calnet
// rules --set takes it, scores it, and exits 3 when the decisions miss the
// target; bad input names the flag or the field.
func TestSimPreviewsRules(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`rules:
  - name: up
    when: gauges.utilization > 93.0
    for: 5s
    cooldown: 10s
    action: {kind: spawn, count: 1, template: worker}
  - name: surge
    when: gauges.utilization > 110.0
    cooldown: 10s
    action: {kind: spawn, count: 10, template: worker}
  - name: down
    when: idle_children > 0 && gauges.utilization < 82.0
    for: 10s
    cooldown: 10s
    action: {kind: retire, count: 1}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Pools int `json:"pools"`
		Total struct {
			Decisions      int64   `json:"decisions"`
			OptimalPercent float64 `json:"optimal_percent"`
		} `json:"total"`
		Rules []struct {
			Rule  string `json:"rule"`
			Fired int    `json:"fired"`
		} `json:"rules"`
		Met bool `json:"target_met"`
	}
	okJSON(t, dir, &rep, "sim", "--rules", good, "--pools", "4", "--duration", "6h", "--workload", "step,spikes")
	if rep.Pools != 4 || rep.Total.Decisions != 4*4320 || len(rep.Rules) != 3 || rep.Rules[0].Fired == 0 || !rep.Met {
		t.Fatalf("report: %+v", rep)
	}

	// Spawning only: far more Cals than the load needs; below the target.
	grow := filepath.Join(dir, "grow.yaml")
	must(t, os.WriteFile(grow, []byte("rules:\n  - {name: grow, when: 'children < 500', cooldown: 5s, action: {kind: spawn, count: 5, template: worker}}\n"), 0o600))
	r := calnet(t, dir, "sim", "--rules", grow, "--pools", "2", "--duration", "1h")
	if r.code != 3 || !strings.Contains(r.stdout, "NOT met") {
		t.Fatalf("a rule that only grows: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	bad := filepath.Join(dir, "bad.yaml")
	must(t, os.WriteFile(bad, []byte("rules:\n  - {name: x, when: 'cpu > 1.0', cooldown: 5s, action: {kind: spawn, count: 1, template: worker}}\n"), 0o600))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--rules", bad}, "rules[0]: when: 1:1: undeclared reference to 'cpu'"},
		{[]string{"--pools", "0"}, "pools: 0: want 1 to 100000"},
		{[]string{"--workload", "weekly"}, `--workload: workload "weekly"`},
		{[]string{"--rules", filepath.Join(dir, "missing.yaml")}, "--rules:"},
	} {
		r := calnet(t, dir, append([]string{"sim"}, tt.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("sim %v: exit %d, stderr %q, want %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestSimAPI: the control plane previews a rule set in the simulator under
// the network's admission policies, with bounds that name the field.
func TestSimAPI(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	up := rules.Rule{Name: "up", When: "gauges.utilization > 93.0", For: rules.Duration(5 * time.Second), Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "default"}}
	surge := rules.Rule{Name: "surge", When: "gauges.utilization > 110.0", Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Spawn, Count: 10, Template: "default"}}
	down := rules.Rule{Name: "down", When: "idle_children > 0 && gauges.utilization < 82.0", For: rules.Duration(10 * time.Second), Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Retire, Count: 1}}
	rep, err := n.c.Simulate(ctx, api.SimRequest{Rules: []rules.Rule{up, surge, down}, Workloads: []string{"step"}, Pools: 4, Duration: "6h"})
	if err != nil || rep.Pools != 4 || rep.Total.Decisions != 4*4320 || rep.Rules[0].Fired == 0 || rep.Total.OptimalPercent < 90 {
		t.Fatalf("simulate: %+v %v", rep, err)
	}
	// The network's policies apply in the simulation too.
	if err := n.c.SetPolicies(ctx, []rules.Policy{{Name: "no-surge", Deny: `actor == "rule:surge"`, Message: "no surges"}}); err != nil {
		t.Fatal(err)
	}
	rep, err = n.c.Simulate(ctx, api.SimRequest{Rules: []rules.Rule{up, surge, down}, Workloads: []string{"step"}, Pools: 4, Duration: "6h"})
	if err != nil || rep.LimitHits["policy no-surge"] == 0 {
		t.Fatalf("simulate under a policy: %+v %v", rep.LimitHits, err)
	}
	// calnet sim --cal simulates the rules a Cal has now.
	idle := rules.Rule{Name: "never", When: "children > 1000", Cooldown: rules.Duration(time.Minute), Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "default"}}
	if err := n.c.SetRules(ctx, n.master(), []rules.Rule{idle}); err != nil {
		t.Fatal(err)
	}
	if r := n.cli("-o", "json", "sim", "--cal", "master", "--pools", "2", "--duration", "1h", "--target", "0"); r.code != 0 || !strings.Contains(r.stdout, `"rule": "never"`) {
		t.Fatalf("sim --cal: %+v", r)
	}
	bad := up
	bad.When = "cpu > 1.0"
	for _, tt := range []struct {
		req  api.SimRequest
		want string
	}{
		{api.SimRequest{Rules: []rules.Rule{up}, Pools: 500}, "pools: 500"},
		{api.SimRequest{Rules: []rules.Rule{up}, Duration: "48h"}, "duration:"},
		{api.SimRequest{Rules: []rules.Rule{up}, Workloads: []string{"weekly"}}, "workloads:"},
		{api.SimRequest{}, "rules:"},
		{api.SimRequest{Rules: []rules.Rule{bad}}, "rules[0]: when: 1:1"},
	} {
		if _, err := n.c.Simulate(ctx, tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.req, err, tt.want)
		}
	}
}
