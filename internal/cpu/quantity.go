// Package cpu parses resource quantities as Kubernetes writes them: CPU in
// milli-cores ("500m", "1.5") and memory in bytes ("512Mi", "2G").
package cpu

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Millis parses "500m" (milli-cores) or "2" / "1.5" (cores).
func Millis(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if m, ok := strings.CutSuffix(s, "m"); ok {
		v, err := strconv.ParseInt(m, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("cpu %q: want milli-cores like 500m or cores like 1.5", s)
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 1<<20 {
		return 0, fmt.Errorf("cpu %q: want milli-cores like 500m or cores like 1.5", s)
	}
	return int64(math.Round(f * 1000)), nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// Bytes parses "512Mi", "2G", "1073741824".
func Bytes(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want bytes like 512Mi, 2Gi or 1073741824", orig)
	}
	return v * mult, nil
}
