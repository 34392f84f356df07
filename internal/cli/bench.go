package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/driver/process"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/trust"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure calnet on this machine (spawn latency, idle footprint, healing)",
		Long: `Each benchmark starts its own control plane on a temporary data directory
and a free local port, drives it through the API like any client, prints the
numbers, and cleans up. They need root (isolated Cals).`,
	}
	var profile string
	var stop func()
	cmd.PersistentFlags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of the control plane to this file")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := a.checkOutput(); err != nil { // cobra runs only the nearest PersistentPreRunE
			return err
		}
		if profile == "" {
			return nil
		}
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
		return nil
	}
	cmd.PersistentPostRun = func(*cobra.Command, []string) {
		if stop != nil {
			stop()
		}
	}
	cmd.AddCommand(a.benchSpawnCmd(), a.benchIdleCmd(), a.benchHealCmd(), a.benchRevokeCmd(), a.benchRecoverCmd(), a.benchTreeCmd())
	return cmd
}

// benchNet is an in-process control plane for a benchmark.
type benchNet struct {
	c      *client.Client
	cancel context.CancelFunc
	done   chan error
	dir    string
	master string
	addr   string
	token  string // the admin credential (printed by bench idle --hold)
}

// startBenchNet starts a control plane whose Master Cal has quota (nil:
// the default, this host's cores and memory).
func startBenchNet(ctx context.Context, quota *trust.Quota) (*benchNet, error) {
	dir, err := os.MkdirTemp("", "calnet-bench-")
	if err != nil {
		return nil, err
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeLocalAddr()
	if err != nil {
		return nil, err
	}
	raddr, err := freeLocalAddr()
	if err != nil {
		return nil, err
	}
	lim := controlplane.DefaultLimits
	lim.MaxCals, lim.SpawnRate, lim.SpawnBurst, lim.ParentRate, lim.ParentBurst = 5000, 1e6, 1e6, 1e6, 1e6
	lim.MaxCPUPressure = 101 // benchmarks saturate the CPU on purpose
	ctx, cancel := context.WithCancel(ctx)
	srv, err := controlplane.Open(ctx, controlplane.Config{
		DataDir: dir, Addr: addr, RouterAddr: raddr, Binary: bin, Driver: process.New(benchCgroup, controlplane.InstancesDir(dir)), Features: sandbox.AllFeatures,
		Limits: lim, Logger: slog.New(slog.DiscardHandler), MasterQuota: quota,
	})
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	b := &benchNet{cancel: cancel, done: make(chan error, 1), dir: dir, addr: addr}
	go func() { b.done <- srv.Run(ctx) }()
	tok, _ := client.ReadTokenFile(controlplane.TokenFile(dir))
	b.c, b.token = client.New(addr, tok), tok
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := b.c.Status(ctx)
		if err == nil && st.Cals["running"] == 1 {
			b.master = st.Master
			return b, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(errors.New("bench control plane did not start"), b.close())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// close stops the control plane and removes its directory; it returns
// how the control plane's Run ended.
func (b *benchNet) close() error {
	b.cancel()
	err := <-b.done
	os.RemoveAll(b.dir)
	if err != nil {
		return fmt.Errorf("bench control plane: %w", err)
	}
	return nil
}

// fill spawns n Cals, parallel at a time, and fails if any spawn does.
func (b *benchNet) fill(ctx context.Context, n, parallel int, req func(i int) client.SpawnRequest) error {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sp, err := b.c.Spawn(ctx, req(i), true)
			if err == nil && sp.State != "running" {
				err = fmt.Errorf("%s: %s", sp.State, sp.Reason)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d spawns failed, first: %v", len(errs), n, errs[0])
	}
	return nil
}

func freeLocalAddr() (string, error) {
	l, err := netListen()
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// machine describes where a benchmark ran.
func machine() string {
	return fmt.Sprintf("%d CPUs, %s/%s, %s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format(time.RFC3339))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// latency is the p50 and p99 of a sample, in milliseconds.
type latency struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}

func quantiles(ds []time.Duration) latency {
	return latency{N: len(ds), P50MS: ms(percentile(ds, .5)), P99MS: ms(percentile(ds, .99))}
}

func (l latency) String() string { return fmt.Sprintf("p50 %.1f ms  p99 %.1f ms", l.P50MS, l.P99MS) }

// benchSpawnResult is what `calnet bench spawn` measured.
type benchSpawnResult struct {
	Machine          string  `json:"machine"`
	N                int     `json:"n"`
	Parallel         int     `json:"parallel"`
	ForkExec         latency `json:"fork_exec"`
	Sequential       latency `json:"sequential"`
	SequentialServer latency `json:"sequential_server"`
	AtOnce           latency `json:"at_once"`
	AtOnceWallMS     float64 `json:"at_once_wall_ms"`
	Failed           int     `json:"failed"`
	Ratio            float64 `json:"ratio_sequential_to_fork_exec"`
}

// benchIdleResult is what `calnet bench idle` measured.
type benchIdleResult struct {
	Machine             string  `json:"machine"`
	Cals                int     `json:"cals"`
	Parallel            int     `json:"parallel"`
	FillMS              float64 `json:"fill_ms"`
	Measured            int     `json:"measured"`
	RSSPerCalMB         float64 `json:"rss_per_cal_mb"`
	PSSPerCalMB         float64 `json:"pss_per_cal_mb"`
	Seconds             int     `json:"seconds"`
	CPUPercentOfOneCore float64 `json:"cpu_percent_of_one_core"`
	Serving             string  `json:"serving,omitempty"`
	Token               string  `json:"token,omitempty"`
}

// benchHealResult is what `calnet bench heal` measured.
type benchHealResult struct {
	Machine string  `json:"machine"`
	N       int     `json:"n"`
	Healed  latency `json:"sigkill_to_operational"`
}

// benchRevokeResult is what `calnet bench revoke` measured.
type benchRevokeResult struct {
	Machine    string  `json:"machine"`
	Cals       int     `json:"cals"`
	APIMS      float64 `json:"api_ms"`
	Told       int     `json:"told"`
	ToldP50MS  float64 `json:"told_p50_ms"`
	ToldLastMS float64 `json:"told_last_ms"`
	GoneMS     float64 `json:"gone_ms"`
	// CPU spent from the request until every Cal exited.
	ControlPlaneCPUMS float64 `json:"control_plane_cpu_ms"`
	CalsCPUMS         float64 `json:"cals_cpu_ms"`
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func (a *app) benchSpawnCmd() *cobra.Command {
	var n, parallel int
	cmd := &cobra.Command{
		Use:   "spawn",
		Short: "Spawn request -> operational, sequential and all at once, against bare fork/exec of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			// Baseline: fork/exec of the same binary until it has printed.
			bin, _ := os.Executable()
			var base []time.Duration
			for range n {
				t0 := time.Now()
				if err := exec.Command(bin, "version").Run(); err != nil {
					return err
				}
				base = append(base, time.Since(t0))
			}
			bn, err := startBenchNet(ctx, &trust.Quota{CPUMillis: 1 << 19, MemoryBytes: 1 << 45, PIDs: 1 << 21, DiskBytes: 1 << 45})
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, bn.close()) }()
			req := client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 200, MemoryBytes: 32 << 20}
			var seq, seqServer []time.Duration
			for range n {
				t0 := time.Now()
				sp, err := bn.c.Spawn(ctx, req, true)
				if err != nil || sp.State != "running" {
					return fmt.Errorf("sequential spawn: %v %+v", err, sp)
				}
				seq = append(seq, time.Since(t0))
				seqServer = append(seqServer, sp.OperationalAt.Sub(sp.RequestedAt))
			}
			var par []time.Duration
			var mu sync.Mutex
			var failed int
			why := map[string]int{} // reasons of failed spawns
			var wg sync.WaitGroup
			start := time.Now()
			for range parallel {
				wg.Go(func() {
					t0 := time.Now()
					sp, err := bn.c.Spawn(ctx, req, true)
					mu.Lock()
					defer mu.Unlock()
					if err != nil || sp.State != "running" {
						failed++
						if err == nil {
							err = fmt.Errorf("%s: %s", sp.State, sp.Reason)
						}
						why[err.Error()]++
						return
					}
					par = append(par, time.Since(t0))
				})
			}
			wg.Wait()
			wall := time.Since(start)
			r := benchSpawnResult{Machine: machine(), N: n, Parallel: parallel,
				ForkExec: quantiles(base), Sequential: quantiles(seq), SequentialServer: quantiles(seqServer), AtOnce: quantiles(par),
				AtOnceWallMS: ms(wall), Failed: failed, Ratio: float64(percentile(seq, .5)) / float64(percentile(base, .5))}
			if err := a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "baseline fork/exec of calnet to exit (n=%d):      %s\n", n, r.ForkExec)
				fmt.Fprintf(w, "spawn -> operational, sequential, client (n=%d): %s\n", n, r.Sequential)
				fmt.Fprintf(w, "spawn -> operational, sequential, server (n=%d): %s\n", n, r.SequentialServer)
				fmt.Fprintf(w, "spawn -> operational, %d at once:               %s  all done in %s, %d failed\n", parallel, r.AtOnce, fmtDur(wall), failed)
				fmt.Fprintf(w, "ratio sequential p50 / fork-exec p50: %.1fx\n", r.Ratio)
				for reason, n := range why {
					fmt.Fprintf(w, "failed %d: %s\n", n, reason)
				}
			}); err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "n", 200, "sequential spawns")
	cmd.Flags().IntVar(&parallel, "parallel", 100, "spawns at once")
	return cmd
}

// procStat returns utime+stime in clock ticks of pid.
func procStat(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// memOf returns RSS and PSS (bytes) from smaps_rollup.
func memOf(pid int) (rss, pss int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return
}

func (a *app) benchIdleCmd() *cobra.Command {
	var cals, seconds, parallel int
	var hold bool
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Run many idle Cals: RSS and PSS per Cal, and their total CPU while idle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			bn, err := startBenchNet(ctx, &trust.Quota{CPUMillis: 1 << 19, MemoryBytes: 1 << 45, PIDs: 1 << 21, DiskBytes: 1 << 45})
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, bn.close()) }()
			req := client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 200, MemoryBytes: 32 << 20}
			t0 := time.Now()
			if err := bn.fill(ctx, cals, parallel, func(int) client.SpawnRequest { return req }); err != nil {
				return err
			}
			fill := time.Since(t0)
			time.Sleep(5 * time.Second) // let start-up settle
			list, err := bn.c.List(ctx)
			if err != nil {
				return err
			}
			var pids []int
			for _, c := range list {
				if c.Depth == 2 && c.State == "running" {
					pids = append(pids, c.PID)
				}
			}
			var rss, pss int64
			before := map[int]int64{}
			for _, p := range pids {
				r, s := memOf(p)
				rss, pss = rss+r, pss+s
				before[p], _ = procStat(p)
			}
			time.Sleep(time.Duration(seconds) * time.Second)
			var ticks int64
			for _, p := range pids {
				t, err := procStat(p)
				if err == nil {
					ticks += t - before[p]
				}
			}
			hz := 100.0 // USER_HZ on Linux
			cpu := float64(ticks) / hz / float64(seconds) * 100
			k := float64(max(len(pids), 1))
			r := benchIdleResult{Machine: machine(), Cals: cals, Parallel: parallel, FillMS: ms(fill), Measured: len(pids),
				RSSPerCalMB: float64(rss) / k / 1e6, PSSPerCalMB: float64(pss) / k / 1e6, Seconds: seconds, CPUPercentOfOneCore: cpu}
			if hold {
				r.Serving, r.Token = "http://"+bn.addr, bn.token
			}
			if err := a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "spawned %d cals in %s (%d at a time)\n", cals, fill.Round(time.Millisecond), parallel)
				fmt.Fprintf(w, "idle cals measured: %d\n", r.Measured)
				fmt.Fprintf(w, "RSS per cal: %.1f MB   PSS per cal: %.1f MB\n", r.RSSPerCalMB, r.PSSPerCalMB)
				fmt.Fprintf(w, "CPU of all idle cals over %ds: %.2f%% of one core\n", seconds, cpu)
				if hold {
					fmt.Fprintf(w, "serving %s token %s\n", r.Serving, r.Token)
				}
			}); err != nil {
				return err
			}
			if len(pids) < cals {
				return fmt.Errorf("only %d of %d idle cals were running to measure", len(pids), cals)
			}
			if hold {
				// Keep serving (the dashboard at 1,000 Cals: web/bench/thousand.mjs) until stopped.
				<-ctx.Done()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&hold, "hold", false, "after measuring, keep the network serving (API and dashboard) until interrupted")
	cmd.Flags().IntVar(&cals, "cals", 1000, "idle cals to run")
	cmd.Flags().IntVar(&seconds, "seconds", 60, "idle period to measure CPU over")
	cmd.Flags().IntVar(&parallel, "parallel", 16, "spawns in flight while filling the network")
	return cmd
}

func (a *app) benchHealCmd() *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "heal",
		Short: "SIGKILL a Cal, time until it is operational again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			bn, err := startBenchNet(ctx, &trust.Quota{CPUMillis: 4000, MemoryBytes: 4 << 30, PIDs: 4096, DiskBytes: 1 << 40})
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, bn.close()) }()
			// One kill per Cal: repeated kills of one Cal meet the
			// supervisor's backoff, which is a different measurement.
			var ds []time.Duration
			for range n {
				sp, err := bn.c.Spawn(ctx, client.SpawnRequest{Permissions: []string{"read"}, CPUMillis: 100, MemoryBytes: 32 << 20}, true)
				if err != nil {
					return err
				}
				c, err := bn.c.Get(ctx, sp.Cal)
				if err != nil {
					return err
				}
				t0 := time.Now()
				if err := syscall.Kill(c.PID, syscall.SIGKILL); err != nil {
					return fmt.Errorf("kill cal %s (pid %d): %w", c.ID, c.PID, err)
				}
				for {
					c2, err := bn.c.Get(ctx, sp.Cal)
					if err == nil && c2.State == "running" && c2.Healthy && c2.PID != c.PID {
						break
					}
					if time.Since(t0) > 10*time.Second {
						return errors.New("the cal did not come back within 10s")
					}
					time.Sleep(2 * time.Millisecond)
				}
				ds = append(ds, time.Since(t0))
			}
			r := benchHealResult{Machine: machine(), N: n, Healed: quantiles(ds)}
			return a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "SIGKILL -> operational again (n=%d): %s\n", n, r.Healed)
			})
		},
	}
	cmd.Flags().IntVar(&n, "n", 20, "kills")
	return cmd
}

func netListen() (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}

func (a *app) benchRevokeCmd() *cobra.Command {
	var cals int
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a subtree of many Cals: time until every one has been told and has stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			bn, err := startBenchNet(ctx, &trust.Quota{CPUMillis: 1 << 19, MemoryBytes: 1 << 45, PIDs: 1 << 21, DiskBytes: 1 << 45})
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, bn.close()) }()
			big := client.SpawnRequest{Permissions: []string{"spawn", "read"}, CPUMillis: 1 << 14, MemoryBytes: 1 << 37, PIDs: 1 << 14, DiskBytes: 1 << 37}
			root, err := bn.c.Spawn(ctx, client.SpawnRequest{Name: "root", Permissions: big.Permissions, CPUMillis: 1 << 18, MemoryBytes: 1 << 42, PIDs: 1 << 20, DiskBytes: 1 << 42}, true)
			if err != nil {
				return err
			}
			// Cals get at most 100 children: fan out through groups.
			var parents []string
			for g := 0; g*99 < cals; g++ {
				big.Parent = root.Cal
				sp, err := bn.c.Spawn(ctx, big, true)
				if err != nil || sp.State != "running" {
					return fmt.Errorf("group: %v %+v", err, sp)
				}
				parents = append(parents, sp.Cal)
			}
			n := cals - len(parents)
			if err := bn.fill(ctx, n, 16, func(i int) client.SpawnRequest {
				return client.SpawnRequest{Parent: parents[i/99], Permissions: []string{"read"}, CPUMillis: 100, MemoryBytes: 32 << 20}
			}); err != nil {
				return err
			}
			list, _ := bn.c.List(ctx)
			var pids []int
			for _, c := range list {
				if c.Depth >= 2 && c.State == "running" {
					pids = append(pids, c.PID)
				}
			}
			// Each process is watched through a pidfd, which the kernel
			// makes readable when it exits: polling every PID with kill(0)
			// every few ms cost the control plane's process a sixth of its
			// CPU during the revocation it measured.
			pidfds, err := openPidfds(pids)
			if err != nil {
				return err
			}
			defer closeFDs(pidfds)
			// The CPU the revocation costs, which load on a shared machine
			// does not change as it changes the times: the control plane's
			// (this process) and the Cals' (their parent cgroup, which
			// keeps the usage of groups removed since).
			cp0, cals0 := processCPU(), cgroupCPU(benchCgroup)
			t0 := time.Now()
			if _, err := bn.c.Revoke(ctx, root.Cal, "bench"); err != nil {
				return err
			}
			api := time.Since(t0)
			if alive := waitExits(pidfds, 60*time.Second); alive > 0 {
				return fmt.Errorf("%d cals still running 60s after the revocation", alive)
			}
			cpCPU, calsCPU := processCPU()-cp0, cgroupCPU(benchCgroup)-cals0
			gone := time.Since(t0)
			// When was each Cal told? Each logs the moment its stream
			// delivered the revocation.
			var told []time.Duration
			for _, c := range list {
				if c.Depth < 2 {
					continue
				}
				b, err := os.ReadFile(controlplane.CalLogPath(bn.dir, c.ID))
				if err != nil {
					continue
				}
				for _, line := range strings.Split(string(b), "\n") {
					if !strings.Contains(line, "revoked by the network") {
						continue
					}
					ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
					if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
						told = append(told, t.Sub(t0))
					}
				}
			}
			r := benchRevokeResult{Machine: machine(), Cals: len(pids), APIMS: ms(api), Told: len(told), ToldP50MS: ms(percentile(told, .5)),
				ToldLastMS: ms(percentile(told, 1)), GoneMS: ms(gone), ControlPlaneCPUMS: ms(cpCPU), CalsCPUMS: ms(calsCPU)}
			if err := a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "revoked a subtree of %d cals: API answered in %s; %d cals logged being told, the last %s after the request (p50 %s); every process exited after %s\n",
					len(pids), fmtDur(api), len(told), fmtDur(percentile(told, 1)), fmtDur(percentile(told, .5)), fmtDur(gone))
				fmt.Fprintf(w, "CPU until then: control plane %s, cals %s (%s per cal)\n", fmtDur(cpCPU), fmtDur(calsCPU), fmtDur(calsCPU/time.Duration(max(len(pids), 1))))
			}); err != nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&cals, "cals", 1000, "cals in the revoked subtree")
	return cmd
}
