package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
)

// copyBinary copies the calnet binary to a new path: a later control
// plane run from it stands for a binary upgrade.
func copyBinary(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "calnet-upgraded")
	in, err := os.Open(calnetBin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestReadoptAfterSIGKILL: a SIGKILL of `calnet up`
// leaves its Cals running; the next `up` (here from an upgraded binary)
// adopts them, the same processes with their uptime going on, instead of
// starting a second process per Cal; their output still reaches their log
// files; `calnet down` then stops every one of them.
func TestReadoptAfterSIGKILL(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := t.Context()
	sp, err := n.c.Spawn(ctx, client.SpawnRequest{Name: "survivor", Permissions: []string{"read", "spawn"}}, true)
	if err != nil || sp.State != "running" {
		t.Fatalf("spawn: %v %+v", err, sp)
	}
	gc, err := n.c.Spawn(ctx, client.SpawnRequest{Parent: sp.Cal, Name: "grandchild", Permissions: []string{"read"}, CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, true)
	if err != nil || gc.State != "running" {
		t.Fatalf("spawn: %v %+v", err, gc)
	}
	before := n.hostCheck(calnetBin)
	if len(before) != 3 {
		t.Fatalf("want 3 running cals before the crash, the host runs %d", len(before))
	}
	calsBefore, _ := n.c.List(ctx)

	n.stop(syscall.SIGKILL)
	for id, p := range before {
		if _, start, err := procStat(p.PID); err != nil || start != p.Start {
			t.Fatalf("cal %s (pid %d) did not outlive its control plane: %v", id, p.PID, err)
		}
	}
	// With no control plane the Cals keep serving: the child's local API
	// answers its workload.
	if code, self := n.local(sp.Cal, "GET", "/v1/self", nil); code != 200 || self["id"] != sp.Cal {
		t.Fatalf("the cal's local API with its control plane gone: %d %v", code, self)
	}

	upgraded := copyBinary(t)
	n.bin = upgraded
	n.start()
	var last []client.Cal
	waitFor(t, "every cal to re-register with the new control plane", 30*time.Second, func() bool {
		cals, err := n.c.List(ctx)
		if err != nil {
			return false
		}
		last = cals
		for _, c := range cals {
			if c.State != "running" || !c.Healthy {
				return false
			}
		}
		return len(cals) == 3
	}, func() {
		for _, c := range last {
			t.Logf("cal %s: %s healthy=%v pid %d: %s %s", c.ID, c.State, c.Healthy, c.PID, c.LastError, c.Degraded)
		}
		b, _ := os.ReadFile(n.log.Name())
		t.Logf("calnet up:\n%s", b)
	})
	after := n.hostCheck(calnetBin, upgraded)
	for id, p := range before {
		if after[id] != p {
			t.Errorf("cal %s was not adopted: before %+v, after %+v", id, p, after[id])
		}
	}
	for _, c := range calsBefore {
		now, err := n.c.Get(ctx, c.ID)
		if err != nil || now.Restarts != c.Restarts || now.PID != c.PID {
			t.Errorf("cal %s: restarts %d -> %d, pid %d -> %d (%v)", c.ID, c.Restarts, now.Restarts, c.PID, now.PID, err)
		}
	}
	// The Cal's output still reaches its log file: it logs its
	// re-registration with the new control plane.
	waitFor(t, "the adopted cal's re-registration in its log", 10*time.Second, func() bool {
		var b strings.Builder
		err := n.c.Logs(ctx, sp.Cal, false, &b)
		return err == nil && strings.Contains(b.String(), "re-registered with a new control plane")
	})
	// The adopted Cals still work: the adopted Master blesses a child.
	if sp2, err := n.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 10, MemoryBytes: 16 << 20, PIDs: 16}, true); err != nil || sp2.State != "running" {
		t.Fatalf("spawn from an adopted cal: %v %+v", err, sp2)
	}

	ids := n.networkIDs()
	if r := n.cli("down"); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	n.wait()
	n.hostClean(ids, calnetBin, upgraded)
}

// TestCrashTrial runs a 100-spawn burst against a real `calnet up` and
// SIGKILLs the control plane at 20 random points of it, restarting it each
// time; then it checks the host, not only the registry: exactly one
// process and one group per controller for each live Cal, nothing for the
// others, the ledger verifies and agrees with the registry, and every
// acknowledged spawn is running or recorded failed. `calnet down` then
// leaves nothing behind.
func TestCrashTrial(t *testing.T) {
	needRoot(t)
	const spawns, kills = 100, 20
	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	ctx := t.Context()
	master := n.master()
	m0 := n.hostCheck(calnetBin)[master]

	cl := client.New(n.addr, readToken(t, data)) // survives the restarts
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // spawn ID -> idempotency key
		rejected int
	)
	// The killer hands out the burst's requests in 20 random shares and
	// kills the control plane at a random point after each share: spawns
	// are being admitted, signed, deployed and registered at every kill.
	// Half the requests wait for their Cal to run, half return at
	// admission (acknowledged, deploying in the background).
	keys := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range keys {
				key := fmt.Sprint("burst-", i)
				deadline := time.Now().Add(90 * time.Second)
				for time.Now().Before(deadline) {
					rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					sp, err := cl.Spawn(rctx, client.SpawnRequest{Permissions: []string{"read"}, MemoryBytes: 16 << 20, CPUMillis: 10, PIDs: 32, IdempotencyKey: key}, i%2 == 1)
					cancel()
					var ae *client.Error
					if err == nil {
						mu.Lock()
						acked[sp.ID] = key
						mu.Unlock()
						break
					}
					if asAPIError(err, &ae) && ae.Status != 429 && ae.Status/100 == 4 {
						mu.Lock()
						rejected++
						mu.Unlock()
						break
					}
					time.Sleep(20 * time.Millisecond) // unacknowledged: retry with the same key
				}
			}
		})
	}
	burstDone := make(chan struct{})
	go func() { wg.Wait(); close(burstDone) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	next := 0
	for k := range kills {
		share := (spawns - next) / (kills - k)
		if k < kills-1 {
			share = rng.IntN(2*share + 1)
		}
		for range share {
			keys <- next
			next++
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		n.stop(syscall.SIGKILL)
		t0 := time.Now()
		n.start()
		mu.Lock()
		t.Logf("kill %d/%d after %d requests handed out, %d acknowledged; up again in %v", k+1, kills, next, len(acked), time.Since(t0).Round(time.Millisecond))
		mu.Unlock()
	}
	for ; next < spawns; next++ {
		keys <- next
	}
	close(keys)
	select {
	case <-burstDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("the burst did not end")
	}
	n.waitSettled(2 * time.Minute)

	procs := n.hostCheck(calnetBin)
	if got := procs[master]; got != m0 {
		t.Errorf("the Master Cal did not live through the crashes: before %+v, after %+v", m0, got)
	}
	running, failed := 0, 0
	reasons := map[string]int{}
	for id, key := range acked {
		sp, err := n.c.GetSpawn(ctx, id)
		if err != nil {
			t.Errorf("acknowledged spawn %s (%s) is lost: %v", id, key, err)
			continue
		}
		switch sp.State {
		case "running":
			running++
			if procs[sp.Cal].PID == 0 {
				c, err := n.c.Get(ctx, sp.Cal)
				t.Errorf("acknowledged spawn %s says running but no process runs cal %s: %+v %v", id, sp.Cal, c, err)
			}
		case "failed":
			failed++
			reasons[sp.Reason]++
		default:
			t.Errorf("acknowledged spawn %s ended %s: %s", id, sp.State, sp.Reason)
		}
	}
	t.Logf("%d spawns acknowledged (%d running, %d failed), %d rejected; %d cals run; failures: %v", len(acked), running, failed, rejected, len(procs), reasons)
	// Spawn records and Cal records agree: a Cal runs for a spawn that
	// says running, and for no spawn that says it failed.
	all, err := n.c.Spawns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cals, _ := n.c.List(ctx)
	calState := map[string]string{}
	for _, c := range cals {
		calState[c.ID] = c.State
		if c.State == "running" && c.Spawn != "" {
			if sp, err := n.c.GetSpawn(ctx, c.Spawn); err != nil || sp.State != "running" {
				t.Errorf("cal %s runs, but its spawn %s is %+v (%v)", c.ID, c.Spawn, sp, err)
			}
		}
	}
	for _, sp := range all {
		if sp.State != "running" && sp.Cal != "" && calState[sp.Cal] == "running" {
			t.Errorf("spawn %s is %s (%s), but its cal %s runs", sp.ID, sp.State, sp.Reason, sp.Cal)
		}
	}
	if running == 0 {
		t.Fatal("no acknowledged spawn ran: the trial tested nothing")
	}

	ids := n.networkIDs()
	if r := n.cli("down"); r.code != 0 {
		t.Fatalf("down: %+v", r)
	}
	n.wait()
	n.hostClean(ids, calnetBin)
}
