package cli

import (
	"fmt"

	"github.com/soulfra/calnet/internal/cpu"
)

// parseCPU parses --cpu: "500m" (milli-cores), "2" or "1.5" (cores).
func parseCPU(s string) (int64, error) {
	v, err := cpu.Millis(s)
	if err != nil {
		return 0, fmt.Errorf("--%w", err)
	}
	return v, nil
}

// parseBytes parses a memory flag: "512Mi", "2G", "1073741824".
func parseBytes(flag, s string) (int64, error) {
	v, err := cpu.Bytes(s)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	return v, nil
}
