package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// instance is one Cal process: the control plane's child (started here) or
// one adopted from an earlier control plane, which is watched and signalled
// through a pidfd because it is nobody's child here.
type instance struct {
	d     *Driver
	pid   int
	start uint64 // clock ticks after boot, from /proc/<pid>/stat
	calID string
	dir   string // the Cal's directory on the host (its disk quota)
	// cpuMillis is the CPU limit once started (recorded for adoption).
	cpuMillis int64
	features  []sandbox.Feature
	cg        *cgroupHandle
	started   *time.Timer // lowers the start-up CPU limit (endStart)
	signal    func(os.Signal) error
	done      chan struct{} // closed when the process has exited
	err       error         // set before done is closed
	once      sync.Once
	cleanErr  error
}

var _ driver.Instance = (*instance)(nil)

// childInstance tracks a process this control plane started.
func (d *Driver) childInstance(cmd *exec.Cmd, calID string, features []sandbox.Feature, dir string) *instance {
	i := &instance{d: d, pid: cmd.Process.Pid, calID: calID, dir: dir, features: features, signal: cmd.Process.Signal, done: make(chan struct{})}
	go func() {
		i.err = cmd.Wait()
		close(i.done)
	}()
	return i
}

// adoptedInstance tracks a process through its pidfd, which must be open
// in non-blocking mode: it becomes readable when the process exits, and
// the runtime's poller waits for that without holding a thread.
func (d *Driver) adoptedInstance(pidfd int, r *record) (*instance, error) {
	f := os.NewFile(uintptr(pidfd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	i := &instance{d: d, pid: r.PID, start: r.Start, calID: r.CalID, dir: r.Dir, features: r.Features, done: make(chan struct{})}
	i.signal = func(sig os.Signal) error {
		s, ok := sig.(syscall.Signal)
		if !ok {
			return errors.New("not a unix signal")
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), s, nil, 0) }); err != nil {
			return err
		}
		return serr
	}
	go func() {
		exited := func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(p, 0)
			return err == nil && n > 0
		}
		if err := rc.Read(exited); err != nil {
			i.err = err
		} else {
			i.err = driver.ErrExitUnknown
		}
		close(i.done)
		f.Close()
	}()
	return i, nil
}

func (i *instance) PID() int { return i.pid }

func (i *instance) Wait() error {
	<-i.done
	i.cleanup()
	return i.err
}

// cleanup removes what is left of the Cal once its process has exited:
// stray processes of its groups, the groups and the driver's record.
// endStart lowers the Cal's CPU limit to millis after window, the end of
// its start-up allowance (driver.Spec.StartCPUMillis). A limit that cannot
// be lowered ends the Cal: it must not run on above its quota.
func (i *instance) endStart(window time.Duration, millis int64) {
	i.started = time.AfterFunc(window, func() {
		select {
		case <-i.done:
			return
		default:
		}
		if err := i.cg.setCPU(millis); err != nil {
			// send fails only for a process that is there and cannot be
			// signalled, which a root control plane's own child or pidfd
			// never is; Stop and the supervisor see it exit.
			_ = i.send(syscall.SIGKILL)
		}
	})
}

func (i *instance) cleanup() {
	if i.started != nil {
		i.started.Stop()
	}
	i.once.Do(func() {
		i.cleanErr = errors.Join(i.d.removeGroup(i.calID), i.d.removeRecord(i.calID))
	})
}

func (i *instance) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-i.done:
		i.cleanup()
		return i.cleanErr
	default:
	}
	if err := i.send(syscall.SIGTERM); err != nil {
		grace = 0 // not asked to exit: killed at once
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-i.done:
	case <-t.C:
		if err := i.send(syscall.SIGKILL); err != nil {
			return err // it may run on: no wait for an exit that may never come
		}
		<-i.done
	case <-ctx.Done():
		if err := i.send(syscall.SIGKILL); err != nil {
			return err
		}
		<-i.done
	}
	i.cleanup()
	return i.cleanErr
}

// send signals the process. One that has exited (it is being reaped, or
// its pidfd says it is gone) is not an error: there was nothing left to
// signal.
func (i *instance) send(sig syscall.Signal) error {
	err := i.signal(sig)
	if err == nil || errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return fmt.Errorf("cal %s: pid %d: %v: %w", i.calID, i.pid, sig, err)
}
