package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Controllers are the cgroup v1 hierarchies a Cal may have a group in.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids"}

// cgroupHandle hides the v1/v2 difference.
type cgroupHandle struct {
	v1 cgroup1.Cgroup
	v2 *cgroup2.Manager
}

func (c *cgroupHandle) add(pid int) error {
	if c.v1 != nil {
		return c.v1.AddProc(uint64(pid))
	}
	return c.v2.AddProc(uint64(pid))
}

// setCPU changes the CPU limit of the groups.
func (c *cgroupHandle) setCPU(millis int64) error {
	res := &specs.LinuxResources{CPU: cpuLimit(millis)}
	if c.v1 != nil {
		return c.v1.Update(res)
	}
	return c.v2.Update(cgroup2.ToResources(res))
}

// cpuLimit is a CPU limit of millis thousandths of a core as a CFS quota
// over the default 100 ms period.
func cpuLimit(millis int64) *specs.LinuxCPU {
	period := uint64(cfsPeriodMicros)
	quota := millis * cfsPeriodMicros / 1000
	return &specs.LinuxCPU{Quota: &quota, Period: &period}
}

// startCPU is the CPU limit a Cal starts with (Spec.StartCPUMillis).
func startCPU(s driver.Spec) int64 {
	if s.StartWindow > 0 && s.StartCPUMillis > s.Limits.CPUMillis {
		return s.StartCPUMillis
	}
	return s.Limits.CPUMillis
}

// groupPath is the Cal's cgroup path inside each hierarchy.
func (d *Driver) groupPath(calID string) string { return filepath.Join(d.CgroupParent, calID) }

// wantsCgroup reports whether features ask for any cgroup controller.
func wantsCgroup(features []sandbox.Feature) bool {
	return slices.ContainsFunc(features, func(f sandbox.Feature) bool {
		return f == sandbox.CgroupMemory || f == sandbox.CgroupCPU || f == sandbox.CgroupPIDs
	})
}

// subsystems are the v1 controllers features ask for.
func subsystems(features []sandbox.Feature) []cgroup1.Subsystem {
	has := func(f sandbox.Feature) bool { return slices.Contains(features, f) }
	var subs []cgroup1.Subsystem
	if has(sandbox.CgroupMemory) {
		subs = append(subs, cgroup1.NewMemory(cgroupRoot))
	}
	if has(sandbox.CgroupCPU) {
		subs = append(subs, cgroup1.NewCpu(cgroupRoot), cgroup1.NewCpuacct(cgroupRoot))
	}
	if has(sandbox.CgroupPIDs) {
		subs = append(subs, cgroup1.NewPids(cgroupRoot))
	}
	return subs
}

// cgroup creates the Cal's groups with the limits of its quota.
func (d *Driver) cgroup(s driver.Spec) (*cgroupHandle, error) {
	if !wantsCgroup(s.Features) {
		return nil, nil
	}
	has := func(f sandbox.Feature) bool { return slices.Contains(s.Features, f) }
	res := &specs.LinuxResources{}
	if has(sandbox.CgroupMemory) && s.Limits.MemoryBytes > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &s.Limits.MemoryBytes}
	}
	if has(sandbox.CgroupCPU) && s.Limits.CPUMillis > 0 {
		res.CPU = cpuLimit(startCPU(s))
	}
	if has(sandbox.CgroupPIDs) && s.Limits.PIDs > 0 {
		pids := s.Limits.PIDs
		res.Pids = &specs.LinuxPids{Limit: &pids}
	}
	path := d.groupPath(s.CalID)
	if d.mode == cgroups.Unified {
		m, err := cgroup2.NewManager(cgroupRoot, path, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", path, err)
		}
		return &cgroupHandle{v2: m}, nil
	}
	subs := subsystems(s.Features)
	cg, err := cgroup1.New(cgroup1.StaticPath(path), res, cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) { return subs, nil }))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", path, err)
	}
	return &cgroupHandle{v1: cg}, nil
}

// loadCgroup opens the existing groups of an adopted Cal.
func (d *Driver) loadCgroup(calID string, features []sandbox.Feature) (*cgroupHandle, error) {
	if !wantsCgroup(features) {
		return nil, nil
	}
	path := d.groupPath(calID)
	if d.mode == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 %s: %w", path, err)
		}
		return &cgroupHandle{v2: m}, nil
	}
	subs := subsystems(features)
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) { return subs, nil }))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 %s: %w", path, err)
	}
	return &cgroupHandle{v1: cg}, nil
}

// groupDirs are the directories of a Cal's groups that exist, in every
// hierarchy a Cal may use.
func (d *Driver) groupDirs(calID string) []string {
	path := d.groupPath(calID)
	var cands []string
	if d.mode == cgroups.Unified {
		cands = []string{filepath.Join(cgroupRoot, path)}
	} else {
		for _, c := range v1Controllers {
			cands = append(cands, filepath.Join(cgroupRoot, c, path))
		}
	}
	var out []string
	for _, dir := range cands {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// groupMembers lists the processes in a Cal's groups.
func groupMembers(dirs []string) []int {
	var out []int
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(out, pid) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// removeGroup kills every process left in a Cal's groups (a workload the
// Cal started outside a PID namespace, or a Cal of a crashed control plane
// that was never recorded) and removes the groups.
func (d *Driver) removeGroup(calID string) error {
	dirs := d.groupDirs(calID)
	if len(dirs) == 0 {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := groupMembers(dirs)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v do not exit", d.groupPath(calID), pids)
		}
		for _, pid := range pids {
			// One that exited meanwhile refuses (ESRCH); one that stays
			// is listed again, until the deadline says so.
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var errs []error
	for _, dir := range dirs {
		// An exited process may leave its group a moment after it is
		// reaped: retry a busy group briefly.
		for try := 0; ; try++ {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || try == 100 {
				errs = append(errs, err)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// inGroup reports whether pid sits in the Cal's group.
func (d *Driver) inGroup(pid int, calID string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	want := d.groupPath(calID)
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[2] == want {
			return true
		}
	}
	return false
}
