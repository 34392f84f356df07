package cli

import (
	"fmt"
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
