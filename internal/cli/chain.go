package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger/chainproof"
	"github.com/soulfra/calnet/ledger/tiles"
)

func (a *app) chainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Export a Cal's soul chain with ledger proofs, and verify one offline",
	}
	cmd.AddCommand(a.chainExportCmd(), a.chainVerifyCmd())
	return cmd
}

// ledgerURL is the log's tlog-tiles URL: --log, else the API's /ledger.
func (a *app) ledgerURL(flag string) string {
	if flag != "" {
		return strings.TrimSuffix(flag, "/")
	}
	base := a.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return strings.TrimSuffix(base, "/") + "/ledger"
}

func (a *app) chainExportCmd() *cobra.Command {
	var logURL string
	var wf witnessFlags
	cmd := &cobra.Command{
		Use:   "export CAL-ID",
		Short: "Write a Cal's chain proof bundle (JSON) to standard output",
		Long: `Read the public ledger over tlog-tiles (--log, default the API's /ledger),
verifying every tile against its checkpoint, and write a bundle holding, for
the Cal's soul chain, each link's blessing entry and each revocation of a link
with an inclusion proof in that checkpoint (with its witnesses' cosignatures),
and every ledger entry up to it, so that an offline verifier can also prove
that no other revocation exists up to the checkpoint. Only network.json (in
--dir) is needed; no credential.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := identity.ParseID(args[0])
			if err != nil {
				return fmt.Errorf("CAL-ID %q: %w", args[0], err)
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			p, err := wf.policy()
			if err != nil {
				return err
			}
			c, err := tiles.NewClient(tiles.ClientConfig{URL: a.ledgerURL(logURL), Origin: n.Info.Origin, LogKey: n.Info.LogKey, Witnesses: p})
			if err != nil {
				return err
			}
			b, err := chainproof.Export(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			out, err := json.Marshal(b)
			if err != nil {
				return err
			}
			// The bundle is JSON in every output mode.
			return a.emit(b, func(w io.Writer) { fmt.Fprintf(w, "%s\n", out) })
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the ledger's tlog-tiles URL (default http://<--addr>/ledger)")
	wf.add(cmd)
	return cmd
}

func (a *app) chainVerifyCmd() *cobra.Command {
	var file string
	var wf witnessFlags
	cmd := &cobra.Command{
		Use:   "verify --offline FILE",
		Short: "Verify a chain proof bundle offline against the network's keys and trusted witnesses",
		Long: `Check a bundle from calnet chain export with only network.json (in --dir) and
the witnesses you trust: the checkpoint's log signatures and --require
cosignatures from --witness keys, every link's and revocation's inclusion,
the chain's signatures and attenuation from the genesis root down, and that
no revocation of a link exists up to the checkpoint. Exits 1, naming the
reason, if anything fails or a link was revoked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--offline FILE: the bundle to verify is required")
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			p, err := wf.policy()
			if err != nil {
				return err
			}
			raw, err := readSmall(file, chainproof.MaxBundleSize)
			if err != nil {
				return err
			}
			b, err := chainproof.Parse(raw)
			if err != nil {
				return err
			}
			res, verr := chainproof.Verify(b, chainproof.Config{RootKeys: n.Info.RootKeys, Origin: n.Info.Origin, LogKey: n.Info.LogKey, Witnesses: p})
			if res == nil {
				return verr
			}
			out := map[string]any{"ok": verr == nil, "cal": res.Cal.String(), "depth": res.Depth, "checkpoint_size": res.Checkpoint.Size,
				"witnesses": res.Checkpoint.Witnesses, "revoked": res.Revoked, "revocations_scanned": res.Scanned}
			if res.Revoked {
				out["revoked_cal"], out["revoked_at"] = res.RevokedCal.String(), res.RevokedAt
				out["error"] = verr.Error()
			}
			if err := a.print(out, func(w io.Writer) {
				if res.Revoked {
					fmt.Fprintf(w, "REVOKED  %s: %v\n", res.Cal, verr)
					return
				}
				scan := "no revocation of any link up to it"
				if !res.Scanned {
					scan = "revocations NOT scanned (the bundle has no entries)"
				}
				fmt.Fprintf(w, "OK  %s (depth %d): every link is in the ledger at checkpoint %d, cosigned by %d witness(es) %v; %s\n",
					res.Cal, res.Depth, res.Checkpoint.Size, len(res.Checkpoint.Witnesses), res.Checkpoint.Witnesses, scan)
			}); err != nil {
				return err
			}
			if verr != nil {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "offline", "", "the bundle file to verify")
	wf.add(cmd)
	return cmd
}
