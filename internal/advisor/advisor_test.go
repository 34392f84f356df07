package advisor

import (
	"strings"
	"testing"
)

func constant(n int, v float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestRecommend(t *testing.T) {
	spiky := constant(100, 2) // 2 % of a core, with 4 spikes to 90 %: under the p95
	for i := 0; i < 4; i++ {
		spiky[i*25] = 90
	}
	tests := []struct {
		name     string
		resource string
		samples  []float64
		quota    int64
		rec      int64
		flag     string
		reason   string
	}{
		{"too few", "cpu_millis", constant(10, 5), 250, 0, "", "needs 60"},
		{"cpu fits", "cpu_millis", constant(100, 10), 250, 130, "", "p95 of 100 samples is 100m"},
		{"cpu over-provisioned", "cpu_millis", constant(100, 1), 1000, 50, "over-provisioned", "over 3x"},
		{"cpu under-provisioned", "cpu_millis", constant(100, 24), 250, 312, "under-provisioned", "within 10%"},
		{"spikes under p95 ignored", "cpu_millis", spiky, 250, 50, "over-provisioned", "p95 of 100 samples is 20m"},
		{"memory", "memory_bytes", constant(100, 40<<20), 64 << 20, 54525952, "", "40 MiB"},
		{"memory floor", "memory_bytes", constant(100, 1<<20), 64 << 20, 32 << 20, "", "32 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Recommend(tt.resource, tt.samples, tt.quota)
			if r.Recommended != tt.rec || r.Flag != tt.flag || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("got %+v, want %d %q %q", r, tt.rec, tt.flag, tt.reason)
			}
		})
	}
}
