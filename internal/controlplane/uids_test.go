package controlplane

import "testing"

func TestExited(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   bool
	}{
		{"Name:\tcalnet\nState:\tS (sleeping)\nUid:\t5000\t5000\t5000\t5000\n", false},
		{"Name:\tcalnet\nState:\tR (running)\n", false},
		{"Name:\tcalnet\nState:\tZ (zombie)\nUid:\t5000\t5000\t5000\t5000\n", true},
		{"Name:\tcalnet\nState:\tX (dead)\n", true},
		{"Name:\tcalnet\n", false},
	} {
		if got := exited([]byte(tc.status)); got != tc.want {
			t.Errorf("exited(%q) = %v, want %v", tc.status, got, tc.want)
		}
	}
}
