package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/client"
	"github.com/soulfra/calnet/internal/auditlog"
	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/netdir"
)

// parseSince reads a --since/--until value: an RFC 3339 time, or a duration
// back from now ("90m").
func parseSince(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time or a duration back from now (90m, 24h)", flag, s)
}

func (a *app) auditCmd() *cobra.Command {
	var since, until string
	var q client.AuditQuery
	var all bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query the audit trail (administrators): who did what to which Cal, and why; -o json prints JSON Lines",
		Long: `Print records of the audit trail, oldest first, filtered by time, actor,
event type (or a prefix ending in '.', such as cal.) and Cal (a name, an ID
or a prefix of at least 4 characters: records about it or naming it as
parent).
Without --after it prints the newest --limit matches (--before pages back);
--all follows the whole trail from --after on. Each record carries its
sequence number and its place in the hash chain (prev, hash); verify the
chain offline with 'calnet audit verify'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			var err error
			if q.Since, err = parseSince("since", since, now); err != nil {
				return err
			}
			if q.Until, err = parseSince("until", until, now); err != nil {
				return err
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			for {
				page, err := c.Audit(cmd.Context(), q)
				if err != nil {
					return err
				}
				for _, r := range page.Records {
					if err := a.emit(r, func(w io.Writer) { printAuditRecord(w, &r) }); err != nil {
						return err
					}
				}
				if !all || !page.More || len(page.Records) == 0 {
					if page.More && !all && !a.json() {
						fmt.Fprintf(cmd.ErrOrStderr(), "(older records match: --before %d pages back)\n", page.Records[0].Seq)
					}
					return nil
				}
				q.After = page.Records[len(page.Records)-1].Seq
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "records at or after this time (RFC 3339, or a duration back from now: 90m)")
	f.StringVar(&until, "until", "", "records before this time")
	f.StringVar(&q.Actor, "actor", "", "records by this actor (admin, dev:NAME, cal:ID, ...)")
	f.StringVar(&q.Type, "type", "", "records of this event type, or a prefix ending in '.' (cal.)")
	f.StringVar(&q.Cal, "cal", "", "records about this Cal or naming it as parent (name, ID or prefix)")
	f.Uint64Var(&q.After, "after", 0, "records after this sequence number, oldest first")
	f.Uint64Var(&q.Before, "before", 0, "the newest records before this sequence number")
	f.IntVar(&q.Limit, "limit", 100, "records per page (at most 1000)")
	f.BoolVar(&all, "all", false, "follow the pages to the end of the trail (from --after)")
	cmd.AddCommand(a.auditVerifyCmd())
	return cmd
}

func printAuditRecord(w io.Writer, r *api.AuditRecord) {
	var b strings.Builder
	fmt.Fprintf(&b, "%7d  %s  %-20s", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Type)
	if r.Cal != "" {
		fmt.Fprintf(&b, "  cal %s", short(r.Cal))
	}
	if r.State != "" {
		fmt.Fprintf(&b, "  %s", r.State)
	}
	if r.Actor != "" {
		fmt.Fprintf(&b, "  by %s", r.Actor)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, "  (%s)", r.Reason)
	}
	fmt.Fprintln(w, b.String())
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit trail's hash chain and its anchors in the ledger, offline: exit 1 naming each broken line",
		Long: `Re-read the audit trail in DATA/audit and check every line: that its hash
matches its content (else it was edited), that sequence numbers follow one
another (else lines were removed or reordered), that each line names the
hash of the one before, and that every anchor of the trail in the network's
ledger (written every minute and at shutdown) names a record with that hash
(else the trail was cut or rewritten back past it). Reads the files
directly: it needs read access to the data directory, not the API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := a.options()
			if err != nil {
				return err
			}
			n, err := netdir.Load(filepath.Join(data, "network"), o)
			if err != nil {
				return err
			}
			lg, err := n.OpenLedger(false)
			if err != nil {
				return fmt.Errorf("ledger (for the trail's anchors): %w", err)
			}
			anchors, err := auditlog.AnchorsIn(cmd.Context(), lg)
			if cerr := lg.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close: %w", cerr)
			}
			if err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			rep, err := auditlog.Verify(cmd.Context(), controlplane.AuditDir(data), n.Info.Network.String(), anchors)
			if err != nil {
				return err
			}
			if err := a.print(rep, func(w io.Writer) {
				for _, p := range rep.Problems {
					fmt.Fprintf(w, "BROKEN  %s\n", p)
				}
				from := "the network's first record"
				if rep.Pruned {
					from = fmt.Sprintf("seq %d (older segments removed by retention; %d anchors before it)", rep.FirstSeq, rep.AnchorsBefore)
				}
				status := "OK"
				if !rep.OK {
					status = "FAILED"
				}
				fmt.Fprintf(w, "%s  %d records in %d segments, from %s to seq %d; %d ledger anchors checked\n", status, rep.Records, rep.Segments, from, rep.LastSeq, rep.AnchorsChecked)
				if rep.TornTail {
					fmt.Fprintln(w, "  the newest segment ends with a partial line (a write in progress, or cut short by a crash)")
				}
			}); err != nil {
				return err
			}
			if !rep.OK {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", defaultData, "data directory of calnet up")
	return cmd
}
