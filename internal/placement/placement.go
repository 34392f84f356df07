// Package placement chooses where a new Cal runs (FR-4.2, FR-4.4): it
// scores candidate hosts by the resources left after the Cal is placed,
// by spread of the parent's children across failure domains (zones), and
// by affinity to the parent's host, and says why it chose. On one host the
// decision is trivial but still made and recorded; the scoring is tested
// on simulated topologies.
package placement

import (
	"fmt"
	"sort"
	"strings"
)

// Candidate is a host (or driver) a Cal may run on.
type Candidate struct {
	Name string
	Zone string // failure domain
	// Capacity and Free are millicores and bytes.
	CPUCapacity, CPUFree int64
	MemCapacity, MemFree int64
	Healthy              bool
	// RecentFailures counts spawns that failed on this host lately
	// (learning from outcomes: a failing host scores lower).
	RecentFailures int
}

// Request is what is placed.
type Request struct {
	CPUMillis, MemoryBytes int64
	// ParentHost is where the parent runs ("" for none).
	ParentHost string
	// Siblings counts the parent's running children per zone.
	Siblings map[string]int
}

// Weights of the three scores; they need not sum to one.
type Weights struct {
	Resources, Spread, Affinity, Failures float64
}

// DefaultWeights spread first (a zone failure should not take a whole
// family), then resources, then closeness to the parent, which only breaks
// near-ties (a larger weight would pile a family into its parent's zone:
// calnet sim showed 2/3 of the children there at 0.2).
var DefaultWeights = Weights{Resources: 0.4, Spread: 0.4, Affinity: 0.005, Failures: 0.1}

// Score is one candidate's evaluation.
type Score struct {
	Candidate string   `json:"candidate"`
	Zone      string   `json:"zone"`
	Feasible  bool     `json:"feasible"`
	Score     float64  `json:"score"`
	Reasons   []string `json:"reasons"`
}

// Decision is the chosen candidate and every candidate's score, best first.
type Decision struct {
	Chosen string  `json:"chosen"`
	Scores []Score `json:"scores"`
}

// Reason is a one-line account of the decision.
func (d *Decision) Reason() string {
	if d.Chosen == "" {
		var why []string
		for _, s := range d.Scores {
			why = append(why, s.Candidate+": "+strings.Join(s.Reasons, ", "))
		}
		return "no feasible host (" + strings.Join(why, "; ") + ")"
	}
	best := d.Scores[0]
	alt := ""
	if len(d.Scores) == 1 {
		alt = "; the only candidate"
	} else {
		alt = fmt.Sprintf("; %d candidates, next %s at %.2f", len(d.Scores), d.Scores[1].Candidate, d.Scores[1].Score)
	}
	return fmt.Sprintf("%s (zone %s) score %.2f: %s%s", best.Candidate, best.Zone, best.Score, strings.Join(best.Reasons, ", "), alt)
}

// Place scores every candidate and picks the best feasible one; ties go
// to the name that sorts first, so the decision is deterministic.
func Place(cands []Candidate, r Request, w Weights) Decision {
	total := siblings(r)
	var scores []Score
	for _, c := range cands {
		s := Score{Candidate: c.Name, Zone: c.Zone}
		var why string
		s.Score, s.Feasible, why = score(&c, &r, &w, total)
		if !s.Feasible {
			s.Reasons = append(s.Reasons, why)
		} else {
			cpuLeft := frac(c.CPUFree-r.CPUMillis, c.CPUCapacity)
			memLeft := frac(c.MemFree-r.MemoryBytes, c.MemCapacity)
			s.Reasons = append(s.Reasons, fmt.Sprintf("after placing: cpu %.0f%% free, memory %.0f%% free", cpuLeft*100, memLeft*100))
			if total > 0 {
				s.Reasons = append(s.Reasons, fmt.Sprintf("%d of %d siblings in zone %s", r.Siblings[c.Zone], total, c.Zone))
			}
			if r.ParentHost != "" && r.ParentHost == c.Name {
				s.Reasons = append(s.Reasons, "the parent's host")
			}
			if c.RecentFailures > 0 {
				s.Reasons = append(s.Reasons, fmt.Sprintf("%d recent spawn failures", c.RecentFailures))
			}
		}
		scores = append(scores, s)
	}
	sort.SliceStable(scores, func(i, j int) bool {
		a, b := scores[i], scores[j]
		if a.Feasible != b.Feasible {
			return a.Feasible
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Candidate < b.Candidate
	})
	d := Decision{Scores: scores}
	if len(scores) > 0 && scores[0].Feasible {
		d.Chosen = scores[0].Candidate
	}
	return d
}

// Choose makes Place's choice without writing the reasons: the index of
// the chosen candidate, or -1 when none is feasible. The simulator places
// hundreds of thousands of Cals with it; TestChooseAgreesWithPlace keeps
// the two in step.
func Choose(cands []Candidate, r Request, w Weights) int {
	total := siblings(r)
	best, bestScore := -1, 0.0
	for i := range cands {
		s, ok, _ := score(&cands[i], &r, &w, total)
		if !ok {
			continue
		}
		if best < 0 || s > bestScore || (s == bestScore && cands[i].Name < cands[best].Name) {
			best, bestScore = i, s
		}
	}
	return best
}

func siblings(r Request) int {
	total := 0
	for _, n := range r.Siblings {
		total += n
	}
	return total
}

// score is one candidate's score, or why it cannot take the Cal.
func score(c *Candidate, r *Request, w *Weights, total int) (float64, bool, string) {
	switch {
	case !c.Healthy:
		return 0, false, "unhealthy"
	case c.CPUFree < r.CPUMillis:
		return 0, false, fmt.Sprintf("cpu: %dm free, %dm asked", c.CPUFree, r.CPUMillis)
	case c.MemFree < r.MemoryBytes:
		return 0, false, fmt.Sprintf("memory: %d bytes free, %d asked", c.MemFree, r.MemoryBytes)
	}
	res := (frac(c.CPUFree-r.CPUMillis, c.CPUCapacity) + frac(c.MemFree-r.MemoryBytes, c.MemCapacity)) / 2
	spread := 1.0
	if total > 0 {
		spread = 1 - float64(r.Siblings[c.Zone])/float64(total)
	}
	aff := 0.0
	if r.ParentHost != "" && r.ParentHost == c.Name {
		aff = 1
	}
	fail := 1 / (1 + float64(c.RecentFailures))
	return w.Resources*res + w.Spread*spread + w.Affinity*aff + w.Failures*fail, true, ""
}

func frac(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return max(0, min(1, float64(a)/float64(b)))
}
