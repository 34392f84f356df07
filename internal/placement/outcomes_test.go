package placement

import (
	"testing"
	"time"
)

func TestOutcomes(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	o := NewOutcomes(func() time.Time { return now })
	step := func(d time.Duration) { now = now.Add(d) }

	for range 2 {
		o.Record("template:crashy", false)
		step(time.Second)
	}
	if _, n, ok := o.BackOff("template:crashy"); ok || n != 2 {
		t.Fatalf("two failures: backing off %v (%d)", ok, n)
	}
	o.Record("template:crashy", false) // the third
	until, n, ok := o.BackOff("template:crashy")
	if !ok || n != 3 || until != now.Add(BaseBackOff) {
		t.Fatalf("three failures: %v %d %v", ok, n, until.Sub(now))
	}
	step(BaseBackOff)
	if _, _, ok := o.BackOff("template:crashy"); ok {
		t.Fatal("still backing off after the back-off")
	}
	o.Record("template:crashy", false) // the fourth doubles it
	if until, _, ok := o.BackOff("template:crashy"); !ok || until != now.Add(2*BaseBackOff) {
		t.Fatalf("four failures: until +%v", until.Sub(now))
	}
	for range 10 { // capped
		o.Record("template:crashy", false)
	}
	if until, _, _ := o.BackOff("template:crashy"); until.Sub(now) != MaxBackOff {
		t.Fatalf("capped at %v, want %v", until.Sub(now), MaxBackOff)
	}
	// Old failures leave the window.
	step(Window + time.Second)
	if n := o.Failures("template:crashy"); n != 0 {
		t.Fatalf("failures after the window: %d", n)
	}
	// A success clears the record.
	for range 3 {
		o.Record("host:a", false)
	}
	o.Record("host:a", true)
	if _, _, ok := o.BackOff("host:a"); ok || o.Failures("host:a") != 0 {
		t.Fatal("a success did not clear the record")
	}
	// Other keys are independent.
	if o.Failures("template:fine") != 0 {
		t.Fatal("unrelated key has failures")
	}
}
