package metrics

import (
	"testing"
	"time"
)

func TestSeriesDownsamplesAndBounds(t *testing.T) {
	var s Series
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Two hours at one sample per 5 s: 1,440 samples.
	for i := range 1440 {
		s.Add(t0.Add(time.Duration(i)*5*time.Second), float64(i%12))
	}
	if len(s.recent) != Recent {
		t.Fatalf("recent holds %d, want %d", len(s.recent), Recent)
	}
	if len(s.minutes) != 119 {
		t.Fatalf("%d minute buckets, want 119", len(s.minutes))
	}
	if v := s.minutes[0].V; v != 5.5 { // average of 0..11
		t.Fatalf("minute average %v, want 5.5", v)
	}
	pts := s.Since(t0)
	if len(pts) == 0 || !pts[0].T.Equal(t0) || pts[len(pts)-1].T != t0.Add(1439*5*time.Second) {
		t.Fatalf("since: %d points from %v to %v", len(pts), pts[0].T, pts[len(pts)-1].T)
	}
	for i := 1; i < len(pts); i++ {
		if !pts[i].T.After(pts[i-1].T) {
			t.Fatalf("points out of order at %d", i)
		}
	}
	// A day more: bounded.
	for i := range 20000 {
		s.Add(t0.Add(2*time.Hour+time.Duration(i)*5*time.Second), 1)
	}
	if len(s.minutes) > Minutes || len(s.recent) > Recent {
		t.Fatal("series grew without bound")
	}
}

func TestSetBoundsGauges(t *testing.T) {
	var set Set
	now := time.Now()
	for i := range MaxGauges {
		if !set.Add("cal", string(rune('a'+i)), now, 1) {
			t.Fatal("gauge refused under the limit")
		}
	}
	if set.Add("cal", "one-too-many", now, 1) {
		t.Fatal("gauge accepted over the limit")
	}
	if p, ok := set.Get("cal", "a").Last(); !ok || p.V != 1 {
		t.Fatal("last sample lost")
	}
	set.Drop("cal")
	if set.Get("cal", "a") != nil {
		t.Fatal("dropped subject still has series")
	}
}
