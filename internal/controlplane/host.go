package controlplane

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

func hostMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 1 << 30
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// availableMemory reads MemAvailable from /proc/meminfo.
func availableMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return -1
}

// cpuSaturated reports whether the host's CPU is saturated: PSI "some
// avg10" at or over maxPressure percent, or, without PSI, a 1-minute load
// average over 64 per CPU.
func cpuSaturated(maxPressure float64) (bool, string) {
	if maxPressure > 100 {
		return false, ""
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		for _, f := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
			if v, ok := strings.CutPrefix(f, "avg10="); ok {
				p, _ := strconv.ParseFloat(v, 64)
				return p >= maxPressure, fmt.Sprintf("tasks waited for CPU %.0f%% of the last 10s, limit %.0f%%", p, maxPressure)
			}
		}
	}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return false, ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return false, ""
	}
	l, _ := strconv.ParseFloat(f[0], 64)
	limit := 64 * float64(runtime.NumCPU())
	return l > limit, fmt.Sprintf("load average %.1f, limit %.0f", l, limit)
}
