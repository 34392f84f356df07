package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Re-adoption, the way container runtimes do it (runc's state.json,
// containerd's shims): the driver records each Cal it starts before the Cal
// gets its config, and a later control plane finds the Cal from that
// record, checks it is the same process (boot, PID, start time, group) and
// watches it through a pidfd.

// record is what the driver keeps of a started Cal, in StateDir/<id>.json.
type record struct {
	CalID string `json:"cal_id"`
	PID   int    `json:"pid"`
	// Start is the process's start time in clock ticks after boot
	// (/proc/<pid>/stat field 22): with BootID it names one process, so a
	// PID reused by another process is never taken for the Cal.
	Start    uint64            `json:"start_ticks"`
	BootID   string            `json:"boot_id"`
	Features []sandbox.Feature `json:"features"`
	// Dir is the Cal's directory on the host (where its disk quota is
	// measured).
	Dir string `json:"dir,omitempty"`
	// CPUMillis is the Cal's CPU limit once started: an adopting driver
	// applies it, ending a start-up allowance that the control plane which
	// started the Cal did not live to end.
	CPUMillis int64 `json:"cpu_millis,omitempty"`
}

// Limits on a record, which the driver reads back from disk.
const (
	maxRecordSize = 16 << 10
	maxIDLen      = 128
	maxFeatures   = 64
)

// validID reports whether id can name a file and a cgroup safely.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// parseRecord decodes and checks a record.
func parseRecord(b []byte) (*record, error) {
	var r record
	if err := strictjson.Unmarshal(b, maxRecordSize, &r); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	switch {
	case !validID(r.CalID):
		return nil, fmt.Errorf("record: cal_id %q: want 1..%d characters of a-z, 0-9, - and _", r.CalID, maxIDLen)
	case r.PID <= 1:
		return nil, fmt.Errorf("record: pid %d: want a process above 1", r.PID)
	case r.Start == 0:
		return nil, errors.New("record: start_ticks: missing")
	case r.BootID == "" || len(r.BootID) > 64:
		return nil, errors.New("record: boot_id: want 1..64 characters")
	case len(r.Features) > maxFeatures:
		return nil, fmt.Errorf("record: features: %d, over the limit of %d", len(r.Features), maxFeatures)
	case r.Dir != "" && (!filepath.IsAbs(r.Dir) || filepath.Clean(r.Dir) != r.Dir):
		return nil, fmt.Errorf("record: dir %q: want a clean absolute path", r.Dir)
	}
	for _, f := range r.Features {
		if _, err := sandbox.ParseFeature(string(f)); err != nil {
			return nil, fmt.Errorf("record: features: %w", err)
		}
	}
	return &r, nil
}

func (d *Driver) recordPath(calID string) string { return filepath.Join(d.StateDir, calID+".json") }

// record writes the driver's record of a started instance. It is written
// to a temporary file and renamed into place, so a control plane killed
// meanwhile leaves the old record or the new one; it is not synced, as it
// needs to outlive a crash of the control plane, not of the host (after a
// reboot no Cal runs).
func (d *Driver) record(i *instance) error {
	_, start, err := procStat(i.pid)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	i.start = start
	if d.StateDir == "" {
		return nil
	}
	boot, err := bootID()
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	b, err := json.Marshal(record{CalID: i.calID, PID: i.pid, Start: start, BootID: boot, Features: i.features, Dir: i.dir, CPUMillis: i.cpuMillis})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
		return err
	}
	tmp := d.recordPath(i.calID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.recordPath(i.calID))
}

func (d *Driver) removeRecord(calID string) error {
	if d.StateDir == "" {
		return nil
	}
	if err := os.Remove(d.recordPath(calID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Recorded implements driver.Driver.
func (d *Driver) Recorded() ([]string, error) {
	if d.StateDir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(d.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && validID(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Adopt implements driver.Driver.
func (d *Driver) Adopt(ctx context.Context, calID string) (driver.Instance, error) {
	if !validID(calID) {
		return nil, fmt.Errorf("adopt cal: id %q: want 1..%d characters of a-z, 0-9, - and _", calID, maxIDLen)
	}
	inst, why := d.attach(calID)
	if inst != nil {
		return inst, nil
	}
	// Nothing of the Cal runs: a process of its group is a leftover (a
	// child held by a control plane that died before it recorded it) and
	// must not run beside the Cal that will be started.
	if err := errors.Join(d.removeGroup(calID), d.removeRecord(calID)); err != nil {
		return nil, fmt.Errorf("adopt cal %s: %s; removing what is left: %w", calID, why, err)
	}
	return nil, fmt.Errorf("adopt cal %s: %w: %s", calID, driver.ErrNotRunning, why)
}

// attach finds the recorded process of calID and checks it is the Cal. It
// returns the instance, or why there is none.
func (d *Driver) attach(calID string) (*instance, string) {
	if d.StateDir == "" {
		return nil, "the driver keeps no records"
	}
	b, err := os.ReadFile(d.recordPath(calID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "no record"
	}
	if err != nil {
		return nil, err.Error()
	}
	r, err := parseRecord(b)
	if err != nil {
		return nil, err.Error()
	}
	if r.CalID != calID {
		return nil, fmt.Sprintf("the record names cal %s", r.CalID)
	}
	boot, err := bootID()
	if err != nil {
		return nil, err.Error()
	}
	if r.BootID != boot {
		return nil, "the host rebooted since it started"
	}
	same := func() string {
		state, start, err := procStat(r.PID)
		switch {
		case err != nil:
			return fmt.Sprintf("pid %d is gone", r.PID)
		case start != r.Start:
			return fmt.Sprintf("pid %d is another process now (started at tick %d, not %d)", r.PID, start, r.Start)
		case state == 'Z' || state == 'X':
			return fmt.Sprintf("pid %d has exited", r.PID)
		}
		return ""
	}
	if why := same(); why != "" {
		return nil, why
	}
	fd, err := unix.PidfdOpen(r.PID, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Sprintf("pidfd of %d: %v", r.PID, err)
	}
	// Checked again now that the pidfd holds the process: the PID cannot
	// have passed to another process between the check and the open.
	if why := same(); why != "" {
		unix.Close(fd)
		return nil, why
	}
	if wantsCgroup(r.Features) && !d.inGroup(r.PID, calID) {
		// The same process, out of its group: it must not run on
		// unconfined, nor beside the Cal that will be started.
		why := fmt.Sprintf("pid %d left its cgroup %s; %s", r.PID, d.groupPath(calID), killPidfd(fd))
		unix.Close(fd)
		return nil, why
	}
	cg, err := d.loadCgroup(calID, r.Features)
	if err != nil {
		why := err.Error() + "; " + killPidfd(fd)
		unix.Close(fd)
		return nil, why
	}
	inst, err := d.adoptedInstance(fd, r)
	if err != nil {
		why := err.Error() + "; " + killPidfd(fd)
		unix.Close(fd)
		return nil, why
	}
	inst.cg = cg
	if cg != nil && slices.Contains(r.Features, sandbox.CgroupCPU) && r.CPUMillis > 0 {
		if err := cg.setCPU(r.CPUMillis); err != nil {
			// The pidfd is the instance's now (it closes it once the
			// process has exited).
			return nil, fmt.Sprintf("cgroup: cpu limit: %v; %s", err, killPidfd(fd))
		}
	}
	return inst, ""
}

// killPidfd kills the process a pidfd holds and says so for an adoption's
// reason: "killed", or why it could not be (Adopt then kills what is left
// in the Cal's groups, and fails if anything stays). A process that has
// exited meanwhile (ESRCH) counts as killed.
func killPidfd(fd int) string {
	if err := unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Sprintf("could not be killed: %v", err)
	}
	return "killed"
}

// StartTime is the start time of process pid, in clock ticks since boot
// (/proc/<pid>/stat field 22): with the pid, it names one process.
func StartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat reads a process's state and start time from /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return ParseStat(b)
}

// ParseStat reads the state (field 3) and start time (field 22) of a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func ParseStat(b []byte) (state byte, start uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat: start time: %w", err)
	}
	return f[0][0], start, nil
}

// bootID names this boot of the host.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
