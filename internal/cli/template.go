package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/template"
)

func (a *app) templateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Cal templates: what runs in each of the eleven tiers"}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the templates the running network offers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ts, err := c.Templates(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(ts, func(w io.Writer) {
				for _, t := range ts {
					fmt.Fprintf(w, "%-16s %-40s %s %s\n", t.Name, t.Source, t.Description, t.Error)
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a template (the built-in default prints its YAML)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "default" && !a.json() {
				return a.print(nil, func(w io.Writer) { _, _ = w.Write(template.DefaultYAML()) }) // an error is w's: print returns it
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			t, err := c.Template(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(t, func(w io.Writer) {
				var b bytes.Buffer
				if json.Indent(&b, t, "", "  ") != nil {
					b.Reset()
					b.Write(t)
				}
				fmt.Fprintf(w, "%s\n", b.Bytes())
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a template file offline; errors name the line and field",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := limitedfile.Read(args[0], template.MaxSize)
			if err != nil {
				return err
			}
			t, err := template.Parse(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return a.print(map[string]any{"valid": true, "name": t.Name, "tiers": t.TierNumbers()}, func(w io.Writer) {
				fmt.Fprintf(w, "%s: valid template %q with tiers %v\n", args[0], t.Name, t.TierNumbers())
			})
		},
	})
	return cmd
}
