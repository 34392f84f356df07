package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/client"
)

func printReflection(w io.Writer, r client.Reflection) {
	fmt.Fprintf(w, "%5d  %s  %-13s  %s\n", r.Seq, r.Time.Format(time.RFC3339), r.Kind, r.Text)
	if len(r.Data) > 0 {
		fmt.Fprintf(w, "       %s\n", r.Data)
	}
}

func (a *app) reflectCmd() *cobra.Command {
	var kind, data string
	cmd := &cobra.Command{
		Use:   "reflect ID TEXT",
		Short: "Append a reflection to a Cal's encrypted log",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if data != "" {
				if !json.Valid([]byte(data)) {
					return fmt.Errorf("--data: not valid JSON")
				}
				raw = json.RawMessage(data)
			}
			r, err := c.Reflect(cmd.Context(), args[0], kind, args[1], raw)
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) { printReflection(w, *r) })
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "note", "observation, decision, spawn-outcome, note, ...")
	cmd.Flags().StringVar(&data, "data", "", "JSON data to attach")
	return cmd
}

func (a *app) reflectionsCmd() *cobra.Command {
	var from uint64
	var follow bool
	cmd := &cobra.Command{
		Use:   "reflections ID",
		Short: "Read a Cal's reflection log (verified by the Cal; tampering is reported)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			for {
				rs, err := c.Reflections(cmd.Context(), args[0], from)
				if err != nil {
					return err
				}
				if !follow {
					return a.print(rs, func(w io.Writer) {
						for _, r := range rs {
							printReflection(w, r)
						}
					})
				}
				for _, r := range rs { // following: JSON Lines in -o json
					if err := a.emit(r, func(w io.Writer) { printReflection(w, r) }); err != nil {
						return err
					}
				}
				if n := len(rs); n > 0 {
					from = rs[n-1].Seq + 1
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first entry")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep following new entries")
	return cmd
}

func (a *app) shareCmd() *cobra.Command {
	var to string
	var seqs []uint
	cmd := &cobra.Command{
		Use:   "share ID --to ID --seq N,...",
		Short: "Share reflections with another Cal (parent, child, or a peer both may talk to)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			s := make([]uint64, len(seqs))
			for i, v := range seqs {
				s[i] = uint64(v)
			}
			r, err := c.Share(cmd.Context(), args[0], to, s)
			if err != nil {
				return err
			}
			return a.print(r, func(w io.Writer) { printReflection(w, *r) })
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the receiving Cal")
	cmd.Flags().UintSliceVar(&seqs, "seq", nil, "entries to share")
	return cmd
}
