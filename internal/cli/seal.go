package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/soulfra/calnet/internal/controlplane"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/netdir"
	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/sealgate"
)

// sealFlags are `calnet up`'s sealing flags.
type sealFlags struct {
	mode     string // --seal: file, passphrase or pkcs11 ("" keeps the network's)
	secretFD int    // --passphrase-fd / --pin-fd: unseal at once from this descriptor
	pkcs11   seal.PKCS11Ref
}

func (f *sealFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mode, "seal", "", "how the root sealing key is protected: file (default for a new network: seal.key, no prompt), passphrase or pkcs11 (start sealed; `calnet unseal` unseals)")
	cmd.Flags().IntVar(&f.secretFD, "passphrase-fd", -1, "read the passphrase (or with --seal pkcs11 the PIN) from this file descriptor and unseal at once, instead of waiting for `calnet unseal`")
	cmd.Flags().StringVar(&f.pkcs11.Module, "pkcs11-module", "", "PKCS#11 library of the HSM (with --seal pkcs11 on a new network)")
	cmd.Flags().StringVar(&f.pkcs11.Token, "pkcs11-token", "", "label of the HSM token (with --seal pkcs11 on a new network)")
	cmd.Flags().StringVar(&f.pkcs11.Key, "pkcs11-key", "calnet-seal", "label of the AES key on the token that wraps the root sealing key (made if missing)")
}

// upSeal decides how `calnet up` unseals: the file mode returns at once;
// a passphrase or HSM waits, sealed, for the secret (from --passphrase-fd
// or `calnet unseal` on <data>/unseal.sock) while the API answers
// "sealed". It returns the protector and, for an existing network, the
// unsealed root.
func (a *app) upSeal(ctx context.Context, data string, f sealFlags, log *slog.Logger) (seal.Protector, *seal.Root, error) {
	netDir := filepath.Join(data, "network")
	var network string
	var have seal.Mode
	if n, err := netdir.Load(netDir, netdir.Options{}); err == nil {
		network = n.Info.Network.String()
		if cfg, err := seal.ReadConfig(netDir); err == nil {
			have = cfg.Mode
		} else if !errors.Is(err, seal.ErrNoSeal) {
			return nil, nil, err
		}
	} else if _, statErr := os.Stat(filepath.Join(netDir, "network.json")); statErr == nil {
		return nil, nil, err
	}
	want := seal.Mode(f.mode)
	switch want {
	case "", seal.ModeFile, seal.ModePassphrase, seal.ModePKCS11:
	default:
		return nil, nil, fmt.Errorf("--seal: %q, want file, passphrase or pkcs11", f.mode)
	}
	switch {
	case want == "" && have == "":
		want = seal.ModeFile
	case want == "":
		want = have
	case have != "" && want != have:
		return nil, nil, fmt.Errorf("--seal %s: this network's root sealing key is protected by %s; to change that, stop calnet and run `calnet seal change --data %s --to %s`", want, have, data, want)
	}
	if want == seal.ModeFile {
		return seal.File{}, nil, nil
	}
	// A new network (or one made before sealing) makes its seal with the
	// secret; an existing seal is unsealed with it.
	create := have == ""
	var prot seal.Protector
	var root *seal.Root
	try := func(ctx context.Context, secret []byte) error {
		p, err := a.protector(want, f.pkcs11, netDir, secret)
		if err != nil {
			return err
		}
		if create {
			if err := p.Check(ctx); err != nil {
				return err
			}
			prot = p
			return nil
		}
		r, err := seal.Unseal(ctx, netDir, network, p)
		if err != nil {
			return err
		}
		prot, root = p, r
		return nil
	}
	if f.secretFD >= 0 {
		secret, err := readSecretFD(f.secretFD)
		if err != nil {
			return nil, nil, err
		}
		defer clear(secret)
		if err := try(ctx, secret); err != nil {
			return nil, nil, fmt.Errorf("unseal: %w", err)
		}
		return prot, root, nil
	}
	if err := controlplane.CheckDataDir(data); err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(data, sealgate.SocketName)
	fmt.Fprintf(a.env.Stderr, "calnet up: sealed (%s); the API answers \"sealed\" until you run: calnet unseal --data %s\n", want, data)
	err := sealgate.Run(ctx, sealgate.Config{APIAddr: a.addr, Socket: sock, Mode: want, New: create, Hint: "run `calnet unseal --data " + data + "` on this host", Try: try, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return prot, root, nil
}

// checkedProtector is a seal protector that can check its secret before
// a new seal is made with it.
type checkedProtector interface {
	seal.Protector
	Check(ctx context.Context) error
}

// protector builds the protector of mode with secret.
func (a *app) protector(mode seal.Mode, ref seal.PKCS11Ref, netDir string, secret []byte) (checkedProtector, error) {
	switch mode {
	case seal.ModePassphrase:
		return &passphraseProtector{seal.Passphrase{Secret: append([]byte(nil), secret...)}}, nil
	case seal.ModePKCS11:
		if netDir != "" {
			if cfg, err := seal.ReadConfig(netDir); err == nil && cfg.PKCS11 != nil {
				ref = *cfg.PKCS11
			}
		}
		return newPKCS11Protector(ref, secret)
	}
	return nil, fmt.Errorf("seal mode %s takes no secret", mode)
}

// passphraseProtector checks a new passphrase's length.
type passphraseProtector struct{ seal.Passphrase }

func (p *passphraseProtector) Check(context.Context) error {
	if len(p.Secret) < seal.MinPassphrase {
		return fmt.Errorf("passphrase: %d bytes, the minimum is %d", len(p.Secret), seal.MinPassphrase)
	}
	return nil
}

// readSecretFD reads a passphrase or PIN from an open descriptor (a pipe
// the caller wrote it to), up to its end or first newline.
func readSecretFD(fd int) ([]byte, error) {
	f := os.NewFile(uintptr(fd), "passphrase-fd")
	if f == nil {
		return nil, fmt.Errorf("--passphrase-fd %d: not an open descriptor", fd)
	}
	defer f.Close()
	b, err := limitedfile.ReadAll(f, fmt.Sprintf("--passphrase-fd %d", fd), sealgate.MaxSecret+2)
	if err != nil {
		return nil, err
	}
	return trimSecret(b)
}

func trimSecret(b []byte) ([]byte, error) {
	for i, c := range b {
		if c == '\n' {
			clear(b[i:])
			b = b[:i]
			break
		}
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) == 0 {
		return nil, errors.New("the passphrase is empty")
	}
	return b, nil
}

func (a *app) unsealCmd() *cobra.Command {
	var data string
	var fd int
	cmd := &cobra.Command{
		Use:   "unseal",
		Short: "Unseal a `calnet up` started sealed (passphrase or HSM PIN from a prompt or a descriptor)",
		Long: `Give a sealed ` + "`calnet up`" + ` (--seal passphrase or pkcs11) its passphrase or the HSM
token's PIN, through <data>/unseal.sock (root only). The secret is read from the
terminal without echo (twice when the network is being created), or from
--passphrase-fd; never from the command line. A wrong one is refused by name
and the network stays sealed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !filepath.IsAbs(data) {
				var err error
				if data, err = filepath.Abs(data); err != nil {
					return err
				}
			}
			sock := filepath.Join(data, sealgate.SocketName)
			greeting, err := sealgate.Greeting(cmd.Context(), sock)
			if err != nil {
				return err
			}
			var secret []byte
			if fd >= 0 {
				secret, err = readSecretFD(fd)
			} else {
				secret, err = prompt(a.env.Stderr, greeting)
			}
			if err != nil {
				return err
			}
			defer clear(secret)
			if err := sealgate.Unseal(cmd.Context(), sock, secret); err != nil {
				return fmt.Errorf("unseal: %w", err)
			}
			return a.print(map[string]bool{"unsealed": true}, func(w io.Writer) { fmt.Fprintln(w, "unsealed") })
		},
	}
	cmd.Flags().StringVar(&data, "data", defaultData, "data directory of the sealed calnet up")
	cmd.Flags().IntVar(&fd, "passphrase-fd", -1, "read the passphrase (or PIN) from this file descriptor instead of the terminal")
	return cmd
}

// prompt asks for the secret on the terminal without echo; a new seal
// asks twice.
func prompt(w io.Writer, g sealgate.Hello) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask on (%w): pass the secret with --passphrase-fd", err)
	}
	defer tty.Close()
	what := "Passphrase"
	if g.Mode == seal.ModePKCS11 {
		what = "HSM token PIN"
	}
	ask := func(label string) ([]byte, error) {
		fmt.Fprintf(tty, "%s: ", label)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return nil, err
		}
		return trimSecret(b)
	}
	first, err := ask(what)
	if err != nil {
		return nil, err
	}
	if g.New && g.Mode == seal.ModePassphrase {
		again, err := ask("The same passphrase again")
		if err != nil {
			clear(first)
			return nil, err
		}
		same := string(again) == string(first)
		clear(again)
		if !same {
			clear(first)
			return nil, errors.New("the two passphrases differ; nothing was sent")
		}
	}
	return first, nil
}

func (a *app) sealCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seal",
		Short: "Manage how the network's root sealing key is protected",
	}
	var data, to string
	var fd, newFD int
	var ref seal.PKCS11Ref
	change := &cobra.Command{
		Use:   "change",
		Short: "Protect the root sealing key another way (file, passphrase or pkcs11)",
		Long: `Unwrap the root sealing key of the network in --data with its current
protection and wrap it with --to, replacing seal.json atomically. The root
itself does not change, so every sealed key stays valid and nothing is
re-encrypted. Leaving the file mode overwrites and removes seal.key (on a
journaling or copy-on-write filesystem its old bytes may survive: treat the
root as known to whoever could read the disk before). The current secret
comes from --passphrase-fd or a prompt, the new one from
--new-passphrase-fd or a prompt (twice). It can run while calnet up runs:
the running control plane keeps the root it unsealed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			netDir := filepath.Join(data, "network")
			n, err := netdir.Load(netDir, netdir.Options{})
			if err != nil {
				return err
			}
			cfg, err := seal.ReadConfig(netDir)
			if err != nil {
				return fmt.Errorf("%w: start it once with `calnet up`, which seals it, then change the protection", err)
			}
			target := seal.Mode(to)
			switch target {
			case seal.ModeFile, seal.ModePassphrase, seal.ModePKCS11:
			default:
				return fmt.Errorf("--to: %q, want file, passphrase or pkcs11", to)
			}
			if target == cfg.Mode && target != seal.ModePKCS11 && target != seal.ModePassphrase {
				return fmt.Errorf("--to %s: the root is already protected so", target)
			}
			from, err := a.sealSecretProtector(cfg.Mode, seal.PKCS11Ref{}, netDir, fd, false)
			if err != nil {
				return fmt.Errorf("current protection: %w", err)
			}
			toP, err := a.sealSecretProtector(target, ref, "", newFD, true)
			if err != nil {
				return fmt.Errorf("new protection: %w", err)
			}
			if cp, ok := toP.(checkedProtector); ok {
				if err := cp.Check(ctx); err != nil {
					return err
				}
			}
			if err := seal.Rewrap(ctx, netDir, n.Info.Network.String(), from, toP); err != nil {
				return err
			}
			return a.print(map[string]string{"seal": string(target)}, func(w io.Writer) { fmt.Fprintf(w, "the root sealing key is now protected by %s\n", target) })
		},
	}
	change.Flags().StringVar(&data, "data", defaultData, "data directory of the network")
	change.Flags().StringVar(&to, "to", "", "the new protection: file, passphrase or pkcs11")
	change.Flags().IntVar(&fd, "passphrase-fd", -1, "read the current passphrase (or PIN) from this descriptor instead of the terminal")
	change.Flags().IntVar(&newFD, "new-passphrase-fd", -1, "read the new passphrase (or PIN) from this descriptor instead of the terminal")
	change.Flags().StringVar(&ref.Module, "pkcs11-module", "", "PKCS#11 library (with --to pkcs11)")
	change.Flags().StringVar(&ref.Token, "pkcs11-token", "", "token label (with --to pkcs11)")
	change.Flags().StringVar(&ref.Key, "pkcs11-key", "calnet-seal", "label of the AES key on the token (made if missing; with --to pkcs11)")
	cmd.AddCommand(change)
	return cmd
}

// sealSecretProtector builds the protector of mode, reading its secret
// from fd or the terminal (twice for a new passphrase).
func (a *app) sealSecretProtector(mode seal.Mode, ref seal.PKCS11Ref, netDir string, fd int, isNew bool) (seal.Protector, error) {
	if mode == seal.ModeFile {
		return seal.File{}, nil
	}
	var secret []byte
	var err error
	if fd >= 0 {
		secret, err = readSecretFD(fd)
	} else {
		secret, err = prompt(a.env.Stderr, sealgate.Hello{Mode: mode, New: isNew})
	}
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	return a.protector(mode, ref, netDir, secret)
}
