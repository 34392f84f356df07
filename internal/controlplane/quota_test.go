package controlplane

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/driver"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/trust"
)

func TestCheckQuotaBounds(t *testing.T) {
	ok := trust.Quota{CPUMillis: 250, MemoryBytes: 64 << 20, PIDs: 256, DiskBytes: 64 << 20}
	with := func(f func(*trust.Quota)) trust.Quota { q := ok; f(&q); return q }
	cases := []struct {
		name   string
		q      trust.Quota
		src    quotaSource
		driver driver.Limits
		want   string // "" = accepted
	}{
		{"defaults", ok, nil, driver.Limits{}, ""},
		{"at every floor", trust.Quota{CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16, DiskBytes: 16 << 20}, nil, driver.Limits{}, ""},
		{"cpu under the CFS minimum", with(func(q *trust.Quota) { q.CPUMillis = 5 }), nil, driver.Limits{}, "cpu_millis: 5m is below the minimum of 10m: the kernel's CFS"},
		{"cpu from a template", with(func(q *trust.Quota) { q.CPUMillis = 1 }), quotaSource{"cpu_millis": "template t resources.cpu"}, driver.Limits{}, "cpu_millis: 1m (template t resources.cpu) is below the minimum of 10m"},
		{"negative cpu", with(func(q *trust.Quota) { q.CPUMillis = -1 }), nil, driver.Limits{}, "cpu_millis: -1m is below"},
		{"memory a Cal cannot start in", with(func(q *trust.Quota) { q.MemoryBytes = 4 << 20 }), nil, driver.Limits{}, "memory_bytes: 4Mi is below the minimum of 16Mi"},
		{"pids the runtime cannot start with", with(func(q *trust.Quota) { q.PIDs = 4 }), nil, driver.Limits{}, "pids: 4 is below the minimum of 16"},
		{"cpu over the maximum", with(func(q *trust.Quota) { q.CPUMillis = trust.MaxCPUMillis + 1 }), nil, driver.Limits{}, "cpu_millis: 1048577m is above the maximum"},
		{"memory over the maximum", with(func(q *trust.Quota) { q.MemoryBytes = trust.MaxMemoryBytes + 1 }), nil, driver.Limits{}, "memory_bytes: 1125899906842625 is above"},
		{"disk a Cal cannot store its files in", with(func(q *trust.Quota) { q.DiskBytes = 1 << 20 }), nil, driver.Limits{}, "disk_bytes: 1Mi is below the minimum of 16Mi"},
		{"pids over the maximum", with(func(q *trust.Quota) { q.PIDs = trust.MaxPIDs + 1 }), nil, driver.Limits{}, "pids: 4194305 is above"},
		{"a driver floor above the table's", with(func(q *trust.Quota) { q.CPUMillis = 20 }), nil, driver.Limits{CPUMillis: 50}, "cpu_millis: 20m is below the minimum of 50m: the driver cannot apply less"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkQuotaBounds(c.q, c.src, c.driver)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || err.Status != 400 || !strings.Contains(err.Msg, c.want)):
				t.Fatalf("got %v, want 400 %q", err, c.want)
			}
		})
	}
}

func TestFillQuota(t *testing.T) {
	parent := trust.Quota{CPUMillis: 100, MemoryBytes: 1 << 30, PIDs: 64}
	cases := []struct {
		name         string
		q, named     trust.Quota
		parent       *trust.Quota
		want         trust.Quota
		wantMemLabel string
	}{
		{"defaults", trust.Quota{}, trust.Quota{}, nil, trust.Quota{CPUMillis: 250, MemoryBytes: 64 << 20, PIDs: 256, DiskBytes: 64 << 20}, " (the default)"},
		{"defaults capped at the parent's", trust.Quota{}, trust.Quota{}, &parent, trust.Quota{CPUMillis: 100, MemoryBytes: 64 << 20, PIDs: 64, DiskBytes: 64 << 20}, " (the default)"},
		{"named values are kept", trust.Quota{CPUMillis: 500, MemoryBytes: 2 << 30}, trust.Quota{CPUMillis: 500, MemoryBytes: 2 << 30}, &parent, trust.Quota{CPUMillis: 500, MemoryBytes: 2 << 30, PIDs: 64, DiskBytes: 64 << 20}, ""},
		{"template values are kept and labelled", trust.Quota{MemoryBytes: 2 << 30}, trust.Quota{}, &parent, trust.Quota{CPUMillis: 100, MemoryBytes: 2 << 30, PIDs: 64, DiskBytes: 64 << 20}, " (template t resources.memory)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := c.q
			src := fillQuota(&q, c.named, "t", c.parent)
			if q != c.want || src.label("memory_bytes") != c.wantMemLabel {
				t.Fatalf("got %+v %q, want %+v %q", q, src.label("memory_bytes"), c.want, c.wantMemLabel)
			}
		})
	}
}

func TestFitsSubtree(t *testing.T) {
	limit := trust.Quota{CPUMillis: 250, MemoryBytes: 64 << 20, PIDs: 256}
	over := trust.Quota{CPUMillis: 200, MemoryBytes: 100, PIDs: 100}
	child := limit // a default child of a default Cal
	var used trust.Quota
	admitted := 0
	for range 200 {
		if fitsSubtree(child, nil, "p", limit, used, over) != nil {
			break
		}
		addQuota(&used, child)
		admitted++
	}
	// Memory and pids (overcommit 100) bound it: a default Cal can hold
	// 100 default descendants, its whole child allowance.
	if admitted != 100 {
		t.Fatalf("a default Cal holds %d default descendants, want 100", admitted)
	}
	err := fitsSubtree(child, nil, "p", limit, used, over)
	if err == nil || err.Status != 403 || !strings.Contains(err.Msg, "quota memory_bytes: the limits under cal p add up to 6400Mi") {
		t.Fatalf("the 101st: %v", err)
	}
	// No overcommit: limits add up.
	one := trust.Quota{CPUMillis: 1, MemoryBytes: 1, PIDs: 1}
	if fitsSubtree(child, nil, "p", limit, trust.Quota{}, one) != nil || fitsSubtree(child, nil, "p", limit, child, one) == nil {
		t.Fatal("overcommit 1 is not limits adding up")
	}
}

func TestParseOvercommit(t *testing.T) {
	cases := []struct {
		in   string
		want trust.Quota
		err  string
	}{
		{"", trust.Quota{}, ""},
		{"1", trust.Quota{CPUMillis: 1, MemoryBytes: 1, PIDs: 1}, ""}, // disk stays unsummed
		{"disk_bytes=2", trust.Quota{DiskBytes: 2}, ""},
		{"cpu_millis=300,pids=50", trust.Quota{CPUMillis: 300, PIDs: 50}, ""},
		{"0", trust.Quota{}, "outside 1..4096"},
		{"disk=2", trust.Quota{}, `unknown resource "disk"`},
		{"pids=x", trust.Quota{}, `pids="x"`},
		{"pids=5000", trust.Quota{}, "1..4096"},
	}
	for _, c := range cases {
		q, err := ParseOvercommit(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || q != c.want {
			t.Errorf("%q: got %+v %v, want %+v", c.in, q, err, c.want)
		}
	}
}

// bookServer is a Server with just what reserve reads: the registry index
// and the trust state's children.
func bookServer(t *testing.T, cals map[string]calLite) *Server {
	t.Helper()
	s := &Server{serials: map[identity.ID]int{}, state: &netdir.State{Children: map[identity.ID][]identity.ID{}}}
	s.cfg.Limits.Overcommit = trust.Quota{CPUMillis: 1, MemoryBytes: 1, PIDs: 1}
	s.ns.byID = cals
	return s
}

func testID(t *testing.T, n int) identity.ID {
	t.Helper()
	var id identity.ID
	id[0], id[1] = byte(n), byte(n>>8)
	return id
}

// TestReserveConcurrent fires spawns at once whose quotas together exceed
// the parent's, spawns of one name, and checks that one decision admits
// exactly what fits (with -race: the book's lock is the only guard).
func TestReserveConcurrent(t *testing.T) {
	master, parent := testID(t, 1), testID(t, 2)
	lim := trust.Quota{CPUMillis: 1000, MemoryBytes: 1 << 30, PIDs: 1024}
	cals := map[string]calLite{
		master.String(): {State: StateRunning, Parent: trust.GenesisParent, Quota: trust.Quota{CPUMillis: 2000, MemoryBytes: 8 << 30, PIDs: 4096}},
		parent.String(): {State: StateRunning, Parent: master.String(), Quota: lim},
	}
	s := bookServer(t, cals)
	child := trust.Quota{CPUMillis: 250, MemoryBytes: 64 << 20, PIDs: 64}
	fire := func(n int, ask func(i int) admitAsk) (ok []int, refusals []string) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				serial, aerr := s.reserve(ask(i))
				mu.Lock()
				defer mu.Unlock()
				if aerr != nil {
					refusals = append(refusals, aerr.Msg)
					return
				}
				ok = append(ok, serial)
			})
		}
		wg.Wait()
		return
	}
	ok, refusals := fire(12, func(i int) admitAsk {
		return admitAsk{spawn: fmt.Sprintf("sp_q%d", i), parent: parent, quota: child, maxChildren: 100, maxCals: 100}
	})
	if len(ok) != 4 || len(refusals) != 8 || !strings.Contains(refusals[0], "quota cpu_millis: the limits under cal "+parent.String()) {
		t.Fatalf("12 spawns of 250m under 1000m (no overcommit): %d admitted (serials %v), refusals %q", len(ok), ok, refusals)
	}
	seen := map[int]bool{}
	for _, sr := range ok {
		if seen[sr] {
			t.Fatalf("serial %d reserved twice: %v", sr, ok)
		}
		seen[sr] = true
	}
	// The reservations count until released; released, they free the quota.
	for i := range 12 {
		s.release(fmt.Sprintf("sp_q%d", i))
	}
	ok, refusals = fire(10, func(i int) admitAsk {
		return admitAsk{spawn: fmt.Sprintf("sp_n%d", i), parent: parent, name: "same", quota: trust.Quota{CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, maxChildren: 100, maxCals: 100}
	})
	if len(ok) != 1 || !strings.Contains(strings.Join(refusals, "|"), `name: "same" is taken by spawn sp_n`) {
		t.Fatalf("10 spawns named alike: %d admitted, refusals %q", len(ok), refusals)
	}
	// max_cals counts Cals and reservations alike.
	ok, _ = fire(10, func(i int) admitAsk {
		return admitAsk{spawn: fmt.Sprintf("sp_m%d", i), parent: parent, quota: trust.Quota{CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, maxChildren: 100, maxCals: 5}
	})
	if len(ok) != 2 { // 2 Cals + 1 reservation (the named spawn) + 2 = 5
		t.Fatalf("max_cals 5: %d admitted, want 2", len(ok))
	}
}

// TestReserveSumsEveryAncestor: a reservation counts against the limits of
// every ancestor, not only the parent's.
func TestReserveSumsEveryAncestor(t *testing.T) {
	master, a, b := testID(t, 1), testID(t, 2), testID(t, 3)
	q := trust.Quota{CPUMillis: 1000, MemoryBytes: 8 << 30, PIDs: 8192}
	s := bookServer(t, map[string]calLite{
		master.String(): {State: StateRunning, Parent: trust.GenesisParent, Quota: q},
		a.String():      {State: StateRunning, Parent: master.String(), Quota: trust.Quota{CPUMillis: 600, MemoryBytes: 1 << 30, PIDs: 1024}},
		b.String():      {State: StateRunning, Parent: master.String(), Quota: trust.Quota{CPUMillis: 400, MemoryBytes: 1 << 30, PIDs: 1024}},
	})
	// master's subtree already holds 1000m (a and b): nothing more fits
	// under a, though a's own subtree is empty.
	_, aerr := s.reserve(admitAsk{spawn: "sp_1", parent: a, quota: trust.Quota{CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, maxChildren: 100, maxCals: 100})
	if aerr == nil || !strings.Contains(aerr.Msg, "the limits under cal "+master.String()) {
		t.Fatalf("got %v, want the master's subtree refusing", aerr)
	}
	// A revoked Cal frees its share.
	c := s.ns.byID[b.String()]
	c.State = StateRevoked
	s.ns.byID[b.String()] = c
	if _, aerr := s.reserve(admitAsk{spawn: "sp_2", parent: a, quota: trust.Quota{CPUMillis: 400, MemoryBytes: 16 << 20, PIDs: 16}, maxChildren: 100, maxCals: 100}); aerr != nil {
		t.Fatal(aerr)
	}
}
