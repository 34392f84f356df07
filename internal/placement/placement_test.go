package placement

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

const gib = 1 << 30

func host(name, zone string, cpuFree, memFreeGiB int64) Candidate {
	return Candidate{Name: name, Zone: zone, CPUCapacity: 8000, CPUFree: cpuFree, MemCapacity: 16 * gib, MemFree: memFreeGiB * gib, Healthy: true}
}

func TestPlace(t *testing.T) {
	small := Request{CPUMillis: 250, MemoryBytes: 64 << 20}
	tests := []struct {
		name   string
		cands  []Candidate
		req    Request
		chosen string
		reason string
	}{
		{"one host", []Candidate{host("local", "local", 6000, 10)}, small, "local", "the only candidate"},
		{"most free wins", []Candidate{host("a", "z1", 1000, 2), host("b", "z1", 7000, 14)}, small, "b", ""},
		{"spread across zones beats free resources",
			[]Candidate{host("a1", "za", 8000, 16), host("b1", "zb", 3000, 6)},
			Request{CPUMillis: 250, MemoryBytes: 64 << 20, Siblings: map[string]int{"za": 3}}, "b1", "0 of 3 siblings in zone zb"},
		{"affinity breaks a tie", []Candidate{host("a", "z1", 4000, 8), host("b", "z1", 4000, 8)},
			Request{CPUMillis: 250, MemoryBytes: 64 << 20, ParentHost: "b"}, "b", "the parent's host"},
		{"tie goes to the first name", []Candidate{host("b", "z1", 4000, 8), host("a", "z1", 4000, 8)}, small, "a", ""},
		{"infeasible skipped", []Candidate{host("a", "z1", 100, 8), host("b", "z2", 500, 8)}, small, "b", ""},
		{"unhealthy skipped", []Candidate{{Name: "a", Zone: "z", CPUCapacity: 8000, CPUFree: 8000, MemCapacity: gib, MemFree: gib}, host("b", "z", 300, 1)}, small, "b", ""},
		{"failing host avoided", []Candidate{func() Candidate { c := host("a", "z", 4000, 8); c.RecentFailures = 5; return c }(), host("b", "z", 4000, 8)}, small, "b", ""},
		{"nothing fits", []Candidate{host("a", "z", 100, 8), host("b", "z", 4000, 0)}, small, "", "no feasible host (a: cpu: 100m free, 250m asked; b: memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Place(tt.cands, tt.req, DefaultWeights)
			if d.Chosen != tt.chosen || !strings.Contains(d.Reason(), tt.reason) {
				t.Fatalf("chose %q (%s), want %q with %q", d.Chosen, d.Reason(), tt.chosen, tt.reason)
			}
		})
	}
}

// TestSpreadOverTime places a family of 12 children one by one on a
// simulated topology of three zones of two hosts each: the zones end up
// evenly used.
func TestSpreadOverTime(t *testing.T) {
	var cands []Candidate
	for _, z := range []string{"za", "zb", "zc"} {
		for i := range 2 {
			cands = append(cands, host(fmt.Sprintf("%s-%d", z, i), z, 8000, 16))
		}
	}
	sib := map[string]int{}
	req := Request{CPUMillis: 500, MemoryBytes: gib}
	for range 12 {
		req.Siblings = sib
		d := Place(cands, req, DefaultWeights)
		if d.Chosen == "" {
			t.Fatal(d.Reason())
		}
		for i := range cands {
			if cands[i].Name == d.Chosen {
				cands[i].CPUFree -= req.CPUMillis
				cands[i].MemFree -= req.MemoryBytes
				sib[cands[i].Zone]++
			}
		}
	}
	if sib["za"] != 4 || sib["zb"] != 4 || sib["zc"] != 4 {
		t.Fatalf("zones used %v, want 4 each", sib)
	}
}

func BenchmarkPlace100Hosts(b *testing.B) {
	var cands []Candidate
	for i := range 100 {
		cands = append(cands, host(fmt.Sprintf("h%03d", i), fmt.Sprintf("z%d", i%5), int64(1000+i*50), int64(2+i%10)))
	}
	req := Request{CPUMillis: 250, MemoryBytes: 64 << 20, Siblings: map[string]int{"z1": 3, "z2": 1}}
	for b.Loop() {
		Place(cands, req, DefaultWeights)
	}
}

// TestChooseAgreesWithPlace: the simulator's fast path makes the same
// choice as Place on random topologies (ties, full and unhealthy hosts).
func TestChooseAgreesWithPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var cands []Candidate
		for h := range 1 + rng.IntN(12) {
			c := host(fmt.Sprintf("h%02d", h), fmt.Sprintf("z%d", rng.IntN(3)), int64(rng.IntN(4))*250, int64(rng.IntN(3)))
			c.Healthy = rng.IntN(8) > 0
			c.RecentFailures = rng.IntN(3) / 2
			cands = append(cands, c)
		}
		req := Request{CPUMillis: 250, MemoryBytes: 64 << 20, Siblings: map[string]int{"z0": rng.IntN(3), "z1": rng.IntN(3)}}
		if rng.IntN(2) == 0 {
			req.ParentHost = cands[0].Name
		}
		d := Place(cands, req, DefaultWeights)
		got := Choose(cands, req, DefaultWeights)
		want := -1
		for j, c := range cands {
			if c.Name == d.Chosen {
				want = j
			}
		}
		if got != want {
			t.Fatalf("case %d: Choose = %d, Place chose %q (index %d): %s", i, got, d.Chosen, want, d.Reason())
		}
	}
}

func BenchmarkChoose100Hosts(b *testing.B) {
	var cands []Candidate
	for i := range 100 {
		cands = append(cands, host(fmt.Sprintf("h%03d", i), fmt.Sprintf("z%d", i%5), int64(1000+i*50), int64(2+i%10)))
	}
	req := Request{CPUMillis: 250, MemoryBytes: 64 << 20, Siblings: map[string]int{"z1": 3, "z2": 1}}
	for b.Loop() {
		Choose(cands, req, DefaultWeights)
	}
}
