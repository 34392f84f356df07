package cli

import (
	"errors"
	"fmt"
	"io"
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
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			if fanout < 1 || fanout > 99 || cals < 1 {
				return errors.New("--fanout is 1..99 (a Cal has at most 100 children), --cals at least 1")
			}
			bn, err := startBenchNet(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, bn.close()) }()
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
			r := benchTreeResult{Machine: machine(), Master: q, Groups: groups, Fanout: fanout, Asked: cals, Running: running,
				GrownMS: ms(grown), Parallel: parallel, Client: quantiles(ds), Server: quantiles(server),
				LimitsUnderMaster: client.Quota{CPUMillis: cpu, MemoryBytes: mem, PIDs: pids}, Overcommit: client.Quota{CPUMillis: f.CPUMillis, MemoryBytes: f.MemoryBytes, PIDs: f.PIDs}}
			pct := func(used, lim, factor int64) float64 { return 100 * float64(used) / float64(lim*factor) }
			if err := a.print(r, func(w io.Writer) {
				fmt.Fprintf(w, "machine: %s\n", r.Machine)
				fmt.Fprintf(w, "master quota (default): cpu %dm, memory %d MiB, pids %d\n", q.CPUMillis, q.MemoryBytes>>20, q.PIDs)
				fmt.Fprintf(w, "tree: %d groups (spawn,read) with up to %d children each, no quota named anywhere\n", groups, fanout)
				fmt.Fprintf(w, "cals running under the master: %d of %d, grown in %s (%d at a time)\n", running, cals, grown.Round(time.Millisecond), parallel)
				fmt.Fprintf(w, "spawn -> operational, client: %s; server: %s\n", r.Client, r.Server)
				fmt.Fprintf(w, "limits under the master (they may reach overcommit x its own): cpu %dm = %.1f%% of %dx, memory %d MiB = %.1f%% of %dx, pids %d = %.1f%% of %dx\n",
					cpu, pct(cpu, q.CPUMillis, f.CPUMillis), f.CPUMillis, mem>>20, pct(mem, q.MemoryBytes, f.MemoryBytes), f.MemoryBytes, pids, pct(pids, q.PIDs, f.PIDs), f.PIDs)
			}); err != nil {
				return err
			}
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

// benchTreeResult is what `calnet bench tree` measured.
type benchTreeResult struct {
	Machine           string       `json:"machine"`
	Master            client.Quota `json:"master_quota"`
	Groups            int          `json:"groups"`
	Fanout            int          `json:"fanout"`
	Asked             int          `json:"cals"`
	Running           int          `json:"running"`
	GrownMS           float64      `json:"grown_ms"`
	Parallel          int          `json:"parallel"`
	Client            latency      `json:"client"`
	Server            latency      `json:"server"`
	LimitsUnderMaster client.Quota `json:"limits_under_master"`
	Overcommit        client.Quota `json:"overcommit"`
}
