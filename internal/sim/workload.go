package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Workload shapes. Each gives a pool's demand over the run as a fraction
// of the pool's peak; noise of a few percent is added on every tick.
const (
	Step     = "step"     // 25% of peak, 100% from a quarter to 55% of the run, 50% to three quarters, then 25%
	Ramp     = "ramp"     // 10% rising linearly to 100% at half the run, back to 10% at the end
	Daily    = "daily"    // a day's cycle between 10% and 100%, peak at midday (per pool ±2 h)
	Spikes   = "spikes"   // 30% with about six bursts a day to 100%, 5 to 15 minutes each
	Failures = "failures" // the daily cycle, with children breaking (MTBF 6 h) and 5% of deploys failing
)

// Shapes lists the workload shapes.
var Shapes = []string{Step, Ramp, Daily, Spikes, Failures}

// ParseShapes reads a comma-separated list of shapes ("all" for every one).
func ParseShapes(s string) ([]string, error) {
	if s == "" || s == "all" {
		return slices.Clone(Shapes), nil
	}
	var out []string
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if !slices.Contains(Shapes, w) {
			return nil, fmt.Errorf("workload %q: want one of %s, or all", w, strings.Join(Shapes, ", "))
		}
		out = append(out, w)
	}
	return out, nil
}

// burst is one spike of the spikes shape.
type burst struct{ from, to time.Duration }

// shape is one pool's demand curve.
type shape struct {
	kind   string
	peak   float64       // children at 100%
	shift  time.Duration // per-pool offset of the curve's events
	bursts []burst
}

func newShape(kind string, peak float64, run time.Duration, rng *rand.Rand) shape {
	s := shape{kind: kind, peak: peak}
	switch kind {
	case Step:
		s.shift = time.Duration(rng.Int64N(int64(time.Hour))) - 30*time.Minute
	case Daily, Failures:
		s.shift = time.Duration(rng.Int64N(int64(4*time.Hour))) - 2*time.Hour
	case Spikes:
		// About six a day, at random, 5 to 15 minutes each.
		for t := time.Duration(0); ; {
			t += time.Duration(rng.ExpFloat64() * float64(4*time.Hour))
			if t >= run {
				break
			}
			d := 5*time.Minute + time.Duration(rng.Int64N(int64(10*time.Minute)))
			s.bursts = append(s.bursts, burst{t, t + d})
			t += d
		}
	}
	return s
}

// level is the demand at t, as a fraction of the peak, without noise.
func (s *shape) level(t, run time.Duration) float64 {
	switch s.kind {
	case Step:
		t -= s.shift
		switch {
		case t < run/4:
			return 0.25
		case t < run*55/100:
			return 1
		case t < run*3/4:
			return 0.5
		}
		return 0.25
	case Ramp:
		x := float64(t) / float64(run)
		if x < 0.5 {
			return 0.1 + 0.9*x*2
		}
		return 0.1 + 0.9*(1-x)*2
	case Spikes:
		for _, b := range s.bursts {
			if t >= b.from && t < b.to {
				return 1
			}
			if b.from > t {
				break
			}
		}
		return 0.3
	}
	// daily and failures: midnight low, midday peak.
	day := float64(t-s.shift) / float64(24*time.Hour)
	return 0.55 - 0.45*math.Cos(2*math.Pi*day)
}
