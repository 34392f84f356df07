package placement

import (
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
)

// NewOutcomes returns an empty record on the clock now.
func NewOutcomes(now func() time.Time) *Outcomes {
	return &Outcomes{now: now, by: map[string][]time.Time{}}
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
