package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/trust"
)

// constraintFlags are the constraint flags shared by init and bless.
type constraintFlags struct {
	maxDepth, maxChildren int
	cpu, memory, disk     string
	pids                  int64
	notBefore, notAfter   string
	validFor              time.Duration
}

func (c *constraintFlags) register(cmd *cobra.Command, defaults bool) {
	f := cmd.Flags()
	f.IntVar(&c.maxDepth, "max-depth", 10, "deepest level any Cal of the subtree may sit at (Master = 1)")
	f.IntVar(&c.maxChildren, "max-children", 1000, "children the Cal may bless")
	f.StringVar(&c.cpu, "cpu", "", "CPU quota for the subtree: 500m or 1.5 (cores)")
	f.StringVar(&c.memory, "memory", "", "memory quota for the subtree: 512Mi, 2Gi, ...")
	f.StringVar(&c.disk, "disk", "", "disk quota for the subtree (what its Cals store in /data): 512Mi, 20Gi, ...")
	f.Int64Var(&c.pids, "pids", 32768, "process quota for the subtree")
	f.StringVar(&c.notBefore, "not-before", "", "start of validity, RFC 3339 (default now)")
	f.StringVar(&c.notAfter, "not-after", "", "end of validity, RFC 3339")
	f.DurationVar(&c.validFor, "valid-for", 0, "validity from now, e.g. 720h (instead of --not-after)")
	if defaults {
		f.Lookup("valid-for").DefValue = "87600h"
		c.validFor = 87600 * time.Hour
	}
}

// narrowing returns the constraints the user set on the command line.
func (c *constraintFlags) narrowing(cmd *cobra.Command, now time.Time) (netdir.Narrowing, error) {
	var w netdir.Narrowing
	f := cmd.Flags()
	if f.Changed("max-depth") {
		w.MaxDepth = &c.maxDepth
	}
	if f.Changed("max-children") {
		w.MaxChildren = &c.maxChildren
	}
	if f.Changed("pids") {
		w.PIDs = &c.pids
	}
	if c.cpu != "" {
		v, err := parseCPU(c.cpu)
		if err != nil {
			return w, err
		}
		w.CPUMillis = &v
	}
	if c.memory != "" {
		v, err := parseBytes("memory", c.memory)
		if err != nil {
			return w, err
		}
		w.MemoryBytes = &v
	}
	if c.disk != "" {
		v, err := parseBytes("disk", c.disk)
		if err != nil {
			return w, err
		}
		w.DiskBytes = &v
	}
	parse := func(flag, s string) (*time.Time, error) {
		if s == "" {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: want an RFC 3339 time like 2027-01-02T15:04:05Z", flag, s)
		}
		t = t.UTC().Truncate(time.Second)
		return &t, nil
	}
	var err error
	if w.NotBefore, err = parse("not-before", c.notBefore); err != nil {
		return w, err
	}
	if w.NotAfter, err = parse("not-after", c.notAfter); err != nil {
		return w, err
	}
	if f.Changed("valid-for") && w.NotAfter != nil {
		return w, errors.New("--valid-for and --not-after: give one of them")
	}
	if c.validFor < 0 {
		return w, fmt.Errorf("--valid-for %v: must be positive", c.validFor)
	}
	if f.Changed("valid-for") || (w.NotAfter == nil && c.validFor > 0 && cmd.Name() == "init") {
		t := now.Add(c.validFor).UTC().Truncate(time.Second)
		w.NotAfter = &t
	}
	return w, nil
}

func hostMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 1 << 30
	}
	return int64(si.Totalram) * int64(si.Unit)
}

func (a *app) initCmd() *cobra.Command {
	var cf constraintFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a network: genesis keys, the ledger and the Master Cal",
		Long: `Create a network in --dir: a genesis root key (the network authority), the
ledger with its own log key, and the Master Cal blessed with every permission.
Private keys are encrypted to an age post-quantum hybrid identity that is
itself sealed (kek.sealed) by the network's root sealing key: kept in
seal.key (0600) by default, or wrapped by a key derived from a passphrase
with Argon2id (CALNET_PASSPHRASE / --passphrase-file / --passphrase-fd).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := a.options()
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			w, err := cf.narrowing(cmd, now)
			if err != nil {
				return err
			}
			cons := trust.Constraints{
				MaxDepth: cf.maxDepth, MaxChildren: cf.maxChildren,
				Quota: trust.Quota{CPUMillis: int64(runtime.NumCPU()) * 1000, MemoryBytes: hostMemory(), PIDs: cf.pids, DiskBytes: freeDisk(a.dir)},
			}
			if w.CPUMillis != nil {
				cons.Quota.CPUMillis = *w.CPUMillis
			}
			if w.MemoryBytes != nil {
				cons.Quota.MemoryBytes = *w.MemoryBytes
			}
			if w.DiskBytes != nil {
				cons.Quota.DiskBytes = *w.DiskBytes
			}
			if w.NotBefore != nil {
				cons.NotBefore = *w.NotBefore
			}
			cons.NotAfter = *w.NotAfter
			n, err := netdir.Init(cmd.Context(), a.dir, netdir.MasterGrant{Constraints: cons}, opts)
			if err != nil {
				return err
			}
			type out struct {
				Dir           string `json:"dir"`
				Network       string `json:"network"`
				Master        string `json:"master"`
				MasterDir     string `json:"master_dir"`
				LedgerKey     string `json:"ledger_verifier_key"`
				KeyProtection string `json:"key_protection"`
			}
			o := out{a.dir, n.Info.Network.String(), n.Info.Master.String(), filepath.Join(a.dir, "master"), n.Info.NoteVerifier, n.Info.KeyProtection}
			return a.print(o, func(w io.Writer) {
				fmt.Fprintf(w, "Created network %s in %s\n", n.Info.Network.Short(), a.dir)
				fmt.Fprintf(w, "  network        %s\n", o.Network)
				fmt.Fprintf(w, "  master cal     %s (%s), every permission\n", o.Master, n.Info.Master.Short())
				fmt.Fprintf(w, "  ledger key     %s\n", o.LedgerKey)
				fmt.Fprintf(w, "  keys sealed    %s\n", o.KeyProtection)
				fmt.Fprintf(w, "Next: calnet keygen --dir %s --out child && calnet bless --dir %s --parent %s --child child --perm read\n", a.dir, a.dir, o.MasterDir)
			})
		},
	}
	cf.register(cmd, true)
	return cmd
}

func (a *app) keygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Create a new Cal identity (hybrid Ed25519 + ML-DSA-65 key) in DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out: required (the identity directory to create)")
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			pk, err := n.Keygen(out)
			if err != nil {
				return err
			}
			return a.print(map[string]string{"id": pk.ID().String(), "short": pk.ID().Short(), "dir": out}, func(w io.Writer) {
				fmt.Fprintf(w, "Created cal %s (%s) in %s\n", pk.ID(), pk.ID().Short(), out)
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "identity directory to create")
	return cmd
}

func (a *app) blessCmd() *cobra.Command {
	var parent, child string
	var perms []string
	var cf constraintFlags
	cmd := &cobra.Command{
		Use:   "bless --parent DIR --child DIR --perm P1,P2",
		Short: "Bless a child Cal: sign its attenuated permissions and record it in the ledger",
		Long: `Bless the Cal in --child (made with keygen) from the Cal in --parent. The
child gets a subset of the parent's permissions (spawn, revoke, read, talk,
share, admin) and constraints no looser than the parent's; constraints not
given are inherited. Writes the child's blessing.json and soul-chain.sig.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if parent == "" || child == "" {
				return errors.New("--parent and --child: both identity directories are required")
			}
			ps, err := trust.ParsePermissions(perms)
			if err != nil {
				return fmt.Errorf("--perm: %w", err)
			}
			w, err := cf.narrowing(cmd, time.Now())
			if err != nil {
				return err
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			b, _, err := n.Bless(cmd.Context(), netdir.BlessRequest{ParentDir: parent, ChildDir: child, Permissions: ps, Narrow: w})
			if err != nil {
				return err
			}
			c := b.Constraints()
			o := map[string]any{
				"child": b.Child().String(), "parent": b.Parent().String(), "depth": b.Depth(), "serial": b.Serial(),
				"permissions": b.Permissions().Names(), "can_propagate": b.CanPropagate(),
				"constraints": map[string]any{"max_depth": c.MaxDepth, "max_children": c.MaxChildren, "quota": c.Quota,
					"not_before": c.NotBefore, "not_after": c.NotAfter},
			}
			return a.print(o, func(w io.Writer) {
				fmt.Fprintf(w, "Blessed cal %s (%s) at depth %d, child %d of %s\n", b.Child(), b.Child().Short(), b.Depth(), b.Serial(), b.Parent().Short())
				fmt.Fprintf(w, "  permissions    %s\n", b.Permissions())
				fmt.Fprintf(w, "  constraints    max_depth %d, max_children %d, cpu %dm, memory %d, pids %d, disk %d\n", c.MaxDepth, c.MaxChildren, c.Quota.CPUMillis, c.Quota.MemoryBytes, c.Quota.PIDs, c.Quota.DiskBytes)
				fmt.Fprintf(w, "  valid          %s to %s\n", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
				fmt.Fprintf(w, "  wrote          %s, %s\n", filepath.Join(child, netdir.BlessingFile), filepath.Join(child, netdir.SoulChainFile))
			})
		},
	}
	cmd.Flags().StringVar(&parent, "parent", "", "identity directory of the blessing Cal")
	cmd.Flags().StringVar(&child, "child", "", "identity directory of the Cal to bless")
	cmd.Flags().StringSliceVar(&perms, "perm", nil, "permissions to grant, comma-separated")
	cf.register(cmd, false)
	return cmd
}

func (a *app) revokeCmd() *cobra.Command {
	var as, reason string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a Cal and its whole subtree",
		Long: `Revoke the Cal ID (full ID, unique prefix or short form) and every descendant.
Against a running network (` + "`calnet up`" + `) the control plane signs as the network
authority, records it, stops the subtree and tells every Cal. With --dir it
works offline on a network directory, signed by the authority or, with
--as DIR, by an ancestor holding revoke.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("dir") && a.env.Getenv("CALNET_DIR") == "" {
				return a.revokeOnline(cmd.Context(), args[0], reason)
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			r, sub, err := n.Revoke(cmd.Context(), netdir.RevokeRequest{Target: args[0], AsDir: as, Reason: reason})
			if err != nil {
				return err
			}
			ids := make([]string, len(sub))
			for i, id := range sub {
				ids[i] = id.String()
			}
			issuer := trust.AuthorityIssuer
			if id, ok := r.Issuer(); ok {
				issuer = id.String()
			}
			return a.print(map[string]any{"revoked": r.Target().String(), "issuer": issuer, "subtree": ids}, func(w io.Writer) {
				fmt.Fprintf(w, "Revoked cal %s (%s) by %s; %d cal(s) out of the network with it\n", r.Target(), r.Target().Short(), issuer, len(sub))
			})
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "identity directory of the revoking ancestor (default: the network authority)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger)")
	return cmd
}

// freeDisk is the free space of the filesystem holding dir (or its
// parent, before dir exists): the default disk quota of a new network.
func freeDisk(dir string) int64 {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil {
			return min(int64(st.Bavail)*st.Bsize, trust.MaxDiskBytes)
		}
		if d == filepath.Dir(d) {
			return 1 << 30
		}
	}
}
