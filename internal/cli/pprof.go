package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// profileFile is what `calnet pprof --out` reports.
type profileFile struct {
	Cal     string `json:"cal"`
	Profile string `json:"profile"`
	File    string `json:"file"`
	Bytes   int    `json:"bytes"`
}

// profileText is a text profile (--debug) in -o json mode.
type profileText struct {
	Cal     string `json:"cal"`
	Profile string `json:"profile"`
	Text    string `json:"text"`
}

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
			target := cal
			if target == "" {
				target = "control-plane"
			}
			if out == "" { // --debug: text
				return a.print(profileText{Cal: target, Profile: name, Text: string(b)}, func(w io.Writer) { _, _ = w.Write(b) }) // an error is w's: print returns it
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			return a.print(profileFile{Cal: target, Profile: name, File: out, Bytes: len(b)}, func(w io.Writer) {
				fmt.Fprintf(w, "%d bytes written to %s (go tool pprof %s)\n", len(b), out, out)
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the profile to this file (0600)")
	cmd.Flags().IntVar(&seconds, "seconds", 0, "CPU profile length, 1 to 30 (default 5)")
	cmd.Flags().IntVar(&debug, "debug", 0, "1 or 2: text instead of the binary format")
	return cmd
}
