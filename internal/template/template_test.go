package template

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	d := Default()
	if d.Name != "default" || len(d.TierNumbers()) != 11 {
		t.Fatalf("default template: %+v", d)
	}
}

const good = `name: agent
permissions: [read, spawn]
resources: {cpu: 500m, memory: 128Mi, pids: 64}
tiers:
  "-10": [{name: identity, builtin: identity}]
  "-3":
    - name: worker
      command: [/bin/sh, -c, "sleep 1000"]
      env: {MODE: fast}
      health: {exec: [/bin/true], interval: 500ms}
      restart: on-failure
`

func TestParse(t *testing.T) {
	tp, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	w := tp.Tiers["-3"][0]
	if w.Command[0] != "/bin/sh" || w.Env["MODE"] != "fast" || w.Health.Interval.Milliseconds() != 500 {
		t.Fatalf("parsed %+v", w)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", strings.Replace(good, "restart: on-failure", "restrat: on-failure", 1), "line 11: template: field restrat not found"},
		{"bad tier", strings.Replace(good, `"-3":`, `"-11":`, 1), `line 6: tiers.-11: tier "-11"`},
		{"builtin in wrong tier", strings.Replace(good, "builtin: identity", "builtin: gateway", 1), `line 5: tiers.-10.0.builtin: builtin "gateway" does not run in tier -10`},
		{"relative program", strings.Replace(good, "/bin/sh", "sh", 1), "line 8: tiers.-3.0.command.0: the program must be an absolute path"},
		{"both health checks", strings.Replace(good, "exec: [/bin/true]", "exec: [/bin/true], http: http://127.0.0.1:1/", 1), "tiers.-3.0.health: give exactly one"},
		{"remote health", strings.Replace(good, "exec: [/bin/true]", "http: http://example.com/", 1), "tiers.-3.0.health.http"},
		{"unknown permission", strings.Replace(good, "[read, spawn]", "[read, fly]", 1), `line 2: permissions.1: unknown permission "fly"`},
		{"bad restart", strings.Replace(good, "on-failure", "sometimes", 1), "line 11: tiers.-3.0.restart"},
		{"no identity", strings.Replace(good, `  "-10": [{name: identity, builtin: identity}]`+"\n", "", 1), "tier -10 must run identity"},
		{"not yaml", "name: [", "template:"},
		{"empty", "", "empty document"},
		{"duplicate names", strings.Replace(good, "name: worker", "name: identity", 1), `name "identity" is used twice`},
		{"too big", good + "#" + strings.Repeat("x", MaxSize), "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add(DefaultYAML())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse(data)
	})
}

func TestTemplateRules(t *testing.T) {
	const base = "name: scaler\ntiers:\n  \"-10\": [{name: identity, builtin: identity}]\n  \"-9\": [{name: vault, builtin: vault}]\n  \"0\": [{name: gateway, builtin: gateway}]\nrules:\n"
	tm, err := Parse([]byte(base + "  - name: grow\n    when: children < 2\n    for: 10s\n    cooldown: 1m\n    action: {kind: spawn, count: 1, template: default}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Rules) != 1 || tm.Rules[0].Name != "grow" || time.Duration(tm.Rules[0].Cooldown) != time.Minute {
		t.Fatalf("rules %+v", tm.Rules)
	}
	for _, tt := range []struct{ yaml, field, msg string }{
		{"  - name: grow\n    when: kids < 2\n    cooldown: 1m\n    action: {kind: spawn, count: 1, template: default}\n", "rules.0.when", "1:1: undeclared reference to 'kids'"},
		{"  - name: grow\n    when: children < 2\n    action: {kind: spawn, count: 1, template: default}\n", "rules.0.cooldown", "needs a cooldown"},
		{"  - name: grow\n    when: children < 2\n    cooldown: soon\n    action: {kind: retire, count: 1}\n", "template", "duration"},
	} {
		_, err := Parse([]byte(base + tt.yaml))
		var e *Error
		if !errors.As(err, &e) || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
			t.Fatalf("%q: got %v, want %s %q", tt.yaml, err, tt.field, tt.msg)
		}
	}
}
