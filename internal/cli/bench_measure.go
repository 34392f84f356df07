package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// openPidfds opens a pidfd for each process (Linux 5.3+).
func openPidfds(pids []int) ([]int, error) {
	fds := make([]int, 0, len(pids))
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// waitExits waits until every pidfd's process has exited or timeout
// passed, sleeping in poll(2) meanwhile, and returns how many still run.
func waitExits(pidfds []int, timeout time.Duration) int {
	pending := make([]unix.PollFd, len(pidfds))
	for i, fd := range pidfds {
		pending[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		n, err := unix.Poll(pending, int(left.Milliseconds())+1)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			break
		}
		kept := pending[:0]
		for _, p := range pending {
			if p.Revents == 0 {
				kept = append(kept, p)
			}
		}
		pending = kept
	}
	return len(pending)
}

// benchCgroup is the cgroup parent of the benchmarks' Cals.
const benchCgroup = "/calnet-bench"

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cgroupCPU is the CPU time used by the tasks of a cgroup and its
// descendants, including groups removed since (cgroup v1 cpuacct, v2
// cpu.stat); 0 when it cannot be read.
func cgroupCPU(parent string) time.Duration {
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", parent, "cpuacct.usage")); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n)
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", parent, "cpu.stat"))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(n) * time.Microsecond
		}
	}
	return 0
}
