package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/calfs"
	"github.com/soulfra/calnet/internal/calrt"
	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/driver/process"
	"github.com/soulfra/calnet/internal/sandbox"
	"github.com/soulfra/calnet/internal/snapshot"
	"github.com/soulfra/calnet/internal/spiffeca"
)

const defaultData = "calnet-data"

// apiClient builds the SDK client from --addr / CALNET_ADDR and the
// credential.
func (a *app) apiClient() (*client.Client, error) {
	tok, err := a.credential()
	if err != nil {
		return nil, err
	}
	return client.New(a.addr, tok), nil
}

// credential picks the API credential: a --token-file given on the command
// line, else CALNET_TOKEN, else the default token file that `calnet up`
// writes. A flag given is the most specific choice and always wins.
func (a *app) credential() (string, error) {
	given := a.root != nil && a.root.PersistentFlags().Changed("token-file")
	if !given {
		if tok := a.env.Getenv("CALNET_TOKEN"); tok != "" {
			if n := len(strings.TrimSpace(tok)); n < api.MinCredentialLen {
				return "", fmt.Errorf("CALNET_TOKEN: %d characters, at least %d expected (an empty or truncated credential)", n, api.MinCredentialLen)
			}
			return tok, nil
		}
	}
	tok, err := client.ReadTokenFile(a.tokenFile)
	if err != nil {
		if given {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return "", fmt.Errorf("no credential: set CALNET_TOKEN or --token-file (default %s, written by `calnet up`): %w", filepath.Join(defaultData, "admin.token"), err)
	}
	return tok, nil
}

func (a *app) upCmd() *cobra.Command {
	var data, without, dnsAddr, domain, routerAddr, zone, calDisk, minFreeDisk, overcommit, ledgerAddr string
	var witnessVals []string
	var acceptRollback bool
	var sf sealFlags
	var idleWindow, observeWindow, deployTimeout, svidTTL time.Duration
	var bundleAddr string
	lim := controlplane.DefaultLimits
	var snaps controlplane.SnapshotSchedule
	var snapRcpts recipientFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the network: control plane, ledger, supervisor, API and the Master Cal",
		Long: `Start calnet on --data (default ./calnet-data). On first run it creates the
network (genesis key, ledger, Master Cal) and writes the admin credential to
<data>/admin.token (0600). Run it again on the same directory and the same
network comes back. SIGINT/SIGTERM or ` + "`calnet down`" + ` stop every Cal, deepest
first. A crash of ` + "`calnet up`" + ` (or SIGKILL) leaves the Cals running; the next
` + "`calnet up`" + ` on the same data adopts them, and starts only those that are gone.

Each Cal runs with full isolation; a feature this host lacks stops the Cal
from starting unless you lower it explicitly with --without. A Cal's /data
is a subvolume of the Cal filesystem (<data>/cals.img, btrfs, mounted on
<data>/cals) whose size limit is its blessing's disk quota: that needs
mkfs.btrfs (Debian: btrfs-progs), or --without disk-quota.

The data directory holds the root credential, the network's keys and the
programs every Cal runs: it, and every directory above it, must be root's
and writable by root only (a sticky directory such as /tmp may be above
it); calnet up refuses one another user owns or may write.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(a.env.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			feats, err := features(without)
			if err != nil {
				return err
			}
			if data, err = filepath.Abs(data); err != nil {
				return fmt.Errorf("--data: %w", err)
			}
			if lim.Overcommit, err = controlplane.ParseOvercommit(overcommit); err != nil {
				return fmt.Errorf("--overcommit: %w", err)
			}
			drv := process.New("/calnet", controlplane.InstancesDir(data))
			var missing []string
			for _, f := range feats {
				if !slices.Contains(drv.Available(), f) {
					missing = append(missing, string(f))
				}
			}
			if len(missing) > 0 {
				why := "run as root on Linux with cgroups"
				if slices.Contains(missing, string(sandbox.DiskQuota)) {
					why += "; " + calfs.Supported().Error()
				}
				return fmt.Errorf("this host cannot provide isolation %s (%s); to run without it anyway, say so: --without %s", strings.Join(missing, ","), why, strings.Join(missing, ","))
			}
			if lim.MinFreeDisk, err = parseBytes("min-free-disk", minFreeDisk); err != nil {
				return err
			}
			var calDiskBytes int64
			if calDisk != "" {
				if calDiskBytes, err = parseBytes("cal-disk", calDisk); err != nil {
					return err
				}
			}
			if err := snapshotSchedule(&snaps, &snapRcpts); err != nil {
				return err
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			witnesses, err := parseWitnessEndpoints(witnessVals)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			prot, root, err := a.upSeal(ctx, data, sf, log)
			if err != nil {
				return err
			}
			srv, err := controlplane.Open(ctx, controlplane.Config{Seal: prot, Root: root, DataDir: data, Snapshots: snaps, Addr: a.addr, Binary: bin, Driver: drv, Features: feats, Logger: log, Limits: lim, DNSAddr: dnsAddr, Domain: domain, RouterAddr: routerAddr, IdleWindow: idleWindow, ObserveWindow: observeWindow, DeployTimeout: deployTimeout, Zone: zone, AcceptLedgerRollback: acceptRollback, CalDiskBytes: calDiskBytes, LedgerAddr: ledgerAddr, Witnesses: witnesses, SVIDTTL: svidTTL, BundleAddr: bundleAddr})
			if err != nil {
				return err
			}
			srv.SetShutdown(cancel)
			info := upInfo{Network: srv.Network().Network.String(), API: "http://" + srv.Addr() + "/v1", Events: "ws://" + srv.Addr() + "/v1/events",
				Router: "http://" + routerAddr + "/<namespace>/", DNS: dnsAddr, Zone: domain, Credential: controlplane.TokenFile(data), Master: srv.Network().Master.String(),
				Ledger: "http://" + srv.Addr() + "/ledger"}
			// The network is up once its Master Cal runs: the banner waits
			// for it, and a failed Master is said loudly, on stderr, at
			// start and whenever it fails later. `up` keeps serving: the
			// API is how the Master is inspected and restarted.
			first := true
			go srv.WatchMaster(ctx, func(m *controlplane.CalRecord) {
				if first {
					first = false
					info.MasterState = m.State
					if m.State != controlplane.StateRunning {
						info.MasterError = m.LastError
					}
					if err := a.print(info, func(w io.Writer) { printUp(w, info) }); err != nil {
						fmt.Fprintf(a.env.Stderr, "calnet up: printing the network's details: %v\n", err)
					}
				} else if m.State == controlplane.StateRunning {
					fmt.Fprintf(a.env.Stderr, "calnet up: the Master Cal %s runs again\n", m.ID)
				}
				if m.State != controlplane.StateRunning {
					fmt.Fprintf(a.env.Stderr, "calnet up: THE MASTER CAL %s HAS %s: %s\n  The network cannot spawn under it. See why: calnet logs %s; then run it again: calnet restart %s\n",
						m.ID, strings.ToUpper(m.State), m.LastError, m.ID, m.ID)
				}
			})
			return srv.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&data, "data", defaultData, "data directory")
	sf.register(cmd)
	cmd.Flags().BoolVar(&acceptRollback, "accept-ledger-rollback", false, "start although the ledger is older than the state store recorded (it was restored from an older copy), accepting that what it lost is gone")
	cmd.Flags().DurationVar(&idleWindow, "idle-window", time.Minute, "how long a child must use under 1% of a core to count as idle for retire rules")
	cmd.Flags().StringVar(&zone, "zone", "local", "this host's failure domain (its topology label in placement decisions)")
	cmd.Flags().StringVar(&bundleAddr, "bundle-addr", "", "serve the SPIFFE bundle endpoint (https_spiffe profile, for federation) on this address; empty: off")
	cmd.Flags().DurationVar(&svidTTL, "svid-ttl", spiffeca.DefaultTTL, "lifetime of the X.509-SVIDs the network's authority issues to Cals and their workloads (10s..24h; renewed at half)")
	cmd.Flags().DurationVar(&deployTimeout, "deploy-timeout", 15*time.Second, "how long a new Cal has to register before its deploy attempt fails (templates whose Cals are slower get 4x their p95)")
	cmd.Flags().DurationVar(&observeWindow, "observe-window", 10*time.Minute, "how long the Cals of a template must be observed before least privilege cuts a permission they never used")
	cmd.Flags().StringVar(&routerAddr, "router", "127.0.0.1:7080", "Infinity Router address: /<namespace>/... and Host <namespace>.<domain>")
	cmd.Flags().StringVar(&dnsAddr, "dns", "127.0.0.1:8600", "DNS address for discovery (A, SRV, TXT of <namespace>.<domain>); empty turns it off")
	cmd.Flags().StringVar(&domain, "domain", "calnet.", "DNS zone of the network")
	cmd.Flags().StringArrayVar(&witnessVals, "witness", nil, "a witness that cosigns each ledger checkpoint, as URL=VERIFIER-KEY (calnet witness run --listen serves one); repeat for each")
	cmd.Flags().StringVar(&ledgerAddr, "ledger-addr", "", "also serve the ledger alone, public and read-only, as a C2SP tlog-tiles log at http://ADDR/ledger (it is always at /ledger on --addr)")
	cmd.Flags().IntVar(&lim.MaxCals, "max-cals", lim.MaxCals, "most Cals the network may hold")
	cmd.Flags().Float64Var(&lim.SpawnRate, "spawn-rate", lim.SpawnRate, "network-wide spawns per second (token bucket rate)")
	cmd.Flags().IntVar(&lim.SpawnBurst, "spawn-burst", lim.SpawnBurst, "network-wide spawn burst")
	cmd.Flags().Float64Var(&lim.ParentRate, "parent-spawn-rate", lim.ParentRate, "spawns per second per parent")
	cmd.Flags().IntVar(&lim.ParentBurst, "parent-spawn-burst", lim.ParentBurst, "spawn burst per parent")
	cmd.Flags().Float64Var(&lim.MaxCPUPressure, "max-cpu-pressure", lim.MaxCPUPressure, "refuse spawns (429) while tasks waited for CPU more than this percentage of the last 10 s (Linux PSI); over 100 turns the check off")
	cmd.Flags().StringVar(&minFreeDisk, "min-free-disk", "256Mi", "free space the data directory's filesystem keeps: below it spawns and writes to the ledger, state and audit trail are refused (revocations may use half)")
	cmd.Flags().StringVar(&calDisk, "cal-disk", "", "size of the Cal filesystem made on first run, what all Cals together may store (sparse; default a quarter of the free space, 1Gi to 64Gi)")
	cmd.Flags().StringVar(&overcommit, "overcommit", "", "overcommit factors: a Cal requests 1/N of its limits and a subtree's requests fit in its root's limits; one N for every resource (1: limits add up) or cpu_millis=N,memory_bytes=N,pids=N (default "+controlplane.DefaultOvercommit()+")")
	cmd.Flags().StringVar(&without, "without", "", "isolation features to lower explicitly, comma-separated (e.g. seccomp,net-namespace)")
	cmd.Flags().DurationVar(&snaps.Interval, "snapshot-interval", 0, "take an encrypted snapshot this often (e.g. 1h; 0: never) into --snapshot-dir")
	cmd.Flags().StringVar(&snaps.Dir, "snapshot-dir", "", "directory of scheduled snapshots (created 0700; best on another disk)")
	cmd.Flags().IntVar(&snaps.Retain, "snapshot-retain", 24, "how many of the newest scheduled snapshots to keep")
	snapRcpts.add(cmd, "snapshot-")
	return cmd
}

// minSnapshotInterval bounds --snapshot-interval from below.
const minSnapshotInterval = 10 * time.Second

// snapshotSchedule checks the scheduled-snapshot flags and fills in the
// recipients.
func snapshotSchedule(sc *controlplane.SnapshotSchedule, rf *recipientFlags) error {
	if sc.Interval == 0 {
		if sc.Dir != "" || len(rf.recipients) > 0 || rf.file != "" {
			return errors.New("--snapshot-dir and --snapshot-recipient take effect with --snapshot-interval (e.g. 1h)")
		}
		return nil
	}
	if sc.Interval < minSnapshotInterval {
		return fmt.Errorf("--snapshot-interval %v: at least %v", sc.Interval, minSnapshotInterval)
	}
	if sc.Dir == "" {
		return errors.New("--snapshot-dir: required with --snapshot-interval")
	}
	if sc.Retain < 1 {
		return fmt.Errorf("--snapshot-retain %d: keep at least 1", sc.Retain)
	}
	dir, err := filepath.Abs(sc.Dir)
	if err != nil {
		return fmt.Errorf("--snapshot-dir: %w", err)
	}
	sc.Dir = dir
	rs, err := rf.list("snapshot-")
	if err != nil {
		return err
	}
	sc.Recipients, err = snapshot.ParseRecipients(rs)
	return err
}

// printUp is `calnet up`'s banner.
func printUp(w io.Writer, info upInfo) {
	head, master := "calnet is up", info.Master
	if info.MasterState != controlplane.StateRunning {
		head = "calnet is up, but its MASTER CAL HAS " + strings.ToUpper(info.MasterState)
		master += "  " + strings.ToUpper(info.MasterState) + ": " + info.MasterError
	}
	fmt.Fprintf(w, "%s: network %s\n  API        %s (events: %s)\n  router     %s\n  DNS        %s (zone %s)\n  credential %s (0600)\n  master cal %s\n  ledger     %s (C2SP tlog-tiles, public)\nStop with Ctrl-C or `calnet down`.\n",
		head, info.Network, info.API, info.Events, info.Router, info.DNS, info.Zone, info.Credential, master, info.Ledger)
}

// upInfo is what `calnet up` prints once it serves and its Master Cal
// runs or has failed.
type upInfo struct {
	Network    string `json:"network"`
	API        string `json:"api"`
	Events     string `json:"events"`
	Router     string `json:"router"`
	DNS        string `json:"dns"`
	Zone       string `json:"zone"`
	Credential string `json:"credential"`
	Master     string `json:"master"`
	// Ledger is the URL of the ledger as a public tlog-tiles log.
	Ledger string `json:"ledger"`
	// MasterState is the Master Cal's state (running, or failed with
	// MasterError saying why).
	MasterState string `json:"master_state"`
	MasterError string `json:"master_error,omitempty"`
}

func features(without string) ([]sandbox.Feature, error) {
	feats := slices.Clone(sandbox.AllFeatures)
	for _, w := range strings.Split(without, ",") {
		if w = strings.TrimSpace(w); w == "" {
			continue
		}
		f, err := sandbox.ParseFeature(w)
		if err != nil {
			return nil, fmt.Errorf("--without: %w (known: %v)", err, sandbox.AllFeatures)
		}
		feats = slices.DeleteFunc(feats, func(x sandbox.Feature) bool { return x == f })
	}
	return feats, nil
}

func (a *app) calCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "cal",
		Short:  "Run the Cal runtime (started by drivers, not by users)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(a.env.Stderr, nil))
			err := calrt.Main(cmd.Context(), log)
			if errors.Is(err, calrt.ErrRevoked) {
				log.Info("revoked; exiting")
				return nil
			}
			return err
		},
	}
}

func (a *app) downCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop a running `calnet up`: every Cal, deepest first, then the control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			if err := c.Shutdown(cmd.Context()); err != nil {
				return err
			}
			// Wait until the API is gone.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(cmd.Context(), 500*time.Millisecond)
				_, err := c.Status(ctx)
				cancel()
				if err != nil {
					return a.print(map[string]string{"status": "down"}, func(w io.Writer) { fmt.Fprintln(w, "calnet is down") })
				}
				time.Sleep(200 * time.Millisecond)
			}
			return errors.New("the control plane did not stop within 30s")
		},
	}
}
