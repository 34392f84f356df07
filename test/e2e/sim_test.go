package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	os.WriteFile(grow, []byte("rules:\n  - {name: grow, when: 'children < 500', cooldown: 5s, action: {kind: spawn, count: 5, template: worker}}\n"), 0o600)
	r := calnet(t, dir, "sim", "--rules", grow, "--pools", "2", "--duration", "1h")
	if r.code != 3 || !strings.Contains(r.stdout, "NOT met") {
		t.Fatalf("a rule that only grows: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - {name: x, when: 'cpu > 1.0', cooldown: 5s, action: {kind: spawn, count: 1, template: worker}}\n"), 0o600)
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
