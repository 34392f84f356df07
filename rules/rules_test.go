package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func scaleUp() Rule {
	return Rule{
		Name: "scale-up", When: "cpu_percent > 80.0", Clear: "cpu_percent < 60.0",
		For: Duration(30 * time.Second), Cooldown: Duration(2 * time.Minute), MaxPerHour: 3,
		Action: Action{Kind: Spawn, Count: 2, Template: "worker"},
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Rule)
		field     string
		line, col int
		msg       string
	}{
		{"bad name", func(r *Rule) { r.Name = "Scale Up" }, "name", 0, 0, "lowercase"},
		{"syntax", func(r *Rule) { r.When = "cpu_percent >" }, "when", 1, 14, "Syntax error"},
		{"unknown metric", func(r *Rule) { r.When = "cpu_percent > 80.0 &&\n  queue > 3" }, "when", 2, 3, "undeclared reference to 'queue'"},
		{"not a bool", func(r *Rule) { r.When = "cpu_percent * 2.0" }, "when", 0, 0, "want a bool"},
		{"type mismatch", func(r *Rule) { r.When = "children > 1.5" }, "when", 1, 10, "no matching overload"},
		{"empty", func(r *Rule) { r.When = "  " }, "when", 0, 0, "empty expression"},
		{"too long", func(r *Rule) { r.When = "true" + strings.Repeat(" ", MaxExpr) }, "when", 0, 0, "over the limit of 1024"},
		{"bad clear", func(r *Rule) { r.Clear = "cpu < 1.0" }, "clear", 1, 1, "undeclared reference to 'cpu'"},
		{"no cooldown", func(r *Rule) { r.Cooldown = 0 }, "cooldown", 0, 0, "needs a cooldown"},
		{"kind", func(r *Rule) { r.Action.Kind = "explode" }, "action.kind", 0, 0, `"explode"`},
		{"count", func(r *Rule) { r.Action.Count = 1000 }, "action.count", 0, 0, "want 1 to 100"},
		{"spawn without template", func(r *Rule) { r.Action.Template = "" }, "action.template", 0, 0, "names the template"},
		{"rate", func(r *Rule) { r.MaxPerHour = -1 }, "max_per_hour", 0, 0, "want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scaleUp()
			tt.edit(&r)
			_, err := Compile(r)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if e.Field != tt.field || e.Line != tt.line || (tt.col != 0 && e.Column != tt.col) || !strings.Contains(e.Msg, tt.msg) {
				t.Fatalf("got %+v, want field %s at %d:%d with %q", e, tt.field, tt.line, tt.col, tt.msg)
			}
		})
	}
	if _, err := Compile(scaleUp()); err != nil {
		t.Fatal(err)
	}
}

// run steps a rule once per 10 s of virtual time over a series of CPU
// values and returns the outcomes.
func run(t *testing.T, r Rule, cpu []float64) []Decision {
	t.Helper()
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	var st State
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var out []Decision
	for i, v := range cpu {
		out = append(out, c.Step(&st, start.Add(time.Duration(i)*10*time.Second), &Metrics{CPUPercent: v}))
	}
	return out
}

func outcomes(ds []Decision) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteByte(map[string]byte{Idle: '.', Pending: 'p', Fired: 'F', Suppressed: 's', Disabled: 'x'}[d.Outcome])
	}
	return b.String()
}

func TestStep(t *testing.T) {
	noHyst := scaleUp()
	noHyst.Clear, noHyst.For, noHyst.MaxPerHour = "", 0, 0
	noHyst.Cooldown = Duration(time.Second)
	rate := scaleUp()
	rate.Clear, rate.For, rate.Cooldown = "cpu_percent < 81.0", 0, Duration(time.Second)
	tests := []struct {
		name string
		r    Rule
		cpu  []float64
		want string
	}{
		// Must hold for 30 s (fires at the 4th sample over); then hysteresis:
		// suppressed while over 80, waiting between 60 and 80, re-armed
		// below 60.
		{"for then fire", scaleUp(), []float64{10, 90, 90, 90, 90, 90, 70, 50}, ".pppFs.."},
		// A dip resets the hold.
		{"dip resets", scaleUp(), []float64{90, 90, 50, 90, 90, 90, 90}, "pp.pppF"},
		// Jitter around 80 after firing: with hysteresis no second firing.
		{"jitter with hysteresis", scaleUp(), []float64{90, 90, 90, 90, 79, 81, 79, 81, 79, 81}, "pppF.s.s.s"},
		// The same jitter without hysteresis fires on every crossing.
		{"jitter without hysteresis", noHyst, []float64{90, 79, 81, 79, 81, 79, 81}, "F.F.F.F"},
		// Re-armed but within the cooldown of two minutes; fires again at
		// 120 s.
		{"cooldown", func() Rule { r := scaleUp(); r.For = 0; return r }(), []float64{90, 50, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90}, "F.ssssssssssFs"},
		// Sustained: fires again after each cooldown while it holds.
		{"sustained", scaleUp(), []float64{90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90}, "pppFsssssssssssFs"},
		// Three an hour at most.
		{"rate", rate, []float64{90, 50, 90, 50, 90, 50, 90, 50, 90}, "F.F.F.s.s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := run(t, tt.r, tt.cpu)
			if got := outcomes(ds); got != tt.want {
				for _, d := range ds {
					t.Log(d.Outcome, d.Reason)
				}
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			for _, d := range ds {
				if d.Outcome == Fired && (d.Action == nil || *d.Action != tt.r.Action) {
					t.Fatalf("fired without the action: %+v", d)
				}
				if d.Outcome == Suppressed && d.Reason == "" {
					t.Fatalf("suppressed without a reason: %+v", d)
				}
			}
		})
	}
}

func TestEvaluationErrorDisables(t *testing.T) {
	r := scaleUp()
	r.When = `gauges["queue_depth"] > 10.0`
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	var st State
	now := time.Now()
	d := c.Step(&st, now, &Metrics{})
	if d.Outcome != Disabled || !strings.Contains(d.Reason, "no such key") {
		t.Fatalf("got %+v", d)
	}
	// It stays off, even once the gauge exists.
	if d := c.Step(&st, now.Add(time.Second), &Metrics{Gauges: map[string]float64{"queue_depth": 50}}); d.Outcome != Disabled {
		t.Fatalf("got %+v", d)
	}
	// Written defensively, it works.
	r.When = `has(gauges.queue_depth) && gauges.queue_depth > 10.0`
	r.For = 0
	c, _ = Compile(r)
	st = State{}
	if d := c.Step(&st, now, &Metrics{}); d.Outcome != Idle {
		t.Fatalf("got %+v", d)
	}
	if d := c.Step(&st, now, &Metrics{Gauges: map[string]float64{"queue_depth": 50}}); d.Outcome != Fired {
		t.Fatalf("got %+v", d)
	}
}

func TestStateRoundTrip(t *testing.T) {
	c, _ := Compile(scaleUp())
	var st State
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		c.Step(&st, now.Add(time.Duration(i)*10*time.Second), &Metrics{CPUPercent: 95})
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Firing || !back.Since.Equal(st.Since) || !back.Last.Equal(st.Last) || len(back.Firings) != 1 {
		t.Fatalf("round trip: %s -> %+v", b, back)
	}
}

// FuzzCompile: any rule document is either compiled or refused with an
// *Error, never a panic.
func FuzzCompile(f *testing.F) {
	b, _ := json.Marshal(scaleUp())
	f.Add(b)
	f.Add([]byte(`{"name":"x","when":"gauges[\"a\"] > 1.0 || size(gauges) > 2","cooldown":"1s","action":{"kind":"retire","count":1}}`))
	f.Add([]byte(`{"name":"x","when":"[1,2].map(x, x*2).size() > 0","cooldown":"5s","action":{"kind":"retire","count":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Rule
		if json.Unmarshal(data, &r) != nil {
			return
		}
		c, err := Compile(r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v is not an *Error", err)
			}
			return
		}
		var st State
		c.Step(&st, time.Now(), &Metrics{Gauges: map[string]float64{"a": 2}})
	})
}

// BenchmarkStep is the cost of one evaluation of a typical rule.
func BenchmarkStep(b *testing.B) {
	r := scaleUp()
	r.When = `cpu_percent > 80.0 && has(gauges.queue_depth) && gauges.queue_depth > 100.0 && children < 10`
	c, err := Compile(r)
	if err != nil {
		b.Fatal(err)
	}
	m := &Metrics{CPUPercent: 50, Children: 3, Gauges: map[string]float64{"queue_depth": 20}}
	var st State
	now := time.Now()
	for b.Loop() {
		c.Step(&st, now, m)
	}
	// 1,000 Cals with 5 rules each, every second.
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(per*5000/1e9*100, "%core-1000cals-5rules")
}
