package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/witness"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
)

// witnessFlags are the witness policy flags of the verifying commands.
type witnessFlags struct {
	keys    []string
	require int
}

func (f *witnessFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.keys, "witness", nil, "a trusted witness's verifier key (<name>+<hash>+<key>, as `calnet witness init` prints); repeat for each")
	cmd.Flags().IntVar(&f.require, "require", 0, "cosignatures the checkpoint needs from distinct --witness keys")
}

func (f *witnessFlags) policy() (ledger.WitnessPolicy, error) {
	var p ledger.WitnessPolicy
	for _, k := range f.keys {
		w, err := ledger.ParseWitnessKey(k)
		if err != nil {
			return p, fmt.Errorf("--witness %q: %w", k, err)
		}
		p.Witnesses = append(p.Witnesses, w)
	}
	p.Required = f.require
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("--require %d: %w", f.require, err)
	}
	return p, nil
}

// parseWitnessEndpoints parses `up --witness URL=VKEY` values.
func parseWitnessEndpoints(vals []string) ([]controlplane.WitnessEndpoint, error) {
	var out []controlplane.WitnessEndpoint
	for _, v := range vals {
		u, k, ok := strings.Cut(v, "=")
		if !ok || !strings.HasPrefix(u, "http") {
			return nil, fmt.Errorf("--witness %q: want URL=VERIFIER-KEY", v)
		}
		key, err := ledger.ParseWitnessKey(k)
		if err != nil {
			return nil, fmt.Errorf("--witness %q: %w", v, err)
		}
		out = append(out, controlplane.WitnessEndpoint{URL: strings.TrimSuffix(u, "/"), Key: key})
	}
	return out, nil
}

func (a *app) witnessCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "witness",
		Short: "Witness a calnet ledger: check that it only grows, and cosign its checkpoints (C2SP tlog-witness)",
	}
	cmd.AddCommand(a.witnessInitCmd(), a.witnessRunCmd())
	return cmd
}

func (a *app) witnessInitCmd() *cobra.Command {
	var keyFile, name string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a witness key and print its verifier key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || name == "" {
				return errors.New("--key and --name are required")
			}
			file, vkey, err := witness.GenerateKey(name)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteNew(keyFile, file, 0o600); err != nil {
				return fmt.Errorf("--key %s: %w", keyFile, err)
			}
			return a.print(map[string]string{"verifier_key": vkey, "key_file": keyFile}, func(w io.Writer) { fmt.Fprintln(w, vkey) })
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "file to create (0600), holding the witness's Ed25519 key")
	cmd.Flags().StringVar(&name, "name", "", "the witness's name, e.g. witness.example.org/1 (no spaces or '+')")
	return cmd
}

func (a *app) witnessRunCmd() *cobra.Command {
	var keyFile, stateFile, listen, logURL string
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the witness: serve add-checkpoint on --listen, and/or follow --log",
		Long: `Witness the ledger of the network in --dir (its network.json names the log's
origin and key; nothing secret is needed). With --listen the witness serves
POST /add-checkpoint (C2SP tlog-witness: the control plane pushes each
checkpoint with a consistency proof, see calnet up --witness) and GET
/checkpoint (the latest checkpoint it cosigned). With --log it also pulls the
log's checkpoint from its tlog-tiles URL every --interval and proves
consistency from the tiles. It cosigns only a checkpoint consistent with the
last one it cosigned, recorded in --state before it answers; a fork or a
rollback is refused and logged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || stateFile == "" || (listen == "" && logURL == "") {
				return errors.New("--key, --state and at least one of --listen and --log are required")
			}
			n, err := a.network()
			if err != nil {
				return err
			}
			signer, err := witness.LoadSigner(keyFile, nil)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(a.env.Stderr, nil))
			w, err := witness.New(witness.Config{Origin: n.Info.Origin, LogKey: n.Info.LogKey, Signer: signer, StateFile: stateFile, Logger: log})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			errc := make(chan error, 2)
			if listen != "" {
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return err
				}
				srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
				go func() { errc <- srv.Serve(ln) }()
				defer srv.Close()
				log.Info("witness listening", "url", "http://"+ln.Addr().String(), "verifier_key", signer.Verifier().String(), "size", w.Size())
			}
			if logURL != "" {
				c, err := tiles.NewClient(tiles.ClientConfig{URL: logURL, Origin: n.Info.Origin, LogKey: n.Info.LogKey})
				if err != nil {
					return err
				}
				go func() { errc <- w.Follow(ctx, c, interval) }()
				log.Info("witness following", "log", logURL, "interval", interval)
			}
			select {
			case <-ctx.Done():
				return nil
			case err := <-errc:
				return err
			}
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the witness key file (calnet witness init)")
	cmd.Flags().StringVar(&stateFile, "state", "", "the witness's state file (created if missing)")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve add-checkpoint and checkpoint on")
	cmd.Flags().StringVar(&logURL, "log", "", "the log's tlog-tiles URL to follow, e.g. http://127.0.0.1:7070/ledger")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "how often to pull the log's checkpoint (with --log)")
	return cmd
}
