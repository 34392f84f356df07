package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/rules"
)

// TestSpawnRules: a rule attached to a Cal spawns children through the
// spawn engine once its condition holds, the decision is in the Cal's
// reflection log, and the engine's limits (here the kill switch) still
// refuse what a rule asks, with the reason recorded.
func TestSpawnRules(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"), "--idle-window", "10s")
	ctx := context.Background()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "read", "revoke"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	team := sp.Cal

	// Bad rules are refused at save time, naming the rule, field and position.
	bad := []struct {
		r    rules.Rule
		want string
	}{
		{rules.Rule{Name: "x", When: "children <", Cooldown: rules.Duration(time.Second), Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "default"}}, "rules[0].when: 1:11"},
		{rules.Rule{Name: "x", When: "queue > 1", Cooldown: rules.Duration(time.Second), Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "default"}}, "undeclared reference to 'queue'"},
		{rules.Rule{Name: "x", When: "children < 2", Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "default"}}, "rules[0].cooldown"},
		{rules.Rule{Name: "x", When: "children < 2", Cooldown: rules.Duration(time.Second), Action: rules.Action{Kind: rules.Spawn, Count: 1, Template: "nope"}}, "rules[0].action.template"},
	}
	for _, b := range bad {
		err := n.c.SetRules(ctx, team, []rules.Rule{b.r})
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Fatalf("rule %+v: got %v, want %q", b.r, err, b.want)
		}
	}

	keep := rules.Rule{Name: "keep-two", When: "children < 2", Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Spawn, Count: 2, Template: "default"}}
	if err := n.c.SetRules(ctx, team, []rules.Rule{keep}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two running children spawned by the rule", 60*time.Second, func() bool {
		c, err := n.c.Get(ctx, team)
		if err != nil {
			return false
		}
		running := 0
		for _, id := range c.Children {
			if k, err := n.c.Get(ctx, id); err == nil && k.State == "running" {
				running++
			}
		}
		return running == 2
	})
	v, err := n.c.Rules(ctx, team)
	if err != nil || len(v.Decisions) == 0 || v.Decisions[0].Outcome != rules.Fired || !strings.Contains(v.Decisions[0].Reason, "spawn 2 of 2") {
		t.Fatalf("decisions %+v %v", v, err)
	}
	waitFor(t, "the firing in the reflection log", 10*time.Second, func() bool {
		refl, err := n.c.Reflections(ctx, team, 0)
		if err != nil {
			return false
		}
		for _, r := range refl {
			if r.Kind == "rule" && strings.Contains(r.Text, "rule keep-two fired") {
				return true
			}
		}
		return false
	})

	// The rules and their memory (when each last fired, armed or not)
	// survive a control-plane restart.
	before, _ := n.c.Rules(ctx, team)
	n.stop(syscall.SIGTERM)
	n.start("--idle-window", "10s")
	after, err := n.c.Rules(ctx, team)
	if err != nil || len(after.Rules) != 1 || after.State["keep-two"] == nil || !after.State["keep-two"].Last.Equal(before.State["keep-two"].Last) {
		t.Fatalf("rule state across a restart: before %+v, after %+v %v", before.State["keep-two"], after, err)
	}
	waitFor(t, "the team cal running again", 30*time.Second, func() bool {
		c, err := n.c.Get(ctx, team)
		return err == nil && c.State == "running"
	})

	// A preview runs a rule over the Cal's recorded metrics without acting.
	always := rules.Rule{Name: "always", When: "cpu_percent >= 0.0", Cooldown: rules.Duration(time.Second),
		Action: rules.Action{Kind: rules.Spawn, Count: 5, Template: "default"}}
	var pv *client.RulePreview
	waitFor(t, "CPU samples of the team cal", 30*time.Second, func() bool {
		time.Sleep(500 * time.Millisecond)
		pv, err = n.c.PreviewRule(ctx, team, always, time.Time{})
		return err != nil || pv.Samples > 1
	})
	if err != nil || pv.Counts[rules.Fired] == 0 || pv.Counts[rules.Fired]+pv.Counts[rules.Suppressed] != pv.Samples {
		t.Fatalf("preview %+v %v", pv, err)
	}
	always.When = "cpu_percent >= "
	if _, err := n.c.PreviewRule(ctx, team, always, time.Time{}); err == nil || !strings.Contains(err.Error(), "rule.when: 1:") {
		t.Fatalf("preview of a bad rule: %v", err)
	}

	// With the kill switch on, a firing is refused by the spawn engine and
	// recorded as suppressed with the engine's reason.
	if err := n.c.SetSpawning(ctx, true); err != nil {
		t.Fatal(err)
	}
	more := rules.Rule{Name: "grow", When: "children < 4", Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Spawn, Count: 2, Template: "default"}}
	if err := n.c.SetRules(ctx, team, []rules.Rule{keep, more}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grow rule suppressed by the kill switch", 30*time.Second, func() bool {
		v, err := n.c.Rules(ctx, team)
		if err != nil {
			return false
		}
		for _, d := range v.Decisions {
			if d.Rule == "grow" && d.Outcome == rules.Suppressed && strings.Contains(d.Reason, "refused:") {
				return true
			}
		}
		return false
	})
	c, _ := n.c.Get(ctx, team)
	if len(c.Children) != 2 {
		t.Fatalf("the kill switch let a rule spawn: %d children", len(c.Children))
	}
	must(t, n.c.SetSpawning(ctx, false))

	// A retire rule revokes one idle child (idle: under 1% of a core for
	// the idle window, 10 s here), then re-arms only when fewer than two
	// are idle.
	retire := rules.Rule{Name: "trim", When: "idle_children > 1", Cooldown: rules.Duration(10 * time.Second),
		Action: rules.Action{Kind: rules.Retire, Count: 1}}
	if err := n.c.SetRules(ctx, team, []rules.Rule{retire}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one idle child retired by the rule", 60*time.Second, func() bool {
		// Asking about a Cal asks the Cal (its tiers): poll slowly so that
		// the test itself does not keep the children busy.
		time.Sleep(time.Second)
		c, err := n.c.Get(ctx, team)
		if err != nil {
			return false
		}
		revoked := 0
		for _, id := range c.Children {
			if k, err := n.c.Get(ctx, id); err == nil && k.State == "revoked" {
				revoked++
			}
		}
		return revoked == 1
	})
	time.Sleep(12 * time.Second) // two more evaluations: it must not retire the other
	c, _ = n.c.Get(ctx, team)
	running := 0
	for _, id := range c.Children {
		if k, err := n.c.Get(ctx, id); err == nil && k.State == "running" {
			running++
		}
	}
	if running != 1 {
		t.Fatalf("after the retire rule: %d running children, want 1", running)
	}

	// The CLI shows them, and sets them from a YAML file.
	if r := n.cli("rules", team); r.code != 0 || !strings.Contains(r.stdout, "trim") || !strings.Contains(r.stdout, "fired") {
		t.Fatalf("calnet rules: %+v", r)
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	must(t, os.WriteFile(file, []byte("rules:\n  - name: calm\n    when: cpu_percent > 500.0\n    for: 1m\n    cooldown: 5m\n    action: {kind: retire, count: 1}\n"), 0o600))
	if r := n.cli("rules", team, "--set", file); r.code != 0 || !strings.Contains(r.stdout, "calm") || strings.Contains(strings.Split(r.stdout, "recent decisions")[0], "keep-two") {
		t.Fatalf("calnet rules --set: %+v", r)
	}
	must(t, os.WriteFile(file, []byte("rules:\n  - name: calm\n    when: cpu > 5\n    cooldown: 5m\n    action: {kind: retire, count: 1}\n"), 0o600))
	if r := n.cli("rules", team, "--set", file); r.code == 0 || !strings.Contains(r.stderr, "undeclared reference to 'cpu'") {
		t.Fatalf("calnet rules --set with a bad rule: %+v", r)
	}
	// Removing the rules stops them.
	if r := n.cli("rules", team, "--clear"); r.code != 0 || !strings.Contains(r.stdout, "no rules") {
		t.Fatalf("calnet rules --clear: %+v", r)
	}
	if v, _ := n.c.Rules(ctx, team); len(v.Rules) != 0 {
		t.Fatalf("rules after removal: %+v", v.Rules)
	}
}

// TestAdmissionPolicies: a network-wide CEL policy denies matching spawns
// with its message, whoever asks; bad policies are refused at save time.
func TestAdmissionPolicies(t *testing.T) {
	needRoot(t)
	n := up(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	for _, b := range []struct {
		p    rules.Policy
		want string
	}{
		{rules.Policy{Name: "x", Deny: "parent.depth > 1", Message: "m"}, "policies[0].deny: 1:1: undeclared reference to 'parent'"},
		{rules.Policy{Name: "x", Deny: "depth >= 0", Message: "m"}, "denies every request"},
		{rules.Policy{Name: "x", Deny: "depth > 3"}, "policies[0].message"},
	} {
		if err := n.c.SetPolicies(ctx, []rules.Policy{b.p}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Fatalf("policy %+v: got %v, want %q", b.p, err, b.want)
		}
	}
	file := filepath.Join(t.TempDir(), "policies.yaml")
	must(t, os.WriteFile(file, []byte("policies:\n  - name: admin-near-root\n    deny: depth > 2 && \"admin\" in request_permissions\n    message: admin is granted only to the master's children\n"), 0o600))
	if r := n.cli("policy", "--set", file); r.code != 0 || !strings.Contains(r.stdout, "admin-near-root") {
		t.Fatalf("calnet policy --set: %+v", r)
	}
	team, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "team", Permissions: []string{"spawn", "admin", "read", "revoke"}, CPUMillis: 1000, MemoryBytes: 512 << 20, PIDs: 200}, true)
	if err != nil {
		t.Fatalf("depth 1 with admin: %v", err)
	}
	// Placement was decided and recorded on the spawn, with its reasons.
	if !strings.Contains(team.Placement, "(zone local) score") || !strings.Contains(team.Placement, "the only candidate") || !strings.Contains(team.Placement, "memory") {
		t.Fatalf("placement %q", team.Placement)
	}
	_, err = n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: "deep", Permissions: []string{"admin"}}, true)
	if err == nil || !strings.Contains(err.Error(), "policy admin-near-root: admin is granted only to the master's children") {
		t.Fatalf("depth 2 with admin: %v", err)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: "plain", Permissions: []string{"read"}}, true); err != nil {
		t.Fatalf("depth 2 without admin: %v", err)
	}
	// A template's rules come with every Cal spawned from it.
	tmpl := "name: watcher\ntiers:\n  \"-10\": [{name: identity, builtin: identity}]\n  \"-9\": [{name: vault, builtin: vault}]\n  \"0\": [{name: gateway, builtin: gateway}]\n" +
		"rules:\n  - name: trim\n    when: idle_children > 100\n    cooldown: 5m\n    action: {kind: retire, count: 1}\n"
	// Its retire rule is the Cal's own revocation: a Cal without revoke
	// is refused at the spawn, not left without its rules.
	_, err = n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: "watcher", Permissions: []string{"read"}, TemplateYAML: tmpl}, true)
	if err == nil || !strings.Contains(err.Error(), "rules[0].action: the new cal does not hold revoke") {
		t.Fatalf("a retire rule on a Cal without revoke: %v", err)
	}
	w, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: "watcher", Permissions: []string{"read", "revoke"}, TemplateYAML: tmpl}, true)
	if err != nil {
		t.Fatalf("spawn from a template with rules: %v", err)
	}
	if v, err := n.c.Rules(ctx, w.Cal); err != nil || len(v.Rules) != 1 || v.Rules[0].Name != "trim" {
		t.Fatalf("the template's rules on its Cal: %+v %v", v, err)
	}

	// Recommendations need an hour's worth of samples to say much; a new
	// Cal gets the reason instead, from the API and the CLI.
	recs, err := n.c.Recommendations(ctx, team.Cal)
	if err != nil || len(recs.Resources) != 2 || recs.Resources[0].Resource != "cpu_millis" || !strings.Contains(recs.Resources[1].Reason, "a recommendation needs 60") {
		t.Fatalf("recommendations %+v %v", recs, err)
	}
	if r := n.cli("recommend", team.Cal); r.code != 0 || !strings.Contains(r.stdout, "memory_bytes") {
		t.Fatalf("calnet recommend: %+v", r)
	}
	if r := n.cli("policy", "--clear"); r.code != 0 || !strings.Contains(r.stdout, "no admission policies") {
		t.Fatalf("calnet policy --clear: %+v", r)
	}
	if _, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: team.Cal, Name: "deep", Permissions: []string{"admin"}}, true); err != nil {
		t.Fatalf("after clearing: %v", err)
	}
}
