package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/faultcheck"
)

// TestFaultRun is the randomized fault test of issue 12 on one server: a
// workload of spawns (some nested, some waiting for their Cal) and
// revocations through the real API of a real `calnet up`, while a fault
// injector SIGKILLs and restarts it, SIGSTOPs and SIGCONTs it, and stops
// and restarts it cleanly, at random. A sampler reads the host's Cal
// processes all along and a poller the ledger's signed checkpoints; then
// package faultcheck checks the History against the host, the registry
// and the ledger (see its doc for the properties).
//
// Every random choice comes from the seed it prints; CALNET_FAULT_SEED
// replays one (the machine's timing still varies), CALNET_FAULT_DURATION
// (a Go duration, default 20s) makes it a soak (scripts/soak-faults.sh).
func TestFaultRun(t *testing.T) {
	needRoot(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CALNET_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		must(t, err)
		seed = v
	}
	dur := 20 * time.Second
	if s := os.Getenv("CALNET_FAULT_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		must(t, err)
		dur = d
	}
	t.Logf("fault run: seed %d (CALNET_FAULT_SEED=%d replays it), %v", seed, seed, dur)

	data := filepath.Join(t.TempDir(), "data")
	n := up(t, data)
	master := n.master()
	cl := client.New(n.addr, readToken(t, data)) // the same address across restarts
	srv := faultcheck.Server{Name: "s1", Client: cl, APIAddr: n.addr, NetworkDir: filepath.Join(data, "network")}
	host := &faultcheck.Sampler{Bins: []string{calnetBin}}
	cps := &faultcheck.Checkpoints{Servers: []faultcheck.Server{srv}}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	for _, run := range []func(context.Context) error{host.Run, cps.Run} {
		watchers.Go(func() {
			if err := run(watchCtx); err != nil {
				t.Errorf("watcher: %v", err)
			}
		})
	}
	defer func() { stopWatch(); watchers.Wait() }()

	hist := faultcheck.NewHistory(nil)
	w := &workload{cl: cl, hist: hist, master: master, parents: []string{master}}
	deadline := time.Now().Add(dur)
	var workers sync.WaitGroup
	for i := range 2 {
		rng := rand.New(rand.NewPCG(seed, uint64(i+1)))
		workers.Go(func() { w.run(t.Context(), rng, i, deadline) })
	}

	// The fault injector.
	frng := rand.New(rand.NewPCG(seed, 0))
	faults := map[string]int{}
	var stopped bool
	defer func() {
		if stopped && n.cmd != nil { // never leave it stopped for the cleanup
			_ = n.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(300+frng.IntN(1700)) * time.Millisecond)
		if !time.Now().Before(deadline) {
			break
		}
		switch k := frng.IntN(10); {
		case k < 4:
			faults["sigkill"]++
			n.stop(syscall.SIGKILL)
			n.start()
		case k < 8:
			faults["sigstop"]++
			must(t, n.cmd.Process.Signal(syscall.SIGSTOP))
			stopped = true
			time.Sleep(time.Duration(100+frng.IntN(1900)) * time.Millisecond)
			must(t, n.cmd.Process.Signal(syscall.SIGCONT))
			stopped = false
		default:
			faults["restart"]++
			n.stop(syscall.SIGTERM)
			n.start()
		}
	}
	workers.Wait()
	n.waitSettled(3 * time.Minute)
	must(t, host.Sample())
	stopWatch()
	watchers.Wait()

	rep, err := faultcheck.Check(t.Context(), faultcheck.Input{Servers: []faultcheck.Server{srv}, History: hist, Host: host, Checkpoints: cps, StopGrace: 30 * time.Second})
	must(t, err)
	t.Logf("faults %v; %s", faults, rep)
	unacked := map[string]int{}
	for _, op := range hist.Ops() {
		if !op.Acked {
			unacked[op.Kind+": "+op.Err]++
		}
	}
	t.Logf("unacknowledged operations: %v", unacked)
	fmt.Printf("FAULTRUN seed=%d duration=%v faults=%v ops=%d acked=%d spawns=%d revokes=%d samples=%d processes=%d cals=%d checkpoints=%d ledger=%d slowest_stop=%v violations=%d\n",
		seed, dur, faults, rep.Ops, rep.Acked, rep.AckedSpawns, rep.AckedRevokes, rep.Samples, rep.Processes, rep.Cals, rep.Checkpoints, rep.LedgerSize, rep.SlowestStop.Round(time.Millisecond), len(rep.Violations))
	if len(rep.Violations) > 0 {
		t.Errorf("the checker found %d violations (seed %d)", len(rep.Violations), seed)
	}
}

// workload issues spawns and revocations and records them in hist.
type workload struct {
	cl     *client.Client
	hist   *faultcheck.History
	master string

	mu      sync.Mutex
	parents []string // Cals that may spawn (the Master and acked spawners)
	live    []string // acknowledged Cals that may be revoked
	keys    int
}

func (w *workload) run(ctx context.Context, rng *rand.Rand, worker int, deadline time.Time) {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		w.mu.Lock()
		revoke := len(w.live) > 0 && rng.IntN(10) < 3
		var target string
		if revoke {
			i := rng.IntN(len(w.live))
			target = w.live[i]
			w.live = append(w.live[:i], w.live[i+1:]...)
		} else {
			target = w.parents[rng.IntN(len(w.parents))]
		}
		w.keys++
		key := fmt.Sprintf("w%d-%d", worker, w.keys)
		w.mu.Unlock()
		if revoke {
			w.revoke(ctx, target)
		} else {
			w.spawn(ctx, rng, target, key)
		}
	}
}

// spawn asks for a child of parent, retrying an unanswered request with
// the same idempotency key (as a client should) until the run's end.
func (w *workload) spawn(ctx context.Context, rng *rand.Rand, parent, key string) {
	perms := []string{"read"}
	spawner := rng.IntN(4) == 0
	if spawner {
		perms = append(perms, "spawn")
	}
	wait := rng.IntN(2) == 0
	req := client.SpawnRequest{Parent: parent, Permissions: perms, MemoryBytes: 16 << 20, CPUMillis: 10, PIDs: 32, IdempotencyKey: key}
	i := w.hist.Begin(faultcheck.OpSpawn, parent, key)
	var err error
	// An unanswered request is retried for as long as a restart may take.
	for giveUp := time.Now().Add(time.Minute); time.Now().Before(giveUp) && ctx.Err() == nil; {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var sp *client.Spawn
		sp, err = w.cl.Spawn(rctx, req, wait)
		cancel()
		if err == nil {
			w.hist.Ack(i, sp.ID, sp.Cal, sp.State)
			if sp.Cal != "" && (sp.State == "running" || sp.State == "deploying" || sp.State == "admitted") {
				w.mu.Lock()
				w.live = append(w.live, sp.Cal)
				if spawner && sp.State == "running" {
					w.parents = append(w.parents, sp.Cal)
				}
				w.mu.Unlock()
			}
			return
		}
		var ae *client.Error
		if asAPIError(err, &ae) && ae.Status/100 == 4 && ae.Status != 429 {
			// Refused (a parent revoked, or deploying again after a
			// restart; a limit): not retried; the next operation waits a
			// little, as a client backs off. A revoked parent (itself or
			// through an ancestor) is not asked again.
			if strings.Contains(ae.Message, "is revoked") {
				w.forget(parent)
			}
			time.Sleep(200 * time.Millisecond)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.hist.Fail(i, err)
}

func (w *workload) revoke(ctx context.Context, id string) {
	i := w.hist.Begin(faultcheck.OpRevoke, id, "")
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := w.cl.Revoke(rctx, id, "fault run")
	if err != nil {
		w.hist.Fail(i, err)
		return
	}
	w.hist.Ack(i, "", id, "revoked")
	w.forget(id)
}

// forget stops spawning under a revoked Cal.
func (w *workload) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.parents = slices.DeleteFunc(w.parents, func(p string) bool { return p == id && p != w.master })
}
