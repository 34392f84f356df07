package netdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/seal"
)

// Files of the sealed key protection.
const (
	// legacyKEKFile is the age identity of ProtectHybrid networks, in clear.
	legacyKEKFile = "kek.age"
	// sealedKEKFile is the same identity sealed by the root sealing key.
	sealedKEKFile = "kek.sealed"
	// purposeNetworkKEK is the sealed purpose of kek.sealed.
	purposeNetworkKEK = "network-kek"
)

// Root returns the network's root sealing key, unsealing it with the
// options' protector the first time (Options.Root when given).
func (n *Network) Root(ctx context.Context) (*seal.Root, error) {
	if n.opts.Root != nil {
		return n.opts.Root, nil
	}
	if n.root != nil {
		return n.root, nil
	}
	r, err := seal.Unseal(ctx, n.Dir, n.Info.Network.String(), n.opts.protector())
	if err != nil {
		return nil, fmt.Errorf("unseal the network's keys: %w", err)
	}
	n.root = r
	return r, nil
}

// protector is the seal protector the options ask for: Seal, else a
// passphrase, else the file mode.
func (o *Options) protector() seal.Protector {
	switch {
	case o.Seal != nil:
		return o.Seal
	case o.Passphrase != "":
		return &seal.Passphrase{Secret: []byte(o.Passphrase), KDF: o.KDF}
	}
	return seal.File{}
}

// sealedProtector opens kek.sealed with the root.
func (n *Network) sealedProtector(ctx context.Context) (*protector, error) {
	root, err := n.Root(ctx)
	if err != nil {
		return nil, err
	}
	id, err := readSealedKEK(n.Dir, root)
	if err != nil {
		return nil, err
	}
	return &protector{recipient: id.Recipient(), identity: id}, nil
}

func readSealedKEK(dir string, root *seal.Root) (*age.HybridIdentity, error) {
	path := filepath.Join(dir, sealedKEKFile)
	b, err := limitedfile.Read(path, seal.MaxBlob)
	if err != nil {
		return nil, fmt.Errorf("key-encryption identity: %w", err)
	}
	plain, err := root.Open(purposeNetworkKEK, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer clear(plain)
	id, err := age.ParseHybridIdentity(strings.TrimSpace(string(plain)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

func writeSealedKEK(dir string, root *seal.Root, id *age.HybridIdentity) error {
	b, err := root.Seal(purposeNetworkKEK, []byte(id.String()))
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, sealedKEKFile), b, 0o600)
}

// newSealedProtector makes the key-encryption identity of a new network
// and seals it with a new root.
func newSealedProtector(ctx context.Context, dir, network string, opts *Options) (*protector, *seal.Root, error) {
	root := opts.Root
	if root == nil {
		var err error
		if root, err = seal.Create(ctx, dir, network, opts.protector()); err != nil {
			return nil, nil, err
		}
	}
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, nil, err
	}
	if err := writeSealedKEK(dir, root, id); err != nil {
		return nil, nil, err
	}
	return &protector{recipient: id.Recipient(), identity: id}, root, nil
}

// SealsKeys reports whether the network's key-encryption identity is
// sealed by a root sealing key (not in clear in kek.age).
func (n *Network) SealsKeys() bool { return n.Info.KeyProtection == ProtectSealed }

// MigrateToSealed moves a network whose key-encryption identity lies in
// clear in kek.age (ProtectHybrid, before sealing) to the sealed
// protection: it makes the root sealing key with the options' protector
// (or unseals the one a cut-short migration made), writes kek.sealed,
// records the protection in network.json, and only then wipes kek.age.
// Each step is atomic and a rerun picks up where a crash left off; no
// private key is re-encrypted, so nothing can be lost. Other protections
// are left as they are (it returns false).
func (n *Network) MigrateToSealed(ctx context.Context) (bool, error) {
	legacy := filepath.Join(n.Dir, legacyKEKFile)
	switch n.Info.KeyProtection {
	case ProtectSealed:
		// A migration cut short after network.json: kek.age may remain.
		if _, err := os.Stat(legacy); errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		p, err := n.sealedProtector(ctx)
		if err != nil {
			return false, err
		}
		old, err := readLegacyKEK(legacy)
		if err != nil {
			return false, err
		}
		if old.String() != p.identity.(*age.HybridIdentity).String() {
			return false, fmt.Errorf("%s and %s hold different identities: keep both and ask for help; nothing was changed", legacy, sealedKEKFile)
		}
		return true, wipeFile(legacy)
	case ProtectHybrid:
	default:
		return false, nil
	}
	old, err := readLegacyKEK(legacy)
	if err != nil {
		return false, err
	}
	var root *seal.Root
	if n.opts.Root != nil {
		root = n.opts.Root
	} else if _, err := os.Stat(filepath.Join(n.Dir, seal.ConfigFile)); err == nil {
		if root, err = n.Root(ctx); err != nil {
			return false, err
		}
	} else {
		if root, err = seal.Create(ctx, n.Dir, n.Info.Network.String(), n.opts.protector()); err != nil {
			return false, fmt.Errorf("seal the network's keys: %w", err)
		}
		n.root = root
	}
	if err := writeSealedKEK(n.Dir, root, old); err != nil {
		return false, err
	}
	if back, err := readSealedKEK(n.Dir, root); err != nil || back.String() != old.String() {
		return false, fmt.Errorf("%s does not read back (%v): %s is kept, nothing else changed", sealedKEKFile, err, legacyKEKFile)
	}
	info := n.Info
	info.KeyProtection = ProtectSealed
	ib, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return false, err
	}
	if err := atomicfile.Write(filepath.Join(n.Dir, infoFile), append(ib, '\n'), 0o644); err != nil {
		return false, err
	}
	n.Info = info
	n.prot = &protector{recipient: old.Recipient(), identity: old}
	return true, wipeFile(legacy)
}

func readLegacyKEK(path string) (*age.HybridIdentity, error) {
	b, err := limitedfile.Read(path, maxKEKFile)
	if err != nil {
		return nil, fmt.Errorf("key-encryption identity: %w", err)
	}
	id, err := age.ParseHybridIdentity(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// wipeFile overwrites a secret file with zeros and removes it. On a
// journaling or copy-on-write filesystem old blocks may survive: what was
// in it must be taken as known to whoever could read the disk before.
func wipeFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil {
		_, err = f.Write(make([]byte, st.Size()))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// SealMode is how the network's root sealing key is protected ("" for a
// network whose keys are not sealed by one).
func (n *Network) SealMode() seal.Mode {
	if n.Info.KeyProtection != ProtectSealed {
		return ""
	}
	cfg, err := seal.ReadConfig(n.Dir)
	if err != nil {
		return ""
	}
	return cfg.Mode
}
