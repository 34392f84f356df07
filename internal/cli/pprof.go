package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func (a *app) pprofCmd() *cobra.Command {
	var out string
	var seconds, debug int
	cmd := &cobra.Command{
		Use:   "pprof [CAL] PROFILE",
		Short: "Fetch a runtime profile of a Cal's process (or, with no CAL, of the control plane): heap, goroutine, allocs, block, mutex, threadcreate, profile (CPU)",
		Example: `  calnet pprof worker heap --out worker.heap.pb.gz && go tool pprof -top worker.heap.pb.gz
  calnet pprof worker profile --seconds 10 --out cpu.pb.gz
  calnet pprof worker goroutine --debug 1          # text, to the terminal
  calnet pprof heap --out control-plane.heap.pb.gz`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cal, name := "", args[0]
			if len(args) == 2 {
				cal, name = args[0], args[1]
			}
			if out == "" && debug == 0 {
				return fmt.Errorf("--out FILE: the binary profile goes to a file (or give --debug 1 for text)")
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			b, err := c.Profile(cmd.Context(), cal, name, seconds, debug)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := a.env.Stdout.Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "%d bytes written to %s (go tool pprof %s)\n", len(b), out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the profile to this file (0600)")
	cmd.Flags().IntVar(&seconds, "seconds", 0, "CPU profile length, 1 to 30 (default 5)")
	cmd.Flags().IntVar(&debug, "debug", 0, "1 or 2: text instead of the binary format")
	return cmd
}
