// Package advisor is configuration intelligence (FR-5.1 to FR-5.3):
// resource recommendations from observed usage (a high percentile plus
// headroom) and flags for over- and under-provisioned Cals.
package advisor

import (
	"fmt"
	"math"
	"slices"

	"github.com/soulfra/calnet/api"
)

// Tuning of the recommendations.
const (
	Percentile = 0.95
	Headroom   = 1.3
	// MinSamples is how many samples a recommendation needs (5 minutes at
	// one sample every 5 s).
	MinSamples = 60
	// Over flags a quota more than Over times the recommendation; Under a
	// percentile above Under of the quota.
	Over  = 3.0
	Under = 0.9
	// Floors keep recommendations startable.
	MinCPUMillis   = 50
	MinMemoryBytes = 32 << 20
)

// Recommendation for one resource (the API's wire type).
type Recommendation = api.Recommendation

// percentile of vs (nearest rank); vs is not modified.
func percentile(vs []float64, p float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Recommend turns samples of one resource into a recommendation. For CPU
// the samples are percent of one core and the quota millicores; for
// memory both are bytes.
func Recommend(resource string, samples []float64, quota int64) Recommendation {
	r := Recommendation{Resource: resource, Samples: len(samples), Quota: quota}
	if len(samples) < MinSamples {
		r.Reason = fmt.Sprintf("%d samples, a recommendation needs %d (about %d minutes of running)", len(samples), MinSamples, MinSamples*5/60)
		return r
	}
	p := percentile(samples, Percentile)
	floor := int64(MinMemoryBytes)
	unit := func(v float64) string { return fmt.Sprintf("%.0f MiB", v/(1<<20)) }
	if resource == "cpu_millis" {
		p *= 10 // percent of a core -> millicores
		floor = MinCPUMillis
		unit = func(v float64) string { return fmt.Sprintf("%.0fm", v) }
	}
	r.Observed = p
	r.Recommended = max(floor, int64(math.Ceil(p*Headroom)))
	r.Reason = fmt.Sprintf("p95 of %d samples is %s; with %.0f%% headroom: %s", len(samples), unit(p), (Headroom-1)*100, unit(float64(r.Recommended)))
	switch {
	case quota > 0 && p > Under*float64(quota):
		r.Flag = "under-provisioned"
		r.Reason += fmt.Sprintf("; the quota %s is within %.0f%% of the p95", unit(float64(quota)), (1-Under)*100)
	case quota > 0 && float64(quota) > Over*float64(r.Recommended):
		r.Flag = "over-provisioned"
		r.Reason += fmt.Sprintf("; the quota %s is over %.0fx the recommendation", unit(float64(quota)), Over)
	}
	return r
}
