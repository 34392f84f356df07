package faultcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/api"
)

// fakeProc is a proc filesystem in a temporary directory: the sampler
// reads it as it reads /proc.
type fakeProc struct {
	t    *testing.T
	dir  string
	boot time.Time
}

func newFakeProc(t *testing.T) *fakeProc {
	p := &fakeProc{t: t, dir: t.TempDir(), boot: time.Unix(1_700_000_000, 0)}
	must(t, os.WriteFile(filepath.Join(p.dir, "stat"), fmt.Appendf(nil, "cpu 1 2 3\nbtime %d\n", p.boot.Unix()), 0o644))
	return p
}

// proc adds (or replaces) a process: its command line, state, start
// (ticks after boot) and the Cal group it is in ("" for none).
func (p *fakeProc) proc(pid int, cmdline []string, state byte, start uint64, cal string) {
	d := filepath.Join(p.dir, fmt.Sprint(pid))
	must(p.t, os.MkdirAll(d, 0o755))
	must(p.t, os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(cmdline, "\x00")+"\x00"), 0o644))
	fields := make([]string, 20)
	for i := range fields {
		fields[i] = "0"
	}
	fields[0] = string(state)
	fields[19] = fmt.Sprint(start)
	must(p.t, os.WriteFile(filepath.Join(d, "stat"), fmt.Appendf(nil, "%d (calnet) %s\n", pid, strings.Join(fields, " ")), 0o644))
	cg := "0::/\n"
	if cal != "" {
		cg = "5:pids:/calnet/" + cal + "\n4:memory:/calnet/" + cal + "\n"
	}
	must(p.t, os.WriteFile(filepath.Join(d, "cgroup"), []byte(cg), 0o644))
}

func (p *fakeProc) gone(pid int) { must(p.t, os.RemoveAll(filepath.Join(p.dir, fmt.Sprint(pid)))) }

const bin = "/usr/bin/calnet"

// TestSampler: live Cal processes are attributed by their group; two
// live ones of a Cal are seen twice, a zombie and another binary's are
// not, and one outside any group is listed apart.
func TestSampler(t *testing.T) {
	p := newFakeProc(t)
	s := &Sampler{Bins: []string{bin}, Proc: p.dir}
	p.proc(100, []string{bin, "cal"}, 'S', 500, "a")
	p.proc(101, []string{bin, "cal"}, 'Z', 600, "a")             // a zombie of a
	p.proc(102, []string{"/other/calnet", "cal"}, 'S', 600, "b") // another binary
	p.proc(103, []string{bin, "up"}, 'S', 600, "")               // not a Cal
	p.proc(104, []string{bin, "cal"}, 'S', 700, "")              // not yet placed
	must(t, s.Sample())
	if tw := s.TwiceSeen(); len(tw) != 0 {
		t.Errorf("twice seen with one live process: %v", tw)
	}
	run := s.Running()
	if len(run["a"]) != 1 || run["a"][0] != 100 || len(run["?pid-104"]) != 1 || len(run) != 2 {
		t.Errorf("running %v", run)
	}
	p.proc(105, []string{bin, "cal"}, 'R', 800, "a")
	must(t, s.Sample())
	tw := s.TwiceSeen()
	if len(tw) != 1 || tw[0].Cal != "a" || len(tw[0].PIDs) != 2 {
		t.Fatalf("twice %v, want cal a with pids 100 and 105", tw)
	}
	p.gone(100)
	must(t, s.Sample())
	ins := s.Instances()["a"]
	if len(ins) != 2 || ins[0].PID != 100 || ins[1].PID != 105 {
		t.Fatalf("instances of a: %+v", ins)
	}
	if want := p.boot.Add(8 * time.Second); !ins[1].Started.Equal(want) {
		t.Errorf("pid 105 started %v, want %v (800 ticks after boot)", ins[1].Started, want)
	}
	if len(s.TwiceSeen()) != 1 {
		t.Error("twice seen again after pid 100 ended")
	}
	// A PID reused by a new process of the same Cal is another instance.
	p.proc(105, []string{bin, "cal"}, 'S', 900, "a")
	must(t, s.Sample())
	if got := len(s.Instances()["a"]); got != 3 {
		t.Errorf("%d instances of a after pid 105 was reused, want 3", got)
	}
}

func TestCalOfCgroup(t *testing.T) {
	for _, tc := range []struct{ cg, want string }{
		{"5:pids:/calnet/abc\n", "abc"},
		{"0::/calnet/abc\n", "abc"},
		{"0::/system.slice/x/calnet/s2/abc\n", "abc"},
		{"4:memory:/calnet/abc\n0::/\n", ""},
		{"0::/\n", ""},
	} {
		if got := calOfCgroup(tc.cg); got != tc.want {
			t.Errorf("calOfCgroup(%q) = %q, want %q", tc.cg, got, tc.want)
		}
	}
}

// TestCheckHost: each broken property of the host against the ledger and
// the registry is reported, and nothing when none is broken.
func TestCheckHost(t *testing.T) {
	boot := time.Unix(1_700_000_000, 0)
	revokedAt := boot.Add(10 * time.Second)
	end := boot.Add(60 * time.Second)
	inst := func(pid int, startSec, lastSec float64) *Instance {
		return &Instance{PID: pid, Started: boot.Add(time.Duration(startSec * float64(time.Second))),
			FirstSeen: boot.Add(time.Duration(startSec * float64(time.Second))), LastSeen: boot.Add(time.Duration(lastSec * float64(time.Second)))}
	}
	for _, tc := range []struct {
		name     string
		insts    map[string][]*Instance
		last     map[string][]int
		twice    []Twice
		registry map[string]string // cal -> state
		want     []string          // substrings of the violations, in any order
	}{
		{name: "clean",
			insts:    map[string][]*Instance{"m": {inst(1, 1, 60)}, "r": {inst(2, 2, 10.5)}},
			last:     map[string][]int{"m": {1}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"}},
		{name: "revoked cal started again",
			insts:    map[string][]*Instance{"m": {inst(1, 1, 60)}, "r": {inst(2, 2, 10.5), inst(3, 12, 13)}},
			last:     map[string][]int{"m": {1}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"},
			want:     []string{"revoked cal r (revoked at", "was started again: pid 3"}},
		{name: "child of a revoked cal started again",
			insts:    map[string][]*Instance{"m": {inst(1, 1, 60)}, "c": {inst(4, 3, 10.2), inst(5, 20, 20.1)}},
			last:     map[string][]int{"m": {1}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"},
			want:     []string{"revoked cal c", "pid 5"}},
		{name: "revoked cal never stopped",
			insts:    map[string][]*Instance{"m": {inst(1, 1, 60)}, "r": {inst(2, 2, 60)}},
			last:     map[string][]int{"m": {1}, "r": {2}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"},
			want:     []string{"still ran 50s later", "is revoked in the registry; the host runs it"}},
		{name: "twice",
			insts:    map[string][]*Instance{"m": {inst(1, 1, 60), inst(7, 30, 31)}},
			last:     map[string][]int{"m": {1}},
			twice:    []Twice{{Cal: "m", At: boot.Add(30 * time.Second), PIDs: []int{1, 7}}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"},
			want:     []string{"cal m ran twice"}},
		{name: "running cal without process, unknown cal with one, ungrouped process",
			insts:    map[string][]*Instance{"x": {inst(8, 1, 60)}},
			last:     map[string][]int{"x": {8}, "?pid-9": {9}},
			registry: map[string]string{"m": "running", "r": "revoked", "c": "revoked"},
			want:     []string{"cal m is running in the registry; the host runs 0", "the host runs cal x (pids [8]), which the registry does not hold", "outside any cal's group once settled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &ledgerView{
				blessed: map[string]time.Time{"m": boot, "r": boot, "c": boot, "x": boot},
				parent:  map[string]string{"m": "authority", "r": "m", "c": "r", "x": "m"},
				revoked: map[string]time.Time{"r": revokedAt},
			}
			h := &Sampler{instances: tc.insts, last: tc.last, twice: tc.twice, samples: 1}
			reg := map[string]*api.Cal{}
			for id, st := range tc.registry {
				reg[id] = &api.Cal{ID: id, State: st}
			}
			r := &Report{}
			checkHost(r, "s1", v, reg, h, 5*time.Second)
			_ = end
			if len(tc.want) == 0 && len(r.Violations) > 0 {
				t.Fatalf("violations in a clean run:\n%s", strings.Join(r.Violations, "\n"))
			}
			all := strings.Join(r.Violations, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no violation says %q; got:\n%s", w, all)
				}
			}
		})
	}
}

// TestLedgerWentBack: a server's ledger smaller than a checkpoint it
// served is reported (acknowledged entries lost).
func TestLedgerWentBack(t *testing.T) {
	v := &ledgerView{size: 5, root: []byte("r5")}
	r := &Report{}
	checkConsistent(r, "s1", v, []Seen{{Server: "s1", Size: 5, Root: []byte("r5")}, {Server: "s1", Size: 7, Root: []byte("r7")}})
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "went back") {
		t.Errorf("violations %v, want one saying the ledger went back", r.Violations)
	}
	r = &Report{}
	checkConsistent(r, "s1", v, []Seen{{Server: "s1", Size: 5, Root: []byte("other")}})
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "different roots") {
		t.Errorf("violations %v, want one saying the roots differ", r.Violations)
	}
}

func TestRevokedAtThroughAncestors(t *testing.T) {
	t0 := time.Unix(100, 0)
	v := &ledgerView{parent: map[string]string{"a": "m", "b": "a", "c": "b"}, revoked: map[string]time.Time{"a": t0.Add(time.Second), "b": t0}}
	for id, want := range map[string]time.Time{"c": t0, "b": t0, "a": t0.Add(time.Second)} {
		if got, ok := v.revokedAt(id); !ok || !got.Equal(want) {
			t.Errorf("revokedAt(%s) = %v %v, want %v", id, got, ok, want)
		}
	}
	if _, ok := v.revokedAt("m"); ok {
		t.Error("m is not revoked")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
