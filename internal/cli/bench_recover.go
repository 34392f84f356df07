package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/driver/process"
)

// benchRecoverResult is what `calnet bench recover` measured.
type benchRecoverResult struct {
	Machine string `json:"machine"`
	Cals    int    `json:"cals"`
	Rounds  int    `json:"rounds"`
	// Adopt: SIGKILL of `calnet up`, then `calnet up` again with the Cals
	// still running; Restart: the same with every Cal killed too, so that
	// recovery starts them all (what every restart did before adoption).
	AdoptAPI      latency `json:"adopt_api"`
	AdoptAll      latency `json:"adopt_all_registered"`
	RestartAPI    latency `json:"restart_api"`
	RestartAll    latency `json:"restart_all_registered"`
	Kept          int     `json:"kept"`     // Cals with the same pid and start time after every adoption round
	Observed      int     `json:"observed"` // Cals checked
	UptimeSeconds float64 `json:"uptime_s"` // the Master's uptime at the end, across every adoption round
}

func (a *app) benchRecoverCmd() *cobra.Command {
	var cals, rounds int
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "SIGKILL `calnet up` with N Cals running; time its return adopting them vs starting them all",
		Long: `Starts ` + "`calnet up`" + ` (this binary) on a temporary data directory, spawns --cals
Cals, then for --rounds rounds: SIGKILL of the control plane and ` + "`calnet up`" + ` again,
timing until the API answers (it does once recovery is done) and until every
Cal has registered with the new control plane. Adopt rounds leave the Cals
running (the new control plane adopts them); restart rounds kill every Cal
too, so that recovery starts them all. It checks that adoption kept every
Cal's pid and start time (uptime continues).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := benchRecover(ctx, cals, rounds)
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "%d cals + the Master, %d rounds each\n", r.Cals, r.Rounds)
				fmt.Fprintf(w, "adopt   (Cals kept running):  API back %s; every Cal registered %s\n", r.AdoptAPI, r.AdoptAll)
				fmt.Fprintf(w, "restart (every Cal started):  API back %s; every Cal registered %s\n", r.RestartAPI, r.RestartAll)
				fmt.Fprintf(w, "uptime: %d of %d Cals kept their pid and start time through %d crashes; the Master has run %.1f s\n", r.Kept, r.Observed, r.Rounds, r.UptimeSeconds)
			})
		},
	}
	cmd.Flags().IntVar(&cals, "cals", 100, "Cals to run")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "rounds of each kind")
	return cmd
}

// benchUp is a `calnet up` subprocess for a benchmark.
type benchUp struct {
	bin, dir, addr string
	cmd            *exec.Cmd
	log            *os.File
	c              *client.Client
}

func (u *benchUp) start() error {
	raddr, err := freeLocalAddr()
	if err != nil {
		return err
	}
	u.cmd = exec.Command(u.bin, "up", "--data", u.dir, "--addr", u.addr, "--router", raddr, "--dns", "",
		"--max-cpu-pressure", "101", "--spawn-rate", "1000", "--spawn-burst", "1000", "--parent-spawn-rate", "1000", "--parent-spawn-burst", "1000")
	u.cmd.Stdout, u.cmd.Stderr = u.log, u.log
	return u.cmd.Start()
}

// waitAPI waits until the API answers (after recovery).
func (u *benchUp) waitAPI(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if u.c == nil {
			if tok, err := client.ReadTokenFile(controlplane.TokenFile(u.dir)); err == nil {
				u.c = client.New(u.addr, tok)
			}
		}
		if u.c != nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := u.c.Status(cctx)
			cancel()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("calnet up did not answer within 60s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitAll waits until n Cals run and are healthy (registered with this
// control plane), none deploying.
func (u *benchUp) waitAll(ctx context.Context, n int) error {
	deadline := time.Now().Add(120 * time.Second)
	for {
		cs, err := u.c.List(ctx)
		ok := 0
		for _, c := range cs {
			if c.State == "running" && c.Healthy {
				ok++
			}
		}
		if err == nil && ok >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d cals registered within 120s", ok, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill kills `calnet up` and waits for it. One that has exited already
// is done; a kill that fails otherwise is an error, not an endless wait.
func (u *benchUp) kill() error {
	if err := u.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill calnet up (pid %d): %w", u.cmd.Process.Pid, err)
	}
	_ = u.cmd.Wait() // its status is the kill's
	return nil
}

func benchRecover(ctx context.Context, n, rounds int) (_ *benchRecoverResult, err error) {
	dir, err := os.MkdirTemp("", "calnet-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeLocalAddr()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	u := &benchUp{bin: bin, dir: filepath.Join(dir, "data"), addr: addr, log: log}
	if err := u.start(); err != nil {
		return nil, err
	}
	defer func() { // calnet down, whatever happened; killed if that fails
		wait := 60 * time.Second
		if u.c != nil {
			sctx, cancel := context.WithTimeout(context.Background(), wait)
			if u.c.Shutdown(sctx) != nil {
				wait = 0
			}
			cancel()
		}
		done := make(chan struct{})
		go func() {
			_ = u.cmd.Wait() // how it ended is not the benchmark's result
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(wait):
			if kerr := u.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
				err = errors.Join(err, fmt.Errorf("kill calnet up (pid %d): %w", u.cmd.Process.Pid, kerr))
				return
			}
			<-done
		}
	}()
	if err := u.waitAPI(ctx); err != nil {
		return nil, err
	}
	if err := u.waitAll(ctx, 1); err != nil {
		return nil, err
	}
	bn := &benchNet{c: u.c}
	if err := bn.fill(ctx, n, 8, func(int) client.SpawnRequest {
		return client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 20, MemoryBytes: 24 << 20, PIDs: 32}
	}); err != nil {
		return nil, err
	}
	snapshot := func() (map[string][2]uint64, error) {
		cs, err := u.c.List(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string][2]uint64{}
		for _, c := range cs {
			if c.State == "running" {
				st, err := process.StartTime(c.PID)
				if err != nil {
					return nil, fmt.Errorf("cal %s: %w", c.ID, err)
				}
				out[c.ID] = [2]uint64{uint64(c.PID), st}
			}
		}
		return out, nil
	}
	first, err := snapshot()
	if err != nil {
		return nil, err
	}
	r := &benchRecoverResult{Machine: machine(), Cals: n, Rounds: rounds, Observed: len(first)}
	var adoptAPI, adoptAll, restartAPI, restartAll []time.Duration
	for range rounds {
		if err := u.kill(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := u.start(); err != nil {
			return nil, err
		}
		if err := u.waitAPI(ctx); err != nil {
			return nil, err
		}
		adoptAPI = append(adoptAPI, time.Since(t0))
		if err := u.waitAll(ctx, n+1); err != nil {
			return nil, err
		}
		adoptAll = append(adoptAll, time.Since(t0))
	}
	now, err := snapshot()
	if err != nil {
		return nil, err
	}
	for id, p := range first {
		if now[id] == p {
			r.Kept++
		}
	}
	if m, err := u.c.Status(ctx); err == nil {
		if c, err := u.c.Get(ctx, m.Master); err == nil {
			if st, err := process.StartTime(c.PID); err == nil {
				r.UptimeSeconds = uptimeOf(st)
			}
		}
	}
	for range rounds {
		cs, err := u.c.List(ctx)
		if err != nil {
			return nil, err
		}
		if err := u.kill(); err != nil {
			return nil, err
		}
		for _, c := range cs { // the Cals die with it, as they did before adoption
			if c.PID <= 0 {
				continue
			}
			if err := syscall.Kill(c.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return nil, fmt.Errorf("kill cal %s (pid %d): %w", c.ID, c.PID, err)
			}
		}
		t0 := time.Now()
		if err := u.start(); err != nil {
			return nil, err
		}
		if err := u.waitAPI(ctx); err != nil {
			return nil, err
		}
		restartAPI = append(restartAPI, time.Since(t0))
		if err := u.waitAll(ctx, n+1); err != nil {
			return nil, err
		}
		restartAll = append(restartAll, time.Since(t0))
	}
	r.AdoptAPI, r.AdoptAll = quantiles(adoptAPI), quantiles(adoptAll)
	r.RestartAPI, r.RestartAll = quantiles(restartAPI), quantiles(restartAll)
	return r, nil
}

// uptimeOf is how long ago a process started at start ticks after boot.
func uptimeOf(start uint64) float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	up, _ := strconv.ParseFloat(f[0], 64)
	const hz = 100 // USER_HZ on Linux
	return up - float64(start)/hz
}
