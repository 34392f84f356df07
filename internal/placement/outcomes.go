package placement

import (
	"slices"
	"sync"
	"time"
)

// Outcomes learns from spawn outcomes (FR-5.5): deploy failures per key
// (a template, a host) within a window. A host's recent failures lower its
// placement score; a template that keeps failing is backed off, for longer
// each further failure, until one of its deploys succeeds.
type Outcomes struct {
	mu  sync.Mutex
	now func() time.Time
	by  map[string][]time.Time // failures within Window since the last success
	// ready holds the last times to operational per key (a ring of
	// keepReady): the deploy timeout of a template is learned from it.
	ready map[string][]time.Duration
}

// Outcome tuning.
const (
	Window = 10 * time.Minute
	// BackOffAfter failures in Window, with no success since, start a
	// back-off of BaseBackOff, doubled for each further failure, at most
	// MaxBackOff after the last failure.
	BackOffAfter = 3
	BaseBackOff  = time.Minute
	MaxBackOff   = 10 * time.Minute
	maxKeys      = 4096
	keepReady    = 64
	// TimeoutFactor: the learned deploy timeout is this many times the
	// p95 time to operational, never under the base.
	TimeoutFactor = 4
)

// NewOutcomes returns an empty record on the clock now.
func NewOutcomes(now func() time.Time) *Outcomes {
	return &Outcomes{now: now, by: map[string][]time.Time{}, ready: map[string][]time.Duration{}}
}

// Record notes one deploy outcome for key.
func (o *Outcomes) Record(key string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ok {
		delete(o.by, key) // a success clears the record
		return
	}
	if _, known := o.by[key]; !known && len(o.by) >= maxKeys {
		return // bounded: a flood of keys is not remembered
	}
	o.by[key] = append(o.recent(key), o.now())
}

// recent drops key's failures older than Window and returns the rest.
func (o *Outcomes) recent(key string) []time.Time {
	cut := o.now().Add(-Window)
	f := o.by[key]
	i := 0
	for i < len(f) && f[i].Before(cut) {
		i++
	}
	if _, known := o.by[key]; known {
		o.by[key] = f[i:]
	}
	return f[i:]
}

// Failures is the number of failures of key within Window since its last
// success.
func (o *Outcomes) Failures(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.recent(key))
}

// BackOff reports whether key is backed off, until when, and after how
// many failures.
func (o *Outcomes) BackOff(key string) (until time.Time, fails int, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.recent(key)
	if len(f) < BackOffAfter {
		return time.Time{}, len(f), false
	}
	d := BaseBackOff << min(len(f)-BackOffAfter, 4)
	until = f[len(f)-1].Add(min(d, MaxBackOff))
	return until, len(f), o.now().Before(until)
}

// Operational notes how long a deploy for key took to become operational.
func (o *Outcomes) Operational(key string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, known := o.ready[key]
	if !known && len(o.ready) >= maxKeys {
		return
	}
	if len(r) >= keepReady {
		r = r[1:]
	}
	o.ready[key] = append(r, d)
}

// ReadyP95 is the p95 of key's recent times to operational, and how many
// there were.
func (o *Outcomes) ReadyP95(key string) (time.Duration, int) {
	o.mu.Lock()
	r := slices.Clone(o.ready[key])
	o.mu.Unlock()
	if len(r) == 0 {
		return 0, 0
	}
	slices.Sort(r)
	return r[min(len(r)-1, (len(r)*95+99)/100-1)], len(r)
}

// Timeout is how long to wait for a deploy of key: TimeoutFactor times its
// p95 time to operational, at least base (a template whose Cals are slow
// to start is given the time they need instead of being failed and
// retried; a fast one keeps the base).
func (o *Outcomes) Timeout(key string, base time.Duration) time.Duration {
	p, n := o.ReadyP95(key)
	if n < 3 {
		return base
	}
	return max(base, TimeoutFactor*p)
}

// OutcomesSnapshot is what an Outcomes has learned, in a form to store
// and restore across restarts of the control plane.
type OutcomesSnapshot struct {
	// Failures are each key's deploy failures within Window since its
	// last success.
	Failures map[string][]time.Time `json:"failures"`
	// Ready are each key's last times to operational.
	Ready map[string][]time.Duration `json:"ready"`
}

// Snapshot returns a copy of what o has learned.
func (o *Outcomes) Snapshot() OutcomesSnapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := OutcomesSnapshot{Failures: map[string][]time.Time{}, Ready: map[string][]time.Duration{}}
	for k := range o.by {
		if f := o.recent(k); len(f) > 0 {
			s.Failures[k] = slices.Clone(f)
		}
	}
	for k, r := range o.ready {
		s.Ready[k] = slices.Clone(r)
	}
	return s
}

// Restore replaces what o has learned with s, within o's bounds (keys,
// samples per key); failures older than Window are forgotten as usual.
func (o *Outcomes) Restore(s OutcomesSnapshot) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.by, o.ready = map[string][]time.Time{}, map[string][]time.Duration{}
	for k, f := range s.Failures {
		if len(o.by) >= maxKeys {
			break
		}
		o.by[k] = slices.Clone(f[max(0, len(f)-keepReady):])
	}
	for k, r := range s.Ready {
		if len(o.ready) >= maxKeys {
			break
		}
		o.ready[k] = slices.Clone(r[max(0, len(r)-keepReady):])
	}
}
