package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/snapshot"
	"github.com/soulfra/calnet/internal/strictjson"
)

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up a running network and restore it (encrypted snapshots)",
		Long: `A snapshot is one file holding everything a network needs to come back on
another machine: the state store, the ledger, the network's identity and
sealed keys, the root credential, templates, programs, the audit trail and
every Cal's sealed key. It is encrypted to hybrid post-quantum age
recipients (age1pq1...): make a key pair with ` + "`calnet snapshot keygen`" + ` and
keep the key file off the machine.`,
	}
	cmd.AddCommand(a.snapshotKeygenCmd(), a.snapshotSaveCmd(), a.snapshotInspectCmd(), a.snapshotRestoreCmd())
	return cmd
}

func (a *app) snapshotKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a key pair for snapshots: the key file (0600) and its recipient",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, rcpt, err := snapshot.Keygen()
			if err != nil {
				return err
			}
			if err := atomicfile.WriteNew(out, []byte(text), 0o600); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			return a.print(map[string]string{"key_file": out, "recipient": rcpt}, func(w io.Writer) {
				fmt.Fprintf(w, "key file  %s (0600: keep it off the machine the snapshots are of)\nrecipient %s\n", out, rcpt)
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "snapshot.key", "where to write the key file (never over an existing file)")
	return cmd
}

// recipientFlags are the ways to say who a snapshot is encrypted to.
type recipientFlags struct {
	recipients []string
	file       string
}

func (r *recipientFlags) add(cmd *cobra.Command, prefix string) {
	cmd.Flags().StringArrayVar(&r.recipients, prefix+"recipient", nil, "hybrid post-quantum age recipient (age1pq1...) to encrypt to; repeatable")
	cmd.Flags().StringVar(&r.file, prefix+"recipients-file", "", "file of recipients, one a line")
}

func (r *recipientFlags) list(prefix string) ([]string, error) {
	out := append([]string(nil), r.recipients...)
	if r.file != "" {
		rs, err := snapshot.ReadRecipientsFile(r.file)
		if err != nil {
			return nil, fmt.Errorf("--%srecipients-file: %w", prefix, err)
		}
		out = append(out, rs...)
	}
	if _, err := snapshot.ParseRecipients(out); err != nil {
		return nil, fmt.Errorf("--%srecipient: %w", prefix, err)
	}
	return out, nil
}

func (a *app) snapshotSaveCmd() *cobra.Command {
	var rf recipientFlags
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Take a snapshot of the running network into FILE (0600, written atomically)",
		Long: `Stream a consistent, encrypted snapshot from the running ` + "`calnet up`" + ` (root
credential only) into FILE. FILE appears only once the snapshot is complete.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rcpts, err := rf.list("")
			if err != nil {
				return err
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			var raw []byte
			start := time.Now()
			err = snapshot.WriteFile(path, func(w io.Writer) error {
				var err error
				raw, err = c.Snapshot(cmd.Context(), rcpts, w)
				return err
			})
			if err != nil {
				return err
			}
			var m snapshot.Manifest
			if err := strictjson.Unmarshal(raw, snapshot.MaxManifest, &m); err != nil {
				return fmt.Errorf("the snapshot's manifest: %w", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			out := savedInfo{File: path, Bytes: fi.Size(), Seconds: time.Since(start).Seconds(), Manifest: &m}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "snapshot %s (%d bytes, %.1fs)\n", path, fi.Size(), out.Seconds)
				printManifest(w, &m)
			})
		},
	}
	rf.add(cmd, "")
	return cmd
}

type savedInfo struct {
	File     string             `json:"file"`
	Bytes    int64              `json:"bytes"`
	Seconds  float64            `json:"seconds"`
	Manifest *snapshot.Manifest `json:"manifest"`
}

func printManifest(w io.Writer, m *snapshot.Manifest) {
	fmt.Fprintf(w, "  format     %s\n  network    %s\n  taken      %s\n  ledger     %d entries, root %s\n  store      index %d, %d bytes\n  cals       %d, %d with their keys\n  content    %d bytes\n",
		m.Format, m.Network, m.CreatedAt.Format(time.RFC3339), m.Ledger.Size, m.Ledger.Root, m.Store.Index, m.Store.Size, m.Cals.Total, m.Cals.WithKey, m.Bytes)
	for _, x := range m.Cals.Missing {
		fmt.Fprintf(w, "  NO KEY     cal %s: %s (it cannot run after a restore)\n", x.ID, x.Reason)
	}
}

// openSnapshot opens FILE with the identities of --identity.
func openSnapshot(file, identity string) (*os.File, io.Reader, error) {
	if identity == "" {
		return nil, nil, errors.New("--identity: the key file that opens the snapshot (from `calnet snapshot keygen`) is required")
	}
	ids, err := snapshot.ReadIdentities(identity)
	if err != nil {
		return nil, nil, fmt.Errorf("--identity: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	p, err := snapshot.Open(f, ids)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return f, p, nil
}

// inspected is what `snapshot inspect` reports.
type inspected struct {
	File     string             `json:"file"`
	Verified bool               `json:"verified"`
	Files    int                `json:"files"`
	CalFiles int                `json:"cal_files"`
	Manifest *snapshot.Manifest `json:"manifest"`
}

func (a *app) snapshotInspectCmd() *cobra.Command {
	var identity string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a snapshot's manifest after reading and verifying all of it (restores nothing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, p, err := openSnapshot(args[0], identity)
			if err != nil {
				return err
			}
			defer f.Close()
			r, m, err := snapshot.NewReader(p)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out := inspected{File: args[0], Manifest: m}
			for {
				it, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				switch it.Kind {
				case snapshot.KindFile:
					out.Files++
				case snapshot.KindCalFile:
					out.CalFiles++
				}
				if _, err := io.Copy(io.Discard, it); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
			}
			out.Verified = true
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "snapshot %s: complete and unchanged (%d files, %d cal files)\n", args[0], out.Files, out.CalFiles)
				printManifest(w, m)
			})
		},
	}
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "key file that opens the snapshot")
	return cmd
}

func (a *app) snapshotRestoreCmd() *cobra.Command {
	var identity, data string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a snapshot into a new data directory; then `calnet up --data DIR` brings the network back",
		Long: `Write the snapshot into --data, which must be new or empty (or, with --force,
a stopped data directory of the same network whose ledger is not newer
than the snapshot's; it is moved aside, not deleted). Everything is built
in a new directory beside it and renamed into place only when complete and
verified: a changed or cut file, a full disk or any other failure leaves
--data as it was. Then ` + "`calnet up --data DIR`" + ` starts every Cal again with
its own identity.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("--data: the data directory to restore into is required")
			}
			dst, err := filepath.Abs(data)
			if err != nil {
				return fmt.Errorf("--data: %w", err)
			}
			f, p, err := openSnapshot(args[0], identity)
			if err != nil {
				return err
			}
			defer f.Close()
			o, err := a.options()
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := snapshot.Restore(cmd.Context(), p, dst, snapshot.RestoreOptions{Force: force, Passphrase: o.Passphrase})
			if err != nil {
				return fmt.Errorf("restore %s into %s: %w", args[0], dst, err)
			}
			secs := time.Since(start).Seconds()
			return a.print(struct {
				*snapshot.Restored
				Seconds float64 `json:"seconds"`
			}{res, secs}, func(w io.Writer) {
				fmt.Fprintf(w, "restored %s into %s (%.1fs): %d files, %d cal keys\n", args[0], dst, secs, res.Files, res.CalKeys)
				if res.Replaced != "" {
					fmt.Fprintf(w, "the data directory that was there is kept as %s\n", res.Replaced)
				}
				printManifest(w, res.Manifest)
				fmt.Fprintf(w, "Start it: calnet up --data %s\n", strings.ReplaceAll(dst, " ", `\ `))
			})
		},
	}
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "key file that opens the snapshot")
	cmd.Flags().StringVar(&data, "data", "", "data directory to restore into (new or empty)")
	cmd.Flags().BoolVar(&force, "force", false, "replace a stopped data directory of the same network whose ledger is not newer (kept aside as DIR.replaced-<time>)")
	return cmd
}
