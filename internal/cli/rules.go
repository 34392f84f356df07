package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/strictjson"
)

// maxRulesFile bounds a rules file.
const maxRulesFile = 256 << 10

func (a *app) rulesCmd() *cobra.Command {
	var set string
	var clear bool
	cmd := &cobra.Command{
		Use:   "rules CAL",
		Short: "Show a Cal's spawn criteria and recent decisions, or replace them (--set FILE, YAML or JSON; --clear)",
		Example: `  calnet rules team --set rules.yaml
  # rules.yaml
  rules:
    - name: scale-up
      when: cpu_percent > 80.0
      clear: cpu_percent < 60.0
      for: 30s
      cooldown: 2m
      max_per_hour: 6
      action: {kind: spawn, count: 2, template: default}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var doc api.RulesDoc
			if err := replaceDoc(set, clear, &doc, func() error { return c.SetRules(ctx, args[0], doc.Rules) }); err != nil {
				return err
			}
			v, err := c.Rules(ctx, args[0])
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) { printRules(w, v) })
		},
	}
	cmd.Flags().StringVar(&set, "set", "", "replace the rules with those of this file (YAML or JSON)")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove every rule")
	return cmd
}

// replaceDoc carries out --set FILE (the file decoded into doc) or
// --clear (doc left empty) through put; with neither it does nothing.
func replaceDoc(set string, clear bool, doc any, put func() error) error {
	switch {
	case set != "" && clear:
		return fmt.Errorf("--set and --clear: give one of them")
	case set != "":
		if err := readDoc(set, doc); err != nil {
			return err
		}
	case !clear:
		return nil
	}
	return put()
}

// readDoc decodes a YAML (or JSON) file strictly into v, through JSON so
// that v's JSON decoding rules (durations, unknown fields) apply.
func readDoc(path string, v any) error {
	b, err := limitedfile.Read(path, maxRulesFile)
	if err != nil {
		return err
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := strictjson.Unmarshal(j, 4*maxRulesFile, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func printRules(w io.Writer, v *api.RulesView) {
	if len(v.Rules) == 0 {
		fmt.Fprintln(w, "no rules")
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tWHEN\tFOR\tCOOLDOWN\tACTION\tSTATE")
	for _, r := range v.Rules {
		state := "armed"
		if st := v.State[r.Name]; st != nil {
			switch {
			case st.Error != "":
				state = "disabled: " + st.Error
			case st.Firing:
				state = "fired " + st.Last.Format(time.TimeOnly) + ", fires again each cooldown while it holds"
			case st.Disarmed:
				state = "fired " + st.Last.Format(time.TimeOnly) + ", waiting to re-arm"
			}
		}
		act := fmt.Sprintf("%s %d", r.Action.Kind, r.Action.Count)
		if r.Action.Template != "" {
			act += " " + r.Action.Template
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\n", r.Name, r.When, time.Duration(r.For), time.Duration(r.Cooldown), act, state)
	}
	_ = tw.Flush() // its error is w's: termtext.Writer keeps it, and print returns it
	if len(v.Decisions) > 0 {
		fmt.Fprintln(w, "\nrecent decisions:")
		for _, d := range v.Decisions {
			fmt.Fprintf(w, "  %s  %-8s %-10s %s\n", d.At.Format(time.TimeOnly), d.Rule, d.Outcome, d.Reason)
		}
	}
}

func (a *app) policyCmd() *cobra.Command {
	var set string
	var clear bool
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Show the network's admission policies, or replace them (--set FILE, YAML or JSON; --clear; admin)",
		Example: `  calnet policy --set policies.yaml
  # policies.yaml
  policies:
    - name: admin-near-root
      deny: depth > 2 && "admin" in request_permissions
      message: admin is granted only to the master's children`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var doc api.PoliciesDoc
			if err := replaceDoc(set, clear, &doc, func() error { return c.SetPolicies(ctx, doc.Policies) }); err != nil {
				return err
			}
			v, err := c.Policies(ctx)
			if err != nil {
				return err
			}
			return a.print(v, func(w io.Writer) {
				if len(v.Policies) == 0 {
					fmt.Fprintln(w, "no admission policies")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "POLICY\tDENY WHEN\tMESSAGE")
				for _, p := range v.Policies {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, p.Deny, p.Message)
				}
				_ = tw.Flush() // its error is w's: termtext.Writer keeps it, and print returns it
			})
		},
	}
	cmd.Flags().StringVar(&set, "set", "", "replace the policies with those of this file (YAML or JSON)")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove every policy")
	return cmd
}
