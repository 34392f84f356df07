package process

import (
	"bufio"
	"bytes"
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
	"testing"
	"time"

	"github.com/soulfra/calnet/internal/caldir"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/sandbox"
)

// cpEnv makes the test binary a stand-in control plane: it starts one Cal
// with the real driver, prints its PID and waits to be killed.
const cpEnv = "CALNET_PROCESS_DRIVER_TEST_CP"

// cpParams configure the stand-in control plane.
type cpParams struct {
	Parent   string `json:"parent"`
	StateDir string `json:"state_dir"`
	CalID    string `json:"cal_id"`
	Dir      string `json:"dir"` // the data directory of the Cal's caldir layout
	Log      string `json:"log"`
	// Binary is the Cal's (a static copy of this test).
	Binary string `json:"binary"`
	// DieBeforeConfig kills the control plane after it recorded the Cal
	// and before the Cal has its config.
	DieBeforeConfig bool `json:"die_before_config"`
	// StartCPUMillis and StartWindowMS give the Cal a start-up CPU limit.
	StartCPUMillis int64 `json:"start_cpu_millis"`
	StartWindowMS  int   `json:"start_window_ms"`
}

// controlPlaneMain is the stand-in control plane's main.
func controlPlaneMain() {
	var p cpParams
	if err := json.Unmarshal([]byte(os.Getenv(cpEnv)), &p); err != nil {
		panic(err)
	}
	d := New(p.Parent, p.StateDir)
	if p.DieBeforeConfig {
		d.beforeConfig = func() {
			if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
				panic(err)
			}
			select {} // until the signal is delivered
		}
	}
	log, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		panic(err)
	}
	layout := caldir.New(p.Dir)
	if err := layout.Prepare(); err != nil {
		panic(err)
	}
	host := layout.Host(p.CalID)
	socks, err := host.Bind("api.sock")
	if err != nil {
		panic(err)
	}
	inst, err := d.Start(context.Background(), driver.Spec{
		CalID: p.CalID, Dir: layout.Sandbox(p.CalID).MountSource(), RootMount: host.RootMount(), Sockets: socks, Binary: p.Binary, Args: []string{"-test.run=^$"},
		Env: []string{childEnv + "=1"}, UID: 200125, GID: 200125, Features: adoptFeatures,
		Limits: driver.Limits{CPUMillis: 500, MemoryBytes: 64 << 20, PIDs: 64}, Secret: "s3cret", Log: log,
		StartCPUMillis: p.StartCPUMillis, StartWindow: time.Duration(p.StartWindowMS) * time.Millisecond,
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", inst.PID())
	select {}
}

// adoptFeatures is full isolation but the disk quota, which needs a Cal
// filesystem (TestIsolatedCal covers it) and has no bearing on adoption.
var adoptFeatures = slices.DeleteFunc(slices.Clone(sandbox.AllFeatures), func(f sandbox.Feature) bool { return f == sandbox.DiskQuota })

func needAllFeatures(t *testing.T, d *Driver) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the process driver's isolation needs root")
	}
	for _, f := range adoptFeatures {
		if !slices.Contains(d.Available(), f) {
			t.Skipf("host lacks %s", f)
		}
	}
}

// runControlPlane starts the stand-in control plane; it returns the
// process and, unless it dies before configuring the Cal, the Cal's PID.
func runControlPlane(t *testing.T, p cpParams) (*exec.Cmd, int) {
	t.Helper()
	self, _ := os.Executable()
	p.Binary = staticSelf(t)
	b, _ := json.Marshal(p)
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), cpEnv+"="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killWait(t, cmd) })
	if p.DieBeforeConfig {
		return cmd, 0
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("stand-in control plane: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if err != nil {
		t.Fatalf("stand-in control plane: %q", line)
	}
	return cmd, pid
}

func alive(pid int) bool {
	state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killStray ends a Cal the test started if the test fails before it does.
func killStray(t *testing.T, d *Driver, id string) {
	t.Cleanup(func() {
		if err := d.removeGroup(id); err != nil {
			t.Error(err)
		}
	})
}

func TestAdoptAfterControlPlaneDeath(t *testing.T) {
	stateDir := t.TempDir()
	d := New("/calnet-test", stateDir)
	needAllFeatures(t, d)
	id := "adopted0123456789"
	killStray(t, d, id)
	log := logFile(t)
	cp, pid := runControlPlane(t, cpParams{Parent: "/calnet-test", StateDir: stateDir, CalID: id, Dir: t.TempDir(), Log: log.Name()})
	readReport(t, log)
	_, start, _ := procStat(pid)

	// SIGKILL of the control plane: the Cal (configured, in its sandbox)
	// lives on, no longer anybody's child here.
	killWait(t, cp)
	time.Sleep(50 * time.Millisecond)
	if _, now, err := procStat(pid); err != nil || now != start || !alive(pid) {
		t.Fatalf("the cal did not outlive its control plane: %v", err)
	}

	if ids, err := d.Recorded(); err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("recorded = %v, %v", ids, err)
	}
	inst, err := d.Adopt(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if inst.PID() != pid {
		t.Fatalf("adopted pid %d, want %d", inst.PID(), pid)
	}
	iso, err := inst.Isolation()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range adoptFeatures {
		if !iso[f] {
			t.Errorf("isolation feature %s not in force for the adopted cal", f)
		}
	}
	if u, err := inst.Usage(); err != nil || u.MemoryBytes == 0 {
		t.Errorf("usage of the adopted cal: %+v, %v", u, err)
	}
	// Its output still reaches its log file, which nobody holds open for
	// it any more but the Cal itself.
	if b, _ := os.ReadFile(log.Name()); !strings.Contains(string(b), `"uid":200125`) {
		t.Errorf("log: %q", b)
	}

	// The adopted Cal is watched: its exit is seen, and what is left of
	// it goes.
	waited := make(chan error, 1)
	go func() { waited <- inst.Wait() }()
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	select {
	case err := <-waited:
		if !errors.Is(err, driver.ErrExitUnknown) {
			t.Errorf("wait = %v, want ErrExitUnknown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the adopted cal's exit was not seen")
	}
	if dirs := d.groupDirs(id); len(dirs) != 0 {
		t.Errorf("groups left: %v", dirs)
	}
	if ids, _ := d.Recorded(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
}

func TestStopAdopted(t *testing.T) {
	stateDir := t.TempDir()
	d := New("/calnet-test", stateDir)
	needAllFeatures(t, d)
	id := "stopadopted012345"
	killStray(t, d, id)
	log := logFile(t)
	cp, pid := runControlPlane(t, cpParams{Parent: "/calnet-test", StateDir: stateDir, CalID: id, Dir: t.TempDir(), Log: log.Name()})
	readReport(t, log)
	killWait(t, cp)
	inst, err := d.Adopt(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Stop(t.Context(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if dirs := d.groupDirs(id); len(dirs) != 0 {
		t.Errorf("groups left: %v", dirs)
	}
	if ids, _ := d.Recorded(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
	// Adopting it again finds nothing.
	if _, err := d.Adopt(t.Context(), id); !errors.Is(err, driver.ErrNotRunning) {
		t.Errorf("adopt after stop = %v, want ErrNotRunning", err)
	}
}

// A control plane that dies between fork and config takes the held child
// with it; the next one finds nothing to adopt and nothing left over.
func TestControlPlaneDiesBeforeConfig(t *testing.T) {
	stateDir := t.TempDir()
	d := New("/calnet-test", stateDir)
	needAllFeatures(t, d)
	id := "heldchild01234567"
	killStray(t, d, id)
	cp, _ := runControlPlane(t, cpParams{Parent: "/calnet-test", StateDir: stateDir, CalID: id, Dir: t.TempDir(), Log: logFile(t).Name(), DieBeforeConfig: true})
	if err := cp.Wait(); err == nil {
		t.Fatal("the stand-in control plane exited 0; it was to die of SIGKILL before the config")
	}
	b, err := os.ReadFile(d.recordPath(id))
	if err != nil {
		t.Fatalf("the control plane died before its record: %v", err)
	}
	r, err := parseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, r.PID)
	if _, err := d.Adopt(t.Context(), id); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("adopt = %v, want ErrNotRunning", err)
	}
	if dirs := d.groupDirs(id); len(dirs) != 0 {
		t.Errorf("groups left: %v", dirs)
	}
	if ids, _ := d.Recorded(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
}

// A group with a process but no record (a crash before the record was
// written) is cleared: nothing of it may run beside the Cal started next.
func TestAdoptRemovesUnrecordedLeftovers(t *testing.T) {
	d := New("/calnet-test", t.TempDir())
	needAllFeatures(t, d)
	id := "leftover012345678"
	killStray(t, d, id)
	cg, err := d.cgroup(driver.Spec{CalID: id, Features: adoptFeatures})
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		_ = sleep.Wait() // killed by Adopt, as the test wants: the status is not the point
		close(waited)
	}()
	if err := cg.add(sleep.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Adopt(t.Context(), id); !errors.Is(err, driver.ErrNotRunning) {
		t.Fatalf("adopt = %v, want ErrNotRunning", err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover process still runs")
	}
	if dirs := d.groupDirs(id); len(dirs) != 0 {
		t.Errorf("groups left: %v", dirs)
	}
}

// A record whose PID now names another process (or a process of another
// boot) is not adopted, and that process is left alone.
func TestAdoptRefusesAnotherProcess(t *testing.T) {
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer killWait(t, sleep)
	_, start, err := procStat(sleep.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rec  record
		why  string
	}{
		{"reused pid", record{PID: sleep.Process.Pid, Start: start + 1, BootID: boot}, "another process now"},
		{"other boot", record{PID: sleep.Process.Pid, Start: start, BootID: "00000000-0000-0000-0000-000000000000"}, "rebooted"},
		{"gone", record{PID: 1 << 30, Start: start, BootID: boot}, "is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New("/calnet-test", t.TempDir())
			tc.rec.CalID = "notmine0123456789"
			b, _ := json.Marshal(tc.rec)
			if err := os.WriteFile(d.recordPath(tc.rec.CalID), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := d.Adopt(t.Context(), tc.rec.CalID)
			if !errors.Is(err, driver.ErrNotRunning) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("adopt = %v, want ErrNotRunning: %s", err, tc.why)
			}
			if !alive(sleep.Process.Pid) {
				t.Fatal("the other process was killed")
			}
			if ids, _ := d.Recorded(); len(ids) != 0 {
				t.Errorf("records left: %v", ids)
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	good := `{"cal_id":"abc","pid":42,"start_ticks":7,"boot_id":"b","features":["seccomp"]}`
	if r, err := parseRecord([]byte(good)); err != nil || r.PID != 42 || r.Start != 7 {
		t.Fatalf("good record: %+v, %v", r, err)
	}
	for _, tc := range []struct{ name, in, field string }{
		{"bad id", `{"cal_id":"../x","pid":42,"start_ticks":7,"boot_id":"b"}`, "cal_id"},
		{"pid 1", `{"cal_id":"abc","pid":1,"start_ticks":7,"boot_id":"b"}`, "pid"},
		{"no start", `{"cal_id":"abc","pid":42,"boot_id":"b"}`, "start_ticks"},
		{"no boot", `{"cal_id":"abc","pid":42,"start_ticks":7}`, "boot_id"},
		{"bad feature", `{"cal_id":"abc","pid":42,"start_ticks":7,"boot_id":"b","features":["x"]}`, "features"},
		{"unknown field", `{"cal_id":"abc","pid":42,"start_ticks":7,"boot_id":"b","extra":1}`, "extra"},
		{"too big", `{"cal_id":"` + strings.Repeat("a", maxRecordSize) + `"}`, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseRecord([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 12345678 300 18446744073709551615"
	state, start, err := ParseStat([]byte(line))
	if err != nil || state != 'S' || start != 98765 {
		t.Fatalf("ParseStat = %c %d %v", state, start, err)
	}
	if _, _, err := ParseStat([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("a short line parsed")
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"cal_id":"abc","pid":42,"start_ticks":7,"boot_id":"b","features":["seccomp"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err == nil && (!validID(r.CalID) || r.PID <= 1 || r.Start == 0 || r.BootID == "") {
			t.Fatalf("accepted an invalid record %+v", r)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (calnet) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1 2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := ParseStat(b); err == nil && !bytes.Contains(b, []byte(")")) {
			t.Fatalf("parsed %q, which has no comm field", b)
		}
	})
}

// cpuQuota reads the CFS quota of a Cal's group, in microseconds per
// 100 ms period (-1: none).
func cpuQuota(t *testing.T, d *Driver, id string) int64 {
	t.Helper()
	v1 := filepath.Join(cgroupRoot, "cpu", d.groupPath(id), "cpu.cfs_quota_us")
	if b, err := os.ReadFile(v1); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, d.groupPath(id), "cpu.max"))
	if err != nil {
		t.Fatalf("no cpu limit for %s: %v", id, err)
	}
	q, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	if q == "max" {
		return -1
	}
	n, _ := strconv.ParseInt(q, 10, 64)
	return n
}

// TestStartCPUAllowance: a Cal starts under its start-up CPU limit and runs
// under its quota (500m: 50,000 µs per 100 ms) once the window has passed;
// a driver adopting a Cal whose control plane died within the window ends
// the allowance at once.
func TestStartCPUAllowance(t *testing.T) {
	d := New("/calnet-test", t.TempDir())
	needAllFeatures(t, d)
	t.Run("window", func(t *testing.T) {
		stateDir := t.TempDir()
		id := "startcpu0123456789"
		killStray(t, d, id)
		log := logFile(t)
		runControlPlane(t, cpParams{Parent: "/calnet-test", StateDir: stateDir, CalID: id, Dir: t.TempDir(), Log: log.Name(), StartCPUMillis: 2000, StartWindowMS: 4000})
		if q := cpuQuota(t, d, id); q != 200000 {
			t.Fatalf("cpu quota at start = %d, want 200000 (2000m)", q)
		}
		deadline := time.Now().Add(30 * time.Second)
		for cpuQuota(t, d, id) != 50000 {
			if time.Now().After(deadline) {
				t.Fatalf("cpu quota after the window = %d, want 50000 (the 500m quota)", cpuQuota(t, d, id))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("adopted", func(t *testing.T) {
		stateDir := t.TempDir()
		ad := New("/calnet-test", stateDir)
		id := "startcpuadopt0123456"
		killStray(t, ad, id)
		log := logFile(t)
		cp, _ := runControlPlane(t, cpParams{Parent: "/calnet-test", StateDir: stateDir, CalID: id, Dir: t.TempDir(), Log: log.Name(), StartCPUMillis: 2000, StartWindowMS: 3600_000})
		readReport(t, log)
		if q := cpuQuota(t, ad, id); q != 200000 {
			t.Fatalf("cpu quota at start = %d, want 200000", q)
		}
		killWait(t, cp)
		inst, err := ad.Adopt(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { must(t, inst.Stop(context.Background(), time.Second)) }()
		if q := cpuQuota(t, ad, id); q != 50000 {
			t.Fatalf("cpu quota of the adopted cal = %d, want 50000: the start-up allowance outlived its control plane", q)
		}
	})
}
