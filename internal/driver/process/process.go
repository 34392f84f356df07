// Package process is the default Cal driver: each Cal is a `calnet cal`
// process in its own PID, mount, IPC, UTS and network namespaces, in its own
// cgroups (v1 or v2) with the memory, CPU and PIDs limits of its quota, as
// its own unprivileged uid, with no_new_privs and a seccomp filter (applied
// by the sandbox package inside the process).
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// Driver runs Cals as isolated processes.
type Driver struct {
	// CgroupParent is the cgroup path under which each Cal gets a group.
	CgroupParent string
	// StateDir is where the driver records each Cal it starts (PID, start
	// time, group), so that a later control plane can adopt it; a private
	// directory of the control plane, never one a Cal can write. Empty
	// keeps no records: nothing can be adopted.
	StateDir string
	mode     cgroups.CGMode
	// beforeConfig, when set by a test, runs after the record is written
	// and before the config reaches the held child.
	beforeConfig func()
}

var _ driver.Driver = (*Driver)(nil)

// New returns a process driver using cgroups under parent (e.g. "/calnet")
// and keeping its records in stateDir.
func New(parent, stateDir string) *Driver {
	return &Driver{CgroupParent: parent, StateDir: stateDir, mode: cgroups.Mode()}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "process" }

// MinLimits is the least of each limit the driver can apply: the kernel's
// CFS bandwidth control refuses a CPU quota under 1 ms per period (the
// driver's period is 100 ms, so 10 milli-cores).
func (d *Driver) MinLimits() driver.Limits {
	return driver.Limits{CPUMillis: minCFSQuotaMicros * 1000 / cfsPeriodMicros}
}

// The CFS period the driver sets, and the kernel's least quota per period.
const (
	cfsPeriodMicros   = 100000
	minCFSQuotaMicros = 1000
)

// Available implements driver.Driver: namespaces and seccomp need root;
// cgroup controllers need a hierarchy with them.
func (d *Driver) Available() []sandbox.Feature {
	var out []sandbox.Feature
	if os.Geteuid() == 0 {
		out = append(out, sandbox.PIDNamespace, sandbox.MountNamespace, sandbox.IPCNamespace, sandbox.UTSNamespace,
			sandbox.NetNamespace, sandbox.ReadOnlyRoot, sandbox.OwnUID)
	}
	out = append(out, sandbox.NoNewPrivs, sandbox.Seccomp)
	if calfs.Supported() == nil {
		out = append(out, sandbox.DiskQuota)
	}
	switch d.mode {
	case cgroups.Legacy, cgroups.Hybrid:
		for f, c := range map[sandbox.Feature]string{sandbox.CgroupMemory: "memory", sandbox.CgroupCPU: "cpu", sandbox.CgroupPIDs: "pids"} {
			if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err == nil && st.IsDir() && os.Geteuid() == 0 {
				out = append(out, f)
			}
		}
	case cgroups.Unified:
		b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		ctl := strings.Fields(string(b))
		for f, c := range map[sandbox.Feature]string{sandbox.CgroupMemory: "memory", sandbox.CgroupCPU: "cpu", sandbox.CgroupPIDs: "pids"} {
			if slices.Contains(ctl, c) && os.Geteuid() == 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

// ErrUnavailable reports isolation the host cannot provide.
var ErrUnavailable = errors.New("isolation feature unavailable on this host")

// Start implements driver.Driver. The child is held on its config pipe
// until it sits in its groups and the driver's record of it is written;
// only then does it get its config and run. A control plane that dies
// before the whole config is written closes the pipe: the child reads a
// short config and exits (no parent-death signal is needed, and none is
// set: it would also kill a Cal that has its config but has not yet run
// far enough to clear it, which the next control plane can adopt). Once
// it has its config the Cal is on its own, and a later control plane
// adopts it from the record.
func (d *Driver) Start(ctx context.Context, s driver.Spec) (driver.Instance, error) {
	if !validID(s.CalID) {
		return nil, fmt.Errorf("start cal: id %q: want 1..%d characters of a-z, 0-9, - and _", s.CalID, maxIDLen)
	}
	avail := d.Available()
	for _, f := range s.Features {
		if !slices.Contains(avail, f) {
			return nil, fmt.Errorf("%w: %s (lower the Cal's isolation explicitly to run without it)", ErrUnavailable, f)
		}
	}
	has := func(f sandbox.Feature) bool { return slices.Contains(s.Features, f) }
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	if has(sandbox.OwnUID) {
		// s.Dir's parent is root's: only root could have made s.Dir a
		// link, and Lchown follows none anyway.
		if err := os.Lchown(s.Dir, s.UID, s.GID); err != nil {
			return nil, err
		}
	}
	if has(sandbox.DiskQuota) {
		// Applied at every start: a changed quota takes effect, and a
		// directory that is not on the Cal filesystem fails loudly.
		if err := calfs.SetLimit(s.Dir, s.Limits.DiskBytes); err != nil {
			return nil, fmt.Errorf("start cal %s: %w", s.CalID, err)
		}
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	cmd := exec.Command(s.Binary, s.Args...)
	cmd.Env = s.Env
	cmd.Dir = "/"
	if s.Log != nil {
		// An *os.File is handed to the child as its fd 1 and 2, no pipe.
		cmd.Stdout, cmd.Stderr = s.Log, s.Log
	}
	cmd.ExtraFiles = []*os.File{cfgR}
	// The control plane's sockets follow the config pipe, in name order.
	sockNames := make([]string, 0, len(s.Sockets))
	for name := range s.Sockets {
		sockNames = append(sockNames, name)
	}
	slices.Sort(sockNames)
	sockFDs := make(map[string]int, len(s.Sockets))
	for _, name := range sockNames {
		sockFDs[name] = sandbox.ConfigFD + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.Sockets[name])
	}
	var flags uintptr
	for f, fl := range map[sandbox.Feature]uintptr{
		sandbox.PIDNamespace: syscall.CLONE_NEWPID, sandbox.MountNamespace: syscall.CLONE_NEWNS,
		sandbox.IPCNamespace: syscall.CLONE_NEWIPC, sandbox.UTSNamespace: syscall.CLONE_NEWUTS,
		sandbox.NetNamespace: syscall.CLONE_NEWNET,
	} {
		if has(f) {
			flags |= fl
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	// The Cal gets the descriptors named above and nothing this process
	// was started with.
	if err := sandbox.InheritNothing(); err != nil {
		cfgW.Close()
		return nil, fmt.Errorf("start cal %s: %w", s.CalID, err)
	}
	if err := cmd.Start(); err != nil {
		cfgW.Close()
		return nil, fmt.Errorf("start cal %s: %w", s.CalID, err)
	}
	inst := d.childInstance(cmd, s.CalID, s.Features, s.Dir)
	inst.cpuMillis = s.Limits.CPUMillis
	// Place the held process in its cgroups before it runs anything.
	cg, err := d.cgroup(s)
	if err == nil && cg != nil {
		inst.cg = cg
		err = cg.add(cmd.Process.Pid)
	}
	if err == nil {
		err = d.record(inst)
	}
	if err == nil && d.beforeConfig != nil {
		d.beforeConfig()
	}
	if err == nil {
		var b []byte
		b, err = json.Marshal(sandbox.Config{CalID: s.CalID, Dir: s.Dir, RunDir: s.RunDir, ProgramsDir: s.ProgramsDir, RootMount: s.RootMount,
			Sockets: sockFDs, UID: s.UID, GID: s.GID, Features: s.Features, Secret: s.Secret})
		if err == nil {
			_, err = cfgW.Write(b)
		}
	}
	cfgW.Close()
	if err != nil {
		// The held child never got its config: kill it and wait for it,
		// which removes its groups and record. A kill that fails for a
		// child that has not exited would make the wait endless.
		if kerr := cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			return nil, fmt.Errorf("start cal %s: %w", s.CalID, errors.Join(err, fmt.Errorf("kill pid %d: %w", inst.pid, kerr)))
		}
		_ = inst.Wait() // its exit status is the kill's
		return nil, fmt.Errorf("start cal %s: %w", s.CalID, errors.Join(err, inst.cleanErr))
	}
	if cg != nil && has(sandbox.CgroupCPU) && s.Limits.CPUMillis > 0 && startCPU(s) != s.Limits.CPUMillis {
		inst.endStart(s.StartWindow, s.Limits.CPUMillis)
	}
	return inst, nil
}

// Isolation implements driver.Instance by reading /proc from outside.
func (i *instance) Isolation() (map[sandbox.Feature]bool, error) {
	pid := strconv.Itoa(i.pid)
	out := map[sandbox.Feature]bool{}
	for f, ns := range map[sandbox.Feature]string{
		sandbox.PIDNamespace: "pid", sandbox.MountNamespace: "mnt", sandbox.IPCNamespace: "ipc",
		sandbox.UTSNamespace: "uts", sandbox.NetNamespace: "net",
	} {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns)
		theirs, err2 := os.Readlink("/proc/" + pid + "/ns/" + ns)
		out[f] = err1 == nil && err2 == nil && mine != theirs
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	// own-uid holds when no uid is root's and no capability is left in
	// any set, the bounding set included.
	ownUID, capsHeld := false, false
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields := strings.Fields(v)
		switch k {
		case "Uid":
			ownUID = len(fields) == 4 && !slices.Contains(fields, "0")
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			capsHeld = capsHeld || len(fields) != 1 || strings.Trim(fields[0], "0") != ""
		case "NoNewPrivs":
			out[sandbox.NoNewPrivs] = len(fields) == 1 && fields[0] == "1"
		case "Seccomp":
			out[sandbox.Seccomp] = len(fields) == 1 && fields[0] == "2"
		}
	}
	out[sandbox.OwnUID] = ownUID && !capsHeld
	if mi, err := os.ReadFile("/proc/" + pid + "/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[4] == "/" {
				out[sandbox.ReadOnlyRoot] = slices.Contains(strings.Split(f[5], ","), "ro")
			}
		}
	}
	if slices.Contains(i.features, sandbox.DiskQuota) {
		_, limit, err := calfs.Usage(i.dir)
		out[sandbox.DiskQuota] = err == nil && limit > 0
	}
	cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	for _, line := range strings.Split(string(cg), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasSuffix(parts[2], "/"+i.calID) {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "memory":
				out[sandbox.CgroupMemory] = true
			case "cpu":
				out[sandbox.CgroupCPU] = true
			case "pids":
				out[sandbox.CgroupPIDs] = true
			case "": // cgroup v2: one line for all controllers
				for _, f := range []sandbox.Feature{sandbox.CgroupMemory, sandbox.CgroupCPU, sandbox.CgroupPIDs} {
					out[f] = slices.Contains(i.features, f)
				}
			}
		}
	}
	return out, nil
}

// Usage implements driver.Instance from the Cal's cgroups and its quota
// group on the Cal filesystem.
func (i *instance) Usage() (driver.Usage, error) {
	u, err := i.cgroupUsage()
	if err == nil && slices.Contains(i.features, sandbox.DiskQuota) {
		if used, _, derr := calfs.Usage(i.dir); derr == nil {
			u.DiskBytes = uint64(used)
		}
	}
	return u, err
}

func (i *instance) cgroupUsage() (driver.Usage, error) {
	if i.cg == nil {
		return driver.Usage{}, errors.New("no cgroups for this cal")
	}
	if i.cg.v1 != nil {
		st, err := i.cg.v1.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			return driver.Usage{}, err
		}
		var u driver.Usage
		if st.CPU != nil && st.CPU.Usage != nil {
			u.CPUNanos = st.CPU.Usage.Total
		}
		if st.Memory != nil && st.Memory.Usage != nil {
			u.MemoryBytes = st.Memory.Usage.Usage
		}
		return u, nil
	}
	st, err := i.cg.v2.Stat()
	if err != nil {
		return driver.Usage{}, err
	}
	var u driver.Usage
	if st.CPU != nil {
		u.CPUNanos = st.CPU.UsageUsec * 1000
	}
	if st.Memory != nil {
		u.MemoryBytes = st.Memory.Usage
	}
	return u, nil
}
