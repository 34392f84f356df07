// Package metrics keeps time series of Cal and host metrics in memory,
// bounded: recent samples at full resolution, older ones averaged into
// one-minute buckets, the oldest dropped.
package metrics

import (
	"sort"
	"sync"
	"time"
)

// Point is one sample.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Limits of a series: full resolution for the last Recent samples, then
// one-minute averages for the last Minutes minutes.
const (
	Recent  = 180  // 15 minutes at one sample per 5 s
	Minutes = 1440 // a day
)

// Series is one metric over time. It is safe for concurrent use.
type Series struct {
	mu      sync.Mutex
	recent  []Point // ring, full resolution
	minutes []Point // one-minute averages
	acc     float64 // current minute being averaged
	accN    int
	accT    time.Time
}

// Add records a sample.
func (s *Series) Add(t time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent = append(s.recent, Point{t, v})
	if len(s.recent) > Recent {
		s.recent = s.recent[len(s.recent)-Recent:]
	}
	m := t.Truncate(time.Minute)
	if !s.accT.IsZero() && !m.Equal(s.accT) {
		s.minutes = append(s.minutes, Point{s.accT, s.acc / float64(s.accN)})
		if len(s.minutes) > Minutes {
			s.minutes = s.minutes[len(s.minutes)-Minutes:]
		}
		s.acc, s.accN = 0, 0
	}
	s.accT = m
	s.acc += v
	s.accN++
}

// Since returns the samples from t on: minute averages for the time before
// the recent window, full resolution within it.
func (s *Series) Since(t time.Time) []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Point
	var first time.Time
	if len(s.recent) > 0 {
		first = s.recent[0].T
	}
	for _, p := range s.minutes {
		if !p.T.Before(t) && (first.IsZero() || p.T.Before(first.Truncate(time.Minute))) {
			out = append(out, p)
		}
	}
	for _, p := range s.recent {
		if !p.T.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

// Last returns the latest sample.
func (s *Series) Last() (Point, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == 0 {
		return Point{}, false
	}
	return s.recent[len(s.recent)-1], true
}

// Set holds the series of many subjects (Cals, the host) by name.
type Set struct {
	mu sync.RWMutex
	m  map[string]map[string]*Series // subject -> metric -> series
}

// MaxGauges bounds the metrics one subject may report.
const MaxGauges = 32

// Add records v for subject's metric; a subject with MaxGauges metrics
// already gets no new ones (and false).
func (s *Set) Add(subject, metric string, t time.Time, v float64) bool {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]map[string]*Series{}
	}
	ms := s.m[subject]
	if ms == nil {
		ms = map[string]*Series{}
		s.m[subject] = ms
	}
	ser := ms[metric]
	if ser == nil {
		if len(ms) >= MaxGauges {
			s.mu.Unlock()
			return false
		}
		ser = &Series{}
		ms[metric] = ser
	}
	s.mu.Unlock()
	ser.Add(t, v)
	return true
}

// Drop forgets a subject (a revoked or stopped Cal).
func (s *Set) Drop(subject string) {
	s.mu.Lock()
	delete(s.m, subject)
	s.mu.Unlock()
}

// Get returns a subject's series of metric.
func (s *Set) Get(subject, metric string) *Series {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[subject][metric]
}

// Metrics lists a subject's metric names.
func (s *Set) Metrics(subject string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for k := range s.m[subject] {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
