package cli

import "testing"

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"500m", 500, true}, {"2", 2000, true}, {"1.5", 1500, true}, {"0", 0, true},
		{"-1", 0, false}, {"abc", 0, false}, {"5mm", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseCPU(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseCPU(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512Mi", 512 << 20, true}, {"2G", 2e9, true}, {"1024", 1024, true}, {"1Ti", 1 << 40, true},
		{"-5Mi", 0, false}, {"lots", 0, false}, {"99999999999999Ti", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes("memory", tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v", tt.in, got, err)
		}
	}
}
