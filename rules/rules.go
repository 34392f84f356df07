// Package rules is the spawn criteria engine (FR-4.1, FR-4.5): rules in
// CEL over a Cal's metrics that, when their condition has held long
// enough, spawn children from a template or retire idle ones, under a
// cooldown, a maximum rate and hysteresis. The engine decides; acting on a
// decision (through the spawn engine and its limits) is the caller's.
//
// The engine is deterministic over the clock it is given: the control
// plane drives it with the wall clock, the simulator with a virtual one.
package rules

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"github.com/soulfra/calnet/internal/strictjson"
	"go.yaml.in/yaml/v3"
)

// Limits on a rule.
const (
	MaxExpr     = 1024 // characters of a CEL expression
	MaxCount    = 100  // children one firing spawns or retires
	MaxPerHour  = 3600 // firings an hour
	MaxName     = 64
	MinCooldown = time.Second
	// MaxCost bounds the CEL runtime cost of one evaluation.
	MaxCost = 10_000
)

// Actions.
const (
	Spawn  = "spawn"  // spawn Count children from Template
	Retire = "retire" // retire Count idle children, gracefully
)

// Duration is a time.Duration written as "30s" in JSON and YAML.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler (rules in templates).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\"")
	}
	return d.parse(s)
}

// maxDurationJSON bounds a duration's JSON string.
const maxDurationJSON = 64

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := strictjson.Unmarshal(b, maxDurationJSON, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\"")
	}
	return d.parse(s)
}

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a non-negative duration such as \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// Rule is one spawn criterion.
type Rule struct {
	Name string `json:"name" yaml:"name"`
	// When is the condition, a CEL expression over the metrics (Vars).
	When string `json:"when" yaml:"when"`
	// Clear re-arms the rule after it fired: until Clear holds the rule
	// does not fire again (hysteresis: fire at cpu_percent > 80, re-arm at
	// cpu_percent < 60). Empty means !When.
	Clear string `json:"clear,omitempty" yaml:"clear,omitempty"`
	// For is how long When must hold before the rule fires.
	For Duration `json:"for,omitempty" yaml:"for,omitempty"`
	// Cooldown is the least time between two firings.
	Cooldown Duration `json:"cooldown" yaml:"cooldown"`
	// MaxPerHour bounds firings in any sliding hour (0: no bound beyond
	// the cooldown).
	MaxPerHour int    `json:"max_per_hour,omitempty" yaml:"max_per_hour,omitempty"`
	Action     Action `json:"action" yaml:"action"`
}

// Action is what a firing asks for.
type Action struct {
	Kind     string `json:"kind" yaml:"kind"`                             // Spawn or Retire
	Count    int    `json:"count" yaml:"count"`                           // children
	Template string `json:"template,omitempty" yaml:"template,omitempty"` // for Spawn: a template name
}

// Vars are the metrics a rule sees, with their CEL types. Workload gauges
// are in the map gauges (gauges["queue_depth"]; has(gauges.queue_depth)
// tests for one).
func Vars() []Var { return slices.Clone(vars) }

// Var is one variable rules see.
type Var struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Help string `json:"help"`
}

var vars = []Var{
	{"cpu_percent", "double", "CPU use in percent of one core, last sample"},
	{"memory_bytes", "double", "memory use in bytes, last sample"},
	{"memory_limit_bytes", "double", "memory limit in bytes (0: none)"},
	{"children", "int", "running children"},
	{"idle_children", "int", "running children with no CPU use over the last minute"},
	{"healthy", "bool", "the Cal's health"},
	{"depth", "int", "depth in the tree (the master Cal: 1)"},
	{"gauges", "map(string, double)", "gauges the workload reports through the local API"},
	{"host_free_cpu_percent", "double", "free CPU of the host, percent"},
	{"host_free_memory_bytes", "double", "free memory of the host, bytes"},
}

// Metrics is one evaluation's input.
type Metrics struct {
	CPUPercent, MemoryBytes, MemoryLimitBytes float64
	Children, IdleChildren, Depth             int
	Healthy                                   bool
	Gauges                                    map[string]float64
	HostFreeCPUPercent, HostFreeMemoryBytes   float64
}

// activation resolves the rule variables straight from m: no map is built
// per evaluation (the engine runs for every Cal every few seconds, and the
// simulator for 100,000 of them).
func (m *Metrics) activation() interpreter.Activation { return metricsActivation{m} }

type metricsActivation struct{ m *Metrics }

var emptyGauges = types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})

func (a metricsActivation) ResolveName(name string) (any, bool) {
	m := a.m
	switch name {
	case "cpu_percent":
		return types.Double(m.CPUPercent), true
	case "memory_bytes":
		return types.Double(m.MemoryBytes), true
	case "memory_limit_bytes":
		return types.Double(m.MemoryLimitBytes), true
	case "children":
		return types.Int(m.Children), true
	case "idle_children":
		return types.Int(m.IdleChildren), true
	case "healthy":
		return types.Bool(m.Healthy), true
	case "depth":
		return types.Int(m.Depth), true
	case "gauges":
		if m.Gauges == nil {
			return emptyGauges, true
		}
		return m.Gauges, true
	case "host_free_cpu_percent":
		return types.Double(m.HostFreeCPUPercent), true
	case "host_free_memory_bytes":
		return types.Double(m.HostFreeMemoryBytes), true
	}
	return nil, false
}

func (metricsActivation) Parent() interpreter.Activation { return nil }

// env is built on first use: every Cal runs this binary, and only the
// control plane and the simulator evaluate rules.
var env = sync.OnceValue(func() *cel.Env {
	opts := []cel.EnvOption{}
	for _, v := range vars {
		var t *cel.Type
		switch v.Type {
		case "double":
			t = cel.DoubleType
		case "int":
			t = cel.IntType
		case "bool":
			t = cel.BoolType
		default:
			t = cel.MapType(cel.StringType, cel.DoubleType)
		}
		opts = append(opts, cel.Variable(v.Name, t))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		panic(err)
	}
	return e
})

// Error is a rule that cannot be saved: the field, and for CEL the
// position in the expression.
type Error struct {
	Field  string `json:"field"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Msg    string `json:"message"`
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %d:%d: %s", e.Field, e.Line, e.Column, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Compiled is a rule ready to evaluate.
type Compiled struct {
	Rule
	when, clear cel.Program
}

// Compile checks a rule and compiles its expressions. Every problem is an
// *Error naming the field (and, for CEL, the line and column).
func Compile(r Rule) (*Compiled, error) {
	switch {
	case len(r.Name) > MaxName || !nameRE.MatchString(r.Name):
		return nil, &Error{Field: "name", Msg: fmt.Sprintf("want lowercase letters, digits and dashes, at most %d characters", MaxName)}
	case r.Action.Kind != Spawn && r.Action.Kind != Retire:
		return nil, &Error{Field: "action.kind", Msg: fmt.Sprintf("%q: want %q or %q", r.Action.Kind, Spawn, Retire)}
	case r.Action.Count < 1 || r.Action.Count > MaxCount:
		return nil, &Error{Field: "action.count", Msg: fmt.Sprintf("%d: want 1 to %d", r.Action.Count, MaxCount)}
	case r.Action.Kind == Spawn && r.Action.Template == "":
		return nil, &Error{Field: "action.template", Msg: "a spawn action names the template of its children"}
	case r.Action.Kind == Retire && r.Action.Template != "":
		return nil, &Error{Field: "action.template", Msg: "a retire action takes no template"}
	case time.Duration(r.Cooldown) < MinCooldown:
		return nil, &Error{Field: "cooldown", Msg: fmt.Sprintf("%v: every rule needs a cooldown of at least %v, or it can fire on every evaluation", time.Duration(r.Cooldown), MinCooldown)}
	case r.MaxPerHour < 0 || r.MaxPerHour > MaxPerHour:
		return nil, &Error{Field: "max_per_hour", Msg: fmt.Sprintf("%d: want 0 (no bound beyond the cooldown) to %d", r.MaxPerHour, MaxPerHour)}
	}
	c := &Compiled{Rule: r}
	var err error
	if c.when, err = program("when", r.When); err != nil {
		return nil, err
	}
	clear := r.Clear
	if clear == "" {
		clear = "!(" + r.When + ")"
	}
	if c.clear, err = program("clear", clear); err != nil {
		return nil, err
	}
	return c, nil
}

// program compiles one boolean expression of a rule.
func program(field, expr string) (cel.Program, error) { return compileBool(env(), field, expr) }

// compileBool compiles one boolean expression in an environment.
func compileBool(e *cel.Env, field, expr string) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &Error{Field: field, Msg: "empty expression"}
	}
	if len(expr) > MaxExpr {
		return nil, &Error{Field: field, Msg: fmt.Sprintf("%d characters, over the limit of %d", len(expr), MaxExpr)}
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		ce := &Error{Field: field, Msg: iss.Err().Error()}
		if errs := iss.Errors(); len(errs) > 0 {
			loc := errs[0].Location
			ce.Line, ce.Column, ce.Msg = loc.Line(), loc.Column()+1, errs[0].Message
		}
		return nil, ce
	}
	if ast.OutputType() != cel.BoolType {
		return nil, &Error{Field: field, Msg: fmt.Sprintf("the expression is a %v: want a bool", ast.OutputType())}
	}
	p, err := e.Program(ast, cel.CostLimit(MaxCost))
	if err != nil {
		return nil, &Error{Field: field, Msg: err.Error()}
	}
	return p, nil
}

func eval(p cel.Program, act any) (bool, error) {
	out, _, err := p.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("not a bool: %v", out)
	}
	return bool(b), nil
}

// Outcomes of one evaluation.
const (
	Idle       = "idle"       // the condition does not hold
	Pending    = "pending"    // it holds, not yet for long enough
	Fired      = "fired"      // the action is due
	Suppressed = "suppressed" // it would fire, but: cooldown, rate, hysteresis
	Disabled   = "disabled"   // the rule failed at evaluation and is off
)

// Decision is the outcome of one evaluation of one rule.
type Decision struct {
	Rule    string    `json:"rule"`
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	Action  *Action   `json:"action,omitempty"` // when Fired
}

// State is a rule's memory for one Cal. Its zero value is a fresh, armed
// rule; it is plain data so that it can be stored.
type State struct {
	Since time.Time `json:"since,omitzero"` // when the condition began to hold
	// Firing: the rule fired and its condition has held ever since; it
	// fires again each cooldown while the condition holds (sustained load
	// keeps scaling).
	Firing bool `json:"firing,omitempty"`
	// Disarmed: the condition stopped holding after a firing, but the
	// clear condition does not hold yet; the rule waits for it to re-arm
	// (a metric jittering around the threshold fires once).
	Disarmed bool        `json:"disarmed,omitempty"`
	Last     time.Time   `json:"last,omitzero"`     // last firing
	Firings  []time.Time `json:"firings,omitempty"` // firings in the last hour
	Error    string      `json:"error,omitempty"`   // set when the rule is disabled
}

// Equal reports whether two states are the same memory (the control
// plane stores a state only when a step changed it).
func (s *State) Equal(o *State) bool {
	return s.Since.Equal(o.Since) && s.Firing == o.Firing && s.Disarmed == o.Disarmed && s.Last.Equal(o.Last) &&
		s.Error == o.Error && slices.EqualFunc(s.Firings, o.Firings, time.Time.Equal)
}

// Step evaluates the rule at now over m and advances st.
//
// An armed rule fires once its condition has held for For. While the
// condition goes on holding it fires again after each cooldown. Once the
// condition stops holding, the rule re-arms only when Clear holds: a
// metric jittering around the threshold does not fire again, and the hold
// time starts afresh after re-arming. Cooldown and MaxPerHour bound every
// firing.
func (c *Compiled) Step(st *State, now time.Time, m *Metrics) Decision {
	d := Decision{Rule: c.Name, At: now}
	if st.Error != "" {
		d.Outcome, d.Reason = Disabled, st.Error
		return d
	}
	act := m.activation()
	fail := func(field string, err error) Decision {
		st.Error = fmt.Sprintf("%s: evaluation failed: %v (rule disabled)", field, err)
		d.Outcome, d.Reason = Disabled, st.Error
		return d
	}
	held, err := eval(c.when, act)
	if err != nil {
		return fail("when", err)
	}
	if st.Firing && !held {
		st.Firing, st.Disarmed = false, true
	}
	if st.Disarmed {
		clear, err := eval(c.clear, act)
		if err != nil {
			return fail("clear", err)
		}
		if !clear {
			if held {
				d.Outcome, d.Reason = Suppressed, fmt.Sprintf("hysteresis: fired at %s; re-arms once the clear condition holds", st.Last.UTC().Format(time.RFC3339))
			} else {
				d.Outcome, d.Reason = Idle, "waiting for the clear condition to re-arm"
			}
			return d
		}
		st.Disarmed, st.Since = false, time.Time{}
	}
	if !held {
		st.Since = time.Time{}
		d.Outcome = Idle
		return d
	}
	if st.Since.IsZero() {
		st.Since = now
	}
	if h := now.Sub(st.Since); !st.Firing && h < time.Duration(c.For) {
		d.Outcome, d.Reason = Pending, fmt.Sprintf("held for %v of %v", h, time.Duration(c.For))
		return d
	}
	if !st.Last.IsZero() && now.Sub(st.Last) < time.Duration(c.Cooldown) {
		d.Outcome, d.Reason = Suppressed, fmt.Sprintf("cooldown: fired %v ago, cooldown %v", now.Sub(st.Last), time.Duration(c.Cooldown))
		return d
	}
	recent := st.Firings[:0]
	for _, t := range st.Firings {
		if now.Sub(t) < time.Hour {
			recent = append(recent, t)
		}
	}
	st.Firings = recent
	if c.MaxPerHour > 0 && len(st.Firings) >= c.MaxPerHour {
		d.Outcome, d.Reason = Suppressed, fmt.Sprintf("rate: %d firings in the last hour, limit %d", len(st.Firings), c.MaxPerHour)
		return d
	}
	st.Last, st.Firings, st.Firing = now, append(st.Firings, now), true
	a := c.Action
	d.Outcome, d.Action = Fired, &a
	d.Reason = fmt.Sprintf("%s held for %v", c.When, now.Sub(st.Since))
	return d
}
