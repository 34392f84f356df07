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

// TestLearnedTimeout: the deploy timeout follows the p95 time to
// operational once there are three samples, and never drops under the
// base.
func TestLearnedTimeout(t *testing.T) {
	o := NewOutcomes(time.Now)
	base := 15 * time.Second
	if got := o.Timeout("template:t", base); got != base {
		t.Fatalf("no samples: %v", got)
	}
	for _, d := range []time.Duration{2, 3, 9} {
		o.Operational("template:t", d*time.Second)
	}
	if got := o.Timeout("template:t", base); got != 36*time.Second {
		t.Fatalf("p95 9s: timeout %v, want 36s", got)
	}
	for range 100 {
		o.Operational("template:fast", 40*time.Millisecond)
	}
	if got := o.Timeout("template:fast", base); got != base {
		t.Fatalf("fast template: %v", got)
	}
	if p, n := o.ReadyP95("template:fast"); n != keepReady || p != 40*time.Millisecond {
		t.Fatalf("ring: %v %d", p, n)
	}
}

func TestOutcomesSnapshotRestore(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	o := NewOutcomes(clock)
	for range BackOffAfter {
		o.Record("template:flaky", false)
	}
	for i := range 5 {
		o.Operational("template:default", time.Duration(40+i)*time.Millisecond)
	}
	restored := NewOutcomes(clock)
	restored.Restore(o.Snapshot())
	if _, n, backing := restored.BackOff("template:flaky"); !backing || n != BackOffAfter {
		t.Fatalf("restored back-off: backing %v after %d failures, want the back-off of %d", backing, n, BackOffAfter)
	}
	if p, n := restored.ReadyP95("template:default"); n != 5 || p != 44*time.Millisecond {
		t.Fatalf("restored p95 %v of %d samples, want 44ms of 5", p, n)
	}
	// Failures older than the window are forgotten after a restore too.
	now = now.Add(Window + time.Second)
	if _, _, backing := restored.BackOff("template:flaky"); backing {
		t.Fatal("a back-off outlived its window after a restore")
	}
}
