package faultcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/soulfra/calnet/internal/driver/process"
)

// Instance is one process of a Cal the sampler saw.
type Instance struct {
	PID int
	// StartTicks is the process's start in clock ticks after boot
	// (/proc/<pid>/stat field 22): with PID it names the process, and
	// Started is the same instant as a wall-clock time.
	StartTicks uint64
	Started    time.Time
	// FirstSeen and LastSeen are the samples that saw it first and last.
	FirstSeen, LastSeen time.Time
}

// Twice is a sampled instant at which one Cal had more than one live
// process.
type Twice struct {
	Cal  string
	At   time.Time
	PIDs []int
}

// Sampler samples the host's Cal processes: every live (not zombie)
// process whose command line is exactly `<bin> cal` for one of Bins, and
// the Cal its cgroup names. Run it for the whole fault run.
type Sampler struct {
	// Bins are the calnet executables the Cals run.
	Bins []string
	// Interval is the time between samples (default 25 ms).
	Interval time.Duration
	// Proc is the proc filesystem (default /proc).
	Proc string

	mu        sync.Mutex
	instances map[string][]*Instance // by Cal ID
	twice     []Twice
	samples   int
	last      map[string][]int // the last sample: PIDs by Cal ID
	bootTime  time.Time
}

type procKey struct {
	pid   int
	start uint64
}

// clockTicks is USER_HZ: 100 on every Linux architecture Go supports
// (the kernel exports times in it whatever its own HZ).
const clockTicks = 100

// Run samples until ctx ends, then returns nil.
func (s *Sampler) Run(ctx context.Context) error {
	iv := s.Interval
	if iv <= 0 {
		iv = 25 * time.Millisecond
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if err := s.Sample(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Sampler) proc() string {
	if s.Proc == "" {
		return "/proc"
	}
	return s.Proc
}

// Sample takes one sample now.
func (s *Sampler) Sample() error {
	s.mu.Lock()
	if s.instances == nil {
		s.instances = map[string][]*Instance{}
		bt, err := bootTime(s.proc())
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.bootTime = bt
	}
	s.mu.Unlock()
	seen, err := s.scan()
	if err != nil {
		return err
	}
	// A Cal seen with two processes: both must still be the same live
	// processes when read again after the scan. Each was alive at its
	// first read and at its second, so alive in between; every first
	// read comes before every second read, so they were all alive at
	// once, not one after the other within the scan.
	now := time.Now()
	for id, keys := range seen {
		if len(keys) < 2 {
			continue
		}
		var live []procKey
		for _, k := range keys {
			if st, start, err := stat(s.proc(), k.pid); err == nil && start == k.start && st != 'Z' && st != 'X' {
				live = append(live, k)
			}
		}
		seen[id] = live
		if len(live) > 1 {
			pids := make([]int, len(live))
			for i, k := range live {
				pids[i] = k.pid
			}
			s.mu.Lock()
			s.twice = append(s.twice, Twice{Cal: id, At: now, PIDs: pids})
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.last = map[string][]int{}
	for id, keys := range seen {
		for _, k := range keys {
			s.last[id] = append(s.last[id], k.pid)
			if strings.HasPrefix(id, "?") {
				// Not yet in its groups (a driver holds a new Cal until it
				// placed it): whose it is shows at the next sample.
				continue
			}
			var inst *Instance
			for _, in := range s.instances[id] {
				if in.PID == k.pid && in.StartTicks == k.start {
					inst = in
				}
			}
			if inst == nil {
				inst = &Instance{PID: k.pid, StartTicks: k.start, FirstSeen: now,
					Started: s.bootTime.Add(time.Duration(k.start) * time.Second / clockTicks)}
				s.instances[id] = append(s.instances[id], inst)
			}
			inst.LastSeen = now
		}
	}
	return nil
}

// scan reads /proc once: the live Cal processes by Cal ID.
func (s *Sampler) scan() (map[string][]procKey, error) {
	ents, err := os.ReadDir(s.proc())
	if err != nil {
		return nil, err
	}
	out := map[string][]procKey{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(s.proc(), e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) != 2 || args[1] != "cal" || !slices.Contains(s.Bins, args[0]) {
			continue
		}
		st, start, err := stat(s.proc(), pid)
		if err != nil || st == 'Z' || st == 'X' {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join(s.proc(), e.Name(), "cgroup"))
		id := calOfCgroup(string(cg))
		if id == "" {
			id = "?pid-" + e.Name() // outside any Cal's group, by its PID
		}
		out[id] = append(out[id], procKey{pid, start})
	}
	return out, nil
}

// calOfCgroup returns the Cal ID a process's /proc/<pid>/cgroup names:
// the last element of its pids (v1) or unified (v2) group, under a
// "calnet" group.
func calOfCgroup(cg string) string {
	for _, line := range strings.Split(cg, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || (parts[1] != "pids" && parts[1] != "") {
			continue
		}
		p := parts[2]
		if i := strings.Index(p, "/calnet/"); i >= 0 {
			rest := p[i+len("/calnet/"):]
			if j := strings.LastIndexByte(rest, '/'); j >= 0 {
				rest = rest[j+1:]
			}
			if rest != "" {
				return rest
			}
		}
	}
	return ""
}

// stat reads a process's state and start time.
func stat(proc string, pid int) (byte, uint64, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	state, start, err := process.ParseStat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/%w", pid, err)
	}
	return state, start, nil
}

// bootTime reads the boot time (btime of /proc/stat).
func bootTime(proc string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat: no btime")
}

// Instances returns every process seen, by Cal ID, each Cal's in order of
// start.
func (s *Sampler) Instances() map[string][]Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Instance{}
	for id, ins := range s.instances {
		for _, in := range ins {
			out[id] = append(out[id], *in)
		}
		sort.Slice(out[id], func(i, j int) bool { return out[id][i].StartTicks < out[id][j].StartTicks })
	}
	return out
}

// Running returns the PIDs of the last sample, by Cal ID; a process
// outside any Cal's group is under "?pid-<pid>".
func (s *Sampler) Running() map[string][]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]int{}
	for id, p := range s.last {
		out[id] = slices.Clone(p)
	}
	return out
}

// TwiceSeen returns the sampled instants at which a Cal ran twice.
func (s *Sampler) TwiceSeen() []Twice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.twice)
}

// Samples counts the samples taken.
func (s *Sampler) Samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}
