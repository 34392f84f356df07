// Package template reads Cal templates: YAML documents that say what runs
// in each of the eleven tiers (0 to -10), the Cal's resources, restart
// policy and permissions to request. Errors name the line and the field.
package template

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/soulfra/calnet/internal/cpu"
	"github.com/soulfra/calnet/rules"
)

// Limits on templates.
const (
	MaxSize = 64 << 10
	// MaxRules bounds the spawn criteria of a template.
	MaxRules         = 16
	MaxComponents    = 16 // per tier
	MaxArgs          = 64
	MaxEnv           = 64
	MaxNameLen       = 63
	MinHealthPeriod  = 100 * time.Millisecond
	DefaultReadyWait = 30 * time.Second
)

// Tier numbers run from 0 (gateway) down to -10 (identity).
const (
	TopTier    = 0
	BottomTier = -10
)

// Builtins maps each tier to the built-in component that may run there.
var Builtins = map[int]string{
	0: "gateway", -1: "api", -2: "console", -4: "autonomy", -5: "mesh",
	-6: "discovery", -7: "telemetry", -8: "reflection", -9: "vault", -10: "identity",
}

// WorkloadTier is where user programs run.
const WorkloadTier = -3

// Health is a component's health check.
type Health struct {
	// Exec runs a command inside the Cal; exit 0 is healthy.
	Exec []string `yaml:"exec,omitempty" json:"exec,omitempty"`
	// HTTP is a URL on the Cal's loopback; a 2xx answer is healthy.
	HTTP string `yaml:"http,omitempty" json:"http,omitempty"`
	// Interval between checks (default 1s).
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout of one check (default 1s).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Ready is how long the component may take to pass its first check
	// (default 30s).
	Ready time.Duration `yaml:"ready,omitempty" json:"ready,omitempty"`
}

// Component is one program or built-in of a tier.
type Component struct {
	Name    string            `yaml:"name" json:"name"`
	Builtin string            `yaml:"builtin,omitempty" json:"builtin,omitempty"`
	Command []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Env     map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Health  *Health           `yaml:"health,omitempty" json:"health,omitempty"`
	Restart string            `yaml:"restart,omitempty" json:"restart,omitempty"`
}

// Resources are the quota the Cal requests.
type Resources struct {
	CPU    string `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty"`
	PIDs   int64  `yaml:"pids,omitempty" json:"pids,omitempty"`
	// Disk is what the Cal may store in /data (like memory: 512Mi, 2Gi).
	Disk string `yaml:"disk,omitempty" json:"disk,omitempty"`
}

// Template is a parsed, validated template.
type Template struct {
	Name        string                 `yaml:"name" json:"name"`
	Description string                 `yaml:"description,omitempty" json:"description,omitempty"`
	Permissions []string               `yaml:"permissions,omitempty" json:"permissions,omitempty"`
	Resources   Resources              `yaml:"resources,omitempty" json:"resources"`
	Restart     string                 `yaml:"restart,omitempty" json:"restart,omitempty"`
	Tiers       map[string][]Component `yaml:"tiers" json:"tiers"`
	// Rules are spawn criteria every Cal of this template starts with.
	Rules []rules.Rule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

//go:embed default.yaml
var defaultYAML []byte

// Default returns the built-in default template.
func Default() *Template {
	t, err := Parse(defaultYAML)
	if err != nil {
		panic("template: default.yaml: " + err.Error())
	}
	return t
}

// DefaultYAML returns the default template's source.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Error is a template error naming the line and the field.
type Error struct {
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// Parse decodes and validates a template.
func Parse(data []byte) (*Template, error) {
	if len(data) > MaxSize {
		return nil, &Error{Field: "template", Msg: fmt.Sprintf("%d bytes, over the limit of %d", len(data), MaxSize)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Field: "template", Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(root.Content) == 0 {
		return nil, &Error{Field: "template", Msg: "empty document"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var t Template
	if err := dec.Decode(&t); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		line := 0
		if l, rest, ok := strings.Cut(msg, ":"); ok && strings.HasPrefix(l, "line ") {
			line, _ = strconv.Atoi(strings.TrimPrefix(l, "line "))
			msg = strings.TrimSpace(rest)
		}
		return nil, &Error{Line: line, Field: "template", Msg: msg}
	}
	if err := t.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return &t, nil
}

// lineOf finds the line of a field path (mapping keys, or sequence
// indices as numbers) in the YAML tree; 0 if absent.
func lineOf(n *yaml.Node, path ...string) int {
	line := n.Line
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

var permissions = []string{"spawn", "revoke", "read", "talk", "share", "admin"}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func validRestart(s string) bool {
	return s == "" || s == "always" || s == "on-failure" || s == "never"
}

// TierNumbers lists the tiers a template fills, bottom (-10) first.
func (t *Template) TierNumbers() []int {
	var out []int
	for k := range t.Tiers {
		n, _ := strconv.Atoi(k)
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

func (t *Template) validate(root *yaml.Node) error {
	fail := func(msg string, path ...string) error {
		return &Error{Line: lineOf(root, path...), Field: strings.Join(path, "."), Msg: msg}
	}
	if !validName(t.Name) {
		return fail("want 1..63 characters of a-z, 0-9 and -", "name")
	}
	for i, p := range t.Permissions {
		if !slices.Contains(permissions, p) {
			return fail(fmt.Sprintf("unknown permission %q (known: %s)", p, strings.Join(permissions, ", ")), "permissions", strconv.Itoa(i))
		}
	}
	if !validRestart(t.Restart) {
		return fail("want always, on-failure or never", "restart")
	}
	if len(t.Rules) > MaxRules {
		return fail(fmt.Sprintf("%d rules, over the limit of %d", len(t.Rules), MaxRules), "rules")
	}
	for i, r := range t.Rules {
		if _, err := rules.Compile(r); err != nil {
			var re *rules.Error
			if errors.As(err, &re) {
				return &Error{Line: lineOf(root, "rules", strconv.Itoa(i)), Field: "rules." + strconv.Itoa(i) + "." + re.Field, Msg: strings.TrimPrefix(re.Error(), re.Field+": ")}
			}
			return fail(err.Error(), "rules", strconv.Itoa(i))
		}
	}
	if t.Resources.PIDs < 0 {
		return fail("must not be negative", "resources", "pids")
	}
	if t.Resources.CPU != "" {
		if _, err := cpu.Millis(t.Resources.CPU); err != nil {
			return fail(err.Error(), "resources", "cpu")
		}
	}
	if t.Resources.Memory != "" {
		if _, err := cpu.Bytes(t.Resources.Memory); err != nil {
			return fail(err.Error(), "resources", "memory")
		}
	}
	if t.Resources.Disk != "" {
		if _, err := cpu.Bytes(t.Resources.Disk); err != nil {
			return fail(fmt.Sprintf("%q: want bytes like 512Mi, 2Gi or 1073741824", t.Resources.Disk), "resources", "disk")
		}
	}
	if len(t.Tiers) == 0 {
		return fail("a template needs its tiers", "tiers")
	}
	names := map[string]bool{}
	for key, comps := range t.Tiers {
		n, err := strconv.Atoi(key)
		if err != nil || n > TopTier || n < BottomTier || strconv.Itoa(n) != key {
			return fail(fmt.Sprintf("tier %q: tiers are \"0\" to \"-10\"", key), "tiers", key)
		}
		if len(comps) > MaxComponents {
			return fail(fmt.Sprintf("%d components, over the limit of %d", len(comps), MaxComponents), "tiers", key)
		}
		for i, c := range comps {
			at := []string{"tiers", key, strconv.Itoa(i)}
			if !validName(c.Name) {
				return fail("name: want 1..63 characters of a-z, 0-9 and -", append(at, "name")...)
			}
			if names[c.Name] {
				return fail(fmt.Sprintf("name %q is used twice", c.Name), append(at, "name")...)
			}
			names[c.Name] = true
			switch {
			case c.Builtin != "" && len(c.Command) > 0:
				return fail("a component is either builtin or a command, not both", at...)
			case c.Builtin != "":
				if want, ok := Builtins[n]; !ok || want != c.Builtin {
					return fail(fmt.Sprintf("builtin %q does not run in tier %d (tier %d runs %q)", c.Builtin, n, n, Builtins[n]), append(at, "builtin")...)
				}
			case len(c.Command) == 0:
				return fail("needs a command or a builtin", at...)
			case n != WorkloadTier:
				return fail(fmt.Sprintf("user programs run in tier %d (workload), not %d", WorkloadTier, n), append(at, "command")...)
			case len(c.Command) > MaxArgs:
				return fail(fmt.Sprintf("%d arguments, over the limit of %d", len(c.Command), MaxArgs), append(at, "command")...)
			case !strings.HasPrefix(c.Command[0], "/"):
				return fail("the program must be an absolute path", append(at, "command", "0")...)
			}
			if len(c.Env) > MaxEnv {
				return fail(fmt.Sprintf("%d variables, over the limit of %d", len(c.Env), MaxEnv), append(at, "env")...)
			}
			if !validRestart(c.Restart) {
				return fail("want always, on-failure or never", append(at, "restart")...)
			}
			if h := c.Health; h != nil {
				if (len(h.Exec) == 0) == (h.HTTP == "") {
					return fail("give exactly one of exec and http", append(at, "health")...)
				}
				if h.HTTP != "" && !strings.HasPrefix(h.HTTP, "http://127.0.0.1") && !strings.HasPrefix(h.HTTP, "http://localhost") {
					return fail("http checks reach the Cal's own loopback (http://127.0.0.1:PORT/...)", append(at, "health", "http")...)
				}
				if h.Interval != 0 && h.Interval < MinHealthPeriod {
					return fail(fmt.Sprintf("at least %v", MinHealthPeriod), append(at, "health", "interval")...)
				}
			}
		}
	}
	for _, n := range []int{BottomTier} {
		if comps := t.Tiers[strconv.Itoa(n)]; len(comps) == 0 {
			return fail("tier -10 must run identity: a Cal cannot start without it", "tiers")
		}
	}
	return nil
}

// ErrNotFound is returned for an unknown template name.
var ErrNotFound = errors.New("no such template")
