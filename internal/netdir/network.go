package netdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/trust"
)

// Info is network.json: what anyone needs to verify the network offline.
type Info struct {
	Version       int                 `json:"version"`
	Network       identity.NetworkID  `json:"network"`
	Origin        string              `json:"origin"`
	CreatedAt     time.Time           `json:"created_at"`
	RootKeys      *identity.PublicKey `json:"root_keys"`
	LogKey        *identity.PublicKey `json:"log_key"`
	NoteVerifier  string              `json:"ledger_verifier_key"`
	KeyProtection string              `json:"key_protection"`
	Master        identity.ID         `json:"master"`
}

const infoFile = "network.json"

// Options configure how a network directory is opened.
type Options struct {
	// Passphrase unseals a network sealed with a passphrase (or unlocks the
	// keys of a network made with one before sealing), and makes Init seal
	// with it.
	Passphrase string
	// ScryptWorkFactor overrides age's scrypt cost (log2 N) of networks
	// made before sealing; 0 keeps the default. Only tests lower it.
	ScryptWorkFactor int
	// KDF overrides the Argon2id cost of a new passphrase seal; zero keeps
	// seal.DefaultKDF. Only tests lower it.
	KDF seal.KDF
	// Seal protects the root sealing key (a passphrase, an HSM key); nil
	// takes Passphrase when set, else the file mode (seal.key).
	Seal seal.Protector
	// Root is the network's root sealing key, already unsealed (a control
	// plane started sealed and unsealed by the operator); nil unseals with
	// Seal.
	Root *seal.Root
	// Now is the clock; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
	// Rand is the randomness source for keys and nonces; crypto/rand if nil.
	Rand io.Reader
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// Network is an opened network directory.
type Network struct {
	Dir      string
	Info     Info
	opts     Options
	prot     *protector
	root     *seal.Root // unsealed by Root when Options.Root is nil
	verifier *trust.Verifier
}

// MasterGrant is what the genesis root grants the Master Cal.
type MasterGrant struct {
	Constraints trust.Constraints
}

// Init creates a network in dir: the genesis root key, the ledger with its
// log key and genesis entry, and the Master Cal blessed with every
// permission. dir must not exist or be empty. On failure nothing is left.
func Init(ctx context.Context, dir string, g MasterGrant, opts Options) (n *Network, err error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("init %s: directory is not empty (a network may already live there)", dir)
	}
	created := false
	if _, statErr := os.Stat(dir); errors.Is(statErr, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	defer func() {
		if err != nil {
			// Leave nothing half-made behind.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
			if created {
				os.Remove(dir)
			}
		}
	}()
	root, err := identity.Generate(opts.Rand)
	if err != nil {
		return nil, err
	}
	mode := ProtectSealed
	prot, sealRoot, err := newSealedProtector(ctx, dir, root.Public().NetworkID().String(), &opts)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	logKey, err := identity.Generate(opts.Rand)
	if err != nil {
		return nil, err
	}
	master, err := identity.Generate(opts.Rand)
	if err != nil {
		return nil, err
	}
	now := opts.now().Truncate(time.Second)
	netID := root.Public().NetworkID()
	origin := "calnet/" + netID.String()
	vkey, err := ledger.VerifierKey(origin, logKey.Public())
	if err != nil {
		return nil, err
	}
	info := Info{
		Version: 1, Network: netID, Origin: origin, CreatedAt: now,
		RootKeys: root.Public(), LogKey: logKey.Public(), NoteVerifier: vkey,
		KeyProtection: mode, Master: master.Public().ID(),
	}
	if err := prot.writeIdentity(filepath.Join(dir, "genesis"), root); err != nil {
		return nil, fmt.Errorf("init: genesis key: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "ledger"), 0o700); err != nil {
		return nil, err
	}
	if err := identity.SaveKeyFile(filepath.Join(dir, "ledger", "log.key"), logKey, prot.recipient); err != nil {
		return nil, fmt.Errorf("init: log key: %w", err)
	}
	n = &Network{Dir: dir, Info: info, opts: opts, prot: prot, verifier: trust.NewVerifier(root.Public())}
	if opts.Root == nil {
		n.root = sealRoot
	}

	cons := g.Constraints
	if cons.NotBefore.IsZero() {
		cons.NotBefore = now
	}
	b, err := trust.Issue(root, trust.Grant{
		Network: netID, ChildKey: master.Public(), Serial: 1, Permissions: trust.AllPermissions,
		Constraints: cons, IssuedAt: now, Rand: opts.Rand,
	})
	if err != nil {
		return nil, fmt.Errorf("init: master blessing: %w", err)
	}
	chain, err := trust.Extend(nil, b, root)
	if err != nil {
		return nil, err
	}
	masterDir := filepath.Join(dir, "master")
	if err := prot.writeIdentity(masterDir, master); err != nil {
		return nil, fmt.Errorf("init: master key: %w", err)
	}
	if err := writeBlessing(masterDir, b, chain); err != nil {
		return nil, err
	}
	genesisData, err := json.Marshal(struct {
		Network  identity.NetworkID  `json:"network"`
		Origin   string              `json:"origin"`
		RootKeys *identity.PublicKey `json:"root_keys"`
		LogKey   *identity.PublicKey `json:"log_key"`
	}{netID, origin, root.Public(), logKey.Public()})
	if err != nil {
		return nil, err
	}
	bj, _ := b.MarshalJSON()
	lg, err := n.openLedger(logKey)
	if err != nil {
		return nil, err
	}
	defer closeLedger(lg, &err)
	if _, err := lg.Append(ctx,
		ledger.Entry{Type: ledger.TypeGenesis, Time: now, Subject: netID.String(), Actor: trust.AuthorityIssuer, Data: genesisData},
		ledger.Entry{Type: ledger.TypeBlessing, Time: now, Subject: master.Public().ID().String(), Actor: trust.GenesisParent, Data: bj},
	); err != nil {
		return nil, fmt.Errorf("init: ledger: %w", err)
	}
	ib, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	// network.json last: its presence marks a complete network.
	if err := atomicfile.Write(filepath.Join(dir, infoFile), append(ib, '\n'), 0o644); err != nil {
		return nil, err
	}
	return n, nil
}

// Load opens an existing network directory.
func Load(dir string, opts Options) (*Network, error) {
	b, err := limitedfile.Read(filepath.Join(dir, infoFile), maxInfoFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a calnet network directory (no %s); create one with `calnet init --dir %s`", dir, infoFile, dir)
	}
	if err != nil {
		return nil, err
	}
	var info Info
	if err := strictjson.Unmarshal(b, maxInfoFile, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", infoFile, err)
	}
	if info.Version != 1 || info.RootKeys == nil || info.LogKey == nil {
		return nil, fmt.Errorf("%s: unsupported version or missing keys", infoFile)
	}
	if info.RootKeys.NetworkID() != info.Network {
		return nil, fmt.Errorf("%s: network %s is not the ID of root_keys", infoFile, info.Network)
	}
	return &Network{Dir: dir, Info: info, opts: opts, verifier: trust.NewVerifier(info.RootKeys)}, nil
}

// Verifier returns the network's chain verifier.
func (n *Network) Verifier() *trust.Verifier { return n.verifier }

func (n *Network) protector() (*protector, error) {
	if n.prot != nil {
		return n.prot, nil
	}
	if n.Info.KeyProtection == ProtectSealed {
		// Callers that may block on an HSM unseal first with Root(ctx).
		p, err := n.sealedProtector(context.Background())
		if err != nil {
			return nil, err
		}
		n.prot = p
		return p, nil
	}
	p, err := newProtector(n.Dir, n.Info.KeyProtection, n.opts.Passphrase, false, n.opts.ScryptWorkFactor)
	if err != nil {
		return nil, err
	}
	n.prot = p
	return p, nil
}

// LoadKey opens the private key of an identity directory with the
// network's key protection.
func (n *Network) LoadKey(dir string) (*identity.PrivateKey, error) {
	p, err := n.protector()
	if err != nil {
		return nil, err
	}
	return p.loadKey(dir)
}

func (n *Network) ledgerConfig(signer identity.Signer) ledger.Config {
	return ledger.Config{
		Dir: filepath.Join(n.Dir, "ledger"), Origin: n.Info.Origin, LogKey: n.Info.LogKey,
		Signer: signer, Logger: n.opts.Logger,
	}
}

func (n *Network) openLedger(signer identity.Signer) (*ledger.Log, error) {
	lg, err := ledger.Open(n.ledgerConfig(signer))
	if errors.Is(err, ledger.ErrDamaged) {
		return nil, fmt.Errorf("%w\n  nothing was changed; `calnet ledger repair --dir %s --dry-run` shows what the files still prove and what a repair would do", err, n.Dir)
	}
	return lg, err
}

func (n *Network) logKey() (*identity.PrivateKey, error) {
	p, err := n.protector()
	if err != nil {
		return nil, err
	}
	return identity.LoadKeyFile(filepath.Join(n.Dir, "ledger", "log.key"), p.identity)
}

// OpenLedger opens the ledger read-only, or for writing with the log key.
func (n *Network) OpenLedger(write bool) (*ledger.Log, error) {
	if !write {
		return n.openLedger(nil)
	}
	k, err := n.logKey()
	if err != nil {
		return nil, err
	}
	return n.openLedger(k)
}

// RepairLedger runs ledger.Repair on the network's ledger; a real repair
// unseals the log key, in case the acknowledged checkpoint must be
// signed again.
func (n *Network) RepairLedger(dryRun bool) (*ledger.RepairPlan, error) {
	var signer identity.Signer
	if !dryRun {
		k, err := n.logKey()
		if err != nil {
			return nil, err
		}
		signer = k
	}
	return ledger.Repair(n.ledgerConfig(signer), dryRun)
}

func writeBlessing(dir string, b *trust.Blessing, c *trust.Chain) error {
	bj, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	cj, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, BlessingFile), append(bj, '\n'), 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, SoulChainFile), append(cj, '\n'), 0o644)
}
