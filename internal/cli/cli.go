// Package cli implements the calnet command line: the only layer that reads
// flags and environment variables, and the only one that decides exit
// codes (which cmd/calnet passes to os.Exit).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/internal/termtext"
)

// Env is what the CLI needs from its process.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// exitError carries a non-zero exit code for a result that was already
// printed (for example an invalid chain).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// app holds the global flags and output settings.
type app struct {
	env            Env
	root           *cobra.Command
	dir            string
	output         string
	passphraseFile string
	addr           string
	tokenFile      string
	tmpl           *template.Template // -o go-template=...
}

// json reports whether output is for programs (-o json or -o
// go-template=...): one value per result, no progress text.
func (a *app) json() bool { return a.output == "json" || a.tmpl != nil }

// checkOutput validates -o: text, json or go-template=TEMPLATE (Go's
// text/template over the JSON form of the result, as kubectl's).
func (a *app) checkOutput() error {
	if t, ok := strings.CutPrefix(a.output, "go-template="); ok {
		tmpl, err := template.New("-o").Option("missingkey=error").Parse(t)
		if err != nil {
			return fmt.Errorf("-o go-template: %w", err)
		}
		a.tmpl = tmpl
		return nil
	}
	if a.output != "text" && a.output != "json" {
		return fmt.Errorf("-o %q: want text, json or go-template=TEMPLATE", a.output)
	}
	return nil
}

// render writes v through the -o go-template: the template sees v as its
// JSON form (field names as in -o json).
func (a *app) render(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var data any // our own encoding, read back as plain values
	if err := strictjson.Unmarshal(b, len(b), &data); err != nil {
		return err
	}
	out := termtext.NewWriter(a.env.Stdout)
	if err := a.tmpl.Execute(out, data); err != nil {
		return fmt.Errorf("-o go-template: %w", err)
	}
	return out.Flush()
}

// Every command writes its standard output through print (one result),
// emit (a stream of items) or textStream (raw text, only in text mode), so
// that -o json is never ignored; TestStdoutOnlyThroughPrinters holds the
// package to it.

// print writes a command's one result: v as an indented JSON document in
// -o json mode, through the template with -o go-template, text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.tmpl != nil {
		return a.render(v)
	}
	if a.json() {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	out := termtext.NewWriter(a.env.Stdout)
	text(out)
	return out.Flush()
}

// emit writes one item of a stream (events, log lines, reflections): in
// -o json mode one compact JSON object per line (JSON Lines), text
// otherwise.
func (a *app) emit(v any, text func(w io.Writer)) error {
	if a.tmpl != nil {
		return a.render(v)
	}
	if a.json() {
		return json.NewEncoder(a.env.Stdout).Encode(v)
	}
	out := termtext.NewWriter(a.env.Stdout)
	text(out)
	return out.Flush()
}

// textStream is standard output for a raw text stream (a Cal's log file,
// an interactive console); the caller flushes it when the stream ends.
// Callers handle -o json before they ask for it.
//
// Text output (print, emit, render, textStream, error messages) goes
// through termtext: what a Cal wrote (its log, console, reflections,
// reasons) is shown with its escape sequences escaped, never acted on by
// the reader's terminal.
func (a *app) textStream() (*termtext.Writer, error) {
	if a.json() {
		return nil, errors.New("internal error: a raw text stream in -o json mode")
	}
	return termtext.NewWriter(a.env.Stdout), nil
}

// maxPassphraseFile bounds --passphrase-file.
const maxPassphraseFile = 4 << 10

// options builds the netdir options from flags and environment.
func (a *app) options() (netdir.Options, error) {
	var o netdir.Options
	o.Passphrase = a.env.Getenv("CALNET_PASSPHRASE")
	if a.passphraseFile != "" {
		b, err := limitedfile.Read(a.passphraseFile, maxPassphraseFile)
		if err != nil {
			return o, fmt.Errorf("--passphrase-file: %w", err)
		}
		o.Passphrase = strings.TrimRight(string(b), "\r\n")
		if o.Passphrase == "" {
			return o, errors.New("--passphrase-file: the file is empty")
		}
	}
	return o, nil
}

func (a *app) network() (*netdir.Network, error) {
	o, err := a.options()
	if err != nil {
		return nil, err
	}
	return netdir.Load(a.dir, o)
}

// Main runs the CLI with args and returns the process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	a := &app{env: env}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if a.output == "json" {
		// Standard error is the last resort: its own failure has nowhere
		// to go, and the exit status says the command failed anyway.
		_ = json.NewEncoder(env.Stderr).Encode(map[string]string{"error": err.Error()})
	} else {
		fmt.Fprintf(env.Stderr, "calnet: %s\n", termtext.String(err.Error()))
	}
	return 1
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "calnet",
		Short: "Cals that spawn, bless and supervise Cals, with post-quantum trust chains",
		Long: `calnet runs a network of Cals: isolated instances that spawn children with
fresh hybrid (Ed25519 + ML-DSA-65) identities and attenuated blessings, all
recorded in a tamper-evident Merkle ledger.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.checkOutput() },
	}
	defDir := a.env.Getenv("CALNET_DIR")
	if defDir == "" {
		defDir = "calnet-net"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.dir, "dir", defDir, "network directory (env CALNET_DIR)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text, json (streams: JSON Lines) or go-template=TEMPLATE (e.g. -o go-template='{{.id}}')")
	pf.StringVar(&a.passphraseFile, "passphrase-file", "", "file holding the passphrase that seals keys (or env CALNET_PASSPHRASE)")
	defAddr := a.env.Getenv("CALNET_ADDR")
	if defAddr == "" {
		defAddr = "127.0.0.1:7070"
	}
	pf.StringVar(&a.addr, "addr", defAddr, "calnet API address (env CALNET_ADDR)")
	pf.StringVar(&a.tokenFile, "token-file", filepath.Join(defaultData, "admin.token"), "credential file; given, it wins over env CALNET_TOKEN, which wins over the default file")
	a.root = root
	root.AddCommand(a.initCmd(), a.keygenCmd(), a.blessCmd(), a.verifyCmd(), a.revokeCmd(), a.ledgerCmd(), a.versionCmd(),
		a.upCmd(), a.calCmd(), a.downCmd(), a.statusCmd(), a.spawnCmd(), a.restartCmd(), a.lsCmd(), a.showCmd(), a.logsCmd(), a.spawningCmd(), a.benchCmd(), a.tokenCmd(), a.eventsCmd(),
		a.reflectCmd(), a.reflectionsCmd(), a.shareCmd(), a.qrCmd(), a.templateCmd(), a.consoleCmd(), a.limitsCmd(), a.rulesCmd(), a.policyCmd(), a.recommendCmd(), a.simCmd(),
		a.adminCmd(), a.approvalsCmd(), a.voteCmd(true), a.voteCmd(false), a.pprofCmd(), a.matrixCmd(), a.authzCmd(), a.auditCmd(), a.unsealCmd(), a.witnessCmd(), a.chainCmd(), a.sealCmd(), a.snapshotCmd())
	return root
}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the calnet version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.print(map[string]string{"version": Version}, func(w io.Writer) { fmt.Fprintln(w, "calnet", Version) })
		},
	}
}
