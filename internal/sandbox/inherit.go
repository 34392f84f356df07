package sandbox

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// InheritNothing marks every descriptor of this process from 3 up
// close-on-exec, so that a program it starts gets only what it is handed
// by name (exec.Cmd's standard streams and ExtraFiles, which the child
// duplicates into place after the fork).
//
// Go opens its own descriptors close-on-exec, but not the ones the
// process was started with: whatever the shell, supervisor or parent of
// `calnet up` left open (`calnet up 3<secret`, a pipe of a CI runner, a
// log) would otherwise pass to every Cal's runtime and from it to every
// workload, across the sandbox. The process driver calls it before it
// starts a Cal, and the sandbox once the Cal has taken its descriptors
// (ReadConfig), so that neither side depends on the other.
func InheritNothing() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("sandbox: mark descriptors close-on-exec: %w", err)
	}
	// Before Linux 5.11: one descriptor at a time.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("sandbox: mark descriptors close-on-exec: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= 3 {
			unix.CloseOnExec(fd) // the directory's own descriptor is gone by now: EBADF, harmless
		}
	}
	return nil
}
