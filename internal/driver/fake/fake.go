// Package fake is an in-memory driver.Driver for tests of the control
// plane's logic (the spawn pipeline, supervision and healing, revocation,
// quotas, restart policies, adoption after a restart) without root,
// namespaces or cgroups.
//
// A Driver stands for a host: the instances it starts live in it, not in
// the control plane that started them, so a second control plane given
// the same Driver after the first one "crashed" adopts them, as the
// process driver adopts real processes. Tests inject what happens to a
// running Cal (Crash, Exit) and read back what the host saw (Starts,
// Live, Twice).
//
// An instance does nothing while it runs unless the Driver's Run is set:
// then Run is the Cal (for example the real Cal runtime, in process), and
// its return ends the instance.
package fake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// ErrKilled is the exit error of an instance ended by Crash or by a
// Stop whose grace ran out, as a SIGKILL ends a process.
var ErrKilled = errors.New("signal: killed")

// ErrTerminated is the exit error of an instance that Stop ended within
// its grace, as SIGTERM ends a process.
var ErrTerminated = errors.New("signal: terminated")

// Driver is an in-memory host. The zero value is not usable: use New.
// Its methods are safe for concurrent use.
type Driver struct {
	// Run, when set before the first Start, is what each instance does
	// while it runs: ctx ends when the instance is stopped or crashed,
	// and Run's return ends the instance with Run's error as its exit
	// status. Spec.Sockets are the instance's own copies (closed when the
	// instance ends). Nil: the instance runs until stopped or crashed.
	Run func(ctx context.Context, spec driver.Spec) error

	features []sandbox.Feature

	mu       sync.Mutex
	nextPID  int
	live     map[string][]*run // running instances per Cal ID (more than one is a bug)
	starts   map[string]int
	failNext map[string][]error // Start errors queued per Cal ID ("" for any)
	usage    map[string]driver.Usage
	twice    []string // Cal IDs seen running twice at once
	changed  chan struct{}
	ep       *epoch // the handles of the current control plane
}

// epoch is the lifetime of one control plane's handles: Orphan ends it.
type epoch struct {
	orphaned chan struct{} // closed by Orphan
	released chan struct{} // closed by Orphan's release
}

func newEpoch() *epoch { return &epoch{orphaned: make(chan struct{}), released: make(chan struct{})} }

var _ driver.Driver = (*Driver)(nil)

// New returns a host offering features.
func New(features ...sandbox.Feature) *Driver {
	return &Driver{features: features, nextPID: 1000, live: map[string][]*run{}, starts: map[string]int{},
		failNext: map[string][]error{}, usage: map[string]driver.Usage{}, changed: make(chan struct{}), ep: newEpoch()}
}

// run is one running "process" of a Cal: what outlives a control plane.
type run struct {
	d      *Driver
	calID  string
	pid    int
	spec   driver.Spec
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the run has ended
	err    error         // set before done is closed
	once   sync.Once
}

// end ends the run with err, once; later calls do nothing.
func (r *run) end(err error) {
	r.once.Do(func() {
		r.err = err
		r.cancel(err)
		for _, f := range r.spec.Sockets {
			f.Close()
		}
		r.d.mu.Lock()
		r.d.live[r.calID] = slices.DeleteFunc(r.d.live[r.calID], func(x *run) bool { return x == r })
		if len(r.d.live[r.calID]) == 0 {
			delete(r.d.live, r.calID)
		}
		r.d.notifyLocked()
		r.d.mu.Unlock()
		close(r.done)
	})
}

// notifyLocked wakes those waiting for a change (WaitFor).
func (d *Driver) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Name is "fake".
func (d *Driver) Name() string { return "fake" }

// Available lists the features New was given.
func (d *Driver) Available() []sandbox.Feature { return slices.Clone(d.features) }

// MinLimits is the least of each limit the driver can apply (as the
// process driver's, 10 milli-cores).
func (d *Driver) MinLimits() driver.Limits { return driver.Limits{CPUMillis: 10} }

// FailStart makes the next Start of calID (of any Cal when calID is
// empty) fail with err, once per call.
func (d *Driver) FailStart(calID string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failNext[calID] = append(d.failNext[calID], err)
}

// SetUsage sets what Usage reports for calID's instances.
func (d *Driver) SetUsage(calID string, u driver.Usage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.usage[calID] = u
}

// Start "launches" a Cal: it refuses a feature the host lacks, as the
// process driver does, and otherwise runs spec.Run (or nothing) until the
// instance is stopped or crashed.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, f := range spec.Features {
		if !slices.Contains(d.features, f) {
			return nil, fmt.Errorf("fake: feature %s is not available on this host", f)
		}
	}
	d.mu.Lock()
	for _, key := range []string{spec.CalID, ""} {
		if q := d.failNext[key]; len(q) > 0 {
			d.failNext[key] = q[1:]
			d.mu.Unlock()
			return nil, q[0]
		}
	}
	d.mu.Unlock()
	// The caller closes its copies of the sockets when Start returns; the
	// instance keeps its own, as a child process inherits them.
	socks := map[string]*os.File{}
	for name, f := range spec.Sockets {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, g := range socks {
				g.Close()
			}
			return nil, fmt.Errorf("fake: socket %s: %w", name, err)
		}
		socks[name] = os.NewFile(uintptr(fd), f.Name())
	}
	spec.Sockets = socks
	rctx, cancel := context.WithCancelCause(context.Background())
	d.mu.Lock()
	d.nextPID++
	r := &run{d: d, calID: spec.CalID, pid: d.nextPID, spec: spec, cancel: cancel, done: make(chan struct{})}
	d.live[spec.CalID] = append(d.live[spec.CalID], r)
	if len(d.live[spec.CalID]) > 1 {
		d.twice = append(d.twice, spec.CalID)
	}
	d.starts[spec.CalID]++
	d.notifyLocked()
	run, ep := d.Run, d.ep
	d.mu.Unlock()
	if run != nil {
		go func() {
			err := run(rctx, spec)
			if c := context.Cause(rctx); c != nil && !errors.Is(c, context.Canceled) {
				err = c // killed or terminated: that is the exit status
			}
			r.end(err)
		}()
	}
	return &Instance{r: r, ep: ep}, nil
}

// Adopt attaches to calID's running instance, which an earlier control
// plane started on this host. Nothing running: ErrNotRunning.
func (d *Driver) Adopt(ctx context.Context, calID string) (driver.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := d.live[calID]
	if len(rs) == 0 {
		return nil, fmt.Errorf("fake: cal %s: %w", calID, driver.ErrNotRunning)
	}
	return &Instance{r: rs[len(rs)-1], adopted: true, ep: d.ep}, nil
}

// Orphan cuts every handle handed out so far from the instances, as the
// death of the control plane that holds them does: their Stop no longer
// reaches the instance, and their Wait returns driver.ErrExitUnknown only
// once release is called (a dead control plane sees nothing). The
// instances run on, for the next control plane to Adopt. Cancel the
// control plane's context before release, so that its supervisor does not
// take the return of Wait for an exit.
func (d *Driver) Orphan() (release func()) {
	d.mu.Lock()
	ep := d.ep
	d.ep = newEpoch()
	d.mu.Unlock()
	close(ep.orphaned)
	var once sync.Once
	return func() { once.Do(func() { close(ep.released) }) }
}

// Recorded lists the Cals that have an instance running.
func (d *Driver) Recorded() ([]string, error) { return d.Live(), nil }

// Live lists the Cals that have an instance running, sorted.
func (d *Driver) Live() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.live))
	for id := range d.live {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Running reports the PID of calID's running instance.
func (d *Driver) Running(calID string) (pid int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := d.live[calID]
	if len(rs) == 0 {
		return 0, false
	}
	return rs[len(rs)-1].pid, true
}

// Spec returns the Spec calID's running instance was started with.
func (d *Driver) Spec(calID string) (driver.Spec, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := d.live[calID]
	if len(rs) == 0 {
		return driver.Spec{}, false
	}
	return rs[len(rs)-1].spec, true
}

// Starts counts the Starts of calID, failed ones excluded.
func (d *Driver) Starts(calID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts[calID]
}

// Twice lists the Cals that were ever seen with two instances running at
// once: a Cal must never run twice.
func (d *Driver) Twice() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.twice)
}

// Crash ends calID's running instances at once with ErrKilled, as a
// SIGKILL does. It reports whether any ran.
func (d *Driver) Crash(calID string) bool { return d.Exit(calID, ErrKilled) }

// Exit ends calID's running instances with err as their exit status (nil:
// a clean exit). It reports whether any ran.
func (d *Driver) Exit(calID string, err error) bool {
	d.mu.Lock()
	rs := slices.Clone(d.live[calID])
	d.mu.Unlock()
	for _, r := range rs {
		r.end(err)
	}
	return len(rs) > 0
}

// WaitFor waits until cond, called under no lock after each change of
// the host (a start, an end), holds, or ctx ends.
func (d *Driver) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Instance is a control plane's handle on a running Cal: the one Start
// returned, or one Adopt attached.
type Instance struct {
	r       *run
	adopted bool
	ep      *epoch
}

// orphaned reports whether Orphan cut the handle from its instance.
func (i *Instance) orphaned() bool {
	select {
	case <-i.ep.orphaned:
		return true
	default:
		return false
	}
}

var _ driver.Instance = (*Instance)(nil)

// PID is the instance's made-up PID, unique on this Driver.
func (i *Instance) PID() int { return i.r.pid }

// Wait blocks until the instance ends and returns its exit status
// (driver.ErrExitUnknown for an adopted one, as the process driver).
func (i *Instance) Wait() error {
	select {
	case <-i.r.done:
	case <-i.ep.orphaned:
	}
	if i.orphaned() {
		<-i.ep.released
		return driver.ErrExitUnknown
	}
	if i.adopted {
		return driver.ErrExitUnknown
	}
	return i.r.err
}

// Stop asks the instance to end (its Run's context is cancelled with
// ErrTerminated) and ends it with ErrKilled if Run has not returned
// within grace. An instance without Run ends at once.
func (i *Instance) Stop(ctx context.Context, grace time.Duration) error {
	if i.orphaned() {
		return nil // the handle of a dead control plane reaches nothing
	}
	r := i.r
	r.d.mu.Lock()
	hasRun := r.d.Run != nil
	r.d.mu.Unlock()
	if !hasRun {
		r.end(ErrTerminated)
		return nil
	}
	r.cancel(ErrTerminated)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.end(ErrKilled)
	case <-ctx.Done():
		r.end(ErrKilled)
	}
	return nil
}

// Isolation reports the features the instance was started with as in
// force.
func (i *Instance) Isolation() (map[sandbox.Feature]bool, error) {
	out := map[sandbox.Feature]bool{}
	for _, f := range i.r.spec.Features {
		out[f] = true
	}
	return out, nil
}

// Usage reports what SetUsage set for the Cal.
func (i *Instance) Usage() (driver.Usage, error) {
	i.r.d.mu.Lock()
	defer i.r.d.mu.Unlock()
	return i.r.d.usage[i.r.calID], nil
}
