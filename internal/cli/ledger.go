package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/ledger"
)

func (a *app) ledgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect and prove the immutable ledger",
	}
	cmd.AddCommand(a.ledgerCheckpointCmd(), a.ledgerKeyCmd(), a.ledgerProofCmd(), a.ledgerConsistencyCmd(), a.ledgerLogCmd(), a.ledgerVerifyCmd(), a.ledgerRepairCmd())
	return cmd
}

func (a *app) openLedger() (*ledger.Log, error) {
	n, err := a.network()
	if err != nil {
		return nil, err
	}
	return n.OpenLedger(false)
}

func parseUint(name, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a non-negative integer", name, s)
	}
	return v, nil
}

func (a *app) ledgerCheckpointCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint (C2SP tlog-checkpoint signed note)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			lg, err := a.openLedger()
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, lg.Close()) }()
			cp := lg.Checkpoint()
			return a.print(map[string]any{"origin": cp.Origin, "size": cp.Size, "root": cp.Root, "note": string(cp.Note)},
				func(w io.Writer) { _, _ = w.Write(cp.Note) }) // an error is w's: print returns it
		},
	}
}

func (a *app) ledgerKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the ledger's signed-note verifier key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := a.network()
			if err != nil {
				return err
			}
			return a.print(map[string]any{"verifier_key": n.Info.NoteVerifier, "origin": n.Info.Origin, "log_key": n.Info.LogKey},
				func(w io.Writer) { fmt.Fprintln(w, n.Info.NoteVerifier) })
		},
	}
}

func (a *app) ledgerProofCmd() *cobra.Command {
	var size uint64
	cmd := &cobra.Command{
		Use:   "proof INDEX",
		Short: "Print the inclusion proof of entry INDEX (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			idx, err := parseUint("INDEX", args[0])
			if err != nil {
				return err
			}
			return a.printProof(func(lg *ledger.Log) (any, error) { return lg.Inclusion(idx, size) })
		},
	}
	cmd.Flags().Uint64Var(&size, "size", 0, "tree size to prove against (default: the latest checkpoint)")
	return cmd
}

func (a *app) ledgerConsistencyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "consistency OLD [NEW]",
		Short: "Print the consistency proof between tree sizes OLD and NEW (default latest) (JSON)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := parseUint("OLD", args[0])
			if err != nil {
				return err
			}
			var nw uint64
			if len(args) == 2 {
				if nw, err = parseUint("NEW", args[1]); err != nil {
					return err
				}
			}
			return a.printProof(func(lg *ledger.Log) (any, error) { return lg.Consistency(old, nw) })
		},
	}
}

// printProof opens the ledger read-only, builds a proof with build and
// prints it as one line of JSON (the proof formats are JSON in every mode).
func (a *app) printProof(build func(*ledger.Log) (any, error)) (err error) {
	lg, err := a.openLedger()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lg.Close()) }()
	p, err := build(lg)
	if err != nil {
		return err
	}
	// One line of JSON in both modes: a proof file is the same either way.
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return a.emit(p, func(w io.Writer) { fmt.Fprintf(w, "%s\n", b) })
}

type logLine struct {
	Index   uint64           `json:"index"`
	Time    time.Time        `json:"time"`
	Type    ledger.EntryType `json:"type"`
	Subject string           `json:"subject,omitempty"`
	Actor   string           `json:"actor,omitempty"`
	Data    json.RawMessage  `json:"data,omitempty"`
}

func (a *app) ledgerLogCmd() *cobra.Command {
	var from, limit uint64
	var data bool
	cmd := &cobra.Command{
		Use:   "log",
		Short: "List ledger entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			lg, err := a.openLedger()
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, lg.Close()) }()
			if limit == 0 || limit > 100000 {
				return fmt.Errorf("--limit %d: want 1..100000", limit)
			}
			var lines []logLine
			for i := from; i < lg.Size() && i < from+limit; i++ {
				raw, err := lg.Entry(i)
				if err != nil {
					return err
				}
				e, err := ledger.DecodeEntry(raw)
				if err != nil {
					return fmt.Errorf("entry %d: %w", i, err)
				}
				l := logLine{Index: i, Time: e.Time, Type: e.Type, Subject: e.Subject, Actor: e.Actor}
				if data || a.json() {
					l.Data = e.Data
				}
				lines = append(lines, l)
			}
			return a.print(map[string]any{"size": lg.Size(), "entries": lines}, func(w io.Writer) {
				for _, l := range lines {
					fmt.Fprintf(w, "%6d  %s  %-10s  %-9s  by %s\n", l.Index, l.Time.UTC().Format(time.RFC3339), l.Type, short(l.Subject), short(l.Actor))
					if data {
						fmt.Fprintf(w, "        %s\n", l.Data)
					}
				}
			})
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first entry index")
	cmd.Flags().Uint64Var(&limit, "limit", 1000, "entries to list")
	cmd.Flags().BoolVar(&data, "data", false, "include each entry's document")
	return cmd
}

func (a *app) ledgerVerifyCmd() *cobra.Command {
	var proofFile, cpFile, oldCPFile string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Audit the whole ledger, or check a proof against checkpoints offline",
		Long: `Without flags: re-read every entry and checkpoint, check hashes, signatures and
that history was only appended to, and re-verify every blessing and
revocation it records.

With --proof and --checkpoint: check an inclusion proof against a signed
checkpoint, or a consistency proof against --old-checkpoint and --checkpoint,
using only the network's public keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			n, err := a.network()
			if err != nil {
				return err
			}
			if proofFile != "" || cpFile != "" {
				return a.verifyProofOffline(n.Info.Origin, n.Info.LogKey, proofFile, cpFile, oldCPFile)
			}
			lg, err := n.OpenLedger(false)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, lg.Close()) }()
			rep, err := lg.Audit(cmd.Context())
			if err != nil {
				return fmt.Errorf("ledger audit failed: %w", err)
			}
			st, err := n.Replay(cmd.Context(), lg)
			if err != nil {
				return fmt.Errorf("ledger trust history failed: %w", err)
			}
			return a.print(map[string]any{"ok": true, "audit": rep, "blessings": len(st.Blessings), "revocations": st.Revocations.Len()}, func(w io.Writer) {
				fmt.Fprintf(w, "OK  %d entries, %d checkpoints, every one consistent; %d blessings and %d revocations verified\n",
					rep.Entries, rep.Checkpoints, len(st.Blessings), st.Revocations.Len())
			})
		},
	}
	cmd.Flags().StringVar(&proofFile, "proof", "", "inclusion or consistency proof (JSON) to check")
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "signed checkpoint the proof leads to")
	cmd.Flags().StringVar(&oldCPFile, "old-checkpoint", "", "older signed checkpoint, for a consistency proof")
	return cmd
}

func readSmall(path string, limit int) ([]byte, error) {
	return limitedfile.Read(path, int64(limit))
}

func (a *app) ledgerRepairCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild a damaged ledger from what its files still prove, never dropping an acknowledged entry",
		Long: `Examine the ledger's files (entries, index, checkpoints, head) and rebuild what
they still prove: the index from intact entries, the acknowledged checkpoint
(signed again with the log key if no intact copy is left), the head file.
It drops only what no acknowledged checkpoint covers (a write a crash cut
short). If an acknowledged entry is itself damaged it changes nothing and
exits 1: restore the entries file from a backup.

Run it with the control plane stopped; --dry-run reports without writing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := a.network()
			if err != nil {
				return err
			}
			p, rerr := n.RepairLedger(dryRun)
			if p == nil {
				return rerr
			}
			if err := a.print(p, func(w io.Writer) {
				for _, f := range p.Findings {
					fmt.Fprintf(w, "found:  %s\n", f)
				}
				for _, l := range p.Lost {
					fmt.Fprintf(w, "LOST:   %s\n", l)
				}
				verb := "will"
				if p.Applied {
					verb = "done"
				} else if dryRun {
					verb = "would"
				}
				for _, x := range p.Actions {
					fmt.Fprintf(w, "%-6s  %s\n", verb+":", x)
				}
				switch {
				case len(p.Lost) > 0:
					fmt.Fprintln(w, "refused: nothing was changed")
				case len(p.Actions) == 0:
					fmt.Fprintf(w, "OK  the ledger needs no repair (%d entries)\n", p.Size)
				case p.Applied:
					fmt.Fprintf(w, "repaired: %d entries, root %x\n", p.Size, p.Root)
				default:
					fmt.Fprintf(w, "dry run: nothing was changed; the repaired ledger would hold %d entries\n", p.Size)
				}
			}); err != nil {
				return err
			}
			if rerr != nil {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what is damaged and what a repair would do, without writing")
	return cmd
}
