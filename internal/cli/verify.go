package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/trust"
)

// linkReport is one link of a chain as the validator shows it.
type linkReport struct {
	Link        int      `json:"link"`
	Parent      string   `json:"parent"`
	Cal         string   `json:"cal"`
	Permissions []string `json:"permissions"`
	Status      string   `json:"status"` // ok, failed, unchecked
}

type verifyReport struct {
	Valid       bool              `json:"valid"`
	Cal         string            `json:"cal,omitempty"`
	Depth       int               `json:"depth,omitempty"`
	Permissions []string          `json:"permissions,omitempty"`
	At          time.Time         `json:"at"`
	Links       []linkReport      `json:"links"`
	Error       *trust.ChainError `json:"error,omitempty"`
	Problem     string            `json:"problem,omitempty"`
	// RevocationsChecked is false with --without-ledger.
	RevocationsChecked bool `json:"revocations_checked"`
}

func (a *app) verifyCmd() *cobra.Command {
	var at string
	var withoutLedger bool
	cmd := &cobra.Command{
		Use:   "verify PATH",
		Short: "Verify a Cal's soul chain offline: exit 0 if valid, 1 with the failing link otherwise",
		Long: `Verify the soul chain in PATH (an identity directory or a soul-chain.sig file)
against the root keys of the network in --dir and the revocations in its
ledger. Prints each link and, on failure, the failing link and the reason
(bad-signature, escalation, expired, not-yet-valid, depth-exceeded,
children-exceeded, wrong-network, revoked, revoked-ancestor, malformed).

A missing or damaged ledger is an error. With only a copy of network.json
(no ledger), --without-ledger checks everything but revocations and says so.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			when := time.Now().UTC()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("--at %q: want an RFC 3339 time", at)
				}
				when = t
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			verify := n.VerifyPath
			if withoutLedger {
				verify = n.VerifyPathWithoutLedger
			}
			res, err := verify(cmd.Context(), args[0], when)
			if err != nil {
				return err
			}
			rep := verifyReport{Valid: res.Err == nil, At: when.Truncate(time.Second), Links: []linkReport{}, RevocationsChecked: res.RevocationsChecked}
			failed := -1
			var ce *trust.ChainError
			if errors.As(res.Err, &ce) {
				rep.Error, failed = ce, ce.Link
			} else if res.Err != nil {
				rep.Problem = res.Err.Error()
			}
			if res.Chain != nil {
				for i, b := range res.Chain.Blessings {
					parent := trust.GenesisParent
					if !b.IsGenesis() {
						parent = b.Parent().String()
					}
					st := "ok"
					switch {
					case failed >= 0 && i == failed:
						st = "failed"
					case failed >= 0 && i > failed:
						st = "unchecked"
					}
					rep.Links = append(rep.Links, linkReport{Link: i, Parent: parent, Cal: b.Child().String(), Permissions: b.Permissions().Names(), Status: st})
				}
			}
			if v := res.Verified; v != nil && rep.Valid {
				rep.Cal, rep.Depth, rep.Permissions = v.Cal.String(), v.Depth, v.Permissions.Names()
			}
			if err := a.print(rep, func(w io.Writer) { printVerify(w, &rep) }); err != nil {
				return err
			}
			if !rep.Valid {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "verify as of this RFC 3339 time (default now)")
	cmd.Flags().BoolVar(&withoutLedger, "without-ledger", false, "the network directory has no ledger: check everything but revocations")
	return cmd
}

// short abbreviates a Cal or network ID for display; other names pass.
func short(id string) string {
	if len(id) != 32 {
		return id
	}
	return id[:4] + "-" + id[4:8]
}

func printVerify(w io.Writer, r *verifyReport) {
	switch {
	case r.Valid && !r.RevocationsChecked:
		fmt.Fprintf(w, "VALID (revocations NOT checked: --without-ledger)  cal %s (%s), depth %d, permissions %v\n", r.Cal, short(r.Cal), r.Depth, r.Permissions)
	case r.Valid:
		fmt.Fprintf(w, "VALID  cal %s (%s), depth %d, permissions %v\n", r.Cal, short(r.Cal), r.Depth, r.Permissions)
	case r.Error != nil:
		fmt.Fprintf(w, "INVALID  link %d: %s: %s\n", r.Error.Link, r.Error.Reason, r.Error.Detail)
	default:
		fmt.Fprintf(w, "INVALID  %s\n", r.Problem)
	}
	for _, l := range r.Links {
		parent := l.Parent
		if parent != trust.GenesisParent {
			parent = short(parent)
		}
		fmt.Fprintf(w, "  link %-2d %-9s %-9s -> %-9s %v\n", l.Link, l.Status, parent, short(l.Cal), l.Permissions)
	}
}
