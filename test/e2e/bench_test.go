package e2e

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestBenchSubcommands runs every `calnet bench` subcommand at a small
// size, so that none can break unseen between the runs that fill
// BENCHMARKS.md. A subcommand missing from the table fails the test.
func TestBenchSubcommands(t *testing.T) {
	needRoot(t)
	small := map[string][]string{
		"spawn":   {"--n", "3", "--parallel", "3"},
		"idle":    {"--cals", "3", "--seconds", "1", "--parallel", "3"},
		"heal":    {"--n", "2"},
		"revoke":  {"--cals", "5"},
		"tree":    {"--cals", "6", "--fanout", "3", "--parallel", "3"},
		"recover": {"--cals", "3", "--rounds", "1"},
	}
	help := ok(t, t.TempDir(), "bench", "--help")
	_, cmds, found := strings.Cut(help, "Available Commands:")
	if !found {
		t.Fatalf("calnet bench --help lists no subcommands:\n%s", help)
	}
	cmds, _, _ = strings.Cut(cmds, "\n\n")
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  (\S+)`).FindAllStringSubmatch(cmds, -1) {
		if m[1] != "help" && m[1] != "completion" {
			names = append(names, m[1])
		}
	}
	if len(names) < 4 {
		t.Fatalf("calnet bench lists %v", names)
	}
	for _, name := range names {
		args, known := small[name]
		if !known {
			t.Errorf("calnet bench %s has no small-size run in TestBenchSubcommands: add one", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			r := calnet(t, t.TempDir(), append([]string{"-o", "json", "bench", name}, args...)...)
			if r.code != 0 {
				t.Fatalf("calnet bench %s %v: exit %d\nstdout: %s\nstderr: %s", name, args, r.code, r.stdout, r.stderr)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("calnet bench %s -o json: not one JSON document: %v\n%s", name, err, r.stdout)
			}
			if m, _ := out["machine"].(string); !strings.Contains(m, "CPUs") {
				t.Errorf("calnet bench %s: no machine in %v", name, out)
			}
		})
	}
	if t.Failed() {
		return
	}
	for name := range small {
		if !slices.Contains(names, name) && name != "tree" { // tree comes with the admission work
			t.Errorf("the table names calnet bench %s, which does not exist", name)
		}
	}
}
