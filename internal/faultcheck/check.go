package faultcheck

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/client"
)

// Server is one control plane as the checker sees it.
type Server struct {
	// Name names it in violations ("s1").
	Name string
	// Client reaches its API (the operator API, with a credential that
	// reads every Cal and spawn).
	Client *client.Client
	// APIAddr is its API's host:port (the public checkpoint is read there).
	APIAddr string
	// NetworkDir is its network directory (<data>/network), whose ledger
	// the checker opens read-only.
	NetworkDir string
}

// Addr is the server's API address.
func (s Server) Addr() string { return s.APIAddr }

// Input is what a check reads.
type Input struct {
	Servers     []Server
	History     *History
	Host        *Sampler
	Checkpoints *Checkpoints
	// StopGrace is how long after a revocation is recorded a process of
	// the revoked subtree may still be seen (it is told, then stopped);
	// one still seen later is reported. Zero: 10 s.
	StopGrace time.Duration
}

// Report is a check's verdict.
type Report struct {
	// Violations are the broken properties, each in a sentence.
	Violations []string
	// What was checked, for the log and BENCHMARKS.md.
	Ops, Acked, AckedSpawns, AckedRevokes int
	Samples, Processes, Cals              int
	Checkpoints                           int
	LedgerSize                            uint64
	// SlowestStop is the longest a revoked subtree's process was seen
	// after its revocation was recorded.
	SlowestStop time.Duration
}

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// String summarises the report.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations (%d acknowledged: %d spawns, %d revocations); %d host samples saw %d processes of %d cals; %d checkpoints seen; ledger size %d; slowest stop after revocation %v; %d violations",
		r.Ops, r.Acked, r.AckedSpawns, r.AckedRevokes, r.Samples, r.Processes, r.Cals, r.Checkpoints, r.LedgerSize, r.SlowestStop.Round(time.Millisecond), len(r.Violations))
	for _, v := range r.Violations {
		b.WriteString("\n  - " + v)
	}
	return b.String()
}

// Check checks the run. Call it once the network has settled (no spawn
// or Cal in a passing state) and after a last host sample; the servers
// must be up. An error means the check itself could not run.
func Check(ctx context.Context, in Input) (*Report, error) {
	r := &Report{}
	grace := in.StopGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	ops := in.History.Ops()
	r.Ops = len(ops)
	for _, op := range ops {
		if op.Acked {
			r.Acked++
			switch op.Kind {
			case OpSpawn:
				r.AckedSpawns++
			case OpRevoke:
				r.AckedRevokes++
			}
		}
	}

	// Every server's ledger, and the checkpoints against each of them.
	views := map[string]*ledgerView{}
	for _, s := range in.Servers {
		v, err := readLedger(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("server %s: ledger: %w", s.Name, err)
		}
		defer func() { _ = v.lg.Close() }() // opened read-only: nothing to flush
		views[s.Name] = v
		if v.verified != nil {
			r.violate("server %s: its ledger does not verify: %v", s.Name, v.verified)
		}
		r.LedgerSize = max(r.LedgerSize, v.size)
	}
	var seen []Seen
	if in.Checkpoints != nil {
		seen = in.Checkpoints.Seen()
		in.Checkpoints.mu.Lock()
		for _, b := range in.Checkpoints.bad {
			r.violate("%s", b)
		}
		in.Checkpoints.mu.Unlock()
	}
	// Each server's final state is a checkpoint too: all must be
	// consistent with every ledger.
	for name, v := range views {
		seen = append(seen, Seen{Server: name + " (final)", Size: v.size, Root: v.root})
	}
	r.Checkpoints = len(seen)
	for name, v := range views {
		checkConsistent(r, name, v, seen)
	}

	// Every server's registry.
	for _, s := range in.Servers {
		v := views[s.Name]
		cals, err := s.Client.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("server %s: list cals: %w", s.Name, err)
		}
		byID := map[string]*api.Cal{}
		for i := range cals {
			byID[cals[i].ID] = &cals[i]
		}
		for _, op := range ops {
			if !op.Acked {
				continue
			}
			switch op.Kind {
			case OpSpawn:
				checkSpawn(ctx, r, s, v, byID, op)
			case OpRevoke:
				if _, ok := v.revokedAt(op.Target); !ok {
					r.violate("server %s: acknowledged revocation of %s (at %s) is not in its ledger", s.Name, op.Target, op.End.Format(time.RFC3339Nano))
				}
				if c := byID[op.Target]; c == nil || c.State != "revoked" {
					r.violate("server %s: acknowledged revocation of %s: registry says %v", s.Name, op.Target, stateOf(c))
				}
			}
		}
		// The registry and the ledger agree on what is revoked.
		for _, c := range cals {
			if _, ok := v.revokedAt(c.ID); ok && c.State != "revoked" {
				r.violate("server %s: cal %s is revoked in the ledger but %s in the registry", s.Name, c.ID, c.State)
			}
			if _, ok := v.blessed[c.ID]; !ok {
				r.violate("server %s: cal %s (%s) has no blessing in its ledger", s.Name, c.ID, c.State)
			}
		}
		checkHost(r, s.Name, v, byID, in.Host, grace)
	}
	return r, nil
}

// checkSpawn checks one acknowledged spawn on one server.
func checkSpawn(ctx context.Context, r *Report, s Server, v *ledgerView, byID map[string]*api.Cal, op Op) {
	sp, err := s.Client.GetSpawn(ctx, op.Spawn)
	if err != nil {
		r.violate("server %s: acknowledged spawn %s (key %s) is lost: %v", s.Name, op.Spawn, op.Key, err)
		return
	}
	if op.Cal != "" && sp.Cal != op.Cal {
		r.violate("server %s: acknowledged spawn %s answered cal %s, its record says %q", s.Name, op.Spawn, op.Cal, sp.Cal)
	}
	switch sp.State {
	case "running", "failed", "rejected":
	default:
		r.violate("server %s: acknowledged spawn %s has not settled: %s (%s)", s.Name, op.Spawn, sp.State, sp.Reason)
	}
	if op.State == "running" || sp.State == "running" {
		if _, ok := v.blessed[sp.Cal]; !ok {
			r.violate("server %s: spawn %s ran cal %s, which its ledger never blessed", s.Name, op.Spawn, sp.Cal)
		}
		if byID[sp.Cal] == nil {
			r.violate("server %s: spawn %s ran cal %s, which its registry does not hold", s.Name, op.Spawn, sp.Cal)
		}
	}
}

// checkHost checks the host's processes against one server's registry and
// ledger: no Cal twice, no revoked Cal started again or left running, and
// at the end exactly the running Cals run.
func checkHost(r *Report, server string, v *ledgerView, byID map[string]*api.Cal, h *Sampler, grace time.Duration) {
	if h == nil {
		return
	}
	r.Samples = h.Samples()
	for _, tw := range h.TwiceSeen() {
		if _, ours := v.blessed[tw.Cal]; ours || strings.HasPrefix(tw.Cal, "?") {
			r.violate("host: cal %s ran twice at %s: pids %v", tw.Cal, tw.At.Format(time.RFC3339Nano), tw.PIDs)
		}
	}
	insts := h.Instances()
	r.Processes, r.Cals = 0, 0
	ids := make([]string, 0, len(insts))
	for id := range insts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, ours := v.blessed[id]; !ours {
			continue // another network's Cal on the same machine
		}
		r.Cals++
		r.Processes += len(insts[id])
		at, revoked := v.revokedAt(id)
		if !revoked {
			continue
		}
		for _, in := range insts[id] {
			// Started is exact to a clock tick (10 ms).
			if in.Started.After(at.Add(10 * time.Millisecond)) {
				r.violate("host: revoked cal %s (revoked at %s) was started again: pid %d started at %s",
					id, at.Format(time.RFC3339Nano), in.PID, in.Started.Format(time.RFC3339Nano))
			}
			if d := in.LastSeen.Sub(at); d > r.SlowestStop {
				r.SlowestStop = d
			}
			if in.LastSeen.After(at.Add(grace)) {
				r.violate("host: revoked cal %s (revoked at %s) still ran %v later (pid %d)", id, at.Format(time.RFC3339Nano), in.LastSeen.Sub(at).Round(time.Millisecond), in.PID)
			}
		}
	}
	// At the end: one process per running Cal, none for any other.
	running := h.Running()
	for id, c := range byID {
		n := len(running[id])
		switch {
		case c.State == "running" && n != 1:
			r.violate("server %s: cal %s is running in the registry; the host runs %d processes of it", server, id, n)
		case c.State != "running" && n > 0:
			r.violate("server %s: cal %s is %s in the registry; the host runs it (pids %v)", server, id, c.State, running[id])
		}
	}
	for id, pids := range running {
		if strings.HasPrefix(id, "?") {
			// Once settled, a Cal process outside any group escaped its
			// driver (a new one is held until placed).
			r.violate("host: a `calnet cal` process runs outside any cal's group once settled (pids %v)", pids)
			continue
		}
		if _, ours := v.blessed[id]; ours && byID[id] == nil {
			r.violate("server %s: the host runs cal %s (pids %v), which the registry does not hold", server, id, pids)
		}
	}
}

// checkConsistent checks one server's ledger against every checkpoint
// seen: each is a prefix of it, or (another server's, ahead of it) it is
// a prefix of that checkpoint's ledger, checked from that side.
func checkConsistent(r *Report, name string, v *ledgerView, seen []Seen) {
	for _, cp := range seen {
		if cp.Server == name && cp.Size > v.size {
			r.violate("server %s: its ledger went back: it served a checkpoint of size %d at %s, it holds %d entries",
				name, cp.Size, cp.At.Format(time.RFC3339Nano), v.size)
			continue
		}
		if err := consistent(v, cp); err != nil {
			r.violate("server %s: its ledger is not consistent with the checkpoint of size %d that %s served at %s: %v",
				name, cp.Size, cp.Server, cp.At.Format(time.RFC3339Nano), err)
		}
	}
}

// consistent checks that cp is a prefix of v's ledger (or v's ledger a
// prefix of cp): a consistency proof from the smaller to the larger.
func consistent(v *ledgerView, cp Seen) error {
	switch {
	case cp.Size == v.size:
		if string(cp.Root) != string(v.root) {
			return fmt.Errorf("same size %d, different roots", cp.Size)
		}
		return nil
	case cp.Size < v.size:
		p, err := v.lg.Consistency(cp.Size, v.size)
		if err != nil {
			return err
		}
		return p.Verify(cp.Root, v.root)
	default:
		// The checkpoint is ahead of this ledger: a server that lags (a
		// follower) must hold a prefix of it. Its own root at its size
		// must match what the larger tree says at that size; that is
		// checked from the larger ledger's side (each pair is checked
		// both ways), so here only the order is recorded.
		return nil
	}
}

func stateOf(c *api.Cal) string {
	if c == nil {
		return "no such cal"
	}
	return c.State
}
