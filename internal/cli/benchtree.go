package cli

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/controlplane"
)

// benchTreeCmd grows a tree of Cals given no quota under a Master with the
// default quota (this host's cores and memory): the default quotas and
// their overcommit must let it grow (docs/guide.md, Quotas).
func (a *app) benchTreeCmd() *cobra.Command {
	var cals, fanout, parallel int
	cmd := &cobra.Command{
		Use:   "tree",
		Short: "Grow a tree of Cals given no quota under a Master with the default quota (this host)",
		Long: `Start a network whose Master Cal has the default quota (this host's cores and
memory), spawn --cals Cals under it, none given a quota: groups that may spawn,
each with up to --fanout children. Every spawn must be admitted and run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := a.env.Stdout
			if fanout < 1 || fanout > 99 || cals < 1 {
				return errors.New("--fanout is 1..99 (a Cal has at most 100 children), --cals at least 1")
			}
			bn, err := startBenchNet(ctx, nil)
			if err != nil {
				return err
			}
			defer bn.close()
			master, err := bn.c.Get(ctx, bn.master)
			if err != nil {
				return err
			}
			groups := (cals + fanout) / (fanout + 1)
			t0 := time.Now()
			var mu sync.Mutex
			var ds, server []time.Duration
			spawn := func(req client.SpawnRequest) (*client.Spawn, error) {
				t := time.Now()
				sp, err := bn.c.Spawn(ctx, req, true)
				if err == nil && sp.State != "running" {
					err = fmt.Errorf("%s: %s", sp.State, sp.Reason)
				}
				if err != nil {
					return nil, err
				}
				mu.Lock()
				ds = append(ds, time.Since(t))
				server = append(server, sp.OperationalAt.Sub(sp.RequestedAt))
				mu.Unlock()
				return sp, nil
			}
			var parents []string
			for range groups {
				sp, err := spawn(client.SpawnRequest{Permissions: []string{"spawn", "read"}})
				if err != nil {
					return fmt.Errorf("group %d: %w", len(parents), err)
				}
				parents = append(parents, sp.Cal)
			}
			leaves := cals - groups
			sem := make(chan struct{}, parallel)
			var wg sync.WaitGroup
			var errs []error
			for i := range leaves {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					if _, err := spawn(client.SpawnRequest{Parent: parents[i/fanout], Permissions: []string{"read"}}); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			grown := time.Since(t0)
			if len(errs) > 0 {
				return fmt.Errorf("%d of %d spawns failed, first: %v", len(errs), leaves, errs[0])
			}
			list, err := bn.c.List(ctx)
			if err != nil {
				return err
			}
			running := 0
			var cpu, mem, pids int64
			for _, c := range list {
				if c.ID == bn.master || c.State != "running" {
					continue
				}
				running++
				cpu, mem, pids = cpu+c.Quota.CPUMillis, mem+c.Quota.MemoryBytes, pids+c.Quota.PIDs
			}
			q := master.Quota
			f, _ := controlplane.ParseOvercommit(controlplane.DefaultOvercommit())
			fmt.Fprintf(out, "machine: %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "master quota (default): cpu %dm, memory %d MiB, pids %d\n", q.CPUMillis, q.MemoryBytes>>20, q.PIDs)
			fmt.Fprintf(out, "tree: %d groups (spawn,read) with up to %d children each, no quota named anywhere\n", groups, fanout)
			fmt.Fprintf(out, "cals running under the master: %d of %d, grown in %s (%d at a time)\n", running, cals, grown.Round(time.Millisecond), parallel)
			fmt.Fprintf(out, "spawn -> operational, client: p50 %s  p99 %s; server: p50 %s  p99 %s\n",
				fmtDur(percentile(ds, .5)), fmtDur(percentile(ds, .99)), fmtDur(percentile(server, .5)), fmtDur(percentile(server, .99)))
			fmt.Fprintf(out, "limits under the master (may reach overcommit x its own): cpu %dm = %.1f%% of %dx%dm, memory %d MiB = %.1f%% of %dx, pids %d = %.1f%% of %dx\n",
				cpu, 100*float64(cpu)/float64(f.CPUMillis*q.CPUMillis), f.CPUMillis, q.CPUMillis, mem>>20, 100*float64(mem)/float64(f.MemoryBytes*q.MemoryBytes), f.MemoryBytes,
				pids, 100*float64(pids)/float64(f.PIDs*q.PIDs), f.PIDs)
			if running != cals {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&cals, "cals", 1000, "cals to grow under the master")
	cmd.Flags().IntVar(&fanout, "fanout", 99, "children of each group")
	cmd.Flags().IntVar(&parallel, "parallel", 16, "spawns in flight while growing the tree")
	return cmd
}
