package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/template"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running network: Cals by state, spawning, ledger",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			s, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(s, func(w io.Writer) {
				master := s.Master
				switch s.MasterState {
				case "", "running":
				case "failed", "stopped":
					master += fmt.Sprintf("  %s: %s (run it again: calnet restart %s)", strings.ToUpper(s.MasterState), s.MasterError, s.Master)
				default:
					master += " (" + s.MasterState + ")"
				}
				fmt.Fprintf(w, "network   %s\nmaster    %s\ndriver    %s (%s)\nspawning  %s\nledger    %d entries\n", s.Network, master, s.Driver, strings.Join(s.Isolation, ","), map[bool]string{true: "PAUSED", false: "on"}[s.Paused], s.LedgerSize)
				var states []string
				for st := range s.Cals {
					states = append(states, st)
				}
				sort.Strings(states)
				for _, st := range states {
					fmt.Fprintf(w, "cals      %d %s\n", s.Cals[st], st)
				}
			})
		},
	}
}

func (a *app) spawnCmd() *cobra.Command {
	var req client.SpawnRequest
	var cpu, mem, disk, tmpl string
	var wait bool
	cmd := &cobra.Command{
		Use:   "spawn",
		Short: "Spawn a Cal: its parent's SpawnController signs its blessing; the control plane admits and deploys it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if tmpl != "" {
				// A path to a file is sent inline; anything else is a
				// template's name.
				if st, serr := os.Stat(tmpl); serr != nil || st.IsDir() {
					req.Template = tmpl
				} else if b, ferr := limitedfile.Read(tmpl, template.MaxSize); ferr == nil {
					req.TemplateYAML = string(b)
				} else {
					return fmt.Errorf("--template: %w", ferr)
				}
			}
			if cpu != "" {
				if req.CPUMillis, err = parseCPU(cpu); err != nil {
					return err
				}
			}
			if mem != "" {
				if req.MemoryBytes, err = parseBytes("memory", mem); err != nil {
					return err
				}
			}
			if disk != "" {
				if req.DiskBytes, err = parseBytes("disk", disk); err != nil {
					return err
				}
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if !a.json() && wait {
				fmt.Fprintf(a.env.Stderr, "spawning...")
			}
			start := time.Now()
			sp, err := c.Spawn(cmd.Context(), req, wait)
			if !a.json() && wait {
				fmt.Fprintln(a.env.Stderr)
			}
			if err != nil {
				var ae *client.Error
				if errors.As(err, &ae) && ae.RetryAfter > 0 {
					return fmt.Errorf("%w; retry after %v", err, ae.RetryAfter)
				}
				return err
			}
			if err := a.print(sp, func(w io.Writer) {
				switch sp.State {
				case "running":
					fmt.Fprintf(w, "Spawned cal %s under %s in %v (spawn %s)\n", sp.Cal, short(sp.Parent), time.Since(start).Round(time.Millisecond), sp.ID)
					if sp.Privilege != "" {
						fmt.Fprintln(w, sp.Privilege)
					}
				case "failed", "rejected":
					fmt.Fprintf(w, "Spawn %s %s: %s\n", sp.ID, sp.State, sp.Reason)
				case "awaiting_approval":
					fmt.Fprintf(w, "Spawn %s held: %s\nAdministrators approve it with: calnet approve %s\n", sp.ID, sp.Reason, sp.Approval)
				default:
					fmt.Fprintf(w, "Spawn %s %s (follow with `calnet show %s` or --wait)\n", sp.ID, sp.State, sp.Cal)
				}
			}); err != nil {
				return err
			}
			if sp.State == "failed" || sp.State == "rejected" {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Parent, "parent", "", "parent cal (ID, prefix or name; default the Master Cal)")
	f.StringVar(&req.Name, "name", "", "name for the new cal (a-z, 0-9, -)")
	f.BoolVar(&req.LeastPrivilege, "least-privilege", false, "cut the permissions to what the Cals of the same template have used (the spawn record says what was cut)")
	f.StringSliceVar(&req.Permissions, "perm", nil, "permissions, a subset of the parent's (default: the template's)")
	f.StringVar(&tmpl, "template", "", "template name, or a template YAML file (default: the built-in default template)")
	f.StringVar(&cpu, "cpu", "", "CPU limit: 250m or 0.5 (default: the template's, else 250m capped at the parent's)")
	f.StringVar(&mem, "memory", "", "memory limit: 64Mi or 1Gi (default: the template's, else 64Mi capped at the parent's)")
	f.Int64Var(&req.PIDs, "pids", 0, "processes and threads limit (default: the template's, else 256 capped at the parent's)")
	f.StringVar(&disk, "disk", "", "disk quota, what the cal may store in /data (enforced by the kernel): 64Mi (default), 2Gi")
	f.StringVar(&req.IdempotencyKey, "idempotency-key", "", "retrying with the same key never creates a second cal")
	f.BoolVar(&wait, "wait", true, "wait until the cal is operational")
	f.StringVar(&req.RestartPolicy, "restart", "always", "restart policy: always, on-failure or never")
	f.StringSliceVar(&req.Without, "without", nil, "isolation features to lower for this cal, explicitly (admin only)")
	return cmd
}

func (a *app) lsCmd() *cobra.Command {
	var tree bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List Cals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			cals, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if tree {
				roots := calTrees(cals)
				return a.print(roots, func(w io.Writer) { printTrees(w, roots, "") })
			}
			return a.print(cals, func(w io.Writer) {
				fmt.Fprintf(w, "%-32s  %-12s  %-9s  %5s  %-8s  %s\n", "ID", "NAME", "STATE", "DEPTH", "RESTARTS", "PERMISSIONS")
				for _, c := range cals {
					fmt.Fprintf(w, "%-32s  %-12s  %-9s  %5d  %8d  %s\n", c.ID, c.Name, c.State, c.Depth, c.Restarts, strings.Join(c.Permissions, ","))
				}
			})
		},
	}
	cmd.Flags().BoolVar(&tree, "tree", false, "show the lineage as a tree, rooted at each listed Cal whose parent is not listed (the Master Cal; for a developer token, its Cal); -o json nests each Cal's subtree")
	return cmd
}

func (a *app) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID|NAME",
		Short: "Show a Cal, with the isolation features measured in force for it",
		Long: `Show a Cal by ID, ID prefix or name. A name is the live Cal that holds it;
when none does, the most recent revoked Cal that had it (its state says so).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			cal, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			note := ""
			if args[0] == cal.Name && cal.State == "revoked" {
				note = fmt.Sprintf("no live cal is named %s: this is the revoked one", cal.Name)
			}
			return a.print(cal, func(w io.Writer) { printCal(w, cal, note) })
		},
	}
}

// printCal is the text of `calnet show`; note, when set, says which Cal a
// name resolved to.
func printCal(w io.Writer, cal *client.Cal, note string) {
	fmt.Fprintf(w, "cal          %s (%s)\nname         %s\n", cal.ID, short(cal.ID), cal.Name)
	if note != "" {
		fmt.Fprintf(w, "note         %s\n", note)
	}
	fmt.Fprintf(w, "state        %s (healthy %v, %d restarts)\nparent       %s\ndepth        %d\npermissions  %s\nquota        cpu %dm, memory %d, pids %d, disk %d\nuid / pid    %d / %d\nchildren     %d\n",
		cal.State, cal.Healthy, cal.Restarts, cal.Parent, cal.Depth, strings.Join(cal.Permissions, ","),
		cal.Quota.CPUMillis, cal.Quota.MemoryBytes, cal.Quota.PIDs, cal.Quota.DiskBytes, cal.UID, cal.PID, len(cal.Children))
	if cal.LastError != "" {
		fmt.Fprintf(w, "last error   %s\n", cal.LastError)
	}
	fmt.Fprintf(w, "namespace    %s\ntemplate     %s\n", cal.Namespace, cal.Template)
	if cal.Degraded != "" {
		fmt.Fprintf(w, "DEGRADED     %s\n", cal.Degraded)
	}
	if len(cal.Tiers) > 0 {
		fmt.Fprintf(w, "tiers:\n")
		for _, t := range cal.Tiers {
			for _, c := range t.Components {
				extra := c.Note
				if c.Error != "" {
					extra = c.Error
				}
				if c.PID > 0 {
					extra = fmt.Sprintf("pid %d, %d restarts %s", c.PID, c.Restarts, extra)
				}
				fmt.Fprintf(w, "  %4d  %-10s %-8s %-8s %s\n", t.Tier, c.Name, c.Kind, c.State, extra)
			}
			if len(t.Components) == 0 {
				fmt.Fprintf(w, "  %4d  (empty)\n", t.Tier)
			}
		}
	}
	if len(cal.Isolation) > 0 {
		fmt.Fprintf(w, "isolation (measured):\n")
		var names []string
		for f := range cal.Isolation {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			mark := "on "
			if !cal.Isolation[f] {
				mark = "OFF"
			}
			fmt.Fprintf(w, "  %s %s\n", mark, f)
		}
	}
}

func (a *app) logsCmd() *cobra.Command {
	var follow bool
	var q client.LogQuery
	cmd := &cobra.Command{
		Use:   "logs [ID]",
		Short: "Print a Cal's log, or with no ID (or --cal, --grep, --level) the logs of every Cal merged by time (-f to follow)",
		Long: `Print a Cal's log file, or with no ID (or with --cal, --grep, --level) the
logs of every Cal in scope merged by time; -f follows. With -o json every
form prints JSON Lines, one object per log line (cal, name, time, level,
text), of the most recent -n lines (default 200) and then, with -f, of
each new one.`,
		Example: `  calnet logs -f helper
  calnet logs --grep "revoked" --level warn -f
  calnet logs --cal worker --cal helper -n 50`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if len(args) == 1 && q.Text == "" && q.Level == "" && len(q.Cals) == 0 && !a.json() {
				out, err := a.textStream()
				if err != nil {
					return err
				}
				err = c.Logs(cmd.Context(), args[0], follow, out) // the log file as the Cal wrote it, escapes escaped
				if ferr := out.Flush(); err == nil {
					err = ferr
				}
				return err
			}
			q.Cals = append(q.Cals, args...)
			ctx := cmd.Context()
			for {
				page, err := c.LogsAll(ctx, q)
				if err != nil {
					return err
				}
				for _, e := range page.Entries {
					if err := a.emit(e, func(w io.Writer) {
						who := e.Name
						if who == "" {
							who = short(e.Cal)
						}
						fmt.Fprintf(w, "%-12s %s\n", who, e.Text)
					}); err != nil {
						return err
					}
				}
				if !follow {
					return nil
				}
				q.Cursor = page.Cursor
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the log")
	cmd.Flags().StringVar(&q.Text, "grep", "", "only lines containing this text (case-insensitive)")
	cmd.Flags().StringVar(&q.Level, "level", "", "only lines at this level or above: debug, info, warn, error")
	cmd.Flags().StringSliceVar(&q.Cals, "cal", nil, "only these Cals (repeatable)")
	cmd.Flags().IntVarP(&q.Lines, "lines", "n", 0, "the most recent lines to show first (default 200)")
	return cmd
}

func (a *app) spawningCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "spawning pause|resume",
		Short:     "The spawning kill switch: pause or resume every spawn in the network",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"pause", "resume"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "pause" && args[0] != "resume" {
				return fmt.Errorf("spawning %q: want pause or resume", args[0])
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			paused := args[0] == "pause"
			if err := c.SetSpawning(cmd.Context(), paused); err != nil {
				return err
			}
			return a.print(map[string]bool{"paused": paused}, func(w io.Writer) { fmt.Fprintf(w, "spawning %sd\n", args[0]) })
		},
	}
}

// revokeOnline revokes through the running control plane.
func (a *app) revokeOnline(ctx context.Context, id, reason string) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	r, err := c.Revoke(ctx, id, reason)
	if err != nil {
		return err
	}
	return a.print(r, func(w io.Writer) {
		if ap := r.Approval; ap != nil {
			fmt.Fprintf(w, "Held for approval: policy %s: %s\n%d administrator approval(s) needed: calnet approve %s\n", ap.Policy, ap.Message, ap.Required, ap.ID)
			return
		}
		fmt.Fprintf(w, "Revoked cal %s and %d descendant(s); their processes are stopped\n", r.Revoked, len(r.Subtree)-1)
	})
}

// How long `calnet events` (without -f) waits for the stream's first
// event, and then for the next one, before it stops.
const (
	eventsFirst = 10 * time.Second
	eventsQuiet = time.Second
)

func (a *app) eventsCmd() *cobra.Command {
	var after uint64
	var follow bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the events so far (spawn transitions, state changes, revocations); -f follows; -o json prints JSON Lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// Without -f: the events so far. The stream sends them at once
			// when it opens; it ends once none has come for eventsQuiet
			// (a busy machine can take seconds to open it).
			var quiet *time.Timer
			if !follow {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				quiet = time.AfterFunc(eventsFirst, cancel)
				defer quiet.Stop()
			}
			var werr error
			err = c.Watch(ctx, after, func(e client.Event) {
				if quiet != nil {
					quiet.Reset(eventsQuiet)
				}
				if werr == nil {
					werr = a.emit(e, func(w io.Writer) {
						fmt.Fprintf(w, "%6d %s %-18s %-9s %-9s %s %s\n", e.Seq, e.Time.Format("15:04:05.000"), e.Type, short(e.Cal), e.State, e.Actor, e.Reason)
					})
				}
			})
			return errors.Join(err, werr)
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "start after this sequence number")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep following")
	return cmd
}

func (a *app) restartCmd() *cobra.Command {
	var wait bool
	var reason string
	cmd := &cobra.Command{
		Use:   "restart CAL",
		Short: "Run a Cal again: a failed or stopped one (the Master Cal too), or a running one as a new process",
		Long: `Run the Cal CAL (name, full ID or unique prefix) again. A Cal the supervisor
gave up on (failed: too many restarts in a short time) or that stopped by its
restart policy starts with a fresh restart budget; a running Cal is stopped
(SIGTERM, then SIGKILL) and started as a new process. A revoked Cal never runs
again. By default it waits until the Cal runs, or has failed again, and exits
non-zero if it did not come up.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			t0 := time.Now()
			cal, err := c.Restart(cmd.Context(), args[0], reason, wait)
			if err != nil {
				return err
			}
			if err := a.print(cal, func(w io.Writer) {
				switch cal.State {
				case "running":
					fmt.Fprintf(w, "Restarted cal %s: running as pid %d after %s\n", cal.ID, cal.PID, time.Since(t0).Round(time.Millisecond))
				case "deploying":
					fmt.Fprintf(w, "Restarting cal %s (pid %d)\n", cal.ID, cal.PID)
				default:
					fmt.Fprintf(w, "Cal %s did not come up: %s: %s\n", cal.ID, cal.State, cal.LastError)
				}
			}); err != nil {
				return err
			}
			if wait && cal.State != "running" {
				return fmt.Errorf("cal %s is %s after the restart: %s", cal.ID, cal.State, cal.LastError)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the Cal runs or has failed")
	cmd.Flags().StringVar(&reason, "reason", "", "why (goes with the cal.restarted event)")
	return cmd
}
