package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/soulfra/calnet/internal/driver/process"
)

// What the host says, not the registry: the `calnet cal` processes in
// /proc and the Cals' groups in /sys/fs/cgroup.

// hostProc is one running `calnet cal` process seen in /proc.
type hostProc struct {
	PID   int
	Start uint64 // clock ticks after boot (/proc/<pid>/stat field 22)
	Cal   string // the Cal its cgroup names; empty outside /calnet
	Bin   string // argv[0]
}

// procStat reads a process's state and start time from /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return process.ParseStat(b)
}

// calProcesses lists the live (not zombie) processes running `<bin> cal`
// for any of bins.
func calProcesses(t *testing.T, bins ...string) []hostProc {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []hostProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) != 2 || args[1] != "cal" || !slices.Contains(bins, args[0]) {
			continue
		}
		state, start, err := procStat(pid)
		if err != nil || state == 'Z' || state == 'X' {
			continue
		}
		p := hostProc{PID: pid, Start: start, Bin: args[0]}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		for _, line := range strings.Split(string(cg), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && (parts[1] == "pids" || parts[1] == "") {
				if id, ok := strings.CutPrefix(parts[2], "/calnet/"); ok {
					p.Cal = id
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// cgroupDirs are the directories under which the process driver makes a
// group per Cal ("/calnet" of cmd/calnet up), on cgroup v1 or v2.
func cgroupDirs() []string {
	var out []string
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids"} {
		if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err == nil && st.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", c, "calnet"))
		}
	}
	if len(out) == 0 {
		out = append(out, "/sys/fs/cgroup/calnet")
	}
	return out
}

// calGroups maps each cgroup directory to the groups in it of the Cals
// in ids.
func calGroups(ids map[string]bool) map[string][]string {
	out := map[string][]string{}
	for _, dir := range cgroupDirs() {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() && ids[e.Name()] {
				out[dir] = append(out[dir], e.Name())
			}
		}
		sort.Strings(out[dir])
	}
	return out
}

// ledgerView is what the network's ledger says about its Cals.
type ledgerView struct {
	blessed map[string]bool // every Cal ever blessed
	revoked map[string]bool // targets of revocations
}

func readLedger(t *testing.T, data string) ledgerView {
	t.Helper()
	var out struct {
		Entries []struct {
			Type    string `json:"type"`
			Subject string `json:"subject"`
		} `json:"entries"`
	}
	okJSON(t, "", &out, "ledger", "log", "--dir", filepath.Join(data, "network"), "--limit", "100000")
	v := ledgerView{blessed: map[string]bool{}, revoked: map[string]bool{}}
	for _, e := range out.Entries {
		switch e.Type {
		case "blessing":
			v.blessed[e.Subject] = true
		case "revocation":
			v.revoked[e.Subject] = true
		}
	}
	return v
}

// hostCheck compares the host with the registry and the ledger: exactly
// one process and one group per controller for each running Cal, none for
// any other Cal of the network, no `calnet cal` process of bins outside
// its group, registry and ledger in agreement and the ledger verified.
// It returns the processes of the network's running Cals by Cal ID.
func (n *network) hostCheck(bins ...string) map[string]hostProc {
	t := n.t
	t.Helper()
	if r := calnet(t, "", "ledger", "verify", "--dir", filepath.Join(n.data, "network")); r.code != 0 {
		t.Errorf("ledger verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lv := readLedger(t, n.data)
	cals, err := n.c.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	recs := map[string]string{}
	pids := map[string]int{}
	for _, c := range cals {
		recs[c.ID] = c.State
		pids[c.ID] = c.PID
		if !lv.blessed[c.ID] {
			t.Errorf("registry: cal %s (%s) has no blessing in the ledger", c.ID, c.State)
		}
		switch c.State {
		case "running":
			live[c.ID] = true
		case "failed", "stopped", "revoked":
		default:
			t.Errorf("registry: cal %s is still %s", c.ID, c.State)
		}
	}
	for id := range lv.blessed {
		if _, ok := recs[id]; !ok && !lv.revoked[id] {
			t.Errorf("ledger: cal %s is blessed but neither in the registry nor revoked", id)
		}
	}
	procs := map[string]hostProc{}
	for _, p := range calProcesses(t, bins...) {
		switch {
		case p.Cal == "":
			t.Errorf("host: `calnet cal` pid %d runs outside any Cal's cgroup", p.PID)
		case !lv.blessed[p.Cal]:
			// Another network's Cal (run by the same binary): not ours.
		case !live[p.Cal]:
			t.Errorf("host: pid %d runs cal %s, which is %q in the registry", p.PID, p.Cal, recs[p.Cal])
		case procs[p.Cal].PID != 0:
			t.Errorf("host: cal %s runs twice: pids %d and %d", p.Cal, procs[p.Cal].PID, p.PID)
		default:
			procs[p.Cal] = p
			if pids[p.Cal] != p.PID {
				t.Errorf("registry: cal %s has pid %d, the host runs it as %d", p.Cal, pids[p.Cal], p.PID)
			}
		}
	}
	for id := range live {
		if procs[id].PID == 0 {
			t.Errorf("host: cal %s is running in the registry but no process runs it", id)
		}
	}
	for dir, groups := range calGroups(lv.blessed) {
		for _, g := range groups {
			if !live[g] {
				t.Errorf("host: %s/%s is left over (cal is %q)", dir, g, recs[g])
			}
		}
		for id := range live {
			if !slices.Contains(groups, id) {
				t.Errorf("host: running cal %s has no group in %s", id, dir)
			}
		}
	}
	return procs
}

// waitSettled waits until no spawn and no Cal is in a passing state.
func (n *network) waitSettled(d time.Duration) {
	t := n.t
	t.Helper()
	waitFor(t, "every spawn and cal to settle", d, func() bool {
		spawns, err := n.c.Spawns(t.Context())
		if err != nil {
			return false
		}
		for _, s := range spawns {
			if s.State != "running" && s.State != "failed" && s.State != "rejected" {
				return false
			}
		}
		cals, err := n.c.List(t.Context())
		if err != nil {
			return false
		}
		for _, c := range cals {
			if c.State == "deploying" {
				return false
			}
		}
		return true
	})
}

// networkIDs is every Cal ID the network's ledger blessed.
func (n *network) networkIDs() map[string]bool { return readLedger(n.t, n.data).blessed }

// hostClean checks that nothing of the network is left on the host.
func (n *network) hostClean(ids map[string]bool, bins ...string) {
	t := n.t
	t.Helper()
	for _, p := range calProcesses(t, bins...) {
		if ids[p.Cal] || p.Cal == "" {
			t.Errorf("host: pid %d (cal %q) still runs after the network stopped", p.PID, p.Cal)
		}
	}
	for dir, groups := range calGroups(ids) {
		for _, g := range groups {
			t.Errorf("host: %s/%s is left over after the network stopped", dir, g)
		}
	}
}

// reap ends what a test left of its network on the host when `calnet up`
// was gone before it could stop the Cals (a crash it did not survive, a
// failed restart): the Cals' processes and groups, and the mount of the
// Cal filesystem, which the temporary directory's removal would trip on.
// A network stopped properly has none of these.
func (n *network) reap() {
	out, err := exec.Command(calnetBin, "-o", "json", "ledger", "log", "--dir", filepath.Join(n.data, "network"), "--limit", "100000").Output()
	ids := map[string]bool{}
	var lg struct {
		Entries []struct {
			Type    string `json:"type"`
			Subject string `json:"subject"`
		} `json:"entries"`
	}
	if err == nil && json.Unmarshal(out, &lg) == nil {
		for _, e := range lg.Entries {
			if e.Type == "blessing" {
				ids[e.Subject] = true
			}
		}
	}
	bins := []string{calnetBin}
	if n.bin != "" {
		bins = append(bins, n.bin)
	}
	killed := 0
	for _, p := range calProcesses(n.t, bins...) {
		if ids[p.Cal] {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: it exited meanwhile
				n.t.Errorf("reaping cal %s (pid %d): %v", p.Cal, p.PID, err)
			}
			killed++
		}
	}
	if killed > 0 {
		n.t.Logf("reaped %d cal process(es) that outlived calnet up", killed)
		// Gone means gone from /proc or a zombie for init to reap: ending
		// a process is slow on a loaded VM, and a restore or restart of
		// the network must not find one still running.
		for _, p := range calProcesses(n.t, bins...) {
			for deadline := time.Now().Add(30 * time.Second); ids[p.Cal] && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if state, _, err := procStat(p.PID); err != nil || state == 'Z' || state == 'X' {
					break
				}
			}
		}
	}
	for dir, groups := range calGroups(ids) {
		for _, g := range groups {
			os.Remove(filepath.Join(dir, g))
		}
	}
	// calnet up unmounts it when it stops cleanly (EINVAL: not mounted).
	if err := unix.Unmount(filepath.Join(n.data, "cals"), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		n.t.Errorf("unmounting the cal filesystem: %v", err)
	}
}
